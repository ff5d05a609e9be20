"""The gate: a blind challenger fails it, a sound one passes, labelled types compare a metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.experiments.fault_isolation import FaultIsolationExperiment
from observml.retraining.gate import (
    Episode,
    compare_on_holdout,
    flag_rate,
    gate_unsupervised,
)
from observml.retraining.policy import GateSettings

COLUMNS = ["temp", "pressure", "flow"]


def sensors(n: int, *, shift: float = 0.0, seed: int = 0, spread: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(shift, spread, size=(n, 3)), columns=COLUMNS)


def pca(data: pd.DataFrame) -> FaultDetectionExperiment:
    return FaultDetectionExperiment("pump", {"create_model": {"model": "pca"}}).train(data)


@pytest.fixture(scope="module")
def champion() -> FaultDetectionExperiment:
    return pca(sensors(1000))


def test_a_challenger_that_learnt_the_fault_misses_it_and_fails(
    champion: FaultDetectionExperiment,
) -> None:
    fault = sensors(200, shift=5.0, seed=1)
    blind = pca(pd.concat([sensors(800, seed=2), fault], ignore_index=True))
    result = gate_unsupervised(
        champion,
        blind,
        normal=sensors(500, seed=3),
        faults=[Episode(fault, "labelled 2026-11-30 08:00 (cavitation)")],
        settings=GateSettings(),
    )
    assert not result.passed
    failed = [c for c in result.checks if not c.passed]
    assert [c.name for c in failed] == ["fault_1"]
    assert failed[0].champion == 1.0
    assert failed[0].challenger < 0.5
    assert "fault labelled 2026-11-30 08:00 (cavitation) (200 rows)" in result.reason
    assert result.metrics()["gate_fault_1_champion"] == 1.0


def test_a_sound_challenger_passes_both_checks(champion: FaultDetectionExperiment) -> None:
    sound = pca(sensors(1000, seed=4))
    result = gate_unsupervised(
        champion,
        sound,
        normal=sensors(500, seed=3),
        faults=[Episode(sensors(100, shift=5.0, seed=5), "library")],
        settings=GateSettings(),
    )
    assert result.passed, result.reason
    assert result.reason.startswith("gate passed: false alarms on 500 normal reference rows")
    assert [c.name for c in result.checks] == ["false_alarms", "fault_1"]


def test_a_challenger_with_more_false_alarms_fails_the_margin(
    champion: FaultDetectionExperiment,
) -> None:
    narrow = pca(sensors(1000, seed=6, spread=0.3))
    normal = sensors(500, seed=3)
    result = gate_unsupervised(champion, narrow, normal=normal, faults=[], settings=GateSettings())
    assert not result.passed
    assert "above" in result.checks[0].detail
    assert result.checks[0].limit == pytest.approx(flag_rate(champion, normal) + 0.02)
    fixed = gate_unsupervised(
        champion, narrow, normal=normal, faults=[], settings=GateSettings(max_false_alarm=1.0)
    )
    assert fixed.passed
    assert "(retrain.gate.max_false_alarm)" in fixed.reason


def test_labelled_types_compare_the_metric_on_rows_neither_trained_on() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (600, 2))
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(label=np.where(x[:, 0] > 0, "hot", "ok"))
    config = {"setup": {"target": "label"}, "create_model": {"model": "decision_tree"}}
    good = FaultIsolationExperiment("line", config).train(frame.iloc[:400])
    flipped = frame.iloc[:400].assign(label=np.where(x[:400, 0] > 0, "ok", "hot"))
    bad = FaultIsolationExperiment("line", config).train(flipped)
    result = compare_on_holdout(good, bad, frame.iloc[400:], metric="accuracy", higher_better=True)
    assert not result.passed
    assert "on 200 holdout rows neither trained on: worse" in result.reason
    assert compare_on_holdout(
        None, bad, frame.iloc[400:], metric="accuracy", higher_better=True
    ).passed
