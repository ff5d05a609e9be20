"""With several hubs on one datastream, one trains an experiment at a time (issue 13).

Two hubs in this process, each with its own local datastream plugin on one folder, stand for two
hub processes on one machine: the claims are file locks, which two open files in one process
contend for exactly as two processes do. A third plugin on the folder plays "another hub".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryMLOpsPlugin
from observml.config import HubConfig, StreamingSection
from observml.errors import DataError, TrainingInProgressError
from observml.plugins.local import LocalQueuePlugin

COLUMNS = ["temp", "pressure", "flow"]
DRIFT: dict[str, Any] = {"create_model": {"model": "pca"}, "retrain": {"drift": {"window": 100}}}


def sensors(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(shift, 1.0, size=(n, 3)), columns=COLUMNS)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "queues"


@pytest.fixture
def mlops() -> InMemoryMLOpsPlugin:
    return InMemoryMLOpsPlugin()


@pytest.fixture
def make_hub(folder: Path, mlops: InMemoryMLOpsPlugin) -> Iterator[Callable[[], ExperimentHub]]:
    hubs: list[ExperimentHub] = []

    def make() -> ExperimentHub:
        # champion_refresh: long, so a hub learns what another did only when it catches up
        config = HubConfig(plugins={}, streaming=StreamingSection(champion_refresh=3600))
        hub = ExperimentHub(config=config, job_isolation="thread")
        hub.register_plugin(mlops)
        hub.register_plugin(LocalQueuePlugin(str(folder), poll_interval=0.01))
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.shutdown()


@pytest.fixture
def other_hub(folder: Path) -> Iterator[LocalQueuePlugin]:
    """Another hub process's datastream plugin, to hold claims with."""
    plugin = LocalQueuePlugin(str(folder))
    plugin.connect()
    yield plugin
    plugin.shutdown()


def kinds(hub: ExperimentHub, name: str = "pump") -> list[str]:
    return [d["kind"] for d in hub.status(name)["decisions"]]


def stream_drift(hub: ExperimentHub, name: str = "pump", *, shift: float = 3.0) -> None:
    """Stream rows that moved, until the retrain policy has decided (fired or skipped)."""
    plugin = hub.get_plugin("datastream")
    moved = sensors(400, shift=shift, seed=9)
    for start in range(0, 400, 20):
        body = moved.iloc[start : start + 20].to_json(orient="records")
        plugin.publish(f"{name}.predict", body)  # type: ignore[attr-defined]
    hub.start_streaming(name)
    deadline = time.monotonic() + 60
    while not {"skipped", "fired"} & set(kinds(hub, name)):
        assert time.monotonic() < deadline, f"the policy never decided: {kinds(hub, name)}"
        time.sleep(0.05)
    hub.stop_streaming(name)


def test_a_training_claimed_by_another_hub_is_refused_with_the_reason(
    make_hub: Callable[[], ExperimentHub], other_hub: LocalQueuePlugin
) -> None:
    hub = make_hub()
    hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
    held = other_hub.claim("train.pump")
    assert held is not None
    with pytest.raises(TrainingInProgressError, match="another hub process"):
        hub.train("pump", data=sensors(300))
    held.release()
    job = hub.train("pump", data=sensors(300), wait=True)
    assert job.status.state == "succeeded"
    held = other_hub.claim("train.pump")
    assert held is not None, "the job's end gave the claim up"
    with pytest.raises(TrainingInProgressError, match="another hub process"):
        hub.retrain("pump", data=sensors(300, seed=1))
    held.release()
    assert [v["version"] for v in hub.versions("pump")] == [1]


def test_a_failed_or_refused_training_gives_the_claim_up(
    make_hub: Callable[[], ExperimentHub], other_hub: LocalQueuePlugin
) -> None:
    hub = make_hub()
    config = {"create_model": {"model": "pca"}, "setup": {"features": COLUMNS}}
    hub.create_experiment("pump", "fault_detection", config)
    job = hub.train("pump", data=sensors(300).assign(temp="broken"), wait=True)
    assert job.status.state == "failed"
    claim = other_hub.claim("train.pump")
    assert claim is not None, "a failed job gave the claim up"
    claim.release()
    with pytest.raises(DataError, match=r"pump\.train"):
        hub.train("pump")  # nothing waits in pump.train: refused before any job started
    claim = other_hub.claim("train.pump")
    assert claim is not None, "a refused request gave the claim up"
    claim.release()


def test_a_fired_policy_skips_while_another_hub_trains(
    make_hub: Callable[[], ExperimentHub], other_hub: LocalQueuePlugin
) -> None:
    hub = make_hub()
    hub.create_experiment("pump", "fault_detection", DRIFT)
    hub.train("pump", data=sensors(600), wait=True)
    held = other_hub.claim("train.pump")
    assert held is not None
    try:
        stream_drift(hub)
    finally:
        held.release()
    assert "fired" not in kinds(hub)
    skipped = [d for d in hub.status("pump")["decisions"] if d["kind"] == "skipped"]
    assert "another hub process sharing the datastream is training it now" in skipped[0]["reason"]
    assert [v["version"] for v in hub.versions("pump")] == [1]


def test_a_fired_policy_catches_up_with_a_challenger_another_hub_trained(
    make_hub: Callable[[], ExperimentHub],
) -> None:
    first, second = make_hub(), make_hub()
    first.create_experiment("pump", "fault_detection", DRIFT)
    first.train("pump", data=sensors(600), wait=True)
    second.load("pump")
    job = first.retrain("pump", data=sensors(600, seed=1), wait=True)
    assert job.status.result["shadow"] is True
    assert second.status("pump")["shadow"] is None  # it has not looked at the store since
    stream_drift(second)
    assert "fired" not in kinds(second)
    skipped = [d for d in second.status("pump")["decisions"] if d["kind"] == "skipped"]
    assert "challenger v2, trained by another hub process" in skipped[0]["reason"]
    assert second.status("pump")["shadow"]["version"] == 2
    assert len(first.versions("pump")) == 2  # no third model was trained


def test_a_fired_policy_trains_when_nobody_else_does(
    make_hub: Callable[[], ExperimentHub], other_hub: LocalQueuePlugin
) -> None:
    hub = make_hub()
    hub.create_experiment("pump", "fault_detection", DRIFT)
    hub.train("pump", data=sensors(600), wait=True)
    stream_drift(hub, shift=0.7)  # a new duty point, not a fault: the monitor stays quiet
    assert "fired" in kinds(hub), hub.status("pump")["decisions"]
    deadline = time.monotonic() + 60
    while hub.status("pump")["shadow"] is None:
        assert time.monotonic() < deadline, hub.status("pump")["decisions"]
        time.sleep(0.05)
    claim = other_hub.claim("train.pump")
    assert claim is not None, "the retrain's end gave the claim up"
    claim.release()


def test_a_training_with_its_rows_does_not_wait_for_a_datastream_that_is_down(
    make_hub: Callable[[], ExperimentHub], caplog: pytest.LogCaptureFixture
) -> None:
    hub = make_hub()
    hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
    hub.get_plugin("datastream").disconnect()  # type: ignore[attr-defined]
    job = hub.train("pump", data=sensors(300), wait=True)
    assert job.status.state == "succeeded"
    assert "training without the training claim" in caplog.text


def test_a_retrain_refused_for_another_hub_leaves_the_train_queue_alone(
    make_hub: Callable[[], ExperimentHub], other_hub: LocalQueuePlugin
) -> None:
    hub = make_hub()
    hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
    hub.train("pump", data=sensors(300), wait=True)
    other_hub.publish("pump.train", sensors(50, seed=3).to_json(orient="records"))
    held = other_hub.claim("train.pump")
    assert held is not None
    try:
        with pytest.raises(TrainingInProgressError, match="another hub process"):
            hub.retrain("pump")
    finally:
        held.release()
    assert other_hub.queue_depth("pump.train") == 1, "the rows wait for the hub that trains"
