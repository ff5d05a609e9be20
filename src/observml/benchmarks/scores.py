"""Scores of alarm series: pooled confusion counts (F1, FAR, MAR) and the NAB score.

**Confusion counts** are summed over every file before any ratio is taken (SKAB's pooling):
``F1 = TP / (TP + (FN + FP) / 2)``, ``FAR = FP / (FP + TN)``, ``MAR = FN / (FN + TP)``.

**NAB** (Numenta Anomaly Benchmark; Lavin & Ahmad, "Evaluating Real-time Anomaly Detection
Algorithms - the Numenta Anomaly Benchmark", ICMLA 2015, and NAB's ``sweeper.py``): each labelled
event has a window of rows; only the first detection in a window counts, worth
``A_TP * sigma(y)`` where ``y = -(right - i + 1) / width`` is its place in the window (-1 at the
start) and ``sigma(y) = 2 / (1 + exp(5 y)) - 1``; a window without a detection costs ``A_FN``
(< 0); a detection outside every window scores ``|A_FP| * sigma(y)`` (<= 0), ``y`` being its
distance after the previous window's end in window widths (the full ``A_FP`` before the first
window), so an alarm just late is nearly free and one far away costs the full ``|A_FP|``.
Raw scores are summed over files and normalised: ``100 * (S - S_null) / (S_perfect - S_null)``,
where the null detector never alarms and the perfect one alarms at the start of every window.
Standard profile: ``A_TP = 1``, ``A_FP = -0.11``, ``A_FN = -1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "STANDARD_PROFILE",
    "Confusion",
    "NabProfile",
    "NabScore",
    "nab_raw",
    "nab_score",
    "scaled_sigmoid",
]


@dataclass(frozen=True)
class Confusion:
    """Confusion counts of boolean alarms against boolean labels (add them to pool files)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, actual: np.ndarray, alarm: np.ndarray) -> Confusion:
        """Count ``alarm`` against ``actual`` (both boolean, same length)."""
        actual, alarm = np.asarray(actual, dtype=bool), np.asarray(alarm, dtype=bool)
        if actual.shape != alarm.shape:
            raise ValueError(f"labels {actual.shape} and alarms {alarm.shape} differ in length")
        return cls(
            tp=int(np.sum(actual & alarm)),
            fp=int(np.sum(~actual & alarm)),
            fn=int(np.sum(actual & ~alarm)),
            tn=int(np.sum(~actual & ~alarm)),
        )

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def f1(self) -> float:
        """``TP / (TP + (FN + FP) / 2)`` (0 when there is nothing to find nor flag)."""
        denominator = self.tp + (self.fn + self.fp) / 2
        return self.tp / denominator if denominator else 0.0

    @property
    def far(self) -> float:
        """False alarm rate ``FP / (FP + TN)`` as a fraction."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed alarm rate ``FN / (FN + TP)`` as a fraction."""
        return self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0


@dataclass(frozen=True)
class NabProfile:
    """NAB's application profile: the weight of a true positive, false positive, false negative."""

    a_tp: float = 1.0
    a_fp: float = -0.11
    a_fn: float = -1.0


#: NAB's "standard" profile.
STANDARD_PROFILE = NabProfile()


@dataclass(frozen=True)
class NabScore:
    """Raw NAB score of one or more files with the null and perfect detectors' scores."""

    raw: float = 0.0
    null: float = 0.0
    perfect: float = 0.0

    def __add__(self, other: NabScore) -> NabScore:
        return NabScore(self.raw + other.raw, self.null + other.null, self.perfect + other.perfect)

    @property
    def normalised(self) -> float:
        """``100 * (raw - null) / (perfect - null)`` (0 when there are no windows)."""
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else 0.0


def scaled_sigmoid(y: float) -> float:
    """NAB's ``2 / (1 + exp(5 y)) - 1``, and -1 beyond ``y > 3`` (as NAB's code)."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def nab_raw(
    detections: np.ndarray,
    windows: Sequence[tuple[int, int]],
    profile: NabProfile = STANDARD_PROFILE,
) -> NabScore:
    """Score boolean ``detections`` per row against event ``windows`` of row positions.

    Args:
        detections: One boolean per row (True = the detector reports an event there).
        windows: ``(first, last)`` row positions of each event window, inclusive, sorted and
            not overlapping.
        profile: The weights.

    Returns:
        The raw score with the null and perfect detectors' scores of the same windows.
    """
    hits = np.flatnonzero(np.asarray(detections, dtype=bool))
    ordered = sorted(windows)
    for (_, last), (first, _) in zip(ordered, ordered[1:], strict=False):
        if first <= last:
            raise ValueError(
                f"NAB windows overlap: one ends at row {last}, the next starts at {first}"
            )
    score = 0.0
    detected: set[int] = set()
    for i in hits:
        inside = _window_of(int(i), ordered)
        if inside is not None:
            if inside in detected:
                continue  # only the first detection in a window counts
            detected.add(inside)
            first, last = ordered[inside]
            width = last - first + 1
            score += profile.a_tp * scaled_sigmoid(-(last - int(i) + 1) / width)
        else:
            before = [w for w in ordered if w[1] < i]
            if not before:
                score += profile.a_fp  # before the first window: the full cost
            else:
                first, last = before[-1]
                width = last - first + 1
                position = abs(last - int(i)) / max(width - 1, 1)
                score += -profile.a_fp * scaled_sigmoid(position)
    score += profile.a_fn * (len(ordered) - len(detected))
    perfect = sum(
        profile.a_tp * scaled_sigmoid(-(last - first + 1) / (last - first + 1))
        for first, last in ordered
    )
    return NabScore(raw=score, null=profile.a_fn * len(ordered), perfect=perfect)


def nab_score(parts: Iterable[NabScore]) -> float:
    """Pool per-file raw scores and return the normalised NAB score (0..100 scale)."""
    total = NabScore()
    for part in parts:
        total = total + part
    return total.normalised


def _window_of(i: int, windows: Sequence[tuple[int, int]]) -> int | None:
    for index, (first, last) in enumerate(windows):
        if first <= i <= last:
            return index
    return None
