"""Pooled confusion scores and the NAB score on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from observml.benchmarks.scores import Confusion, NabScore, nab_raw, nab_score, scaled_sigmoid


def test_confusion_is_pooled_before_the_ratios() -> None:
    # file a: 3 anomalous rows, 2 found; 5 normal rows, 1 flagged
    a = Confusion.of(
        np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool),
        np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=bool),
    )
    # file b: 1 anomalous row missed, 1 normal row flagged
    b = Confusion.of(np.array([1, 0], dtype=bool), np.array([0, 1], dtype=bool))
    assert a == Confusion(tp=2, fp=1, fn=1, tn=4)
    pooled = a + b
    assert pooled == Confusion(tp=2, fp=2, fn=2, tn=4)
    assert pooled.f1 == pytest.approx(2 / (2 + (2 + 2) / 2))  # 0.5
    assert pooled.far == pytest.approx(2 / 6)
    assert pooled.mar == pytest.approx(2 / 4)
    # the mean of per-file F1s would differ: pooling is what SKAB does
    assert (a.f1 + b.f1) / 2 != pytest.approx(pooled.f1)


def test_confusion_refuses_different_lengths() -> None:
    with pytest.raises(ValueError, match=r"differ in length"):
        Confusion.of(np.zeros(3, dtype=bool), np.zeros(4, dtype=bool))


def test_scaled_sigmoid_values() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(3.5) == -1.0


def _rows(n: int, *hits: int) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[list(hits)] = True
    return flags


def test_nab_detection_at_the_window_start_is_perfect() -> None:
    score = nab_raw(_rows(50, 10), [(10, 19)])
    # y = -(19 - 10 + 1) / 10 = -1: sigma(-1) = 0.986614...
    assert score.raw == pytest.approx(0.9866142981514305)
    assert score.null == -1.0
    assert score.perfect == pytest.approx(0.9866142981514305)
    assert score.normalised == pytest.approx(100.0)


def test_nab_late_detection_and_only_the_first_counts() -> None:
    score = nab_raw(_rows(50, 19, 15), [(10, 19)])
    # first detection is row 15: y = -(19 - 15 + 1) / 10 = -0.5; 2 / (1 + e^-2.5) - 1
    assert score.raw == pytest.approx(2 / (1 + math.exp(-2.5)) - 1)  # 0.848284
    assert score.raw == pytest.approx(0.8482836399575129)


def test_nab_missed_window_and_false_positives() -> None:
    # window rows 10..19 missed; FP at row 2 (before any window): the full A_FP = -0.11;
    # FP at row 20 (just after): y = |19 - 20| / (10 - 1) = 1/9, 0.11 * sigma(1/9);
    # FP at row 49: y = 30 / 9 > 3, so -0.11
    score = nab_raw(_rows(50, 2, 20, 49), [(10, 19)])
    just_after = 0.11 * (2 / (1 + math.exp(5 / 9)) - 1)  # 0.11 * -0.270848
    assert just_after == pytest.approx(-0.0297932, abs=1e-6)
    assert score.raw == pytest.approx(-1.0 - 0.11 + just_after - 0.11)
    assert score.normalised == pytest.approx(100 * (score.raw + 1) / (0.9866142981514305 + 1))


def test_nab_pools_files_before_normalising() -> None:
    perfect = nab_raw(_rows(30, 0), [(0, 9)])
    missed = nab_raw(_rows(30), [(0, 9)])
    assert missed.normalised == pytest.approx(0.0)
    assert nab_score([perfect, missed]) == pytest.approx(50.0)
    assert nab_score([]) == 0.0
    assert (perfect + missed) == NabScore(perfect.raw - 1, -2.0, 2 * perfect.perfect)


def test_nab_refuses_overlapping_windows() -> None:
    with pytest.raises(ValueError, match=r"NAB windows overlap"):
        nab_raw(_rows(30), [(0, 10), (10, 20)])
