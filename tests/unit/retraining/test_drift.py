"""The drift test on the scores: config, the KS monitor, and each type's scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import datasets
from observml.errors import ConfigError, DataError
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.experiments.fault_isolation import FaultIsolationExperiment
from observml.experiments.process_mining import ProcessMiningExperiment
from observml.experiments.time_series import TimeSeriesExperiment
from observml.retraining.drift import DriftMonitor, DriftTest, ScoreSample
from observml.retraining.tracker import RetrainTracker
from observml.store.folders import load_folder, save_folder

COLUMNS = ["temp", "pressure", "flow"]


def sensors(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(shift, 1.0, size=(n, 3)), columns=COLUMNS)


def tracker(experiment: FaultDetectionExperiment) -> RetrainTracker:
    return RetrainTracker(experiment.retrain_policy, experiment.validate_config().metric)


def detector(model: str = "iforest", **drift: Any) -> FaultDetectionExperiment:
    return FaultDetectionExperiment(
        "pump",
        {"create_model": {"model": model}, "retrain": {"drift": drift or True, "min_samples": 0}},
    )


# -- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ({"p_value": 1.5}, r"retrain.drift.p_value: expected a value between 0 and 1"),
        ({"p_value": 0}, r"retrain.drift.p_value: expected a value between 0 and 1"),
        ({"min_statistic": -0.1}, r"retrain.drift.min_statistic: expected a value from 0 to 1"),
        ({"window": 5}, r"retrain.drift.window: expected at least 20 scores"),
        ({"reference_size": 3}, r"retrain.drift.reference_size: expected at least 20 rows"),
        ({"reference": "past"}, r"retrain.drift.reference: expected one of auto, training, stream"),
        ({"windwo": 100}, r"retrain.drift.windwo: unknown key. DriftTest accepts: p_value,"),
        ({"window": "many"}, r"retrain.drift.window: expected an integer"),
        ("ks", r"retrain.drift: expected a mapping \(or true for the defaults\)"),
    ],
)
def test_bad_drift_blocks_name_the_key(drift: Any, message: str) -> None:
    experiment = FaultDetectionExperiment("pump", {"retrain": {"drift": drift}})
    with pytest.raises(ConfigError, match=message):
        experiment.validate_config()


def test_drift_true_takes_the_defaults_and_false_switches_it_off() -> None:
    on = FaultDetectionExperiment("pump", {"retrain": {"drift": True}}).validate_config()
    assert on.retrain.drift == DriftTest()
    off = FaultDetectionExperiment("pump", {"retrain": {"drift": False}}).validate_config()
    assert off.retrain.drift is None
    env = FaultDetectionExperiment(
        "pump", {"retrain": {"drift": {"window": "300", "p_value": "0.001"}}}
    ).validate_config()
    assert env.retrain.drift == DriftTest(window=300, p_value=0.001)  # ${VAR} strings converted


# -- the monitor --------------------------------------------------------------------------------
def sample(values: np.ndarray, reference: np.ndarray | None = None, model: Any = 1) -> ScoreSample:
    return ScoreSample(values, reference, model)


def test_same_distribution_does_not_drift_shifted_does() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 1000)
    monitor = DriftMonitor(DriftTest(window=200))
    results = [monitor.add(sample(rng.normal(0, 1, 50), reference)) for _ in range(40)]
    tested = [r for r in results if r is not None]
    assert len(tested) == 10  # one test per full window of 200, windows do not overlap
    assert not any(r.drifted for r in tested)
    for _ in range(3):
        result = monitor.add(sample(rng.normal(0.8, 1, 50), reference))
    result = monitor.add(sample(rng.normal(0.8, 1, 50), reference))
    assert result is not None
    assert result.drifted
    assert result.statistic >= 0.1
    assert result.p_value < 0.01
    assert result.n_recent == 200
    assert result.n_reference == 1000
    assert result.reason.startswith("drift in the scores: KS statistic")
    assert "200 streamed vs 1000 training scores" in result.reason
    assert monitor.last is result


def test_min_statistic_ignores_a_significant_but_tiny_shift() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(0, 1, 50_000)
    strict = DriftMonitor(DriftTest(window=50_000, min_statistic=0.1))
    loose = DriftMonitor(DriftTest(window=50_000, min_statistic=0.0))
    recent = rng.normal(0.05, 1, 50_000)  # p far below 0.01, statistic ~0.02
    a, b = strict.add(sample(recent, reference)), loose.add(sample(recent, reference))
    assert a is not None
    assert b is not None
    assert a.p_value < 0.01
    assert a.statistic < 0.1
    assert not a.drifted
    assert b.drifted


def test_stream_reference_fills_first_and_a_new_champion_starts_over() -> None:
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(DriftTest(window=100, reference="stream"))
    assert monitor.add(sample(rng.normal(0, 1, 100), rng.normal(5, 1, 500))) is None  # fills
    result = monitor.add(sample(rng.normal(0, 1, 100)))
    assert result is not None
    assert not result.drifted
    assert result.reference == "stream"
    # version 2 goes live: its first window is its reference, not a test against version 1
    assert monitor.add(sample(rng.normal(3, 1, 100), model=2)) is None
    assert monitor.last is None
    result = monitor.add(sample(rng.normal(3, 1, 100), model=2))
    assert result is not None
    assert not result.drifted


def test_missing_training_reference_falls_back_to_the_stream() -> None:
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(DriftTest(window=100, reference="training"))
    assert monitor.add(sample(rng.normal(0, 1, 100), None)) is None
    result = monitor.add(sample(rng.normal(2, 1, 100), None))
    assert result is not None
    assert result.drifted
    assert result.reference == "stream"


def test_non_finite_scores_are_dropped_and_reset_empties_the_window() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 1, 500)
    monitor = DriftMonitor(DriftTest(window=100))
    values = np.concatenate([rng.normal(0, 1, 60), [np.nan, np.inf, -np.inf]])
    assert monitor.add(sample(values, reference)) is None
    monitor.reset()
    assert monitor.add(sample(rng.normal(0, 1, 60), reference)) is None  # 60 < 100 again
    result = monitor.add(sample(rng.normal(0, 1, 40), reference))
    assert result is not None
    assert result.n_recent == 100


# -- the retrain policy -------------------------------------------------------------------------
def test_policy_fires_on_drift_alone_and_reports_the_test() -> None:
    experiment = detector(window=200).train(sensors(1000))
    assert experiment.reference_scores_ is not None
    assert len(experiment.reference_scores_) == 1000
    policy = tracker(experiment)
    quiet = experiment.predict(sensors(200, seed=1))
    decision = policy.decide({}, n_samples=200, scores=experiment.score_sample(quiet, model=1))
    assert not decision.fire
    assert decision.reason.startswith("no drift in the scores")
    moved = experiment.predict(sensors(200, shift=1.0, seed=2))
    decision = policy.decide({}, n_samples=200, scores=experiment.score_sample(moved, model=1))
    assert decision.fire
    assert decision.retrain
    assert decision.reason.startswith("drift in the scores")
    assert policy.drift_status()["drifted"] is True  # type: ignore[index]


def test_either_signal_fires_and_both_reasons_are_given_when_neither_does() -> None:
    experiment = FaultDetectionExperiment(
        "pump",
        {"retrain": {"metric": "anomaly_rate", "threshold": 0.5, "drift": {"window": 100}}},
    ).train(sensors(500))
    policy = tracker(experiment)
    quiet = experiment.predict(sensors(100, seed=1))
    decision = policy.decide(
        {"anomaly_rate": 0.6}, n_samples=100, scores=experiment.score_sample(quiet)
    )
    assert decision.fire
    assert decision.reason.startswith("anomaly_rate value 0.6 > threshold")
    policy.mark_started()
    policy.mark_finished()
    decision = policy.decide(
        {"anomaly_rate": 0.1}, n_samples=100, scores=experiment.score_sample(quiet)
    )
    assert not decision.fire
    assert "within threshold" in decision.reason
    assert "no drift in the scores" in decision.reason


def test_reference_auto_uses_the_stream_for_models_scored_in_sample() -> None:
    assert detector("lof").train(sensors(300)).reference_scores_ is None
    assert detector("iforest").train(sensors(300)).reference_scores_ is not None
    forced = detector("lof", reference="training").train(sensors(300))
    assert forced.reference_scores_ is not None
    no_drift = FaultDetectionExperiment("pump", {}).train(sensors(300))
    assert no_drift.reference_scores_ is None


def test_reference_survives_save_and_load(tmp_path: Any) -> None:
    experiment = detector(window=100).train(sensors(400))
    loaded = load_folder(save_folder(experiment, tmp_path / "pump"))
    np.testing.assert_array_equal(loaded.reference_scores_, experiment.reference_scores_)


# -- what each type tests ------------------------------------------------------------------------
def test_drift_column_picks_a_result_column_and_says_when_it_is_missing() -> None:
    experiment = detector(column="spe", model="pca").train(sensors(300))
    result = experiment.predict(sensors(20, seed=1))
    np.testing.assert_array_equal(experiment.drift_scores(result), result["spe"])
    with pytest.raises(
        DataError, match=r"retrain.drift.column 'nope' is not a prediction column \(score, anomaly"
    ):
        detector(column="nope").train(sensors(300))  # found when the reference is taken


def test_fault_isolation_tests_the_top_class_probability() -> None:
    table = datasets.fault_table(600)
    experiment = FaultIsolationExperiment(
        "line",
        {
            "setup": {"target": "fault", "datetime_column": "ds"},
            "create_model": {"model": "naive_bayes"},
            "retrain": {"drift": True},
        },
    ).train(table)
    result = experiment.predict(table.drop(columns="fault").iloc[:50])
    proba = result.filter(like="proba_").to_numpy()
    np.testing.assert_allclose(experiment.drift_scores(result), proba.max(axis=1))
    assert experiment.reference_scores_ is not None
    assert len(experiment.reference_scores_) == 600


def test_time_series_tests_the_standardized_residual() -> None:
    series = datasets.seasonal_series(24 * 30, n_anomalies=0)
    experiment = TimeSeriesExperiment(
        "boiler",
        {
            "setup": {"target": "y", "datetime_column": "ds"},
            "create_model": {"model": "exponential_smoothing"},
            "retrain": {"drift": {"reference_size": 200}},
        },
    ).train(series.iloc[: 24 * 25])
    reference = experiment.reference_scores_
    assert reference is not None
    assert len(reference) == 200
    assert abs(float(np.nanmean(reference))) < 0.5
    assert 0.5 < float(np.nanstd(reference)) < 2
    result = experiment.predict(series.iloc[24 * 25 :])
    scores = experiment.drift_scores(result)
    std = (result["upper"] - result["forecast"]) / experiment.z_
    np.testing.assert_allclose(scores, (result["actual"] - result["forecast"]) / std)


def test_process_mining_tests_case_fitness() -> None:
    log = datasets.event_log(200, deviation_rate=0.1).drop(columns="deviant")
    experiment = ProcessMiningExperiment(
        "line",
        {
            "create_model": {"model": "heuristics_miner"},
            "retrain": {"drift": {"reference_size": 50}},
        },
    ).train(log)
    assert experiment.reference_scores_ is not None
    assert len(experiment.reference_scores_) == 50
    result = experiment.predict(datasets.event_log(20, seed=1).drop(columns="deviant"))
    np.testing.assert_array_equal(experiment.drift_scores(result), result["fitness"])
