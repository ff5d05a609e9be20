"""A streaming hub sees a champion moved by another hub process, with no traffic at all."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.config import HubConfig, StreamingSection


def sensors(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0.0, 1.0, size=(n, 3)), columns=["temp", "pressure", "flow"])


def make_hub(mlops: InMemoryMLOpsPlugin) -> ExperimentHub:
    config = HubConfig(plugins={}, streaming=StreamingSection(champion_refresh=0.2))
    hub = ExperimentHub(config=config, job_isolation="thread")
    hub.register_plugin(mlops)
    hub.register_plugin(InMemoryDataStreamPlugin())  # its own queues: no message can reach it
    return hub


def test_a_rollback_elsewhere_is_served_within_champion_refresh_without_messages() -> None:
    mlops = InMemoryMLOpsPlugin()
    with make_hub(mlops) as serving, make_hub(mlops) as operator:
        serving.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
        serving.train("pump", data=sensors(300), wait=True)
        serving.train("pump", data=sensors(300, seed=1), wait=True)
        serving.start_streaming("pump")
        assert serving.status("pump")["champion_version"] == 2
        operator.load("pump")
        assert operator.rollback("pump") == 1  # `observml rollback pump` from another shell
        deadline = time.monotonic() + 30.0  # generous: the check runs every 0.2 s
        while serving.status("pump")["champion_version"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = serving.status("pump")
        serving.stop_streaming("pump")
    assert status["champion_version"] == 1
    assert status["counters"].get("predicted_messages", 0) == 0  # no batch brought it
    assert status["decisions"][-1]["reason"] == "champion moved in the MLOps store"


def test_many_streams_share_one_champion_watch() -> None:
    """Twelve streams: a fixed handful of watch threads, and each stream still follows the store."""
    mlops = InMemoryMLOpsPlugin()
    names = [f"pump{i}" for i in range(12)]
    with make_hub(mlops) as serving, make_hub(mlops) as operator:
        for name in names:
            serving.create_experiment(name, "fault_detection", {"create_model": {"model": "pca"}})
            serving.train(name, data=sensors(300), wait=True)
            serving.train(name, data=sensors(300, seed=1), wait=True)
            serving.start_streaming(name)
        time.sleep(0.5)  # a few sweeps
        watching = [t.name for t in threading.enumerate() if t.name.startswith("observml-champ")]
        for name in names[:2]:
            operator.load(name)
            assert operator.rollback(name) == 1
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and any(
            serving.status(name)["champion_version"] != 1 for name in names[:2]
        ):
            time.sleep(0.05)
        versions = [serving.status(name)["champion_version"] for name in names]
    assert len(watching) <= 5, watching  # the watch thread and at most 4 checking at once
    assert versions == [1, 1] + [2] * 10
