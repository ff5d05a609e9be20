"""The retrain window: verdicts, labels, alarm episodes and what a challenger may learn from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from observml.retraining.policy import AlarmEpisode
from observml.retraining.window import RetrainWindow, alarm_episodes, select_rows

RULE = AlarmEpisode(rows=10, share=0.3)


def rows(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(start, start + n, dtype=float)})


def flags(n: int, at: list[int] | range | None = None) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(at or [])] = True
    return out


def test_the_window_keeps_the_newest_rows_in_order_with_sequence_numbers() -> None:
    window = RetrainWindow(max_rows=25)
    for start in range(0, 40, 10):
        window.add(rows(10, start), flags(10, [0]), now=1000.0 + start)
    snapshot = window.snapshot()
    assert len(window) == 25
    assert snapshot.frame["x"].tolist() == list(range(15, 40))
    assert snapshot.seq.tolist() == list(range(15, 40))
    assert snapshot.flags.sum() == 2  # rows 20 and 30
    assert snapshot.arrived[0] == 1010.0


def test_labels_by_arrival_time_or_by_the_rows_own_times() -> None:
    window = RetrainWindow(max_rows=100)
    window.add(rows(10), flags(10), now=100.0)
    window.add(rows(10, 10), flags(10, [3]), now=200.0)
    picked = window.label("normal", start=150.0)
    assert picked["x"].tolist() == list(range(10, 20))
    assert (window.snapshot().labels[10:] == "normal").all()
    assert window.label("fault", start=150.0, flagged_only=True)["x"].tolist() == [13.0]
    stamped = RetrainWindow(max_rows=100)
    times = pd.date_range("2026-01-01", periods=10, freq="min")
    stamped.add(rows(10).assign(ds=times.astype(str)), flags(10), now=1.0)
    picked = stamped.label(
        "fault", start="2026-01-01 00:05", end="2026-01-01 00:07", time_column="ds"
    )
    assert picked["x"].tolist() == [5.0, 6.0, 7.0]
    assert stamped.rows(start="2026-01-01 00:08", time_column="ds")["x"].tolist() == [8.0, 9.0]


def test_alarm_episodes_cover_dense_alarms_not_scattered_ones() -> None:
    scattered = flags(100, [5, 40, 80])
    assert not alarm_episodes(scattered, RULE).any()
    dense = flags(100, range(40, 60, 2))
    episode = alarm_episodes(dense, RULE)
    assert episode[40]
    assert episode[58]
    assert not episode[:30].any()
    assert not episode[70:].any()


def test_in_control_keeps_unflagged_rows_outside_episodes_and_confirmed_rows() -> None:
    window = RetrainWindow(max_rows=200)
    window.add(rows(100), flags(100, [10, *range(50, 70, 2)]), now=1.0)
    snapshot = window.snapshot()
    labels = snapshot.labels.copy()
    labels[:] = ""
    labels[55:60] = "normal"
    labels[90:] = "fault"
    snapshot = type(snapshot)(
        snapshot.frame, snapshot.flags, labels, snapshot.arrived, snapshot.seq
    )
    selection = select_rows(snapshot, mode="in_control", rule=RULE)
    kept = set(selection.train["x"].astype(int))
    assert 10 not in kept  # flagged
    assert 63 not in kept  # unflagged but inside the alarm episode
    assert {55, 56, 57, 58, 59} <= kept  # confirmed normal by a person
    assert not kept & set(range(90, 100))  # labelled a fault
    assert selection.excluded["flagged"] == 9  # 11 flagged, 56 and 58 confirmed normal
    assert selection.excluded["labelled_fault"] == 10
    assert selection.confirmed_normal == 5
    assert len(selection.episodes) == 1
    assert not set(selection.episodes[0]["x"].astype(int)) & set(range(55, 60))
    assert "left out 9 flagged" in selection.summary


def test_all_rows_keeps_the_flagged_ones_but_never_a_labelled_fault() -> None:
    window = RetrainWindow(max_rows=100)
    window.add(rows(50), flags(50, range(0, 50, 2)), now=1.0)
    window.label("fault", start=0.5, end=1.5, flagged_only=True)
    selection = select_rows(window.snapshot(), mode="all", rule=RULE)
    assert selection.train["x"].astype(int).tolist() == list(range(1, 50, 2))
    assert selection.excluded == {"labelled_fault": 25}


def test_rows_the_champion_learnt_are_not_new_and_the_alarm_now_is_seen() -> None:
    window = RetrainWindow(max_rows=500)
    window.add(rows(200), flags(200), now=1.0)
    window.add(rows(100, 200), flags(100, range(60, 100)), now=2.0)
    selection = select_rows(window.snapshot(), mode="in_control", rule=RULE, after=149)
    assert selection.train["x"].min() == 150
    assert selection.excluded["learnt_already"] == 150
    assert selection.through == 299
    assert selection.alarm_now
    quiet = select_rows(window.snapshot(), mode="in_control", rule=RULE, after=-1)
    assert quiet.train["x"].min() == 0


@pytest.mark.parametrize("mode", ["in_control", "all"])
def test_whole_units_are_kept_or_dropped_together(mode: str) -> None:
    window = RetrainWindow(max_rows=100)
    frame = pd.DataFrame({"case": ["a", "a", "b", "b", "c"], "x": range(5)})
    window.add(frame, flags(5, [1]), now=1.0)

    def whole(frame: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
        return np.asarray(pd.Series(keep).groupby(frame["case"].to_numpy()).transform("all"))

    selection = select_rows(
        window.snapshot(), mode=mode, rule=AlarmEpisode(rows=1, share=1.0), whole_units=whole
    )
    expected = ["b", "b", "c"] if mode == "in_control" else ["a", "a", "b", "b", "c"]
    assert selection.train["case"].tolist() == expected
