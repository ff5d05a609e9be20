"""Experiment overhead: each type's default model against the bare library call, in one run.

For every case in :data:`CASES` it prints ``train / bare fit`` and ``predict / bare predict``
on the same data (goal: at most 1.3 with EDA off). The experiment side includes everything a
caller pays: config validation, data checks, feature extraction, the threshold, building the
output frame and keeping the bounded training sample. One untimed warm-up round imports
everything; each figure is then the best of ``--repeat`` rounds (the machine's noise only ever
adds time), and the order of experiment and bare call alternates between rounds.

Usage::

    python bench/experiments.py [--rows 100000] [--cases 10000] [--repeat 3] [--only NAME]

Adding a case: append a :class:`Case` to :data:`CASES` (time series and process mining add
theirs below the marker), with ``data(size)`` building the frame and ``bare_fit``/
``bare_predict`` doing what the library alone would do on it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from observml import datasets
from observml.experiments.base import Experiment
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.experiments.fault_isolation import FaultIsolationExperiment
from observml.experiments.process_mining import ProcessMiningExperiment
from observml.experiments.time_series import TimeSeriesExperiment


@dataclass(frozen=True)
class Case:
    """One benchmark: an experiment config and the bare library calls it is measured against.

    Attributes:
        name: Label printed (type/model).
        experiment: The experiment class.
        config: Its config (EDA off).
        data: ``data(size) -> DataFrame`` with ``size`` rows (or cases, see ``unit``).
        bare_fit: ``bare_fit(frame) -> fitted`` doing the library's fit on the same data.
        bare_predict: ``bare_predict(fitted, frame)`` doing the library's predict.
        unit: ``"rows"`` or ``"cases"`` (which ``--rows``/``--cases`` size applies).
    """

    name: str
    experiment: type[Experiment]
    config: dict[str, Any]
    data: Callable[[int], pd.DataFrame]
    bare_fit: Callable[[pd.DataFrame], Any]
    bare_predict: Callable[[Any, pd.DataFrame], Any]
    unit: str = "rows"


# -- fault detection: iforest ----------------------------------------------------------------
PUMP_SENSORS = [f"sensor_{j:02d}" for j in range(8)]


def _iforest_fit(frame: pd.DataFrame) -> Any:
    from sklearn.ensemble import IsolationForest

    X = frame[PUMP_SENSORS].to_numpy(dtype="float64")
    return IsolationForest(contamination=0.05, random_state=0).fit(X)


def _iforest_predict(model: Any, frame: pd.DataFrame) -> Any:
    X = frame[PUMP_SENSORS].to_numpy(dtype="float64")
    return model.score_samples(X) < model.offset_


# -- fault isolation: decision_tree ------------------------------------------------------------
LINE_FEATURES = ["Ia", "Ib", "Ic", "Va", "Vb", "Vc"]


def _tree_fit(frame: pd.DataFrame) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    X = frame[LINE_FEATURES].to_numpy(dtype="float64")
    return DecisionTreeClassifier(random_state=0).fit(X, frame["fault"].to_numpy())


def _tree_predict(model: Any, frame: pd.DataFrame) -> Any:
    # what DecisionTreeClassifier.predict does, keeping the probabilities it computes
    proba = model.predict_proba(frame[LINE_FEATURES].to_numpy(dtype="float64"))
    return proba, model.classes_.take(proba.argmax(axis=1))


CASES: list[Case] = [
    Case(
        "fault_detection/iforest",
        FaultDetectionExperiment,
        {"setup": {"datetime_column": "ds", "target": "fault"}, "eda": False},
        lambda n: datasets.pump_sensors(n, len(PUMP_SENSORS)).drop(columns="fault_type"),
        _iforest_fit,
        _iforest_predict,
    ),
    Case(
        "fault_isolation/decision_tree",
        FaultIsolationExperiment,
        {"setup": {"datetime_column": "ds", "target": "fault"}, "eda": False},
        lambda n: datasets.fault_table(n),
        _tree_fit,
        _tree_predict,
    ),
    # -- time series and process mining cases go below this line --------------------------
]


# -- time series: arima (SARIMAX (1,1,1)) -------------------------------------------------------
class _NextRowsTimeSeries(TimeSeriesExperiment):
    """Predicts the frame it was trained on as the *next* rows (timestamps moved past the end).

    ``run_case`` trains and predicts on the same frame; a forecaster only forecasts what comes
    after its training data, so the rows are shifted one span later (same values). Predict is
    then "take in 100,000 new actuals one step ahead", as in streaming.
    """

    def predict(self, data: Any, *, update: bool = True) -> pd.DataFrame:
        span = data["ds"].iloc[-1] - data["ds"].iloc[0] + pd.Timedelta(minutes=1)
        return super().predict(data.assign(ds=data["ds"] + span), update=update)


def _minute_series(n: int) -> pd.DataFrame:
    frame = datasets.seasonal_series(n, period=60, freq="min", n_anomalies=0)
    return frame.drop(columns="anomaly")


def _sarimax_fit(frame: pd.DataFrame) -> Any:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    return SARIMAX(frame["y"].to_numpy(dtype="float64"), order=(1, 1, 1)).fit(
        disp=False, maxiter=50
    )


def _sarimax_predict(results: Any, frame: pd.DataFrame) -> Any:
    # one-step forecasts of new actuals without refitting, and their 99% interval
    extended = results.extend(frame["y"].to_numpy(dtype="float64"))
    mean = extended.filter_results.forecasts[0]
    std = np.sqrt(extended.filter_results.forecasts_error_cov[0, 0])
    return mean - 2.576 * std, mean + 2.576 * std


# -- process mining: heuristics_miner (pm4py) --------------------------------------------------
_PM4PY_KEYS = {"case_id_key": "case_id", "activity_key": "activity", "timestamp_key": "timestamp"}


def _heuristics_fit(frame: pd.DataFrame) -> Any:
    import pm4py

    return pm4py.discover_petri_net_heuristics(frame, **_PM4PY_KEYS)


def _heuristics_predict(model: Any, frame: pd.DataFrame) -> Any:
    # token-based replay of every case (pm4py groups identical variants itself)
    from pm4py.algo.conformance.tokenreplay.variants import token_replay

    net, initial, final = model
    keys = token_replay.Parameters
    parameters = {
        keys.CASE_ID_KEY: "case_id",
        keys.ACTIVITY_KEY: "activity",
        keys.SHOW_PROGRESS_BAR: False,
    }
    return token_replay.apply(frame, net, initial, final, parameters=parameters)


CASES.extend(
    [
        Case(
            "time_series/arima",
            _NextRowsTimeSeries,
            {
                "setup": {"target": "y", "datetime_column": "ds", "forecast_horizon": 60},
                "eda": False,
            },
            _minute_series,
            _sarimax_fit,
            _sarimax_predict,
        ),
        Case(
            "process_mining/heuristics_miner",
            ProcessMiningExperiment,
            {"setup": {}, "eda": False},
            lambda n: datasets.event_log(n, seed=0).drop(columns="deviant"),
            _heuristics_fit,
            _heuristics_predict,
            unit="cases",
        ),
    ]
)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run_case(case: Case, size: int, repeat: int) -> tuple[float, float, dict[str, float]]:
    """Return (train ratio, predict ratio, best seconds) of one case."""
    frame = case.data(size)
    times: dict[str, list[float]] = {"train": [], "fit": [], "predict": [], "bare_predict": []}
    for round_ in range(repeat + 1):
        order = ("experiment", "bare") if round_ % 2 == 0 else ("bare", "experiment")
        for side in order:
            if side == "experiment":
                experiment = case.experiment("bench", case.config)
                train, _ = _timed(lambda e=experiment: e.train(frame))
                predict, result = _timed(lambda e=experiment: e.predict(frame))
                assert len(result) == len(frame) or case.unit == "cases"
                pair = ("train", "predict")
            else:
                train, fitted = _timed(lambda: case.bare_fit(frame))
                predict, _ = _timed(lambda f=fitted: case.bare_predict(f, frame))
                pair = ("fit", "bare_predict")
            if round_:  # round 0 warms up (imports, caches)
                times[pair[0]].append(train)
                times[pair[1]].append(predict)
    best = {k: min(v) for k, v in times.items()}
    return best["train"] / best["fit"], best["predict"] / best["bare_predict"], best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per row-based case")
    parser.add_argument("--cases", type=int, default=10_000, help="cases per event-log case")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per case (best)")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    args = parser.parse_args()
    np.random.seed(0)
    print(
        f"{'case':34} {'size':>9} {'train':>8} {'fit':>8} {'ratio':>6}"
        f" {'predict':>8} {'bare':>8} {'ratio':>6}"
    )
    for case in CASES:
        if args.only and args.only not in case.name:
            continue
        size = args.cases if case.unit == "cases" else args.rows
        train_ratio, predict_ratio, best = run_case(case, size, args.repeat)
        print(
            f"{case.name:34} {size:>9,} {best['train']:8.3f} {best['fit']:8.3f}"
            f" {train_ratio:6.2f} {best['predict']:8.3f} {best['bare_predict']:8.3f}"
            f" {predict_ratio:6.2f}",
            flush=True,
        )
    print("goal: both ratios at most 1.3 (EDA off)")


if __name__ == "__main__":
    main()
