"""Streamed rows of text numbers retrain like any rows; a failing retrain backs off and says why."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin

FRAGILE = "tests.unit.experiment_types_for_tests:FragileDetector"


def plant(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="s").astype(str),
            "feed_flow": rng.normal(12.5 + shift, 0.5, n).round(3),
            "temp": rng.normal(80.0 + shift, 1.0, n).round(3),
            "pressure": rng.normal(3.0, 0.1, n).round(3),
        }
    )


def dict_reader_bodies(frame: pd.DataFrame, per_message: int) -> list[str]:
    """``json.dumps(row)`` for the rows of ``csv.DictReader``: every value a string."""
    rows = list(csv.DictReader(io.StringIO(frame.to_csv(index=False))))
    return [
        json.dumps(rows[start : start + per_message]) for start in range(0, len(rows), per_message)
    ]


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def stream_text(hub: ExperimentHub, name: str, frame: pd.DataFrame, per_message: int = 50) -> None:
    stream = hub.get_plugin("datastream")
    assert isinstance(stream, InMemoryDataStreamPlugin)
    bodies = dict_reader_bodies(frame, per_message)
    for index, body in enumerate(bodies):
        stream.publish(f"{name}.predict", body, message_id=f"{name}-{index}")
    wait_for(lambda: hub.status(name)["counters"].get("predicted_messages", 0) >= len(bodies))


def wait_for(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def settled(hub: ExperimentHub, name: str) -> dict[str, Any]:
    wait_for(lambda: not hub.status(name)["retrain_in_flight"])
    return hub.status(name)


def test_text_rows_from_a_csv_producer_retrain_instead_of_failing(hub: ExperimentHub) -> None:
    config = {
        "setup": {"datetime_column": "timestamp"},
        "create_model": {"model": "pca"},
        "retrain": {"drift": {"window": 200}, "cooldown": 0},
    }
    hub.create_experiment("plant", "fault_detection", config)
    hub.train("plant", data=plant(1000), wait=True)
    hub.start_streaming("plant")
    # 2,000 rows as text: the process drifts slowly (still in control), so the drift test fires
    stream_text(hub, "plant", pd.concat([plant(500, seed=1), plant(1500, shift=0.4, seed=2)]))
    hub.stop_streaming("plant")
    status = settled(hub, "plant")
    kinds = [d["kind"] for d in status["decisions"]]
    assert status["counters"]["dead_letters"] == 0
    assert "fired" in kinds
    retrains = [j for j in status["jobs"] if j["kind"] == "retrain"]
    assert retrains, kinds
    assert all(j["state"] == "succeeded" for j in retrains), [j["error"] for j in retrains]
    assert "trained" in kinds
    assert status["retrain_failure"] is None
    alerts = [status["alerts"]["open"], *status["alerts"].get("recent", [])]
    assert not any(a and a["kind"] == "retrain_failed" for a in alerts)


def test_a_failing_retrain_backs_off_and_the_status_says_why(
    hub: ExperimentHub, tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    config = {
        "create_model": {"params": {"fail_when": str(marker)}},
        "retrain": {"threshold": 0.0, "cooldown": 0, "min_rows": 20},
    }
    hub.create_experiment("plant", FRAGILE, config)
    hub.train("plant", data=plant(300).drop(columns="timestamp"), wait=True)
    marker.touch()  # from now on every fit fails
    hub.start_streaming("plant")
    rows = plant(400, seed=3).drop(columns="timestamp")
    stream_text(hub, "plant", rows.iloc[:100])  # the policy fires: the retrain fails
    wait_for(lambda: hub.status("plant")["retrain_failure"] is not None)
    stream_text(hub, "plant", rows.iloc[100:])  # 6 more batches: the cooldown of 0 is not enough
    hub.stop_streaming("plant")
    status = settled(hub, "plant")
    retrains = [j for j in status["jobs"] if j["kind"] == "retrain"]
    assert [j["state"] for j in retrains] == ["failed"]
    failure = status["retrain_failure"]
    assert failure["failures"] == 1
    assert "told to fail by" in failure["last_error"]
    assert failure["retry_at"] - failure["failed_at"] == 60.0  # retrain.failure_backoff
    alert = status["alerts"]["open"]
    assert "retrain_failed" in alert["kind"]
    assert "told to fail by" in alert["reason"]
    assert "the next retrain may fire in 60 s at the earliest" in alert["reason"]
