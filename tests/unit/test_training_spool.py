"""Rows drained from ``<name>.train`` are acked once spooled: a training that does not store
them must not lose them. The next drain adopts what an earlier one left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.config import HOME_ENV_VAR

FRAGILE = "tests.unit.experiment_types_for_tests:FragileDetector"


def sensors(n: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0, 1, (n, 3)), columns=["temp", "pressure", "flow"])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def hub(home: Path) -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def publish_rows(hub: ExperimentHub, frame: pd.DataFrame, *, first_id: int = 0) -> None:
    stream = hub.get_plugin("datastream")
    for i, start in enumerate(range(0, len(frame), 50)):
        body = frame.iloc[start : start + 50].to_json(orient="records")
        stream.publish("pump.train", body, message_id=f"rows-{first_id + i}")


def spool_folders(home: Path) -> list[Path]:
    root = home / "spool" / "pump"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def test_rows_of_a_failed_training_are_trained_on_by_the_next_one(
    hub: ExperimentHub, home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "fail"
    hub.create_experiment("pump", FRAGILE, {"create_model": {"params": {"fail_when": str(marker)}}})
    publish_rows(hub, sensors(200))
    marker.touch()
    failed = hub.train("pump", wait=True)
    assert failed.status.state == "failed"
    assert hub.get_plugin("datastream").queue_depth("pump.train") == 0  # acked: only spooled
    assert len(spool_folders(home)) == 1

    marker.unlink()
    publish_rows(hub, sensors(50, seed=1), first_id=4)
    job = hub.train("pump", wait=True)

    assert job.status.state == "succeeded", job.status.error
    assert hub.get_train_data("pump").shape == (250, 3)  # the 200 left behind, then the new 50
    assert spool_folders(home) == []  # stored with the run: nothing left
    assert "the next training from the queue (train without data) trains on them" in caplog.text
    assert "trained on again" in caplog.text


def test_a_redelivered_message_already_in_a_left_behind_spool_counts_once(
    hub: ExperimentHub, tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    hub.create_experiment("pump", FRAGILE, {"create_model": {"params": {"fail_when": str(marker)}}})
    rows = sensors(100)
    publish_rows(hub, rows)
    marker.touch()
    assert hub.train("pump", wait=True).status.state == "failed"
    marker.unlink()
    # "rows-1" again, as when a hub died after spooling it and before its ack reached the broker
    publish_rows(hub, rows.iloc[50:], first_id=1)
    publish_rows(hub, sensors(50, seed=2), first_id=2)

    assert hub.train("pump", wait=True).status.state == "succeeded"
    assert hub.get_train_data("pump").shape == (150, 3)


def test_a_retrain_on_queued_rows_deletes_their_spool_once_stored(
    hub: ExperimentHub, home: Path
) -> None:
    hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
    hub.train("pump", data=sensors(200), wait=True)
    publish_rows(hub, sensors(100, seed=3))

    job = hub.retrain("pump", wait=True)

    assert job.status.state == "succeeded", job.status.error
    assert spool_folders(home) == []


def test_train_given_data_leaves_a_left_behind_spool_for_the_queue_path(
    hub: ExperimentHub, home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    hub.create_experiment("pump", FRAGILE, {"create_model": {"params": {"fail_when": str(marker)}}})
    publish_rows(hub, sensors(100))
    marker.touch()
    assert hub.train("pump", wait=True).status.state == "failed"
    marker.unlink()

    assert hub.train("pump", data=sensors(60, seed=4), wait=True).status.state == "succeeded"

    assert hub.get_train_data("pump").shape == (60, 3)  # data= is exactly what is trained on
    assert len(spool_folders(home)) == 1  # the queue's rows wait for the next drain
