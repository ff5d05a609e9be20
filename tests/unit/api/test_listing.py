"""``GET /experiments`` a page at a time (filters, its total) and ``GET /experiments/summary``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from observml import ExperimentHub
from observml.api import ApiSettings, create_app
from observml.api.routes import TOTAL_HEADER
from observml.cli.api_client import TOTAL_HEADER as CLI_TOTAL_HEADER
from tests.unit.api.conftest import (
    FD_CONFIG,
    assert_error,
    finish,
    sensor_rows,
    stream_of,
    wait_for,
)

#: A time series experiment needs its target and time column named.
TS_CONFIG: dict[str, Any] = {"setup": {"target": "y", "datetime_column": "ds"}}
#: Alerts on a high anomaly rate; no automatic retrain.
ALERTING: dict[str, Any] = {
    **FD_CONFIG,
    "retrain": {
        "metric": "anomaly_rate",
        "threshold": 0.3,
        "higher_better": False,
        "enabled": False,
    },
}


def names(response: Any) -> list[str]:
    return [e["name"] for e in response.json()]


@pytest.fixture
def twelve(hub: ExperimentHub) -> ExperimentHub:
    """Twelve untrained experiments: unit-00 to unit-11, every third a time series."""
    for i in range(12):
        kind, config = ("time_series", TS_CONFIG) if i % 3 == 0 else ("fault_detection", {})
        hub.create_experiment(f"unit-{i:02d}", kind, config)
    return hub


def test_the_list_without_paging_is_every_experiment(
    twelve: ExperimentHub, client: TestClient
) -> None:
    response = client.get("/experiments")
    assert response.status_code == 200
    assert names(response) == [f"unit-{i:02d}" for i in range(12)]
    assert response.headers[TOTAL_HEADER] == "12"
    assert TOTAL_HEADER == CLI_TOTAL_HEADER  # the CLI reads the same header


def test_a_page_of_the_list(twelve: ExperimentHub, client: TestClient) -> None:
    response = client.get("/experiments", params={"offset": 5, "limit": 4})
    assert names(response) == ["unit-05", "unit-06", "unit-07", "unit-08"]
    assert response.headers[TOTAL_HEADER] == "12"
    last = client.get("/experiments", params={"offset": 10, "limit": 4})
    assert names(last) == ["unit-10", "unit-11"]
    beyond = client.get("/experiments", params={"offset": 50, "limit": 4})
    assert beyond.status_code == 200
    assert beyond.json() == []
    assert beyond.headers[TOTAL_HEADER] == "12"


def test_filters_by_type_state_and_name(twelve: ExperimentHub, client: TestClient) -> None:
    job = client.post("/experiments/unit-01/train", json={"rows": sensor_rows(200)})
    assert finish(client, job.json())["state"] == "succeeded"

    series = client.get("/experiments", params={"type": "time_series", "limit": 2, "offset": 1})
    assert names(series) == ["unit-03", "unit-06"]
    assert series.headers[TOTAL_HEADER] == "4"
    ready = client.get("/experiments", params={"state": "ready"})
    assert names(ready) == ["unit-01"]
    assert ready.json()[0]["champion_version"] == 1
    assert ready.headers[TOTAL_HEADER] == "1"
    untrained = client.get("/experiments", params={"state": "untrained", "type": "fault_detection"})
    assert untrained.headers[TOTAL_HEADER] == "7"  # 8 fault detection, one trained
    assert "unit-01" not in names(untrained)
    named = client.get("/experiments", params={"name": "UNIT-1"})  # contains, ignoring case
    assert names(named) == ["unit-10", "unit-11"]
    assert named.headers[TOTAL_HEADER] == "2"
    nothing = client.get("/experiments", params={"state": "redy"})  # a state nobody is in
    assert nothing.json() == []
    assert nothing.headers[TOTAL_HEADER] == "0"


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("limit=0", "query.limit: Input should be greater than or equal to 1"),
        ("limit=1001", "query.limit: Input should be less than or equal to 1000"),
        ("offset=-1", "query.offset: Input should be greater than or equal to 0"),
        ("limit=all", "query.limit: Input should be a valid integer"),
        ("state=" + "x" * 101, "query.state: String should have at most 100 characters"),
    ],
)
def test_bad_paging_is_a_422_that_names_the_parameter(
    twelve: ExperimentHub, client: TestClient, query: str, match: str
) -> None:
    assert_error(client.get(f"/experiments?{query}"), 422, "RequestValidationError", match)


def test_summary_counts_states_types_streams_alerts_and_shadows(
    twelve: ExperimentHub, client: TestClient
) -> None:
    assert client.get("/experiments/summary").json() == {
        "total": 12,
        "by_state": {"untrained": 12},
        "by_type": {"fault_detection": 8, "time_series": 4},
        "streaming": 0,
        "open_alerts": 0,
        "in_shadow": 0,
    }
    created = client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": ALERTING}
    )
    assert created.status_code == 201, created.text
    job = client.post("/experiments/pump/train", json={"rows": sensor_rows(400)})
    assert finish(client, job.json())["state"] == "succeeded"
    retrain = client.post("/experiments/pump/retrain", json={"rows": sensor_rows(300, seed=9)})
    assert finish(client, retrain.json())["result"]["shadow"] is True
    twelve.start_streaming("pump")
    twelve.start_streaming("unit-02")  # untrained: it streams, waiting for a champion
    stream_of(twelve).publish("pump.predict", json.dumps(sensor_rows(100, shift=4.0, seed=2)))
    wait_for(lambda: twelve.status("pump")["alerts"]["open"])

    summary = client.get("/experiments/summary").json()
    twelve.stop_streaming("pump")
    twelve.stop_streaming("unit-02")
    assert summary == {
        "total": 13,
        "by_state": {"untrained": 12, "ready": 1},
        "by_type": {"fault_detection": 9, "time_series": 4},
        "streaming": 2,
        "open_alerts": 1,
        "in_shadow": 1,
    }
    listed = client.get("/experiments", params={"name": "pump"}).json()
    assert listed[0]["alert"]["kind"] == "threshold"
    assert listed[0]["challenger_version"] == 2


def test_summary_of_an_empty_hub(client: TestClient) -> None:
    assert client.get("/experiments/summary").json() == {
        "total": 0,
        "by_state": {},
        "by_type": {},
        "streaming": 0,
        "open_alerts": 0,
        "in_shadow": 0,
    }
    response = client.get("/experiments", params={"limit": 10})
    assert response.json() == []
    assert response.headers[TOTAL_HEADER] == "0"


def test_summary_is_not_an_experiment_name(client: TestClient) -> None:
    created = client.post("/experiments", json={"name": "summary", "type": "fault_detection"})
    assert_error(created, 422, "RequestValidationError", "'summary' is taken by GET /experiments")


def test_cors_lets_browser_clients_read_the_total(hub: ExperimentHub) -> None:
    settings = ApiSettings(cors_origins=("http://plant.example",))
    with TestClient(create_app(hub, settings=settings)) as client:
        response = client.get("/experiments", headers={"Origin": "http://plant.example"})
    assert response.headers["access-control-expose-headers"] == TOTAL_HEADER


def test_the_schema_documents_paging_and_the_summary(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    listing = schema["paths"]["/experiments"]["get"]
    parameters = {p["name"]: p for p in listing["parameters"]}
    assert set(parameters) == {"offset", "limit", "state", "type", "name"}
    assert parameters["limit"]["schema"]["anyOf"][0]["maximum"] == 1000
    assert TOTAL_HEADER in listing["responses"]["200"]["headers"]
    summary = schema["paths"]["/experiments/summary"]["get"]["responses"]["200"]
    reference = summary["content"]["application/json"]["schema"]["$ref"]
    fields = schema["components"]["schemas"][reference.rsplit("/", 1)[-1]]["properties"]
    assert set(fields) == {"total", "by_state", "by_type", "streaming", "open_alerts", "in_shadow"}
