"""Routes that read without taking: dead letters, queue messages, and the decision history."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from observml import ExperimentHub
from tests.unit.api.conftest import assert_error, stream_of


def test_dead_letters_route_and_status_show_the_reason(
    client: TestClient, hub: ExperimentHub, trained: str
) -> None:
    stream = stream_of(hub)
    for _ in range(3):
        stream.publish("pump.predict", json.dumps([{"temp": 1.0, "pressure": 2.0}]))
    hub.predict("pump")
    status = client.get("/experiments/pump").json()
    dead = status["dead_letters"]
    assert dead["total"] == 3
    assert "flow" in dead["summary"]
    assert dead["recent"][0]["queue"] == "pump.predict"
    answer = client.get("/experiments/pump/dead-letters", params={"limit": 2})
    assert answer.status_code == 200, answer.text
    letters = answer.json()
    assert len(letters) == 2
    assert letters[0]["queue"] == "pump.predict.dead"
    assert "flow" in letters[0]["reason"]
    assert json.loads(letters[0]["body"]) == [{"temp": 1.0, "pressure": 2.0}]
    assert stream.queue_depth("pump.predict.dead") == 3  # still there


def test_queue_messages_route_leaves_results_in_the_queue(
    client: TestClient, hub: ExperimentHub, trained: str
) -> None:
    stream = stream_of(hub)
    stream.publish("pump.predict", json.dumps([{"temp": 1.0, "pressure": 2.0, "flow": 0.5}]))
    hub.predict("pump")
    answer = client.get("/queues/pump.predictions/messages")
    assert answer.status_code == 200, answer.text
    [result] = answer.json()
    assert result["reason"] is None
    assert "anomaly" in result["body"]
    assert stream.queue_depth("pump.predictions") == 1


def test_decisions_route_pages_newest_first(client: TestClient, trained: str) -> None:
    job = client.post("/experiments/pump/retrain", json={})
    assert job.status_code in (202, 422), job.text
    page = client.get("/experiments/pump/decisions", params={"limit": 1}).json()
    assert page["source"] == "store"
    assert page["limit"] == 1
    assert len(page["decisions"]) == 1
    everything = client.get("/experiments/pump/decisions").json()["decisions"]
    assert everything[-1]["kind"] == "trained"
    assert [d["at"] for d in everything] == sorted((d["at"] for d in everything), reverse=True)
    assert page["decisions"][0] == everything[0]


def test_decisions_route_checks_its_page(client: TestClient, trained: str) -> None:
    answer = client.get("/experiments/pump/decisions", params={"limit": 0})
    assert answer.status_code == 422
    assert_error(client.get("/experiments/nope/decisions"), 404, "ExperimentNotFoundError", "nope")


def test_queue_messages_route_refuses_a_queue_the_hub_consumes(
    client: TestClient, hub: ExperimentHub, trained: str
) -> None:
    stream = stream_of(hub)
    stream.publish("pump.predict", json.dumps([{"temp": 1.0, "pressure": 2.0, "flow": 0.5}]))
    for queue in ("pump.predict", "pump.train"):
        answer = client.get(f"/queues/{queue}/messages")
        assert_error(answer, 422, "DataError", "pump.predictions")
    assert stream.queue_depth("pump.predict") == 1
    assert client.get("/queues/pump.predict.dead/messages").status_code == 200
