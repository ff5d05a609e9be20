"""The holdout: new rows neither model trained on, not picked by the champion's own verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.retraining.holdout import known_rows, select_and_hold_out, split_unseen
from observml.retraining.policy import RetrainPolicy
from observml.retraining.window import RetrainWindow, alarm_episodes

COLUMNS = ["temp", "pressure", "flow"]


def sensors(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=COLUMNS)


def champion(rows: pd.DataFrame, keep: int = 10_000) -> FaultDetectionExperiment:
    config = {"create_model": {"model": "pca"}, "setup": {"keep_train_rows": keep}}
    return FaultDetectionExperiment("pump", config).train(rows)


def test_the_window_holdout_keeps_rows_the_champion_flagged_but_no_alarm_episode() -> None:
    rows = sensors(500).assign(row=np.arange(500.0))
    flags = np.zeros(500, dtype=bool)
    flags[[40, 140, 240, 340]] = True  # isolated false alarms
    flags[400:460] = True  # an alarm episode
    window = RetrainWindow(5000)
    window.add(rows, flags)
    policy = RetrainPolicy().resolved(ground_truth=False)  # in_control
    selection, holdout = select_and_hold_out(
        window.snapshot(), None, policy, after=-1, fraction=0.25, ordered=False
    )
    held = set(holdout.rows["row"])
    assert len(held) == holdout.wanted > 20
    assert held.isdisjoint(selection.train["row"])  # the challenger never sees them
    episode = alarm_episodes(flags, policy.alarm_episode)
    assert episode[400:460].all()
    assert not any(episode[int(r)] for r in held)  # no row of the alarm episode
    comparable = [r for r in range(500) if not episode[r]]
    step = np.linspace(0, len(comparable) - 1, holdout.wanted).round().astype(int)
    assert held == {float(comparable[i]) for i in step}  # spread, flagged or not
    assert selection.excluded["flagged"] == 4 + 60
    assert holdout.trainable == len(held - {40.0, 140.0, 240.0, 340.0})


def test_rows_the_champion_kept_or_timed_inside_its_span_are_known() -> None:
    history = sensors(300).assign(ds=pd.date_range("2024-01-01", periods=300, freq="min"))
    config = {
        "create_model": {"model": "pca"},
        "setup": {"datetime_column": "ds", "keep_train_rows": 100},
    }
    model = FaultDetectionExperiment("pump", config).train(history)
    assert model.train_span_ == ["2024-01-01 00:00:00", "2024-01-01 04:59:00"]
    later = sensors(50, seed=1).assign(ds=pd.date_range("2024-02-01", periods=50, freq="min"))
    asked = pd.concat([history.iloc[[0, 150, 299]], later.iloc[:2]], ignore_index=True)
    # row 0 was not kept (only the newest 100 were), but its time lies inside the span
    assert known_rows(model, asked).tolist() == [True, True, True, False, False]
    # sent as text, the same rows are still recognised
    text = asked.astype(str)
    assert known_rows(model, text).tolist() == [True, True, True, False, False]


def test_too_few_unseen_rows_hold_nothing_out() -> None:
    history = sensors(200)
    model = champion(history)
    mixed = pd.concat([history, sensors(50, seed=2)], ignore_index=True)
    split = split_unseen(mixed, model, 0.2, ordered=False, min_rows=20)
    assert (split.known, split.wanted, len(split.rows)) == (200, 10, 0)
    assert len(split.train) == 250
    enough = split_unseen(mixed, model, 0.2, ordered=True, min_rows=5)
    assert len(enough.rows) == 10
    assert not known_rows(model, enough.rows).any()
    assert enough.rows.equals(mixed.iloc[240:].reset_index(drop=True))  # the newest unseen
