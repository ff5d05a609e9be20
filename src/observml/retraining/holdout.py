"""Rows neither model trained on: the holdout every champion/challenger comparison uses.

A comparison on rows one model learnt is unfair: a model scores its own training rows better
than new ones (a detector flags few of them, a classifier knows their labels). So:

* the holdout is taken from the **new** rows of a retrain (the window's, or the data a person
  gave) *before* the challenger trains, and the challenger never sees it; from the window it is
  drawn from the rows outside alarm episodes, whether the champion flagged them or not
  (:func:`~observml.retraining.window.comparable_rows`), so the champion's own verdicts do not
  pick rows in its favour;
* rows the **champion** trained on are never in it: the champion keeps its newest training rows
  (``setup.keep_train_rows``), and a new row equal to one of them (same feature values and
  time) is known to it; when it trained on more rows than it kept, rows timed inside its
  training span (``train_span_``, where ``setup.datetime_column`` is set) count as known too;
* rows a person confirmed as normal join the normal reference only when neither model trained
  on them.

When fewer than ``retrain.gate.min_holdout_rows`` such rows remain, there is no comparison:
the decision says so and a person decides (:func:`too_few`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from observml.retraining.window import Selection, WindowSnapshot, comparable_rows, select_rows

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.retraining.policy import RetrainPolicy

__all__ = [
    "Holdout",
    "hold_out",
    "select_and_hold_out",
    "known_rows",
    "split_unseen",
    "too_few",
    "unseen",
]


@dataclass(frozen=True)
class Holdout:
    """New rows split into the challenger's training rows and the holdout.

    Attributes:
        train: Rows the challenger may learn from (the new rows but the holdout).
        rows: The holdout: rows neither model trained on (empty when too few).
        known: New rows the champion had trained on (kept for training, never held out).
        wanted: Holdout rows asked for (``holdout_fraction`` of the unseen rows).
        trainable: Held-out rows the challenger could have learnt from otherwise (they count
            towards ``retrain.min_rows``).
    """

    train: pd.DataFrame
    rows: pd.DataFrame
    known: int = 0
    wanted: int = 0
    trainable: int = 0


def _keys(experiment: Experiment, frame: pd.DataFrame) -> np.ndarray:
    """One hash per row of ``frame`` over the columns ``experiment`` trained on."""
    kept = experiment.get_train_data()
    columns = [c for c in kept.columns if c in frame.columns]
    block = frame[columns].copy()
    for column in columns:
        if block[column].dtype.kind in "fiub":
            block[column] = block[column].astype("float64")
    hashed: np.ndarray = pd.util.hash_pandas_object(block, index=False).to_numpy()
    return hashed


def known_rows(experiment: Experiment, frame: pd.DataFrame) -> np.ndarray:
    """Return, per row of ``frame``, whether ``experiment`` trained on it (see module docs)."""
    if len(frame) == 0 or not experiment.is_trained:
        return np.zeros(len(frame), dtype=bool)
    prepared = experiment.prepare(frame, action="retrain")
    kept = experiment.get_train_data()
    known = np.isin(_keys(experiment, prepared), _keys(experiment, kept))
    span = getattr(experiment, "train_span_", None)
    times = experiment.time_values(prepared)
    if span and times is not None and getattr(experiment, "n_train_rows_", 0) > len(kept):
        start, end = pd.Timestamp(span[0]), pd.Timestamp(span[1])
        stamps = pd.to_datetime(times, errors="coerce")
        known |= ((stamps >= start) & (stamps <= end)).to_numpy(dtype=bool)
    return np.asarray(known, dtype=bool)


def unseen(frame: pd.DataFrame, *models: Experiment | None) -> pd.DataFrame:
    """The rows of ``frame`` none of ``models`` trained on."""
    seen = np.zeros(len(frame), dtype=bool)
    for model in models:
        if model is not None and len(frame):
            seen |= known_rows(model, frame)
    return frame[~seen].reset_index(drop=True)


def split_unseen(
    new: pd.DataFrame,
    champion: Experiment | None,
    fraction: float,
    *,
    ordered: bool,
    min_rows: int,
) -> Holdout:
    """Hold out ``fraction`` of the new rows the champion did not train on.

    ``ordered`` types (time series) hold out the newest such rows, since a forecast needs the
    past; others every k-th row, so the holdout is never all one regime. With fewer than
    ``min_rows`` to hold out, nothing is held out (``rows`` is empty) and every new row trains.
    """
    new = new.reset_index(drop=True)
    known = known_rows(champion, new) if champion is not None else np.zeros(len(new), dtype=bool)
    held, wanted = hold_out(~known, fraction, ordered=ordered, min_rows=min_rows)
    return Holdout(
        new[~held].reset_index(drop=True),
        new[held].reset_index(drop=True),
        int(known.sum()),
        wanted,
        int(held.sum()),
    )


def hold_out(
    candidates: np.ndarray, fraction: float, *, ordered: bool, min_rows: int
) -> tuple[np.ndarray, int]:
    """Pick ``fraction`` of the ``candidates`` rows; return the mask and how many were wanted.

    The mask is all False when fewer than ``min_rows`` would be picked, or when fewer than two
    rows would be left to train on.
    """
    positions = np.flatnonzero(candidates)
    wanted = int(round(len(positions) * fraction))
    held = np.zeros(len(candidates), dtype=bool)
    if wanted < min_rows or len(candidates) - wanted < 2:
        return held, wanted
    if ordered:
        picked = positions[len(positions) - wanted :]
    else:
        picked = positions[np.round(np.linspace(0, len(positions) - 1, wanted)).astype(int)]
    held[picked] = True
    return held, wanted


def select_and_hold_out(
    snapshot: WindowSnapshot,
    champion: Experiment | None,
    policy: RetrainPolicy,
    *,
    after: int,
    fraction: float,
    ordered: bool,
) -> tuple[Selection, Holdout]:
    """The window's rows a challenger learns from, and ``fraction`` of its new rows held out.

    The holdout is drawn from the comparable new rows the champion did not learn
    (:func:`~observml.retraining.window.comparable_rows`); :func:`~observml.retraining.window.
    select_rows` then picks the training rows from the rest.
    """
    mode = policy.window_rows or "in_control"
    rule = policy.alarm_episode
    candidates = comparable_rows(snapshot, mode=mode, rule=rule, after=after)
    known = np.zeros(len(snapshot), dtype=bool)
    if champion is not None and candidates.any():
        known = known_rows(champion, snapshot.frame) & candidates
    least = policy.gate.min_holdout_rows
    held, wanted = hold_out(candidates & ~known, fraction, ordered=ordered, min_rows=least)
    whole = champion.keep_whole if champion is not None else None
    if whole is not None and held.any():  # cases of an event log stay whole
        held = np.asarray(whole(snapshot.frame, held), dtype=bool)
    selection = select_rows(
        snapshot, mode=mode, rule=rule, whole_units=whole, after=after, held_out=held
    )
    trainable = 0
    if held.any():  # how many of the held-out rows the challenger could have learnt from
        free = select_rows(snapshot, mode=mode, rule=rule, whole_units=whole, after=after)
        trainable = len(free.train) - len(selection.train)
    rows = snapshot.frame[held].reset_index(drop=True)
    return selection, Holdout(selection.train, rows, int(known.sum()), wanted, trainable)


def too_few(available: int, min_rows: int, what: str = "holdout rows") -> str:
    """The decision's words when there is nothing fair to compare on."""
    return (
        f"no comparison: only {available} {what} neither model trained on (fewer than"
        f" retrain.gate.min_holdout_rows {min_rows}), so the challenger was not compared with"
        " the champion; a person decides (promote or reject). Give more new rows to compare."
    )
