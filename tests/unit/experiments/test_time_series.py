"""Every time-series model trains, predicts, scores, saves and loads (synthetic data).

The series is :func:`observml.datasets.seasonal_series`: hourly, a daily cycle, a trend and
eight injected anomalies in the last third. Models are kept small so the file runs in seconds.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import datasets
from observml.errors import ConfigError, DataError, ModelNotTrainedError
from observml.experiments.time_series import MODELS, TimeSeriesExperiment
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.retraining import RetrainTracker
from observml.store.experiments import load_experiment_from_store, save_experiment

HAS_PROPHET = importlib.util.find_spec("prophet") is not None
#: The models tested here; the deep extra's (lstm, ae) are in test_deep.py, on real data.
TESTED = [m for m, spec in MODELS.items() if spec.extra != "deep"]

#: Small, fast settings per model (the daily cycle has 24 steps).
PARAMS: dict[str, dict[str, Any]] = {
    "arima": {"order": [2, 1, 0], "maxiter": 30},
    "exponential_smoothing": {"trend": "add", "seasonal": "add", "seasonal_periods": 24},
    "ssa": {"window_size": 24},
    "prophet": {"yearly_seasonality": False, "weekly_seasonality": False},
}


def config(model: str, **setup: Any) -> dict[str, Any]:
    return {
        "setup": {"target": "y", "datetime_column": "ds", "forecast_horizon": 6, **setup},
        "create_model": {"model": model, "params": PARAMS[model]},
    }


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    """240 hourly rows (10 days); anomalies at 8 places in the last third."""
    return datasets.seasonal_series(240, period=24, seed=3)


@pytest.fixture(scope="module")
def trained(series: pd.DataFrame) -> dict[str, TimeSeriesExperiment]:
    """One experiment per model trained on the first 160 rows (trained once per module)."""
    out = {}
    for model in TESTED:
        if model == "prophet" and not HAS_PROPHET:
            continue
        out[model] = TimeSeriesExperiment(f"ts_{model}", config(model)).train(series.iloc[:160])
    return out


def _model_params() -> list[Any]:
    marks = {
        "prophet": pytest.mark.skipif(
            not HAS_PROPHET,
            reason="prophet is not installed: the optional 'prophet' extra is not in 'all', and"
            " CI deliberately does not install it (see CONTRIBUTING.md)",
        )
    }
    return [pytest.param(m, id=m, marks=marks.get(m, ())) for m in TESTED]


@pytest.mark.parametrize("model", _model_params())
def test_every_model_round_trip(
    model: str,
    series: pd.DataFrame,
    trained: dict[str, TimeSeriesExperiment],
    mlops: InMemoryMLOpsPlugin,
) -> None:
    experiment = _copy(trained[model])  # predict moves the state; keep the fixture as trained
    test = series.iloc[160:]
    assert experiment.freq_ == "h"
    assert experiment.last_time_ == series["ds"].iloc[159]
    assert {"train_mae", "train_mape", "train_rows"} <= set(experiment.metrics_)

    run = mlops.start_run(mlops.create_experiment(experiment.name))
    save_experiment(mlops, experiment, run_id=run, alias="champion")
    loaded = load_experiment_from_store(mlops, experiment.name)
    assert isinstance(loaded, TimeSeriesExperiment)

    metrics = experiment.score(test)  # scoring leaves the state alone
    assert {"mae", "rmse", "mape", "anomaly_rate", "coverage", "naive_mape"} <= set(metrics)
    assert metrics["n_samples"] == len(test)
    if model in ("exponential_smoothing", "ssa"):  # they model the daily cycle
        assert metrics["mape"] < 0.8 * metrics["naive_mape"]
    else:  # a small non-seasonal ARIMA is about as good as the last value (Prophet: better)
        assert metrics["mape"] < 1.2 * metrics["naive_mape"]

    result = experiment.predict(test.drop(columns="anomaly"))
    assert list(result.columns) == [
        "ds", "actual", "forecast", "lower", "upper", "anomaly", "horizon",
    ]  # fmt: skip
    assert result.index.equals(test.index)
    assert (result["horizon"] == 1).all()
    assert (result["lower"] < result["forecast"]).all()
    assert (result["forecast"] < result["upper"]).all()
    outside = (result["actual"] < result["lower"]) | (result["actual"] > result["upper"])
    assert (result["anomaly"] == outside).all()
    injected = test["anomaly"].to_numpy()
    assert result["anomaly"][injected].mean() >= 0.75  # most injected anomalies are caught
    # a shock also moves the next few one-step forecasts; elsewhere few false alarms
    echo = np.convolve(injected, np.ones(4), mode="full")[: len(injected)] > 0
    assert result["anomaly"][~echo].mean() <= 0.05
    assert experiment.last_time_ == test["ds"].iloc[-1]

    # the loaded copy predicts exactly as the saved one did
    pd.testing.assert_frame_equal(loaded.predict(test.drop(columns="anomaly")), result)
    pd.testing.assert_frame_equal(loaded.forecast(), experiment.forecast())
    assert set(experiment.reports()) == set(experiment.plot_names())
    assert experiment.plot_names() == ["forecast", "components", "residuals"]


@pytest.mark.parametrize(
    "model", [pytest.param(m, id=m) for m in ("arima", "exponential_smoothing", "ssa")]
)
def test_streaming_in_pieces_equals_one_call(
    model: str, series: pd.DataFrame, trained: dict[str, TimeSeriesExperiment]
) -> None:
    """Actuals are taken in one by one: batches of any size give the same forecasts."""
    test = series.iloc[160:200].drop(columns="anomaly")
    whole = _copy(trained[model]).predict(test)
    streaming = _copy(trained[model])
    pieces = [streaming.predict(test.iloc[i : i + 7]) for i in range(0, len(test), 7)]
    pd.testing.assert_frame_equal(pd.concat(pieces), whole, check_exact=False, rtol=1e-9)
    # the forecast for row t uses the actual of row t-1: a shock moves the next forecast
    shocked = test.copy()
    shocked.loc[shocked.index[10], "y"] += 50
    moved = _copy(trained[model]).predict(shocked)
    assert moved["forecast"].iloc[:11].equals(whole["forecast"].iloc[:11])
    assert bool(moved["anomaly"].iloc[10])
    shift = abs(moved["forecast"].iloc[11] - whole["forecast"].iloc[11])
    # Holt-Winters fits smoothing_level ~ 0 on this (deterministic + noise) series: it barely
    # follows a shock; ARIMA and SSA forecasts from the last values, so they move
    assert shift > 0 if model == "exponential_smoothing" else shift > 1


def test_update_false_keeps_state(
    series: pd.DataFrame, trained: dict[str, TimeSeriesExperiment]
) -> None:
    experiment = _copy(trained["arima"])
    before = experiment.forecast()
    experiment.predict(series.iloc[160:170], update=False)
    experiment.score(series.iloc[160:170])
    pd.testing.assert_frame_equal(experiment.forecast(), before)
    assert experiment.last_time_ == series["ds"].iloc[159]


@pytest.mark.parametrize(
    "model", [pytest.param(m, id=m) for m in ("arima", "exponential_smoothing", "ssa")]
)
def test_rows_without_actuals_get_multi_step_forecasts(
    model: str, series: pd.DataFrame, trained: dict[str, TimeSeriesExperiment]
) -> None:
    experiment = _copy(trained[model])
    future = series.iloc[160:166][["ds"]]  # no target column at all
    result = experiment.predict(future)
    ahead = experiment.forecast(6)
    np.testing.assert_allclose(result["forecast"], ahead["forecast"], rtol=1e-9)
    np.testing.assert_allclose(result["upper"], ahead["upper"], rtol=1e-9)
    assert result["horizon"].tolist() == [1, 2, 3, 4, 5, 6]
    assert result["actual"].isna().all()
    assert not result["anomaly"].any()
    width = (result["upper"] - result["lower"]).to_numpy()
    assert width[-1] >= width[0]  # intervals widen with the horizon
    # forecasts without actuals do not move the state: the actuals can come later
    assert experiment.last_time_ == series["ds"].iloc[159]
    later = experiment.predict(series.iloc[160:166])
    assert (later["horizon"] == 1).all()


def test_gap_in_new_rows_is_forecast_across(
    series: pd.DataFrame, trained: dict[str, TimeSeriesExperiment]
) -> None:
    experiment = _copy(trained["exponential_smoothing"])
    rows = series.iloc[[160, 161, 165, 166]]  # three hours missing
    result = experiment.predict(rows)
    assert result["horizon"].tolist() == [1, 1, 4, 1]
    assert experiment.last_time_ == series["ds"].iloc[166]


def test_rows_already_taken_in_get_the_remembered_forecast(
    series: pd.DataFrame, trained: dict[str, TimeSeriesExperiment]
) -> None:
    experiment = _copy(trained["ssa"])
    first = experiment.predict(series.iloc[160:180])
    again = experiment.predict(series.iloc[170:190])  # 10 old rows, 10 new ones
    pd.testing.assert_frame_equal(again.iloc[:10], first.iloc[10:])
    in_sample = experiment.predict(series.iloc[100:110])  # training rows: in-sample forecasts
    assert in_sample["forecast"].notna().all()
    small = TimeSeriesExperiment("small", config("ssa", keep_train_rows=50)).train(
        series.iloc[:160]
    )
    with pytest.raises(DataError, match=r"column 'ds' has .*remembers only 50 steps"):
        small.predict(series.iloc[0:5])


def test_forecast_continues_the_grid(trained: dict[str, TimeSeriesExperiment]) -> None:
    experiment = trained["ssa"]
    ahead = experiment.forecast()
    assert len(ahead) == 6
    expected = pd.date_range(experiment.last_time_, periods=7, freq="h")[1:]
    assert list(ahead["ds"]) == list(expected)
    assert list(ahead.columns) == ["ds", "forecast", "lower", "upper", "horizon"]
    with pytest.raises(DataError, match="steps must be >= 1"):
        experiment.forecast(0)


def test_holt_winters_recursion_matches_statsmodels(
    trained: dict[str, TimeSeriesExperiment],
) -> None:
    forecaster: Any = trained["exponential_smoothing"].forecaster_
    np.testing.assert_allclose(forecaster.fitted_, forecaster.statsmodels_fitted_, rtol=1e-10)


def test_accepts_json_records_and_irregular_timestamps(series: pd.DataFrame) -> None:
    rows = series.iloc[:160].drop(index=[20, 21, 22, 90]).copy()  # four missing hours
    rows["ds"] = rows["ds"].dt.strftime("%Y-%m-%d %H:%M:%S")
    records = json.loads(rows.drop(columns="anomaly").to_json(orient="records"))
    experiment = TimeSeriesExperiment("json", config("ssa")).train(records)
    assert experiment.filled_steps_ == 4
    assert experiment.freq_ == "h"
    new = series.iloc[160:164].drop(columns="anomaly")
    epoch_ms = (new["ds"] - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
    body = new.assign(ds=epoch_ms).to_json(orient="split")  # pandas' JSON dates: epoch ms
    result = experiment.predict(body)
    assert list(result["ds"]) == list(new["ds"])
    assert (result["horizon"] == 1).all()


def test_freq_resamples_to_coarser_steps(series: pd.DataFrame) -> None:
    cfg = config("ssa", freq="2h")
    cfg["create_model"]["params"] = {"window_size": 12}
    experiment = TimeSeriesExperiment("two_hourly", cfg).train(series.iloc[:160])
    assert experiment.freq_ == "2h"
    assert len(experiment.history_) == 80  # two rows per step, averaged
    assert experiment.history_["actual"].iloc[0] == pytest.approx(series["y"].iloc[:2].mean())


def test_eda_adds_histogram_and_autocorrelation(series: pd.DataFrame) -> None:
    cfg = {**config("ssa"), "eda": True}
    experiment = TimeSeriesExperiment("eda", cfg).train(series.iloc[:160])
    names = experiment.plot_names()
    assert names == ["forecast", "components", "residuals", "histogram_y", "autocorrelation"]
    assert list(experiment.reports()) == names


def test_retrain_policy_watches_mape_and_judges_by_the_actuals() -> None:
    cfg = {**config("ssa"), "retrain": {"threshold": 5.0}}
    experiment = TimeSeriesExperiment("retrain", cfg)
    policy = experiment.retrain_policy
    assert policy.threshold == 5.0
    assert policy.promotion == "auto"  # the stream carries the actuals
    tracker = RetrainTracker(policy, "mape")
    assert tracker.decide({"mape": 2.0}, n_samples=10).fire is False
    assert tracker.decide({"mape": 9.0}, n_samples=10).fire is True


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        pytest.param(
            {"create_model": {"model": "gru"}},
            r"create_model.model: unknown time_series model 'gru'\. Valid: arima,"
            r" exponential_smoothing, ssa, prophet, lstm, ae",
            id="unknown-model",
        ),
        pytest.param(
            {"create_model": {"model": "arima", "params": {"orders": [1, 1, 1]}}},
            r"create_model.params.orders: not a parameter of 'arima'\. Accepted: confidence,"
            r" order, seasonal_order",
            id="unknown-param",
        ),
        pytest.param(
            {"setup": {"datetime_column": "ds"}},
            r"setup.target: time_series needs the column to forecast",
            id="no-target",
        ),
        pytest.param(
            {"setup": {"target": "y", "datetime_column": "ds", "features": ["x"]}},
            r"setup.features: .*Remove setup.features",
            id="features",
        ),
        pytest.param(
            {"setup": {"target": "y", "datetime_column": "ds", "freq": "fortnightly"}},
            r"setup.freq: 'fortnightly' is not a pandas frequency",
            id="bad-freq",
        ),
        pytest.param(
            {
                "setup": {"target": "y", "datetime_column": "ds"},
                "create_model": {"model": "ssa", "params": {"confidence": 1.5}},
            },
            r"create_model.params.confidence: expected a number between 0 and 1",
            id="confidence",
        ),
        pytest.param(
            {
                "setup": {"target": "y", "datetime_column": "ds"},
                "create_model": {"model": "arima", "params": {"order": [1, 1]}},
            },
            r"create_model.params.order: expected 3 non-negative integers \(p, d, q\)",
            id="order",
        ),
        pytest.param(
            {
                "setup": {"target": "y", "datetime_column": "ds"},
                "create_model": {
                    "model": "exponential_smoothing",
                    "params": {"seasonal": "add"},
                },
            },
            r"create_model.params.seasonal_periods: seasonal: add needs seasonal_periods",
            id="seasonal-periods",
        ),
    ],
)
def test_config_errors_name_the_key(cfg: dict[str, Any], match: str, series: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=match):
        TimeSeriesExperiment("bad", cfg).train(series.iloc[:100])


def test_data_errors_name_the_column(
    series: pd.DataFrame, trained: dict[str, TimeSeriesExperiment]
) -> None:
    experiment = TimeSeriesExperiment("bad", config("ssa"))
    with pytest.raises(DataError, match=r"missing column\(s\) 'y'"):
        experiment.train(series.iloc[:100].drop(columns="y"))
    text = series.iloc[:100].astype({"y": object})
    text.loc[5, "y"] = "broken"
    with pytest.raises(DataError, match=r"column 'y' must be numeric; row 5 has 'broken'"):
        experiment.train(text)
    with pytest.raises(DataError, match=r"column 'ds' is not a datetime"):
        experiment.train(series.iloc[:100].assign(ds="yesterday"))
    with pytest.raises(DataError, match=r"column 'y' has 30 steps of 'h'; ssa needs at least 72"):
        experiment.train(series.iloc[:30])
    with pytest.raises(DataError, match=r"missing column\(s\) 'ds'"):
        trained["ssa"].predict(series.iloc[160:170].drop(columns="ds"))
    with pytest.raises(DataError, match=r"column 'y' has no actual values"):
        trained["ssa"].score(series.iloc[160:170][["ds"]])


def test_predict_before_train_raises() -> None:
    with pytest.raises(ModelNotTrainedError, match=r"Call train\(\) first"):
        TimeSeriesExperiment("new", config("ssa")).predict([{"ds": "2024-01-01", "y": 1.0}])


@pytest.mark.skipif(HAS_PROPHET, reason="prophet is installed; the missing-extra path is moot")
def test_prophet_missing_names_the_extra(series: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=r"pip install 'observml\[prophet\]'"):
        TimeSeriesExperiment("p", config("prophet")).train(series.iloc[:100])


def _copy(experiment: TimeSeriesExperiment) -> TimeSeriesExperiment:
    import copy

    return copy.deepcopy(experiment)


def test_a_flat_component_gets_a_readable_axis() -> None:
    from observml.experiments._ts_reports import _flat_range

    assert _flat_range(np.array([100.0, 100.0 + 1e-12, np.nan])) == pytest.approx([99.0, 101.0])
    assert _flat_range(np.zeros(5)) == [-1.0, 1.0]
    assert _flat_range(np.array([1.0, 2.0])) is None
    assert _flat_range(np.array([np.nan])) is None
