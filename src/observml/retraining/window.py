"""The retrain window: the newest streamed rows, what the serving model said of each, and labels.

Every streamed batch lands here with the serving model's verdict per row (flagged or not) and
its arrival time. People label rows through feedback (``normal`` or ``fault``); their word beats
the model's. :func:`select_rows` turns the window into a challenger's training rows:

* ``window_rows: in_control`` keeps rows the model did not flag and that lie outside an alarm
  episode, plus rows a person confirmed as normal; so a persistent fault leaves nothing to learn
  from, while a slow drift (rows that stay under the limit) is followed;
* ``window_rows: all`` keeps every row but those labelled as a fault.

Either way, alarm episodes nobody confirmed as normal come back as provisional faults: a
challenger promoted without a person must still flag them (see :mod:`observml.retraining.gate`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from observml.retraining.policy import AlarmEpisode, WindowRows

__all__ = [
    "RetrainWindow",
    "Selection",
    "WindowSnapshot",
    "alarm_episodes",
    "comparable_rows",
    "select_rows",
]

_UNLABELLED: Final = ""


@dataclass
class _Chunk:
    frame: pd.DataFrame
    flags: np.ndarray
    labels: np.ndarray
    arrived: float
    first: int  # sequence number of the chunk's first row


@dataclass(frozen=True)
class WindowSnapshot:
    """The window's rows with a flag, a label, an arrival time and a sequence number per row.

    Sequence numbers only grow, so they say which rows came after which.
    """

    frame: pd.DataFrame
    flags: np.ndarray
    labels: np.ndarray
    arrived: np.ndarray
    seq: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)


class RetrainWindow:
    """The newest ``max_rows`` streamed rows with verdicts and labels (thread-safe).

    Args:
        max_rows: How many rows are kept (``streaming.retrain_rows``).
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._chunks: deque[_Chunk] = deque()
        self._rows = 0
        self._next = 0

    def __len__(self) -> int:
        with self._lock:
            return min(self._rows, self.max_rows)

    def add(self, frame: pd.DataFrame, flags: np.ndarray, *, now: float | None = None) -> None:
        """Keep one batch and the serving model's verdict per row (True = flagged)."""
        with self._lock:
            chunk = _Chunk(
                frame.reset_index(drop=True),
                np.asarray(flags, dtype=bool).copy(),
                np.full(len(frame), _UNLABELLED, dtype=object),
                time.time() if now is None else now,
                self._next,
            )
            self._next += len(frame)
            self._chunks.append(chunk)
            self._rows += len(frame)
            while self._chunks and self._rows - len(self._chunks[0].frame) >= self.max_rows:
                self._rows -= len(self._chunks.popleft().frame)

    def snapshot(self) -> WindowSnapshot:
        """Return the newest ``max_rows`` rows with their flags, labels and arrival times."""
        with self._lock:
            chunks = [(c.frame, c.flags, c.labels.copy(), c.arrived, c.first) for c in self._chunks]
        if not chunks:
            empty = np.zeros(0)
            return WindowSnapshot(
                pd.DataFrame(), empty.astype(bool), empty.astype(object), empty, empty.astype(int)
            )
        frame = pd.concat([c[0] for c in chunks], ignore_index=True)
        flags = np.concatenate([c[1] for c in chunks])
        labels = np.concatenate([c[2] for c in chunks])
        arrived = np.concatenate([np.full(len(c[0]), c[3]) for c in chunks])
        seq = np.concatenate([np.arange(c[4], c[4] + len(c[0])) for c in chunks])
        start = max(0, len(frame) - self.max_rows)
        frame = frame.iloc[start:].reset_index(drop=True)
        return WindowSnapshot(frame, flags[start:], labels[start:], arrived[start:], seq[start:])

    def label(
        self,
        label: str,
        *,
        start: Any = None,
        end: Any = None,
        time_column: str | None = None,
        flagged_only: bool = False,
    ) -> pd.DataFrame:
        """Label the rows between ``start`` and ``end`` and return them (see :meth:`rows`).

        ``label`` is ``normal`` or ``fault``; ``flagged_only`` labels only the rows the serving
        model flagged.
        """
        return self._pick(start, end, time_column, flagged_only=flagged_only, label=label)

    def rows(
        self, *, start: Any = None, end: Any = None, time_column: str | None = None
    ) -> pd.DataFrame:
        """Return the rows between ``start`` and ``end`` (inclusive; open ends allowed).

        Times are compared with ``time_column`` where the rows carry it, else with the arrival
        time (epoch seconds or anything :class:`pandas.Timestamp` reads).
        """
        return self._pick(start, end, time_column)

    def _pick(
        self,
        start: Any,
        end: Any,
        time_column: str | None,
        *,
        flagged_only: bool = False,
        label: str | None = None,
    ) -> pd.DataFrame:
        picked: list[pd.DataFrame] = []
        with self._lock:
            for chunk in self._chunks:
                mask = _between(chunk, start, end, time_column)
                if flagged_only:
                    mask &= chunk.flags
                if mask.any():
                    if label is not None:
                        chunk.labels[mask] = label
                    picked.append(chunk.frame[mask])
        return pd.concat(picked, ignore_index=True) if picked else pd.DataFrame()

    def clear(self) -> None:
        """Forget every row."""
        with self._lock:
            self._chunks.clear()
            self._rows = 0


def _between(chunk: _Chunk, start: Any, end: Any, time_column: str | None) -> np.ndarray:
    n = len(chunk.frame)
    if start is None and end is None:
        return np.ones(n, dtype=bool)
    if time_column and time_column in chunk.frame.columns:
        times = pd.to_datetime(chunk.frame[time_column], errors="coerce", utc=True)
        lo = _timestamp(start, utc=True)
        hi = _timestamp(end, utc=True)
        mask = np.ones(n, dtype=bool)
        if lo is not None:
            mask &= (times >= lo).to_numpy()
        if hi is not None:
            mask &= (times <= hi).to_numpy()
        return mask
    lo_s = _epoch(start)
    hi_s = _epoch(end)
    inside = (lo_s is None or chunk.arrived >= lo_s) and (hi_s is None or chunk.arrived <= hi_s)
    return np.full(n, inside, dtype=bool)


def _timestamp(value: Any, *, utc: bool) -> pd.Timestamp | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        stamp = pd.Timestamp(value, unit="s")
    else:
        stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        return stamp.tz_localize("UTC") if utc else stamp
    return stamp.tz_convert("UTC") if utc else stamp


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    stamp = _timestamp(value, utc=True)
    assert stamp is not None
    return float(stamp.timestamp())


@dataclass(frozen=True)
class Selection:
    """What :func:`select_rows` kept for training, what it left out, and why.

    Attributes:
        train: The rows to train the challenger on.
        total: Rows in the window.
        excluded: Rows left out, by reason (``flagged``, ``alarm_episode``, ``labelled_fault``).
        confirmed_normal: Rows kept because a person confirmed them as normal.
        episodes: Alarm episodes nobody confirmed as normal (provisional faults for the gate).
        mode: The ``window_rows`` setting applied.
        carried: Rows of the champion's training data ``train`` starts with (a moving window).
        through: Sequence number of the newest window row considered (``-1``: none).
        alarm_now: Whether an unconfirmed alarm episode reaches into the newest rows.
        recent_rows: How many newest rows ``alarm_now`` looked at.
    """

    train: pd.DataFrame
    total: int
    excluded: dict[str, int] = field(default_factory=dict)
    confirmed_normal: int = 0
    episodes: list[pd.DataFrame] = field(default_factory=list)
    mode: str = "in_control"
    carried: int = 0
    through: int = -1
    alarm_now: bool = False
    recent_rows: int = 0

    @property
    def summary(self) -> str:
        """One line for decisions and the status."""
        parts = [f"{n} {reason.replace('_', ' ')}" for reason, n in self.excluded.items() if n]
        left_out = f"; left out {', '.join(parts)}" if parts else ""
        confirmed = (
            f"; {self.confirmed_normal} confirmed normal by a person"
            if self.confirmed_normal
            else ""
        )
        carried = f" after {self.carried} of the champion's training rows" if self.carried else ""
        new = len(self.train) - self.carried
        return f"{new} of {self.total} window rows ({self.mode}){carried}{left_out}{confirmed}"

    def to_dict(self) -> dict[str, Any]:
        """Return the selection's counts as a JSON-ready dict."""
        return {
            "mode": self.mode,
            "rows": self.total,
            "train_rows": len(self.train),
            "carried_rows": self.carried,
            "excluded": dict(self.excluded),
            "confirmed_normal": self.confirmed_normal,
            "alarm_episodes": len(self.episodes),
            "alarm_now": self.alarm_now,
            "summary": self.summary,
        }


def alarm_episodes(flags: np.ndarray, rule: AlarmEpisode) -> np.ndarray:
    """Return True for every row inside an alarm episode (see :class:`AlarmEpisode`).

    A row whose centred window of ``rule.rows`` rows holds at least ``rule.share`` flagged rows
    is dense; the episode is every window around a dense row, so it covers the alarms that
    made it.
    """
    flags = np.asarray(flags, dtype=bool)
    if flags.size == 0 or not flags.any():
        return np.zeros(flags.size, dtype=bool)
    rolling = pd.Series(flags.astype(float)).rolling(rule.rows, center=True, min_periods=1)
    dense = pd.Series((rolling.mean() >= rule.share).astype(float))
    covered = dense.rolling(rule.rows, center=True, min_periods=1).max()
    return np.asarray(covered.to_numpy() > 0, dtype=bool)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True values."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def comparable_rows(
    snapshot: WindowSnapshot, *, mode: WindowRows, rule: AlarmEpisode, after: int = -1
) -> np.ndarray:
    """Rows fit to compare champion and challenger on, per row of the window.

    The new rows :func:`select_rows` would keep were the serving model's verdict on each row
    ignored: outside alarm episodes and not labelled a fault (``in_control``), or not labelled
    a fault (``all``). Rows the champion flagged on their own stay in, so the comparison is
    not tilted towards the champion by its own verdicts.
    """
    new = snapshot.seq > after
    fault = snapshot.labels == "fault"
    if mode == "in_control":
        normal = snapshot.labels == "normal"
        episode = alarm_episodes(snapshot.flags, rule)
        return np.asarray(((~episode & ~fault) | normal) & new, dtype=bool)
    return np.asarray(~fault & new, dtype=bool)


def select_rows(
    snapshot: WindowSnapshot,
    *,
    mode: WindowRows,
    rule: AlarmEpisode,
    whole_units: Callable[[pd.DataFrame, np.ndarray], np.ndarray] | None = None,
    after: int = -1,
    held_out: np.ndarray | None = None,
) -> Selection:
    """Choose the challenger's training rows from the window (see the module docstring).

    Args:
        snapshot: The window.
        mode: ``in_control`` or ``all``.
        rule: When flagged rows form an alarm episode.
        whole_units: Widens a keep-mask so units are kept whole (process mining keeps or drops
            a case with all its events); ``None`` keeps rows as they are.
        after: Only rows with a higher sequence number are new (the champion learnt the rest);
            older rows still count for alarm episodes.
        held_out: Rows kept out of training to compare the models on (see
            :mod:`observml.retraining.holdout`).
    """
    frame, flags, labels = snapshot.frame, snapshot.flags, snapshot.labels
    new = snapshot.seq > after
    normal = labels == "normal"
    fault = labels == "fault"
    episode = alarm_episodes(flags, rule)
    if mode == "in_control":
        keep = ((~flags & ~episode & ~fault) | normal) & new
        excluded = {
            "flagged": int(np.sum(flags & ~normal & ~fault & new)),
            "alarm_episode": int(np.sum(episode & ~flags & ~normal & ~fault & new)),
            "labelled_fault": int(np.sum(fault & new)),
        }
    else:
        keep = ~fault & new
        excluded = {"labelled_fault": int(np.sum(fault & new))}
    if after >= 0:
        excluded["learnt_already"] = int(np.sum(~new))
    if whole_units is not None and len(frame):
        keep = np.asarray(whole_units(frame, keep), dtype=bool)
    if held_out is not None:
        keep = keep & ~held_out
    recent = min(len(frame), 4 * rule.rows)
    alarm_now = bool(np.any((episode & ~normal & ~fault)[len(frame) - recent :]))
    provisional = [
        frame.iloc[a:b][~normal[a:b] & ~fault[a:b]]
        for a, b in _runs(episode)
        if np.any(~normal[a:b] & ~fault[a:b])
    ]
    return Selection(
        train=frame[keep].reset_index(drop=True),
        total=len(frame),
        excluded=excluded,
        confirmed_normal=int(np.sum(normal & keep)),
        episodes=[e.reset_index(drop=True) for e in provisional],
        mode=mode,
        through=int(snapshot.seq.max()) if len(snapshot.seq) else -1,
        alarm_now=alarm_now,
        recent_rows=recent,
    )
