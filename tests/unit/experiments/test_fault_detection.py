"""Every fault-detection model trains, predicts, scores, saves and loads (synthetic data)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml.errors import ConfigError, DataError
from observml.experiments.fault_detection import MODELS, FaultDetectionExperiment
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.store.experiments import load_experiment_from_store, save_experiment

SENSORS = [f"sensor_{j:02d}" for j in range(5)]


def config(model: str, **params: Any) -> dict[str, Any]:
    return {
        "setup": {"datetime_column": "ds", "target": "fault"},
        "create_model": {"model": model, "params": params},
    }


#: The models tested here; the deep extra's window_ae is in test_deep.py, on real data.
TESTED = [m for m, spec in MODELS.items() if spec.extra != "deep"]


@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in TESTED])
def test_every_model_round_trip(model: str, pump: pd.DataFrame, mlops: InMemoryMLOpsPlugin) -> None:
    train, test = pump.iloc[:200], pump.iloc[200:]
    experiment = FaultDetectionExperiment(f"fd_{model}", config(model)).train(train)
    assert experiment.features_ == SENSORS  # label, fault_type and ds are not features

    result = experiment.predict(test)
    assert len(result) == len(test)
    assert result.index.equals(test.index)
    assert result["anomaly"].dtype == bool
    assert (result["anomaly"] == (result["score"] > experiment.threshold_)).all()
    assert result["ds"].tolist() == test["ds"].tolist()

    # the faults (step of 30 on two sensors, big spikes) score higher than normal rows
    faulty = test["fault_type"].isin(["step", "spike"]).to_numpy()
    assert result["score"][faulty].mean() > result["score"][~faulty].mean()
    assert result["anomaly"][faulty].mean() > 0.5

    metrics = experiment.score(test)
    assert {"anomaly_rate", "mean_score", "precision", "recall", "f1", "accuracy"} <= set(metrics)
    assert metrics["anomaly_rate"] == pytest.approx(result["anomaly"].mean())

    assert set(experiment.reports()) == set(experiment.plot_names())
    run = mlops.start_run(mlops.create_experiment(experiment.name))
    version = save_experiment(mlops, experiment, run_id=run, alias="champion")
    assert version.name == experiment.name
    loaded = load_experiment_from_store(mlops, experiment.name)
    pd.testing.assert_frame_equal(loaded.predict(test), result)


def test_pca_statistics_and_contributions(pump: pd.DataFrame) -> None:
    experiment = FaultDetectionExperiment("pca", config("pca", n_components=2)).train(
        pump.iloc[:200]
    )
    result = experiment.predict(pump.iloc[200:])
    contributions = result[[f"contribution_{s}" for s in SENSORS]]
    detector = experiment.detector_
    expected = result["t2"] / detector.t2_limit_ + result["spe"] / detector.spe_limit_
    np.testing.assert_allclose(contributions.sum(axis=1), expected, rtol=1e-8)
    assert experiment.threshold_ == 1.0
    step = pump.iloc[200:]["fault_type"].eq("step").to_numpy()
    # the step moved sensor_01 and sensor_02: they carry the largest contributions
    top = contributions[step].mean().nlargest(2).index
    assert set(top) == {"contribution_sensor_01", "contribution_sensor_02"}
    assert experiment.plot_names() == ["scores", "control_chart", "contributions"]


def test_contamination_sets_training_anomaly_share(pump: pd.DataFrame) -> None:
    train = pump.iloc[:200]
    experiment = FaultDetectionExperiment("x", config("iforest", contamination=0.1)).train(train)
    assert experiment.predict(train)["anomaly"].mean() == pytest.approx(0.1, abs=0.02)


def test_dbscan_estimates_eps(pump: pd.DataFrame) -> None:
    experiment = FaultDetectionExperiment("x", config("dbscan")).train(pump.iloc[:200])
    assert experiment.detector_.eps_ > 0
    explicit = FaultDetectionExperiment("y", config("dbscan", eps=2.5)).train(pump.iloc[:200])
    assert explicit.detector_.eps_ == 2.5


def test_scores_without_labels(pump: pd.DataFrame) -> None:
    experiment = FaultDetectionExperiment("x", config("pca")).train(pump.iloc[:200])
    metrics = experiment.score(pump.iloc[200:].drop(columns=["fault"]))
    assert set(metrics) == {"anomaly_rate", "mean_score", "n_samples"}


def test_string_labels_with_normal_label(pump: pd.DataFrame) -> None:
    cfg = {
        "setup": {"target": "fault_type", "normal_label": "normal"},
        "create_model": {"model": "pca"},
    }
    experiment = FaultDetectionExperiment("x", cfg).train(pump.iloc[:200].drop(columns="fault"))
    metrics = experiment.score(pump.iloc[200:].drop(columns="fault"))
    assert metrics["fault_rate"] == pytest.approx((pump.iloc[200:]["fault"] == 1).mean())
    assert metrics["recall"] > 0.5


def test_bad_params_are_config_errors() -> None:
    with pytest.raises(
        ConfigError,
        match=r"params.n_trees: not a parameter of 'iforest'. Accepted: contamination, n_est",
    ):
        FaultDetectionExperiment("x", config("iforest", n_trees=3)).validate_config()
    with pytest.raises(ConfigError, match=r"params.novelty: not a parameter of 'lof'"):
        FaultDetectionExperiment("x", config("lof", novelty=False)).validate_config()


def test_bad_param_values_are_config_errors_before_training() -> None:
    with pytest.raises(
        ConfigError,
        match=r"create_model.params.contamination: The 'contamination' parameter of"
        r" SklearnDetector must be a float in the range \(0.0, 0.5\) or None. Got 0.9",
    ):
        FaultDetectionExperiment("x", config("iforest", contamination=0.9)).validate_config()
    with pytest.raises(
        ConfigError, match=r"create_model.params.n_components: The 'n_components' parameter of PCA"
    ):
        FaultDetectionExperiment("x", config("pca", n_components="abc")).validate_config()


def test_param_values_that_only_the_data_refutes_are_data_errors(pump: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"pca could not be fitted on 200 rows x 5 features"):
        FaultDetectionExperiment("x", config("pca", n_components=50)).train(pump.iloc[:200])


def test_eda_reports(pump: pd.DataFrame) -> None:
    cfg = {**config("iforest"), "eda": True}
    experiment = FaultDetectionExperiment("x", cfg).train(pump.iloc[:200])
    names = experiment.plot_names()
    assert names[:2] == ["scores", "control_chart"]
    assert "histogram_sensor_00" in names
    assert names[-1] == "correlation"
