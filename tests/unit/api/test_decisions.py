"""Promote, reject and feedback through the REST API; alerts and the shadow in status/metrics."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from observml import ExperimentHub, InMemoryMLOpsPlugin
from tests.services import require_chromium
from tests.unit.api.conftest import (
    FD_CONFIG,
    assert_error,
    finish,
    samples,
    sensor_rows,
    stream_of,
    wait_for,
)

#: Alerts on a high anomaly rate, but no automatic retrain: the tests ask for challengers.
ALERTING: dict[str, Any] = {
    **FD_CONFIG,
    "retrain": {
        "metric": "anomaly_rate",
        "threshold": 0.3,
        "higher_better": False,
        "enabled": False,
    },
}
PUMP = (("experiment", "pump"),)


def mlops_of(hub: ExperimentHub) -> InMemoryMLOpsPlugin:
    plugin = hub.get_plugin("mlops")
    assert isinstance(plugin, InMemoryMLOpsPlugin)
    return plugin


def version_tags(client: TestClient, version: int) -> dict[str, str]:
    versions = client.get("/experiments/pump/versions").json()
    tags: dict[str, str] = next(v["tags"] for v in versions if v["version"] == version)
    return tags


def aliases(client: TestClient) -> dict[str, int]:
    versions = client.get("/experiments/pump/versions").json()
    return {alias: v["version"] for v in versions for alias in v["aliases"]}


def put_in_shadow(client: TestClient, *, seed: int = 9) -> dict[str, Any]:
    """Retrain 'pump' on given rows: under promotion 'approve' the challenger waits in shadow."""
    response = client.post(
        "/experiments/pump/retrain",
        json={"rows": sensor_rows(300, seed=seed), "reason": "after the pump overhaul"},
    )
    assert response.status_code == 202, response.text
    job = finish(client, response.json())
    assert job["state"] == "succeeded", job
    assert job["result"]["shadow"] is True
    assert job["result"]["promoted"] is False
    return job


def stream_rows(hub: ExperimentHub, rows: list[dict[str, float]], *, per_message: int = 20) -> int:
    """Publish rows to pump.predict and wait until the stream predicted them all."""
    before = hub.status("pump")["counters"]["predicted_rows"]
    for start in range(0, len(rows), per_message):
        stream_of(hub).publish("pump.predict", json.dumps(rows[start : start + per_message]))
    wait_for(lambda: hub.status("pump")["counters"]["predicted_rows"] >= before + len(rows))
    return len(rows)


def create(client: TestClient, config: dict[str, Any]) -> None:
    created = client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": config}
    )
    assert created.status_code == 201, created.text
    job = client.post("/experiments/pump/train", json={"rows": sensor_rows(400)})
    assert finish(client, job.json())["state"] == "succeeded"


# -- promote -------------------------------------------------------------------------------
def test_promote_the_challenger_in_shadow(
    hub: ExperimentHub, client: TestClient, trained: str
) -> None:
    put_in_shadow(client)
    status = client.get("/experiments/pump").json()
    assert status["champion_version"] == 1  # nothing changed for the plant yet
    assert status["challenger_version"] == 2
    assert status["promotion"] == "approve"
    assert status["window_rows"] == "in_control"
    shadow = status["shadow"]
    assert shadow["version"] == 2
    assert shadow["rows"] == 0
    assert shadow["gate"]["checks"][0]["name"] == "false_alarms"
    assert status["last_window"]["mode"] == "given"
    assert status["last_window"]["train_rows"] == 240  # 60 held out: neither model learns them
    assert status["last_window"]["excluded"] == {"held_out_to_compare": 60}
    assert status["last_gate"] == shadow["gate"]
    kinds = [d["kind"] for d in status["decisions"]]
    assert kinds[-3:] == ["fired", "trained", "shadow"]
    assert status["decisions"][-3]["reason"].startswith("after the pump overhaul; training")
    assert aliases(client) == {"champion": 1, "challenger": 2}
    assert version_tags(client, 2)["observml.shadow"] == "pending"
    listed = client.get("/experiments").json()[0]
    assert listed["challenger_version"] == 2
    assert listed["alert"] is None
    found = samples(client.get("/metrics").text)
    assert found[("observml_shadow_version", PUMP)] == 2

    # the challenger scores streamed rows beside the champion; the overlay shows both
    hub.start_streaming("pump")
    stream_rows(hub, sensor_rows(60, seed=4))
    hub.stop_streaming("pump")
    shadow = client.get("/experiments/pump").json()["shadow"]
    assert shadow["rows"] == 60
    assert 0 <= shadow["agreement"] <= 1
    assert len(shadow["recent"]) == 20
    assert set(shadow["recent"][0]) == {"x", "champion", "challenger"}
    assert samples(client.get("/metrics").text)[("observml_shadow_rows_total", PUMP)] == 60
    figure = client.get("/experiments/pump/shadow/figure")
    assert figure.status_code == 200, figure.text
    traces = figure.json()["data"]
    assert [t["name"] for t in traces] == ["champion v1", "challenger v2"]
    assert len(traces[0]["y"]) == len(traces[1]["y"]) == 60
    limits = [a["text"] for a in figure.json()["layout"]["annotations"]]
    assert any(t.startswith("champion v1 limit") for t in limits)
    assert any(t.startswith("challenger v2 limit") for t in limits)
    html = client.get("/experiments/pump/shadow/figure?format=html")
    assert "<title>pump: champion vs challenger in shadow</title>" in html.text

    promoted = client.post("/experiments/pump/promote", json={"reason": "gate passed, looks good"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"name": "pump", "version": 2}
    status = client.get("/experiments/pump").json()
    assert status["champion_version"] == 2
    assert status["previous_version"] == 1
    assert status["shadow"] is None
    assert status["challenger_version"] is None
    assert status["decisions"][-1]["kind"] == "promoted"
    assert status["decisions"][-1]["reason"] == "gate passed, looks good"
    assert aliases(client) == {"champion": 2, "previous": 1}
    assert version_tags(client, 2)["observml.decision"] == "promoted"
    assert version_tags(client, 2)["observml.shadow"] == "promoted"
    assert ("observml_shadow_version", PUMP) not in samples(client.get("/metrics").text)

    # nothing waits in shadow now
    assert_error(
        client.post("/experiments/pump/promote"),
        404,
        "NotFoundError",
        "no challenger in shadow to promote. Retrain first, or name a version",
    )
    assert_error(
        client.post("/experiments/pump/reject"),
        404,
        "NotFoundError",
        "no challenger in shadow to reject",
    )
    assert_error(
        client.get("/experiments/pump/shadow/figure"), 404, "NotFoundError", "no challenger"
    )


def test_promote_a_named_version_and_its_errors(client: TestClient, trained: str) -> None:
    put_in_shadow(client)
    assert client.post("/experiments/pump/promote", json={"version": 2}).json()["version"] == 2
    back = client.post("/experiments/pump/promote", json={"version": 1})
    assert back.json() == {"name": "pump", "version": 1}
    status = client.get("/experiments/pump").json()
    assert status["champion_version"] == 1
    assert status["decisions"][-1]["reason"] == "promoted by api"
    assert_error(
        client.post("/experiments/pump/promote", json={"version": 99}), 404, "NotFoundError", "99"
    )
    assert_error(
        client.post("/experiments/pump/promote", json={"version": 0}),
        422,
        "RequestValidationError",
        "body.version",
    )
    assert_error(
        client.post("/experiments/pump/promote", json={"versoin": 2}),
        422,
        "RequestValidationError",
        "body.versoin",
    )
    assert_error(
        client.post("/experiments/valve/promote"), 404, "ExperimentNotFoundError", "'valve'"
    )


# -- reject --------------------------------------------------------------------------------
def test_reject_as_fault_keeps_the_alarm_in_the_fault_library(
    hub: ExperimentHub, client: TestClient
) -> None:
    create(client, ALERTING)
    hub.start_streaming("pump")
    stream_rows(hub, sensor_rows(100, seed=1) + sensor_rows(200, shift=4.0, seed=2))
    hub.stop_streaming("pump")
    assert client.get("/experiments/pump").json()["alerts"]["open"] is not None
    put_in_shadow(client)
    assert client.get("/experiments/pump/feedback").json()["faults"] == 0

    rejected = client.post(
        "/experiments/pump/reject", json={"reason": "bearing fault, not normal", "as_fault": True}
    )
    assert rejected.status_code == 200, rejected.text
    body = rejected.json()
    assert body["name"] == "pump"
    assert body["version"] == 2
    assert body["as_fault"] is True
    assert body["fault_rows"] >= 150  # the shifted rows the champion flagged
    assert body["feedback_run"]
    status = client.get("/experiments/pump").json()
    assert status["champion_version"] == 1
    assert status["shadow"] is None
    assert status["alerts"]["open"] is None
    assert status["alerts"]["recent"][0]["acknowledged_by"] == "api: rejected v2"
    rejected_decision = status["decisions"][-1]
    assert rejected_decision["kind"] == "rejected"
    assert rejected_decision["reason"].startswith("bearing fault, not normal; ")
    assert "rows the champion flagged kept as a known fault" in rejected_decision["reason"]
    assert aliases(client) == {"champion": 1}
    assert version_tags(client, 2)["observml.decision"] == "rejected"
    assert version_tags(client, 2)["observml.shadow"] == "rejected"
    library = client.get("/experiments/pump/feedback").json()
    assert library["faults"] == 1
    assert library["fault_rows"] == body["fault_rows"]
    assert library["recent"][0]["label"] == "fault"
    assert library["recent"][0]["source"] == "api"
    assert library["recent"][0]["run_id"] == body["feedback_run"]


def test_reject_without_as_fault_keeps_nothing(client: TestClient, trained: str) -> None:
    put_in_shadow(client)
    body = client.post("/experiments/pump/reject").json()
    assert body == {
        "name": "pump",
        "version": 2,
        "as_fault": False,
        "fault_rows": 0,
        "feedback_run": None,
    }
    status = client.get("/experiments/pump").json()
    assert status["decisions"][-1]["reason"] == "rejected by api"
    assert client.get("/experiments/pump/feedback").json()["faults"] == 0


# -- feedback and alerts -------------------------------------------------------------------
def test_an_alert_is_answered_by_feedback_on_a_time_range(
    hub: ExperimentHub, client: TestClient
) -> None:
    create(client, ALERTING)
    hub.start_streaming("pump")
    stream_rows(hub, sensor_rows(100, seed=1))
    between = time.time()
    time.sleep(0.05)  # the next rows arrive after 'between'
    stream_rows(hub, sensor_rows(200, shift=4.0, seed=2))
    hub.stop_streaming("pump")

    status = client.get("/experiments/pump").json()
    alert = status["alerts"]["open"]
    assert alert["kind"] == "threshold"
    assert alert["reason"].startswith("anomaly_rate")
    assert alert["state"] == "open"
    assert alert["version"] == 1
    assert status["decisions"][-1]["kind"] == "alert"
    assert client.get("/experiments").json()[0]["alert"]["kind"] == "threshold"
    found = samples(client.get("/metrics").text)
    assert found[("observml_alerts_total", PUMP)] >= 1
    assert found[("observml_alert_open", PUMP)] == 1
    assert found[("observml_queue_depth", (("queue", "pump.alerts"),))] == 1

    start = datetime.fromtimestamp(between, UTC).isoformat()
    labelled = client.post(
        "/experiments/pump/feedback",
        json={"label": "fault", "start": start, "reason": "cavitation"},
    )
    assert labelled.status_code == 201, labelled.text
    body = labelled.json()
    assert body["name"] == "pump"
    assert body["label"] == "fault"
    assert body["rows"] == 200
    assert body["source"] == "api"
    assert body["reason"] == "cavitation"
    status = client.get("/experiments/pump").json()
    assert status["alerts"]["open"] is None
    assert status["alerts"]["recent"][0]["acknowledged_by"] == "api: 200 rows labelled fault"
    feedback = status["decisions"][-1]
    assert feedback["kind"] == "feedback"
    assert feedback["reason"] == "200 rows labelled fault by api: cavitation"
    assert feedback["details"] == {"run_id": body["run_id"], "label": "fault", "rows": 200}
    assert samples(client.get("/metrics").text)[("observml_alert_open", PUMP)] == 0
    library = client.get("/experiments/pump/feedback").json()
    assert library == {
        "faults": 1,
        "fault_rows": 200,
        "normal": 0,
        "normal_rows": 0,
        "labelled": 0,
        "recent": [library["recent"][0]],
    }
    assert library["recent"][0]["run_id"] == body["run_id"]


def test_feedback_with_rows_and_its_errors(client: TestClient, trained: str) -> None:
    rows = sensor_rows(30, shift=3.0, seed=5)
    response = client.post(
        "/experiments/pump/feedback", json={"label": "normal", "rows": rows, "reason": "new duty"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 30
    library = client.get("/experiments/pump/feedback").json()
    assert (library["normal"], library["normal_rows"]) == (1, 30)
    assert_error(
        client.post("/experiments/pump/feedback", json={"label": "broken", "rows": rows}),
        422,
        "DataError",
        "label 'broken' is not 'fault' or 'normal'",
    )
    assert_error(
        client.post("/experiments/pump/feedback", json={"label": "fault"}),
        422,
        "DataError",
        "no rows to label 'fault'. Give rows, or a time range",
    )
    assert_error(  # kept fault rows are scored by every later gate: they must fit the model
        client.post("/experiments/pump/feedback", json={"label": "fault", "rows": [{"x": 1}]}),
        422,
        "DataError",
        "feedback: the champion cannot score these rows (experiment 'pump' predict data:"
        " missing column(s) 'temp', 'pressure', 'flow'",
    )
    assert_error(
        client.post(
            "/experiments/pump/feedback",
            json={"label": "fault", "rows": rows, "start": "2026-01-01T00:00:00Z"},
        ),
        422,
        "RequestValidationError",
        "give either rows or a time range (start/end), not both",
    )
    assert_error(
        client.post(
            "/experiments/pump/feedback", json={"label": "fault", "end": "0001-01-01T00:00:00"}
        ),
        422,
        "RequestValidationError",
        "body.end: Value error, give a time between the years 1678 and 2261",
    )
    assert_error(
        client.post("/experiments/pump/feedback", json={"label": "fault", "start": "yesterday"}),
        422,
        "RequestValidationError",
        "body.start",
    )
    assert_error(
        client.post("/experiments/pump/feedback", json={"label": ""}),
        422,
        "RequestValidationError",
        "body.label",
    )
    assert_error(
        client.post("/experiments/valve/feedback", json={"label": "fault"}),
        404,
        "ExperimentNotFoundError",
        "'valve'",
    )
    assert_error(
        client.get("/experiments/valve/feedback"), 404, "ExperimentNotFoundError", "'valve'"
    )


def test_library_is_503_when_the_store_cannot_be_read(
    hub: ExperimentHub, client: TestClient, trained: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("tracking server at mlflow:5000 refused the connection")

    monkeypatch.setattr(mlops_of(hub), "search_runs", down)
    assert_error(
        client.get("/experiments/pump/feedback"),
        503,
        "ServiceUnavailableError",
        "the feedback in the MLOps store cannot be read: ConnectionError: tracking server",
    )


def test_shadow_figure_as_png(client: TestClient, trained: str) -> None:
    require_chromium()
    put_in_shadow(client)
    png = client.get("/experiments/pump/shadow/figure?format=png&width=800&height=400")
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(png.content[16:20], "big") == 800


def test_reject_as_fault_without_flagged_rows_changes_nothing(
    client: TestClient, trained: str
) -> None:
    put_in_shadow(client)  # nothing streamed: the window holds no alarm to keep
    assert_error(
        client.post("/experiments/pump/reject", json={"as_fault": True}),
        422,
        "DataError",
        "no rows to label 'fault'",
    )
    status = client.get("/experiments/pump").json()
    assert status["shadow"]["version"] == 2  # still waiting for a decision
    assert aliases(client) == {"champion": 1, "challenger": 2}
    assert version_tags(client, 2)["observml.shadow"] == "pending"
    assert client.post("/experiments/pump/reject").json()["version"] == 2
