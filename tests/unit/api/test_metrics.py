"""``GET /metrics``: Prometheus text derived from the hub at scrape time."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from observml import ExperimentHub, InMemoryDataStreamPlugin
from observml.api.metrics import build_registry
from tests.unit.api.conftest import samples, sensor_rows, wait_for


def test_metrics_count_streamed_predictions(
    hub: ExperimentHub, client: TestClient, trained: str
) -> None:
    stream = hub.get_plugin("datastream")
    assert isinstance(stream, InMemoryDataStreamPlugin)
    client.post("/experiments/pump/stream")
    for i in range(5):
        stream.publish("pump.predict", json.dumps(sensor_rows(2, seed=i)))
    stream.publish("pump.predict", b"[not json", message_id="bad")
    wait_for(lambda: hub.status("pump")["counters"]["batch_seconds"] > 0)
    wait_for(lambda: hub.status("pump")["counters"]["dead_letters"] == 1)
    wait_for(lambda: hub.status("pump")["counters"]["predicted_rows"] == 10)
    client.delete("/experiments/pump/stream")
    stream.publish("pump.predict", "{}")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    pump = (("experiment", "pump"),)
    assert found[("observml_predictions_total", pump)] == 10
    assert found[("observml_predicted_messages_total", pump)] == 5
    assert found[("observml_dead_letters_total", pump)] == 1
    assert found[("observml_retrains_total", pump)] == 0
    assert found[("observml_batches_total", pump)] >= 1
    assert found[("observml_batch_latency_seconds_count", pump)] >= 1
    assert found[("observml_batch_latency_seconds_sum", pump)] > 0
    assert found[("observml_champion_version", pump)] == 1
    assert found[("observml_streaming", pump)] == 0
    assert found[("observml_queue_depth", (("queue", "pump.predict"),))] == 1
    assert found[("observml_queue_depth", (("queue", "pump.predict.dead"),))] == 1
    assert found[("observml_plugin_healthy", (("plugin_type", "mlops"),))] == 1
    assert found[("observml_plugin_healthy", (("plugin_type", "datastream"),))] == 1


def test_openmetrics_on_request(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_health_is_cached_between_scrapes(hub: ExperimentHub) -> None:
    calls = []
    check = hub.check_plugin_health

    def counting(timeout: float | None = None) -> dict[str, dict[str, object]]:
        calls.append(1)
        return check(timeout)

    hub.check_plugin_health = counting  # type: ignore[method-assign]
    registry = build_registry(hub, health_ttl=60)
    for _ in range(3):
        list(registry.collect())
    assert len(calls) == 1


def test_each_app_has_its_own_registry(hub: ExperimentHub) -> None:
    first, second = build_registry(hub), build_registry(hub)
    assert first is not second
    names = {m.name for m in first.collect()}
    assert {"observml_predictions", "observml_plugin_healthy", "observml_queue_depth"} <= names
