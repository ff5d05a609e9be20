"""PCA monitor parameters: dynamic PCA (lags), smoothing, SPE limit, T² factor (real data)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.decomposition import PCA

from observml.errors import ConfigError
from observml.experiments.detectors import SPE_LIMITS, PCAMonitor
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.store.experiments import load_experiment_from_store, save_experiment
from tests.services import read_dataset

LINE = ["Ia", "Ib", "Ic", "Va", "Vb", "Vc"]


def config(**params: Any) -> dict[str, Any]:
    return {
        "setup": {"datetime_column": "ds", "target": "Output (S)"},
        "eda": False,
        "create_model": {"model": "pca", "params": params},
    }


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return read_dataset("detect_train_4h.csv").iloc[:800]


@pytest.fixture(scope="module")
def test() -> pd.DataFrame:
    return read_dataset("detect_test_0.csv")


DYNAMIC = {"n_components": 0.9, "alpha": 0.999, "lags": 2, "smoothing": 3}


def test_dynamic_pca_trains_predicts_saves_and_loads(
    train: pd.DataFrame, test: pd.DataFrame, mlops: InMemoryMLOpsPlugin
) -> None:
    experiment = FaultDetectionExperiment("dpca", config(**DYNAMIC, spe_limit="jackson_mudholkar"))
    experiment.train(train)
    detector = experiment.detector_
    # 6 line features x (1 + 2 lags) columns went into the PCA; contributions are per feature
    assert detector.estimator.n_features_in_ == 18
    assert detector.history_rows_.shape == (2, 6)
    assert detector.history_stats_.shape == (2, 2)

    run = mlops.start_run(mlops.create_experiment(experiment.name))
    save_experiment(mlops, experiment, run_id=run, alias="champion")
    loaded = load_experiment_from_store(mlops, experiment.name)

    first = experiment.predict(test)
    assert list(first.columns[:5]) == ["ds", "score", "anomaly", "t2", "spe"]
    assert [c for c in first.columns if c.startswith("contribution_")] == [
        f"contribution_{c}" for c in LINE
    ]
    faulty = test["Output (S)"].to_numpy() != 0
    assert first["score"][faulty].mean() > 3 * first["score"][~faulty].mean()
    # the loaded model starts from the same state (the end of training): same predictions
    pd.testing.assert_frame_equal(loaded.predict(test), first)


def test_batches_continue_each_other(train: pd.DataFrame, test: pd.DataFrame) -> None:
    whole = FaultDetectionExperiment("a", config(**DYNAMIC)).train(train).predict(test)
    split = FaultDetectionExperiment("b", config(**DYNAMIC)).train(train)
    parts = [
        split.predict(test.iloc[:7]),
        split.predict(test.iloc[7:8]),
        split.predict(test.iloc[8:]),
    ]
    pd.testing.assert_frame_equal(pd.concat(parts), whole)


def test_scoring_without_predict_leaves_the_state(train: pd.DataFrame, test: pd.DataFrame) -> None:
    experiment = FaultDetectionExperiment("a", config(**DYNAMIC)).train(train)
    before = experiment.detector_.history_rows_.copy()
    experiment.score(test)
    np.testing.assert_array_equal(experiment.detector_.history_rows_, before)
    experiment.predict(test)
    z_last = experiment.detector_._transform(test[LINE].to_numpy(dtype=float))[-2:]
    np.testing.assert_allclose(experiment.detector_.history_rows_, z_last)


def test_smoothing_is_a_rolling_median_of_the_raw_statistics(
    train: pd.DataFrame, test: pd.DataFrame
) -> None:
    raw = FaultDetectionExperiment("raw", config(n_components=0.9)).train(train).predict(test)
    smooth = FaultDetectionExperiment("s", config(n_components=0.9, smoothing=5)).train(train)
    tail = smooth.detector_.history_stats_  # the last 4 training rows' T² and SPE
    result = smooth.predict(test)
    t2 = pd.Series(np.concatenate([tail[:, 0], raw["t2"].to_numpy()])).rolling(5).median()
    np.testing.assert_allclose(result["t2"].to_numpy(), t2.to_numpy()[4:])
    mean = FaultDetectionExperiment(
        "m", config(n_components=0.9, smoothing=5, smoothing_method="mean")
    )
    spe = pd.Series(np.concatenate([tail[:, 1], raw["spe"].to_numpy()])).rolling(5).mean()
    np.testing.assert_allclose(
        mean.train(train).predict(test)["spe"].to_numpy(), spe.to_numpy()[4:]
    )


def test_t2_factor_raises_only_the_t2_limit(train: pd.DataFrame, test: pd.DataFrame) -> None:
    plain = FaultDetectionExperiment("p", config(n_components=0.9)).train(train).predict(test)
    wide = FaultDetectionExperiment("w", config(n_components=0.9, t2_factor=3.0)).train(train)
    result = wide.predict(test)
    detector = wide.detector_
    expected = np.maximum(
        plain["t2"] / (3.0 * detector.t2_limit_), plain["spe"] / detector.spe_limit_
    )
    np.testing.assert_allclose(result["score"], expected)
    assert result["anomaly"].sum() <= plain["anomaly"].sum()


def test_spe_limits_on_one_residual_component() -> None:
    # two standardised variables, one component kept: the residual is one eigenvalue lambda,
    # so SPE = lambda * chi2(1) exactly; JM's theta = (l, l^2, l^3) gives h0 = 1/3, the same
    # as the summed-eigenvalue formula, and close to the exact lambda * chi2_0.99(1)
    rng = np.random.default_rng(0)
    base = rng.normal(size=5000)
    X = np.column_stack([base + 0.3 * rng.normal(size=5000), base + 0.3 * rng.normal(size=5000)])
    limits = {}
    for name in SPE_LIMITS:
        monitor = PCAMonitor(PCA(n_components=1), alpha=0.99, spe_limit=name).fit(X)
        limits[name] = monitor.spe_limit_
    lam = float(np.linalg.eigvalsh(np.cov(monitor._transform(X), rowvar=False))[0])
    exact = lam * stats.chi2.ppf(0.99, 1)
    assert limits["jackson_mudholkar"] == pytest.approx(limits["summed_eigenvalues"])
    assert limits["jackson_mudholkar"] == pytest.approx(exact, rel=0.08)
    assert limits["box"] == pytest.approx(exact, rel=0.08)


def test_spe_limits_differ_with_several_residual_components(train: pd.DataFrame) -> None:
    X = train[LINE].to_numpy(dtype=float)
    limits = {
        name: PCAMonitor(PCA(n_components=2), alpha=0.999, spe_limit=name).fit(X).spe_limit_
        for name in SPE_LIMITS
    }
    # (sum lambda)^2 > sum lambda^2: the leaderboard's slip gives another limit
    assert limits["summed_eigenvalues"] != pytest.approx(limits["jackson_mudholkar"], rel=0.01)
    assert all(value > 0 for value in limits.values())


def test_default_pca_is_unchanged(train: pd.DataFrame) -> None:
    detector = FaultDetectionExperiment("d", config()).train(train).detector_
    assert (detector.lags, detector.smoothing, detector.spe_limit) == (0, 1, "box")
    assert detector.t2_factor == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lags": -1}, r"create_model.params.lags: The 'lags' parameter of PCAMonitor must be"),
        ({"smoothing": 0}, r"create_model.params.smoothing: The 'smoothing' parameter"),
        ({"spe_limit": "exact"}, r"create_model.params.spe_limit: The 'spe_limit' parameter"),
        ({"smoothing_method": "max"}, r"params.smoothing_method: The 'smoothing_method'"),
        ({"t2_factor": 0}, r"create_model.params.t2_factor: The 't2_factor' parameter"),
    ],
)
def test_bad_values_are_config_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FaultDetectionExperiment("x", config(**params)).validate_config()


def test_too_few_rows_for_the_lags_is_a_data_error(train: pd.DataFrame) -> None:
    from observml.errors import DataError

    with pytest.raises(DataError, match=r"lags=20 needs more than 21 training rows"):
        FaultDetectionExperiment("x", config(lags=20, n_components=2)).train(train.iloc[:15])


@pytest.mark.parametrize("how", ["skops", "pickle"])
def test_a_monitor_saved_before_lags_existed_still_scores(how: str) -> None:
    """Champions trained by an observml without lags/smoothing keep serving after an upgrade."""
    import pickle

    from observml.store._skops import skops_io

    rng = np.random.default_rng(0)
    rows, new = rng.normal(size=(300, 4)), rng.normal(size=(50, 4))
    monitor = PCAMonitor(PCA(n_components=0.9), alpha=0.99).fit(rows)
    expected = monitor.decision_function(new)
    old = vars(monitor)
    for attribute in ("lags", "smoothing", "smoothing_method", "spe_limit", "t2_factor"):
        del old[attribute]
    del old["history_rows_"], old["history_stats_"]
    if how == "skops":
        sio = skops_io()
        data = sio.dumps(monitor)
        back = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    else:
        back = pickle.loads(pickle.dumps(monitor))
    np.testing.assert_allclose(back.decision_function(new), expected)
    assert (back.lags, back.smoothing, back.spe_limit) == (0, 1, "box")
