"""Saving experiments to, and loading them from, the in-memory MLOps plugin."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from observml.errors import NotFoundError
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.store.experiments import load_experiment_from_store, save_experiment

CONFIG = {"setup": {"datetime_column": "ds"}, "create_model": {"model": "pca"}, "eda": True}


def trained(pump: pd.DataFrame, name: str = "pump") -> FaultDetectionExperiment:
    return FaultDetectionExperiment(name, CONFIG).train(pump.iloc[:200])


def save(mlops: InMemoryMLOpsPlugin, experiment: FaultDetectionExperiment, alias: str | None):
    run_id = mlops.start_run(mlops.create_experiment(experiment.name))
    return run_id, save_experiment(mlops, experiment, run_id=run_id, alias=alias)


def test_save_registers_a_version_named_after_the_experiment(
    pump: pd.DataFrame, mlops: InMemoryMLOpsPlugin
) -> None:
    experiment = trained(pump)
    experiment.score(pump.iloc[200:])
    run_id, version = save(mlops, experiment, "champion")
    assert (version.name, version.version, version.run_id) == ("pump", 1, run_id)
    assert "champion" in version.aliases
    files = mlops.list_artifacts(run_id, "model")
    expected = {
        "config.yaml",
        "metrics.json",
        "state.json",
        "signature.json",
        "parts/detector_.skops",
    }
    assert {f"model/{name}" for name in expected} <= set(files)
    assert "model/model.pkl" not in files  # nothing of a scikit-learn detector needs a pickle
    reports = {
        f.removeprefix("model/reports/").removesuffix(".json") for f in files if "/reports/" in f
    }
    assert reports == set(experiment.plot_names())
    run = mlops.get_run(run_id)
    assert run.metrics["anomaly_rate"] == experiment.metrics_["anomaly_rate"]
    assert run.params["model"] == "pca"
    assert run.params["param.n_components"] == "0.9"


def test_load_by_alias_version_and_run(pump: pd.DataFrame, mlops: InMemoryMLOpsPlugin) -> None:
    first = trained(pump)
    run_1, _ = save(mlops, first, "champion")
    second = FaultDetectionExperiment("pump", {**CONFIG, "create_model": {"model": "iforest"}})
    second.train(pump.iloc[:200])
    run_2, _ = save(mlops, second, "challenger")
    test = pump.iloc[200:]
    expected_1, expected_2 = first.predict(test), second.predict(test)

    pd.testing.assert_frame_equal(
        load_experiment_from_store(mlops, "pump").predict(test), expected_1
    )
    challenger = load_experiment_from_store(mlops, "pump", alias="challenger")
    pd.testing.assert_frame_equal(challenger.predict(test), expected_2)
    by_version = load_experiment_from_store(mlops, "pump", version=2)
    assert by_version.model_name == "iforest"
    by_run = load_experiment_from_store(mlops, "pump", run_id=run_1)
    assert by_run.model_name == "pca"
    assert by_run.name == "pump"
    assert json.loads(by_run.reports()["scores"].to_json())["layout"]["title"]["text"].startswith(
        "pump"
    )


def test_missing_alias_is_not_found(pump: pd.DataFrame, mlops: InMemoryMLOpsPlugin) -> None:
    save(mlops, trained(pump), None)
    with pytest.raises(NotFoundError, match="alias 'champion' is not set"):
        load_experiment_from_store(mlops, "pump")
    with pytest.raises(NotFoundError, match="no version 7"):
        load_experiment_from_store(mlops, "pump", version=7)
