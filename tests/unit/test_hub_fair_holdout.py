"""Every champion/challenger comparison is on rows neither model trained on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.retraining.holdout import known_rows

COLUMNS = ["temp", "pressure", "flow"]


def sensors(n: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0.0, 1.0, size=(n, 3)), columns=COLUMNS)


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def detector(hub: ExperimentHub, **retrain: Any) -> pd.DataFrame:
    config = {"create_model": {"model": "pca"}, "retrain": retrain}
    hub.create_experiment("pump", "fault_detection", config)
    history = sensors(400)
    hub.train("pump", data=history, wait=True)
    return history


def test_a_manual_retrain_compares_on_new_rows_the_challenger_did_not_learn(
    hub: ExperimentHub,
) -> None:
    detector(hub)
    new = sensors(300, seed=1)
    job = hub.retrain("pump", data=new, wait=True)
    assert job.status.state == "succeeded", job.status.error
    result = job.status.result
    assert result["holdout_rows"] == 60  # streaming.holdout_fraction 0.2 of the new rows
    assert result["window"]["train_rows"] == 240
    assert result["window"]["excluded"]["held_out_to_compare"] == 60
    (check,) = result["gate"]["checks"]
    assert check["rows"] == 60  # not the champion's 400 training rows
    assert "neither model trained on" in check["detail"]
    challenger = hub._get("pump").shadow
    assert challenger is not None
    learnt = known_rows(challenger.experiment, new)
    assert learnt.sum() == 240  # the 60 held-out rows were never trained on


def test_a_retrain_on_the_champions_own_rows_is_not_compared_and_waits_for_a_person(
    hub: ExperimentHub,
) -> None:
    history = detector(hub, promotion="auto")
    job = hub.retrain("pump", data=history, wait=True)  # `observml retrain pump --data normal.csv`
    assert job.status.state == "succeeded", job.status.error
    result = job.status.result
    assert result["promoted"] is False
    assert result["shadow"] is True  # promotion: auto, but there was nothing fair to compare on
    assert result["gate"]["compared"] is False
    assert result["gate"]["checks"] == []
    assert result["reason"].startswith(
        "no comparison: only 0 normal rows neither model trained on (fewer than"
        " retrain.gate.min_holdout_rows 20)"
    )
    status = hub.status("pump")
    assert status["champion_version"] == 1
    assert status["challenger_version"] == 2
    assert status["last_gate"]["compared"] is False


def test_a_labelled_holdout_never_holds_rows_the_champion_learnt(hub: ExperimentHub) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (700, 2))
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(label=np.where(x[:, 0] > 0, "hot", "ok"))
    seen, new = frame.iloc[:500], frame.iloc[500:]
    config = {"setup": {"target": "label"}, "create_model": {"model": "decision_tree"}}
    hub.create_experiment("line", "fault_isolation", config)
    hub.train("line", data=seen, wait=True)
    champion = hub._get("line").champion()[0]
    assert champion is not None
    assert known_rows(champion, seen).all()
    assert not known_rows(champion, new).any()
    # the data holds the champion's 500 rows and 200 new ones: only new rows are held out
    job = hub.retrain("line", data=frame, wait=True)
    assert job.status.state == "succeeded", job.status.error
    (check,) = job.status.result["gate"]["checks"]
    assert check["rows"] == 40  # 0.2 of the 200 new rows
    challenger = hub._get("line").champion()[0]  # promoted (retrain.promotion: auto)
    assert challenger is not None
    assert challenger is not champion
    assert known_rows(challenger, new).sum() == 160  # it never saw the 40 held out
