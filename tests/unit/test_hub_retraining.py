"""Retraining through the hub on the in-memory plugins: shadow, decisions, feedback, alerts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.errors import DataError, NotFoundError

COLUMNS = ["temp", "pressure", "flow"]
PCA: dict[str, Any] = {"create_model": {"model": "pca"}}


def sensors(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(shift, 1.0, size=(n, 3)), columns=COLUMNS)


def make_hub(mlops: InMemoryMLOpsPlugin | None = None) -> ExperimentHub:
    hub = ExperimentHub(job_isolation="thread")
    hub.register_plugin(mlops or InMemoryMLOpsPlugin())
    hub.register_plugin(InMemoryDataStreamPlugin())
    return hub


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    with make_hub() as hub:
        yield hub


def stream_of(hub: ExperimentHub) -> InMemoryDataStreamPlugin:
    plugin = hub.get_plugin("datastream")
    assert isinstance(plugin, InMemoryDataStreamPlugin)
    return plugin


def mlops_of(hub: ExperimentHub) -> InMemoryMLOpsPlugin:
    plugin = hub.get_plugin("mlops")
    assert isinstance(plugin, InMemoryMLOpsPlugin)
    return plugin


def drain(stream: InMemoryDataStreamPlugin, queue: str) -> list[dict[str, Any]]:
    out = []
    while body := stream.pull_data(queue):
        out.append(json.loads(body))
    return out


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def publish(hub: ExperimentHub, name: str, frame: pd.DataFrame, per_message: int = 10) -> int:
    stream = stream_of(hub)
    sent = 0
    for start in range(0, len(frame), per_message):
        body = frame.iloc[start : start + per_message].to_json(orient="records")
        stream.publish(f"{name}.predict", body, message_id=f"{name}-{start}-{time.monotonic()}")
        sent += 1
    return sent


def answered(hub: ExperimentHub, name: str, sent: int) -> None:
    wait_for(lambda: hub.status(name)["counters"]["predicted_messages"] >= sent)


def shadowed(hub: ExperimentHub, name: str = "pump") -> int:
    """Train a champion, then a challenger on other rows: it goes into shadow (approve)."""
    hub.create_experiment(name, "fault_detection", PCA)
    hub.train(name, data=sensors(600), wait=True)
    job = hub.retrain(name, data=sensors(600, seed=1), wait=True)
    assert job.status.state == "succeeded", job.status.error
    assert job.status.result["shadow"] is True
    return int(job.status.version or 0)


def test_a_challenger_in_shadow_scores_every_live_row_and_changes_nothing(
    hub: ExperimentHub,
) -> None:
    assert shadowed(hub) == 2
    hub.start_streaming("pump")
    sent = publish(hub, "pump", sensors(300, seed=2))
    answered(hub, "pump", sent)
    wait_for(lambda: hub.status("pump")["counters"]["shadow_rows"] >= 300)
    hub.stop_streaming("pump")
    stream = stream_of(hub)
    served = drain(stream, "pump.predictions")
    shadow = drain(stream, "pump.shadow")
    assert {m["version"] for m in served} == {1}
    assert {m["version"] for m in shadow} == {2}
    assert sorted(m["message_id"] for m in shadow) == sorted(m["message_id"] for m in served)
    status = hub.status("pump")
    assert status["champion_version"] == 1
    assert status["challenger_version"] == 2
    assert status["shadow"]["rows"] == 300
    assert status["shadow"]["agreement"] > 0.9
    assert len(status["shadow"]["recent"]) == 20
    assert status["shadow"]["gate"]["passed"] is True
    assert mlops_of(hub).get_version_by_alias("pump", "challenger").version == 2  # type: ignore[union-attr]
    figure = hub.shadow_figure("pump")
    assert [trace.name for trace in figure.data] == ["champion v1", "challenger v2"]
    assert len(figure.data[0].y) == 300
    limits = [shape.y0 for shape in figure.layout.shapes]
    assert limits == [1.0]  # the PCA score's limit, the same for both models
    assert figure.layout.annotations[0].text == "limit 1 (both models)"
    assert "champion vs challenger in shadow" in figure.layout.title.text


def test_promote_makes_the_challenger_the_champion_and_rollback_undoes_it(
    hub: ExperimentHub,
) -> None:
    shadowed(hub)
    assert hub.promote("pump", reason="looked fine for a shift", by="ops") == 2
    status = hub.status("pump")
    assert status["champion_version"] == 2
    assert status["shadow"] is None
    assert status["challenger_version"] is None
    assert status["decisions"][-1]["kind"] == "promoted"
    assert status["decisions"][-1]["reason"] == "looked fine for a shift"
    mlops = mlops_of(hub)
    assert mlops.get_version_by_alias("pump", "challenger") is None
    assert mlops.get_version_by_alias("pump", "previous").version == 1  # type: ignore[union-attr]
    tags = next(v for v in mlops.list_versions("pump") if v.version == 2).tags
    assert tags["observml.shadow"] == "promoted"
    assert tags["observml.decision"] == "promoted"
    with pytest.raises(NotFoundError, match="no challenger in shadow to promote. Retrain first"):
        hub.promote("pump")
    assert hub.promote("pump", version=1) == 1  # any stored version, by number
    assert hub.rollback("pump") == 2


def test_reject_as_fault_keeps_the_flagged_rows_in_the_fault_library(hub: ExperimentHub) -> None:
    shadowed(hub)
    hub.start_streaming("pump")
    rows = pd.concat([sensors(200, seed=3), sensors(100, shift=6.0, seed=4)], ignore_index=True)
    sent = publish(hub, "pump", rows)
    answered(hub, "pump", sent)
    hub.stop_streaming("pump")
    outcome = hub.reject("pump", reason="cavitation, not a new normal", as_fault=True, by="ops")
    assert outcome["version"] == 2
    assert outcome["as_fault"] is True
    assert 95 <= outcome["fault_rows"] <= 110  # the shifted rows (and a false alarm or two)
    status = hub.status("pump")
    assert status["shadow"] is None
    assert status["champion_version"] == 1
    assert status["decisions"][-1]["kind"] == "rejected"
    assert "kept as a known fault" in status["decisions"][-1]["reason"]
    library = hub.library("pump")
    assert library["faults"] == 1
    assert library["fault_rows"] == outcome["fault_rows"]
    assert library["recent"][0]["reason"] == "cavitation, not a new normal"
    tags = next(v for v in mlops_of(hub).list_versions("pump") if v.version == 2).tags
    assert tags["observml.shadow"] == "rejected"
    with pytest.raises(NotFoundError, match="no challenger in shadow to reject"):
        hub.reject("pump")


def test_a_known_fault_rejects_an_automatic_challenger_that_learnt_it(hub: ExperimentHub) -> None:
    config = {**PCA, "retrain": {"promotion": "auto", "window_rows": "all"}}
    hub.create_experiment("pump", "fault_detection", config)
    hub.train("pump", data=sensors(600), wait=True)
    fault = sensors(150, shift=6.0, seed=5)
    hub.feedback("pump", label="fault", data=fault, reason="seal leak", by="ops")
    learnt = pd.concat([sensors(450, seed=6), fault], ignore_index=True)
    job = hub.retrain("pump", data=learnt, wait=True)
    assert job.status.result["promoted"] is False
    reason = hub.status("pump")["decisions"][-1]["reason"]
    assert reason.startswith("gate failed: fault labelled ")
    assert "(seal leak) (150 rows): challenger flags" in reason
    assert hub.status("pump")["champion_version"] == 1
    assert hub.retrain("pump", data=sensors(600, seed=7), wait=True).status.result["promoted"]


def test_a_restarted_hub_resumes_the_challenger_in_shadow_and_the_library() -> None:
    mlops = InMemoryMLOpsPlugin()
    with make_hub(mlops) as first:
        shadowed(first)
        first.feedback("pump", label="normal", data=sensors(50, seed=8), reason="checked", by="ops")
    with make_hub(mlops) as second:
        assert second.load("pump") == 1
        status = second.status("pump")
        assert status["shadow"]["version"] == 2
        assert status["decisions"][-1]["reason"] == "challenger v2 resumed in shadow"
        assert second.library("pump")["normal_rows"] == 50
        assert second.promote("pump") == 2


def test_a_challenger_decided_by_another_hub_leaves_the_shadow() -> None:
    mlops = InMemoryMLOpsPlugin()
    with make_hub(mlops) as first, make_hub(mlops) as second:
        shadowed(first)
        second.load("pump")
        assert second.status("pump")["shadow"]["version"] == 2
        first.reject("pump", by="ops")
        second._refresh_champion(second._get("pump"))
        assert second.status("pump")["shadow"] is None
        assert second.status("pump")["decisions"][-1]["reason"] == (
            "the challenger was decided elsewhere"
        )


def test_a_drift_alert_is_published_once_and_closed_by_feedback(hub: ExperimentHub) -> None:
    config = {**PCA, "retrain": {"drift": {"window": 100}, "enabled": False}}
    hub.create_experiment("pump", "fault_detection", config)
    hub.train("pump", data=sensors(600), wait=True)
    hub.start_streaming("pump")
    moved = sensors(400, shift=2.0, seed=9)
    for done in (200, 400):  # two drift tests, one alert
        publish(hub, "pump", moved.iloc[done - 200 : done])
        wait_for(lambda: hub.status("pump")["counters"]["predicted_rows"] >= done)  # noqa: B023
    wait_for(lambda: hub.status("pump")["alerts"]["raised"] >= 2)
    hub.stop_streaming("pump")
    status = hub.status("pump")
    assert status["alerts"]["open"]["kind"] == "drift"
    assert status["alerts"]["open"]["count"] >= 2
    assert status["counters"]["alerts"] >= 2
    assert [d["kind"] for d in status["decisions"]].count("alert") == 1
    assert "fired" not in [d["kind"] for d in status["decisions"]]  # retraining is off
    hub.feedback("pump", label="fault", reason="impeller damage", by="ops")
    messages = drain(stream_of(hub), "pump.alerts")
    assert [m["state"] for m in messages] == ["open", "acknowledged"]
    assert messages[1]["acknowledged_by"].startswith("ops: 400 rows labelled fault")
    assert hub.status("pump")["alerts"]["open"] is None


def test_an_automatic_challenger_waits_while_the_monitor_is_alarming(hub: ExperimentHub) -> None:
    config = {**PCA, "retrain": {"drift": {"window": 100}, "promotion": "auto"}}
    hub.create_experiment("pump", "fault_detection", config)
    hub.train("pump", data=sensors(600), wait=True)
    hub.start_streaming("pump")
    rows = pd.concat([sensors(100, seed=10), sensors(300, shift=4.0, seed=11)])
    sent = publish(hub, "pump", rows)
    answered(hub, "pump", sent)
    hub.stop_streaming("pump")
    kinds = [d["kind"] for d in hub.status("pump")["decisions"]]
    assert "skipped" in kinds
    assert "promoted" not in kinds
    skipped = next(d for d in hub.status("pump")["decisions"] if d["kind"] == "skipped")
    assert skipped["reason"].startswith("the monitor is alarming now")
    with pytest.raises(DataError, match="the monitor is alarming now"):
        hub.retrain("pump")


def test_a_failed_retrain_raises_an_alert(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", {**PCA, "setup": {"features": COLUMNS}})
    hub.train("pump", data=sensors(600), wait=True)
    job = hub.retrain("pump", data=sensors(600).assign(temp="broken"), wait=True)
    assert job.status.state == "failed"
    alert = hub.status("pump")["alerts"]["open"]
    assert alert["kind"] == "retrain_failed"
    assert alert["reason"].startswith("retrain failed: DataError:")
    assert not hub.status("pump")["retrain_in_flight"]


def test_feedback_checks_the_label_and_needs_rows(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", PCA)
    hub.train("pump", data=sensors(100), wait=True)
    with pytest.raises(DataError, match="label 'broken' is not 'fault' or 'normal'"):
        hub.feedback("pump", label="broken", data=sensors(5))
    with pytest.raises(DataError, match="no rows to label 'fault'"):
        hub.feedback("pump", label="fault", start="2020-01-01", end="2020-01-02")


def test_fault_isolation_feedback_rows_are_labelled_training_data(hub: ExperimentHub) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, 2))
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(label=np.where(x[:, 0] > 0, "hot", "ok"))
    config = {"setup": {"target": "label"}, "create_model": {"model": "decision_tree"}}
    hub.create_experiment("line", "fault_isolation", config)
    hub.train("line", data=frame, wait=True)
    status = hub.status("line")
    assert status["promotion"] == "auto"
    assert status["window_rows"] == "all"
    new_class = pd.DataFrame(rng.normal(8, 0.5, (60, 2)), columns=["a", "b"])
    outcome = hub.feedback("line", label="seal_leak", data=new_class, by="ops")
    assert outcome["label"] == "seal_leak"
    job = hub.retrain("line", data=frame, wait=True)
    assert job.status.state == "succeeded", job.status.error
    assert "+ 60 labelled" in job.status.result["window"]["mode"]
