"""Events people read: decisions and dead letters logged, counted, shown; history from the store."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.errors import DataError, PluginError, ServiceUnavailableError
from observml.hub.dead_letters import MAX_REASONS, OTHER, DeadLetterTally, reason_key
from observml.plugins.browse import browse_queue
from observml.plugins.datastream import REASON_HEADER
from observml.retraining.events import EVENTS_LOGGER, JsonFormatter, emit

PCA: dict[str, Any] = {
    "create_model": {"model": "pca"},
    "retrain": {"promotion": "approve", "min_rows": 100},
}


def sensors(n: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0, 1, size=(n, 3)), columns=["temp", "pressure", "flow"])


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.event for r in caplog.records if r.name == EVENTS_LOGGER]  # type: ignore[attr-defined]


# -- decisions are logged at one choke point ------------------------------------------------
def test_every_decision_is_one_info_line_naming_experiment_and_version(
    hub: ExperimentHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    hub.create_experiment("pump", "fault_detection", PCA)
    hub.train("pump", data=sensors(600), wait=True)
    job = hub.retrain("pump", data=sensors(600, seed=1), wait=True)
    assert job.status.state == "succeeded", job.status.error
    hub.promote("pump", reason="looked fine for a shift")
    hub.rollback("pump")
    kinds = [e["kind"] for e in events(caplog)]
    assert kinds == ["trained", "fired", "trained", "shadow", "promoted", "rolled_back"]
    promoted = next(r for r in caplog.records if r.event["kind"] == "promoted")  # type: ignore[attr-defined]
    assert promoted.levelno == logging.INFO
    assert promoted.getMessage() == "pump v2: promoted: looked fine for a shift"
    assert promoted.event["experiment"] == "pump"  # type: ignore[attr-defined]
    assert promoted.event["version"] == 2  # type: ignore[attr-defined]


def test_a_failed_retrain_is_logged_with_its_reason_also_while_an_alert_is_open(
    hub: ExperimentHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    hub.create_experiment("pump", "fault_detection", PCA)
    hub.train("pump", data=sensors(600), wait=True)
    managed = hub._get("pump")
    context = hub._retrainer.context
    context.alert(managed, "drift", "drift in the scores")
    context.alert(managed, "retrain_failed", "retrain failed: DataError: no numeric columns")
    context.alert(managed, "retrain_failed", "retrain failed: DataError: no numeric columns")
    found = [(e["kind"], e["reason"]) for e in events(caplog)]
    assert found[1:] == [
        ("alert", "drift in the scores"),
        ("retrain_failed", "retrain failed: DataError: no numeric columns"),
        ("retrain_failed", "retrain failed: DataError: no numeric columns"),
    ]
    assert [d["kind"] for d in hub.status("pump")["decisions"]][-2:] == ["retrain_failed"] * 2


def test_a_retrain_that_fails_is_a_decision_with_its_error(
    hub: ExperimentHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    config = {**PCA, "setup": {"features": ["temp", "pressure", "flow"]}}
    hub.create_experiment("pump", "fault_detection", config)
    hub.train("pump", data=sensors(600), wait=True)
    job = hub.retrain("pump", data=sensors(600).assign(temp="broken"), wait=True)
    assert job.status.state == "failed"
    failed = hub.status("pump")["decisions"][-1]
    assert failed["kind"] == "retrain_failed"
    assert failed["reason"].startswith("retrain failed: DataError:")
    [logged] = [e for e in events(caplog) if e["kind"] == "retrain_failed"]
    assert (logged["experiment"], logged["version"]) == ("pump", 1)
    assert logged["reason"] == failed["reason"]
    stored = hub.decisions("pump", limit=1)["decisions"][0]
    assert (stored["kind"], stored["reason"]) == ("retrain_failed", failed["reason"])


def test_json_formatter_writes_one_object_with_the_event_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    emit("promoted", "pump", 3, "gate passed", metrics={"anomaly_rate": 0.01})
    line = JsonFormatter().format(caplog.records[-1])
    assert "\n" not in line
    record = json.loads(line)
    assert record["level"] == "INFO"
    assert record["logger"] == "observml.events"
    assert record["message"] == "pump v3: promoted: gate passed"
    assert (record["experiment"], record["version"], record["kind"]) == ("pump", 3, "promoted")
    assert record["reason"] == "gate passed"
    assert record["metrics"] == {"anomaly_rate": 0.01}
    assert record["time"].endswith("Z")


# -- dead letters -----------------------------------------------------------------------------
def test_reason_key_folds_numbers_and_ids_but_keeps_column_names() -> None:
    first = reason_key("DataError: row 17: value 'x' in column 'temp2' is not a number")
    second = reason_key("DataError: row 204: value 'x' in column 'temp2' is not a number")
    assert first == second == "DataError: row #: value 'x' in column 'temp2' is not a number"
    assert reason_key("message 3f2a9c1e0b7d4a6f8e9d0c1b2a3f4e5d failed") == "message <id> failed"


def test_dead_letter_tally_is_bounded_and_keeps_the_newest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    tally = DeadLetterTally("pump")
    reasons = {i: f"DataError: unknown column 'c{chr(65 + i % 26)}{i // 26}'" for i in range(60)}
    tally.add(reasons, [f"m{i}" for i in range(60)], queue="pump.predict", version=1)
    status = tally.status()
    assert status["total"] == 60
    assert len(status["by_reason"]) == MAX_REASONS + 1
    assert status["by_reason"][OTHER] == 60 - MAX_REASONS
    assert [r["message_id"] for r in status["recent"]] == [f"m{i}" for i in range(59, 49, -1)]
    assert len(events(caplog)) == MAX_REASONS + 1  # one line per reason, not per message


def test_a_csv_stream_missing_a_column_shows_the_reason_in_status(
    hub: ExperimentHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    hub.create_experiment("pump", "fault_detection", PCA)
    hub.train("pump", data=sensors(300), wait=True)
    stream = hub.get_plugin("datastream")
    assert isinstance(stream, InMemoryDataStreamPlugin)
    csv = sensors(5).drop(columns=["flow"]).to_csv(index=False)
    for _ in range(50):
        stream.publish("pump.predict", csv, content_type="text/csv")
    result = hub.predict("pump")
    assert result.empty
    dead = hub.status("pump")["dead_letters"]
    assert dead["total"] == 50
    [(reason, count)] = dead["by_reason"].items()
    assert count == 50
    assert "flow" in reason
    assert dead["summary"] == f"50 dead letters: {reason}"
    assert len(dead["recent"]) == 10
    assert "flow" in dead["recent"][0]["reason"]
    logged = [e for e in events(caplog) if e["kind"] == "dead_letter"]
    assert {(e["experiment"], e["version"]) for e in logged} == {("pump", 1)}
    assert sum(e["count"] for e in logged) == 50
    # and the dead letters can be read without taking them
    peeked = hub.dead_letters("pump", 5)
    assert len(peeked) == 5
    assert "flow" in peeked[0]["reason"]
    assert peeked[0]["headers"][REASON_HEADER] == peeked[0]["reason"]
    assert stream.queue_depth("pump.predict.dead") == 50


def test_browse_on_a_plugin_without_browse_says_so() -> None:
    class Plain:
        plugin_type = "datastream"

    with pytest.raises(
        PluginError, match=r"Plain cannot browse queues .*\(memory, local, rabbitmq\)"
    ):
        browse_queue(Plain(), "pump.predictions", 5)
    with pytest.raises(DataError, match=r"browse limit 0: use 1 to 1000"):
        browse_queue(InMemoryDataStreamPlugin(), "pump.predictions", 0)


# -- history from the store ------------------------------------------------------------------
def test_a_restarted_hub_shows_the_decisions_of_the_store_newest_first(tmp_path: Path) -> None:
    config = tmp_path / "hub_config.yaml"
    config.write_text("global: {job_isolation: thread}\n", encoding="utf-8")
    with ExperimentHub.from_config(config, streaming=False) as first:
        first.create_experiment("pump", "fault_detection", PCA)
        first.train("pump", data=sensors(600), wait=True)
        job = first.retrain("pump", data=sensors(600, seed=1), wait=True)
        assert job.status.state == "succeeded", job.status.error
        first.promote("pump", reason="looked fine for a shift")
        before = first.decisions("pump")
    with ExperimentHub.from_config(config, streaming=False) as second:
        second.load("pump")
        after = second.decisions("pump")
        status = second.status("pump")
        page = second.decisions("pump", offset=1, limit=2)
    kinds = [d["kind"] for d in after["decisions"]]
    assert kinds == ["promoted", "shadow", "trained", "fired", "trained"]
    assert after["source"] == "store"
    assert [d["reason"] for d in after["decisions"]] == [d["reason"] for d in before["decisions"]]
    assert after["decisions"][0]["reason"] == "looked fine for a shift"
    assert after["decisions"][0]["version"] == 2
    assert [d["kind"] for d in page["decisions"]] == ["shadow", "trained"]
    assert page["offset"] == 1
    # status after the restart holds them, oldest first, then what this process did
    assert [d["kind"] for d in status["decisions"]] == [*reversed(kinds), "restored"]


def test_decisions_page_is_checked(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", PCA)
    with pytest.raises(DataError, match=r"offset -1, limit 20: use an offset of 0 or more"):
        hub.decisions("pump", offset=-1)
    assert hub.decisions("pump")["decisions"] == []


def test_an_unreadable_history_does_not_stop_a_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    mlops = InMemoryMLOpsPlugin()
    with ExperimentHub(job_isolation="thread") as first:
        first.register_plugin(mlops)
        first.create_experiment("pump", "fault_detection", PCA)
        first.train("pump", data=sensors(300), wait=True)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailableError("tracking store at http://mlflow:5000 is unreachable")

    with ExperimentHub(job_isolation="thread") as second:
        second.register_plugin(mlops)
        monkeypatch.setattr(mlops, "search_runs", down)
        assert second.load("pump") == 1
        assert [d["kind"] for d in second.status("pump")["decisions"]] == ["restored"]
        with pytest.raises(ServiceUnavailableError, match="unreachable"):
            second.decisions("pump")
