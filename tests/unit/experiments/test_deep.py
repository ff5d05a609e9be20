"""The PyTorch models of the ``deep`` extra on real data: train, predict, save, load, repeat.

``lstm`` and ``ae`` forecast the per-minute sensor of ``time_series_train_tail.csv`` (the last
2000 of its rows, to keep training short) and are scored on ``time_series_test_0..3.csv``;
``window_ae`` detects the faults of the three-phase power line (``detect_train_4h.csv``, then
``detect_test_0..3.csv``). Epochs are few so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml.config.registry import PluginRegistry
from observml.errors import ConfigError
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.experiments.time_series import TimeSeriesExperiment
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.store.experiments import load_experiment_from_store, save_experiment
from observml.store.folders import load_folder, save_folder
from tests.services import read_dataset, require_module

TS_PARAMS: dict[str, dict[str, Any]] = {
    "lstm": {"seq_length": 12, "cell_no": 8, "epoch_no": 4, "batch_size": 64},
    "ae": {"window": 12, "hidden": [8, 4], "epoch_no": 4, "batch_size": 64},
}
AE_PARAMS: dict[str, Any] = {"window": 16, "epoch_no": 8, "batch_size": 64}
SENSORS = ["Ia", "Ib", "Ic", "Va", "Vb", "Vc"]


@pytest.fixture(scope="module")
def torch() -> Any:
    return require_module("torch", "deep")


def ts_config(model: str, **params: Any) -> dict[str, Any]:
    return {
        "setup": {"target": "y", "datetime_column": "ds", "forecast_horizon": 5},
        "create_model": {"model": model, "params": {**TS_PARAMS[model], **params}},
    }


def fd_config(**params: Any) -> dict[str, Any]:
    return {
        "setup": {"features": SENSORS, "target": "Output (S)"},
        "create_model": {"model": "window_ae", "params": {**AE_PARAMS, **params}},
    }


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return read_dataset("time_series_train_tail.csv").iloc[-1500:]


@pytest.fixture(scope="module")
def trained(torch: Any, series: pd.DataFrame) -> dict[str, TimeSeriesExperiment]:
    return {m: TimeSeriesExperiment(f"ts_{m}", ts_config(m)).train(series) for m in TS_PARAMS}


@pytest.fixture(scope="module")
def detector(torch: Any) -> FaultDetectionExperiment:
    train = read_dataset("detect_train_4h.csv")
    normal = train[train["Output (S)"] == 0]
    return FaultDetectionExperiment("line", fd_config()).train(normal)


# -- time series ----------------------------------------------------------------------------
def test_lstm_one_step_mape_is_within_1_5x_of_the_naive_forecast(
    trained: dict[str, TimeSeriesExperiment],
) -> None:
    experiment = trained["lstm"]
    for i in range(4):
        metrics = experiment.score(read_dataset(f"time_series_test_{i}.csv"))
        assert metrics["mape"] <= 1.5 * metrics["naive_mape"], (i, metrics)
        assert metrics["coverage"] >= 0.9, (i, metrics)  # the interval is honest


@pytest.mark.parametrize("model", list(TS_PARAMS))
def test_time_series_model_trains_predicts_saves_and_loads(
    model: str, trained: dict[str, TimeSeriesExperiment], mlops: InMemoryMLOpsPlugin
) -> None:
    experiment = copy.deepcopy(trained[model])  # predict moves the state
    forecaster = experiment.forecaster_
    assert 1 <= len(forecaster.train_loss_) <= TS_PARAMS[model]["epoch_no"]
    assert forecaster.sigma_ > 0
    run = mlops.start_run(mlops.create_experiment(experiment.name))
    save_experiment(mlops, experiment, run_id=run, alias="champion")
    loaded = load_experiment_from_store(mlops, experiment.name)
    assert isinstance(loaded, TimeSeriesExperiment)

    test = read_dataset("time_series_test_0.csv").iloc[:300]
    result = experiment.predict(test)
    assert (result["horizon"] == 1).all()
    assert result["forecast"].notna().all()
    outside = (result["actual"] < result["lower"]) | (result["actual"] > result["upper"])
    assert (result["anomaly"] == outside).all()
    assert result["anomaly"].mean() < 0.1
    pd.testing.assert_frame_equal(loaded.predict(test), result)
    pd.testing.assert_frame_equal(loaded.forecast(), experiment.forecast())
    future = experiment.forecast()
    width = (future["upper"] - future["lower"]).to_numpy()
    assert (np.diff(width) > 0).all()  # wider further from the last actual
    assert set(experiment.reports()) >= {"forecast", "components", "residuals"}


@pytest.mark.parametrize("model", list(TS_PARAMS))
def test_time_series_model_is_deterministic(
    model: str, trained: dict[str, TimeSeriesExperiment], series: pd.DataFrame
) -> None:
    again = TimeSeriesExperiment("again", ts_config(model)).train(series)
    test = read_dataset("time_series_test_1.csv").iloc[:200]
    first = copy.deepcopy(trained[model]).predict(test)
    pd.testing.assert_frame_equal(again.predict(test), first)
    if model == "lstm":  # the seed matters (once is enough)
        other = TimeSeriesExperiment("seed", ts_config(model, seed=1)).train(series)
        assert not np.allclose(other.predict(test)["forecast"], first["forecast"])


def test_streaming_in_pieces_and_gaps(trained: dict[str, TimeSeriesExperiment]) -> None:
    test = read_dataset("time_series_test_2.csv").iloc[:120]
    whole = copy.deepcopy(trained["lstm"]).predict(test)
    pieces = copy.deepcopy(trained["lstm"])
    parts = [pieces.predict(test.iloc[:50]), pieces.predict(test.iloc[50:])]
    pd.testing.assert_frame_equal(pd.concat(parts), whole)
    gap = test.iloc[:60].copy()
    gap.loc[gap.index[20:25], "y"] = np.nan  # no actuals: forecast across, state not moved
    result = copy.deepcopy(trained["lstm"]).predict(gap)
    assert list(result["horizon"].iloc[20:26]) == [1, 2, 3, 4, 5, 6]
    assert result["forecast"].notna().all()


def test_ae_is_saved_as_weights_never_as_a_pickle(
    trained: dict[str, TimeSeriesExperiment], tmp_path: Path
) -> None:
    root = save_folder(trained["ae"], tmp_path / "ae")
    assert (root / "parts" / "forecaster_.skops").is_file()
    assert not (root / "model.pkl").exists()
    loaded = load_folder(root, PluginRegistry())
    test = read_dataset("time_series_test_3.csv").iloc[:100]
    expected = copy.deepcopy(trained["ae"]).predict(test, update=False)
    pd.testing.assert_frame_equal(loaded.predict(test, update=False), expected)


# -- fault detection ------------------------------------------------------------------------
def test_window_ae_detects_the_line_faults(detector: FaultDetectionExperiment) -> None:
    train = read_dataset("detect_train_4h.csv")
    normal = train[train["Output (S)"] == 0]
    # the threshold is 1.5 x the 99 % quantile of the training scores (contamination 0.01)
    assert 0 < detector.predict(normal)["anomaly"].mean() <= 0.01
    for i in range(3):  # detect_test_3 has no faults
        metrics = detector.score(read_dataset(f"detect_test_{i}.csv"))
        assert metrics["f1"] >= 0.95, (i, metrics)  # measured 0.997, 1.0, 0.997
    clean = detector.score(read_dataset("detect_test_3.csv"))
    assert clean["anomaly_rate"] <= 0.02  # measured 0.0


def test_window_ae_saves_loads_and_is_deterministic(
    detector: FaultDetectionExperiment, tmp_path: Path
) -> None:
    root = save_folder(detector, tmp_path / "wae")
    assert (root / "parts" / "detector_.skops").is_file()
    assert not (root / "model.pkl").exists()
    loaded = load_folder(root, PluginRegistry())
    test = read_dataset("detect_test_1.csv")
    result = detector.predict(test)
    pd.testing.assert_frame_equal(loaded.predict(test), result)
    assert set(detector.reports()) == set(detector.plot_names())
    train = read_dataset("detect_train_4h.csv")
    again = FaultDetectionExperiment("again", fd_config()).train(train[train["Output (S)"] == 0])
    pd.testing.assert_frame_equal(again.predict(test), result)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"architecture": "lstm"}, r"'architecture' parameter of WindowAutoencoder must be a str"),
        ({"window": 2}, r"create_model.params.window"),
        ({"threshold_factor": 0}, r"create_model.params.threshold_factor"),
        ({"epochs": 3}, r"create_model.params.epochs: not a parameter of 'window_ae'"),
    ],
)
def test_window_ae_bad_params_are_config_errors(
    torch: Any, params: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        FaultDetectionExperiment("x", fd_config(**params)).validate_config()


def test_dense_window_ae_trains_too(torch: Any) -> None:
    train = read_dataset("detect_train_4h.csv")
    config = fd_config(architecture="dense", hidden=[32, 8], epoch_no=5)
    experiment = FaultDetectionExperiment("dense", config).train(train.iloc[:600])
    result = experiment.predict(read_dataset("detect_test_0.csv").iloc[:10])  # short batch
    assert result["score"].notna().all()
    assert len(result) == 10


# -- without the extra ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "config", "instead"),
    [
        (TimeSeriesExperiment, ts_config("lstm"), "'arima'"),
        (TimeSeriesExperiment, ts_config("ae"), "'ssa'"),
        (FaultDetectionExperiment, fd_config(), "'pca'"),
    ],
)
def test_without_torch_the_config_check_names_the_install_line(
    cls: type[Any], config: dict[str, Any], instead: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what an install without torch imports
    with pytest.raises(ConfigError, match=r"pip install 'observml\[deep\]' --extra-index-url") as e:
        cls("x", config).validate_config()
    assert f"Without it, the closest model is {instead}:" in str(e.value)


def test_an_old_lstm_config_without_torch_names_the_install_line_and_arima(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    old = {
        "load_object": {
            "module": "framework.TimeSeriesAnalysis",
            "name": "TimeSeriesAnomalyExperiment",
        },
        "setup": {"datetime_column": "ds", "target": "y"},
        "create_model": {"model": "lstm", "params": None},
    }
    with pytest.raises(ConfigError, match=r"the model needs 'torch'.*closest model is 'arima'"):
        TimeSeriesExperiment("old", old).validate_config()


def test_saving_and_loading_a_model_without_pytorch_never_imports_it(
    torch: Any, tmp_path: Path
) -> None:
    """skops lists scikit-learn's estimators by walking its packages, one of which imports
    torch; observml imports skops with torch hidden from that walk (observml.store._skops)."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np, pandas as pd
        from observml.experiments.fault_detection import FaultDetectionExperiment
        from observml.store.folders import load_folder, save_folder
        rows = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 3)), columns=list("abc"))
        experiment = FaultDetectionExperiment("pump", {{"create_model": {{"model": "pca"}}}})
        experiment.train(rows)
        save_folder(experiment, {str(tmp_path / "pca")!r})
        back = load_folder({str(tmp_path / "pca")!r})
        flags = experiment.predict(rows)["anomaly"].tolist()
        assert back.predict(rows)["anomaly"].tolist() == flags
        print("torch imported:", "torch" in sys.modules)
        import torch  # the hide is only for skops' walk: a model that needs torch gets it
        print("torch importable:", torch.__name__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-2:] == ["torch imported: False", "torch importable: torch"]
