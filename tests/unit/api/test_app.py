"""Every route of the REST API on the in-memory plugins, including its errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from observml import ExperimentHub
from observml.plugins.base import HealthReport
from observml.runtime.jobs import Job
from tests.services import find_chromium, require_chromium, require_module
from tests.unit.api.conftest import (
    FD_CONFIG,
    assert_error,
    finish,
    sensor_rows,
    stream_of,
    wait_for,
)


# -- service routes ------------------------------------------------------------------------
def test_livez_and_health(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    health = client.get("/health")
    assert health.status_code == 200
    assert set(health.json()) == {"mlops", "datastream"}
    assert health.json()["mlops"]["healthy"] is True
    assert "latency_ms" in health.json()["datastream"]["details"]


class _SickPlugin:
    plugin_type = "extra"

    def initialize(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def health_check(self) -> HealthReport:
        return False, {"status": "down", "message": "broker at example:5672 refused"}


def test_health_is_503_when_a_plugin_is_unhealthy(hub: ExperimentHub, client: TestClient) -> None:
    hub.register_plugin(_SickPlugin())  # type: ignore[arg-type]
    response = client.get("/health")
    assert response.status_code == 503
    extra = response.json()["extra"]
    assert extra["healthy"] is False
    assert extra["details"]["message"] == "broker at example:5672 refused"
    assert response.json()["mlops"]["healthy"] is True


def test_plugins_and_experiment_types(client: TestClient) -> None:
    plugins = {p["plugin_type"]: p for p in client.get("/plugins").json()}
    assert plugins["datastream"]["name"] == "memory"
    assert (
        plugins["datastream"]["target"]
        == "observml.plugins.memory.datastream:InMemoryDataStreamPlugin"
    )
    assert "rabbitmq" in plugins["datastream"]["available"]
    assert "mlflow" in plugins["mlops"]["available"]
    assert "fault_detection" in client.get("/experiment-types").json()


# -- experiments ---------------------------------------------------------------------------
def test_create_list_get_delete(client: TestClient) -> None:
    created = client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    assert created.status_code == 201
    assert created.headers["location"] == "/experiments/pump"
    assert created.json()["state"] == "untrained"
    listed = client.get("/experiments").json()
    assert [e["name"] for e in listed] == ["pump"]
    assert "jobs" not in listed[0]
    assert "last_predictions" not in listed[0]
    status = client.get("/experiments/pump").json()
    assert status["trained"] is False
    assert status["champion_version"] is None
    assert status["last_predictions"] == []
    assert client.get("/experiments/pump/config").json() == FD_CONFIG
    assert client.delete("/experiments/pump").json() == {"name": "pump", "deleted": True}
    assert client.get("/experiments").json() == []
    assert_error(client.get("/experiments/pump"), 404, "ExperimentNotFoundError", "'pump'")


def test_create_errors(client: TestClient) -> None:
    body = {"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    assert client.post("/experiments", json=body).status_code == 201
    assert_error(
        client.post("/experiments", json=body), 409, "ExperimentExistsError", "already exists"
    )
    assert_error(
        client.post("/experiments", json={**body, "name": "x", "type": "fault_detectoin"}),
        400,
        "UnknownPluginError",
        "fault_detection",
    )
    assert_error(
        client.post("/experiments", json={**body, "name": "bad name!"}),
        422,
        "RequestValidationError",
        "body.name",
    )
    assert_error(
        client.post("/experiments", json={"name": "y", "type": "fault_detection", "confg": {}}),
        422,
        "RequestValidationError",
        "body.confg: Extra inputs are not permitted",
    )
    bad_config = {"name": "z", "type": "fault_detection", "config": {"create_model": 5}}
    response = client.post("/experiments", json=bad_config)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"] in ("ConfigError", "DataError")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/experiments/ghost", id="status"),
        pytest.param("DELETE", "/experiments/ghost", id="delete"),
        pytest.param("GET", "/experiments/ghost/config", id="config"),
        pytest.param("GET", "/experiments/ghost/runs", id="runs"),
        pytest.param("GET", "/experiments/ghost/versions", id="versions"),
        pytest.param("GET", "/experiments/ghost/train-data", id="train-data"),
        pytest.param("GET", "/experiments/ghost/plots", id="plots"),
        pytest.param("GET", "/experiments/ghost/plots/scores", id="plot"),
        pytest.param("GET", "/experiments/ghost/eda/correlation", id="eda"),
        pytest.param("POST", "/experiments/ghost/train", id="train"),
        pytest.param("POST", "/experiments/ghost/predict", id="predict"),
        pytest.param("POST", "/experiments/ghost/retrain", id="retrain"),
        pytest.param("POST", "/experiments/ghost/save", id="save"),
        pytest.param("POST", "/experiments/ghost/rollback", id="rollback"),
        pytest.param("POST", "/experiments/ghost/stop", id="stop"),
        pytest.param("POST", "/experiments/ghost/stream", id="stream-start"),
        pytest.param("DELETE", "/experiments/ghost/stream", id="stream-stop"),
    ],
)
def test_unknown_experiment_is_404_json(client: TestClient, method: str, path: str) -> None:
    assert_error(
        client.request(method, path), 404, "ExperimentNotFoundError", "'ghost' does not exist"
    )


def test_unknown_job_and_route(client: TestClient) -> None:
    assert_error(client.get("/jobs/nope"), 404, "NotFoundError", "no such job")
    assert_error(client.get("/nope"), 404, "NotFoundError", "no route GET /nope")
    body = assert_error(client.delete("/livez"), 405, "MethodNotAllowedError", "DELETE")
    assert "GET" in body["message"]


# -- training ------------------------------------------------------------------------------
def test_train_inline_rows_then_job_and_status(client: TestClient, trained: str) -> None:
    status = client.get("/experiments/pump").json()
    assert status["state"] == "ready"
    assert status["champion_version"] == 1
    assert status["jobs"][-1]["state"] == "succeeded"
    assert status["train_metrics"]["train_rows"] == 300
    job_id = status["jobs"][-1]["job_id"]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["version"] == 1
    assert job["kind"] == "train"
    assert job["run_id"]


def test_status_shows_the_last_drift_test(client: TestClient, hub: ExperimentHub) -> None:
    config = {**FD_CONFIG, "retrain": {"drift": {"window": 50}, "enabled": False}}
    client.post("/experiments", json={"name": "pump", "type": "fault_detection", "config": config})
    job = client.post("/experiments/pump/train", json={"rows": sensor_rows(300)})
    assert finish(client, job.json())["state"] == "succeeded"
    assert client.get("/experiments/pump").json()["drift"] is None
    stream = hub.require_plugin("datastream")
    stream.publish("pump.predict", json.dumps(sensor_rows(60, shift=2.0, seed=3)))  # type: ignore[attr-defined]
    hub.start_streaming("pump")
    drift = wait_for(lambda: client.get("/experiments/pump").json()["drift"])
    hub.stop_streaming("pump")
    assert drift["drifted"] is True
    assert drift["n_recent"] == 60
    assert drift["n_reference"] == 300
    assert drift["reference"] == "training"
    assert 0 < drift["statistic"] <= 1
    assert drift["p_value"] < 0.01


def test_train_location_header_and_split_rows(client: TestClient) -> None:
    client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    rows = sensor_rows(200)
    split = {"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}
    response = client.post("/experiments/pump/train", json={"rows": split})
    assert response.status_code == 202
    assert response.headers["location"] == f"/jobs/{response.json()['job_id']}"
    assert finish(client, response.json())["state"] == "succeeded"


def test_train_long_format_rows(client: TestClient) -> None:
    client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    long_rows = [
        {"target": column, "date": f"2024-01-01T00:{minute:02d}:00", "value": value}
        for minute, row in enumerate(sensor_rows(60))
        for column, value in row.items()
    ]
    response = client.post(
        "/experiments/pump/train",
        json={"rows": {"tsdata": long_rows}, "format": {"type": "long"}},
    )
    assert response.status_code == 202, response.text
    assert finish(client, response.json())["state"] == "succeeded"
    assert client.get("/experiments/pump/train-data").json()["total"] == 60


def test_train_from_the_queue(hub: ExperimentHub, client: TestClient) -> None:
    client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    stream = stream_of(hub)
    rows = sensor_rows(200)
    for start in range(0, 200, 50):
        stream.publish("pump.train", json.dumps(rows[start : start + 50]))
    response = client.post("/experiments/pump/train")
    assert response.status_code == 202
    assert finish(client, response.json())["state"] == "succeeded"
    assert client.get("/experiments/pump/train-data").json()["total"] == 200


def test_train_errors(client: TestClient) -> None:
    client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    assert_error(
        client.post("/experiments/pump/train"), 422, "DataError", "publish rows to the queue"
    )
    assert_error(
        client.post("/experiments/pump/train", json={"rows": sensor_rows(5), "format": {"x": 1}}),
        422,
        "DataError",
        "unknown key(s) 'x'",
    )
    assert_error(
        client.post("/experiments/pump/train", json={"rows": 5}),
        422,
        "RequestValidationError",
        "body.rows",
    )
    assert_error(
        client.post(
            "/experiments/pump/train",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        422,
        "RequestValidationError",
        "JSON",
    )
    failed = client.post("/experiments/pump/train", json={"rows": [{"temp": "hot"}] * 5})
    assert failed.status_code == 202
    job = finish(client, failed.json())
    assert job["state"] == "failed"
    assert job["error_type"] == "DataError"


def test_train_while_a_job_runs_is_409(
    hub: ExperimentHub, client: TestClient, trained: str
) -> None:
    gate = threading.Event()
    blocker = Job("pump", "train", lambda job: (gate.wait(10), {})[1])
    hub._get("pump").add_job(blocker.start())
    try:
        assert_error(
            client.post("/experiments/pump/train", json={"rows": sensor_rows(50)}),
            409,
            "TrainingInProgressError",
            "Wait for it or call stop_training",
        )
        assert_error(
            client.post("/experiments/pump/retrain"), 409, "TrainingInProgressError", "running"
        )
        assert client.get("/experiments/pump").json()["state"] == "running"
    finally:
        gate.set()
    blocker.wait(5)


def test_stop_training(client: TestClient, trained: str) -> None:
    assert client.post("/experiments/pump/stop").json() == {"name": "pump", "stopped": False}


# -- prediction ----------------------------------------------------------------------------
def test_predict_inline_rows(client: TestClient, trained: str) -> None:
    response = client.post("/experiments/pump/predict", json={"rows": sensor_rows(7, seed=2)})
    assert response.status_code == 200
    body = response.json()
    assert body["experiment"] == "pump"
    assert body["count"] == 7
    assert {"score", "anomaly"} <= set(body["rows"][0])


def test_predict_errors(client: TestClient) -> None:
    client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    assert_error(
        client.post("/experiments/pump/predict", json={"rows": sensor_rows(2)}),
        409,
        "ModelNotTrainedError",
        "Call train() first",
    )
    job = client.post("/experiments/pump/train", json={"rows": sensor_rows(300)}).json()
    finish(client, job)
    assert_error(
        client.post("/experiments/pump/predict", json={"rows": [{"temp": 1.0}]}),
        422,
        "DataError",
        "flow",
    )


def test_predict_from_the_queue_publishes_results(
    hub: ExperimentHub, client: TestClient, trained: str
) -> None:
    stream = stream_of(hub)
    ids = [stream.publish("pump.predict", json.dumps(sensor_rows(3, seed=i))) for i in range(2)]
    body = client.post("/experiments/pump/predict").json()
    assert body["count"] == 6
    assert sorted({r["message_id"] for r in body["rows"]}) == sorted(ids)
    assert stream.queue_depth("pump.predictions") == 2


def test_streaming_fills_last_predictions(
    hub: ExperimentHub, client: TestClient, trained: str
) -> None:
    assert client.post("/experiments/pump/stream").json() == {"name": "pump", "streaming": True}
    stream = stream_of(hub)
    for i in range(20):
        stream.publish("pump.predict", json.dumps(sensor_rows(1, seed=50 + i)[0]))
    stream.publish("pump.predict", b"{broken", message_id="bad")

    def streamed() -> dict[str, Any] | None:
        status = client.get("/experiments/pump").json()
        counters = status["counters"]
        done = (
            len(status["last_predictions"]) == 20
            and counters["dead_letters"] == 1
            and counters["batch_seconds"] > 0  # recorded just after the predictions
        )
        return status if done else None

    status = wait_for(streamed)
    assert status["streaming"] is True
    assert {"at", "score", "anomaly"} <= set(status["last_predictions"][0])
    assert status["counters"]["predicted_rows"] == 20
    assert status["counters"]["batch_seconds"] > 0
    assert "anomaly_rate" in status["metrics"]
    assert client.delete("/experiments/pump/stream").json() == {"name": "pump", "streaming": False}
    assert client.get("/experiments/pump").json()["streaming"] is False


# -- models --------------------------------------------------------------------------------
def test_retrain_rollback_save_load_runs_versions(client: TestClient, trained: str) -> None:
    assert_error(
        client.post("/experiments/pump/rollback"), 404, "NotFoundError", "no previous version"
    )
    response = client.post("/experiments/pump/retrain", json={"rows": sensor_rows(400, seed=9)})
    assert response.status_code == 202
    job = finish(client, response.json())
    assert job["state"] == "succeeded"
    assert job["kind"] == "retrain"
    status = client.get("/experiments/pump").json()
    kinds = [d["kind"] for d in status["decisions"]]
    assert kinds[-3:] == ["fired", "trained", "shadow"]  # fault detection: a person decides
    assert status["champion_version"] == 1
    assert status["shadow"]["version"] == 2
    assert client.post("/experiments/pump/save").json()["version"] == 3
    assert client.get("/experiments/pump").json()["champion_version"] == 3
    rolled = client.post("/experiments/pump/rollback").json()
    assert rolled == {"name": "pump", "version": 1}
    assert client.post("/experiments/pump/load", json={"version": 2}).json()["version"] == 2
    assert client.post("/experiments/pump/load").json()["version"] == 1
    assert_error(
        client.post("/experiments/pump/load", json={"version": 99}), 404, "NotFoundError", "99"
    )
    assert_error(
        client.post("/experiments/pump/load", json={"version": 0}),
        422,
        "RequestValidationError",
        "body.version",
    )
    versions = client.get("/experiments/pump/versions").json()
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert any("champion" in v["aliases"] for v in versions)
    runs = client.get("/experiments/pump/runs?max_results=2").json()
    assert len(runs) == 2
    assert all(r["status"] == "FINISHED" for r in runs)
    assert_error(
        client.get("/experiments/pump/runs?max_results=0"),
        422,
        "RequestValidationError",
        "query.max_results",
    )


def test_load_unknown_champion_is_404(client: TestClient) -> None:
    assert_error(
        client.post("/experiments/ghost/load"), 404, "NotFoundError", "no champion in the MLOps"
    )


# -- data and reports ----------------------------------------------------------------------
def test_train_data_pages(client: TestClient, trained: str) -> None:
    page = client.get("/experiments/pump/train-data?offset=290&limit=50").json()
    assert page["total"] == 300
    assert page["offset"] == 290
    assert page["limit"] == 50
    assert page["columns"] == ["temp", "pressure", "flow"]
    assert len(page["rows"]) == 10


def test_plots_as_json_and_html(client: TestClient, trained: str) -> None:
    plots = client.get("/experiments/pump/plots").json()
    assert "scores" in plots["reports"]
    assert plots["eda"] == ["histogram_temp", "histogram_pressure", "histogram_flow", "correlation"]
    assert not set(plots["eda"]) & set(plots["reports"])
    figure = client.get("/experiments/pump/plots/scores")
    assert figure.headers["content-type"].startswith("application/json")
    assert figure.json()["data"]
    assert "layout" in figure.json()
    eda = client.get("/experiments/pump/eda/correlation").json()
    assert eda["data"][0]["type"] == "heatmap"
    html = client.get("/experiments/pump/eda/histogram_temp?format=html")
    assert html.headers["content-type"].startswith("text/html")
    assert '<script charset="utf-8" src="/static/plotly.min.js"></script>' in html.text
    assert "<title>pump: histogram_temp</title>" in html.text
    assert "cdn." not in html.text


def test_plot_errors(client: TestClient, trained: str) -> None:
    assert_error(
        client.get("/experiments/pump/plots/nope"), 404, "NotFoundError", "no report 'nope'"
    )
    assert_error(
        client.get("/experiments/pump/eda/nope"), 404, "NotFoundError", "no EDA figure 'nope'"
    )
    assert_error(
        client.get("/experiments/pump/plots/scores?format=gif"),
        422,
        "RequestValidationError",
        "query.format",
    )


def test_plots_before_training_is_409(client: TestClient) -> None:
    client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    assert_error(
        client.get("/experiments/pump/plots"), 409, "ModelNotTrainedError", "Call train() first"
    )


def test_plot_as_png(client: TestClient, trained: str) -> None:
    require_chromium()
    png = client.get("/experiments/pump/plots/scores?format=png&width=640&height=360")
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(png.content[16:20], "big")
    height = int.from_bytes(png.content[20:24], "big")
    assert (width, height) == (640, 360)


def test_plot_as_png_without_chromium_is_a_documented_503(
    client: TestClient, trained: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_module("kaleido", "api")
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv("BROWSER_PATH", str(missing))
    if find_chromium() is not None:
        pytest.skip("a browser fetched with kaleido_get_chrome comes before BROWSER_PATH")
    body = assert_error(
        client.get("/experiments/pump/eda/correlation?format=png"),
        503,
        "ServiceUnavailableError",
        "apt-get install chromium",
    )
    assert body["message"].startswith("PNG export: no Chromium to render with"), body
    assert f"BROWSER_PATH={str(missing)!r}" in body["message"]
    assert client.get("/experiments/pump/eda/correlation?format=html").status_code == 200
    schema = client.get("/openapi.json").json()
    for path in ("/experiments/{name}/plots/{plot}", "/experiments/{name}/eda/{plot}"):
        documented = schema["paths"][path]["get"]["responses"]["503"]
        assert "apt-get install chromium" in documented["description"], path


# -- queues, docs, dashboard ---------------------------------------------------------------
def test_flush_queue(hub: ExperimentHub, client: TestClient, trained: str) -> None:
    stream = stream_of(hub)
    for _ in range(3):
        stream.publish("pump.predict", "{}")
    assert client.post("/queues/pump.predict/flush").json() == {
        "queue": "pump.predict",
        "removed": 3,
    }
    assert stream.queue_depth("pump.predict") == 0


def test_openapi_lists_every_route_and_docs_are_offline(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/health",
        "/livez",
        "/plugins",
        "/experiment-types",
        "/experiments",
        "/experiments/{name}",
        "/experiments/{name}/train",
        "/jobs/{job_id}",
        "/experiments/{name}/predict",
        "/experiments/{name}/retrain",
        "/experiments/{name}/save",
        "/experiments/{name}/load",
        "/experiments/{name}/stop",
        "/experiments/{name}/rollback",
        "/experiments/{name}/config",
        "/experiments/{name}/runs",
        "/experiments/{name}/train-data",
        "/experiments/{name}/promote",
        "/experiments/{name}/reject",
        "/experiments/{name}/feedback",
        "/experiments/{name}/shadow/figure",
        "/experiments/{name}/plots",
        "/experiments/{name}/plots/{plot}",
        "/experiments/{name}/eda/{plot}",
        "/queues/{queue}/flush",
        "/metrics",
    } <= paths
    error = schema["paths"]["/experiments/{name}"]["get"]["responses"]["404"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    docs = client.get("/docs")
    assert docs.status_code == 200
    if "static/docs/swagger-ui-bundle.js" in docs.text:  # fastapi-offline is installed
        assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200
        assert "cdn.jsdelivr" not in docs.text
    assert client.get("/redoc").status_code == 200


def test_dashboard_is_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="static/plotly.min.js"' in page.text
    assert 'id="predictions-chart"' in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) > 1_000_000
    script = client.get("/static/dashboard.js")
    assert script.status_code == 200
    assert "https://" not in script.text
    assert client.get("/static/dashboard.css").status_code == 200
