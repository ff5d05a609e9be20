"""Time series: forecast one sensor, flag actuals outside the forecast interval as anomalies.

Config::

    setup: {target: y, datetime_column: ds, datetime_format: null, freq: null,
            forecast_horizon: 24}
    create_model: {model: arima, params: {order: [1, 1, 1], confidence: 0.99}}

* ``setup.freq`` is the pandas step (``min``, ``h``, ``D``, ``MS``...); by default it is
  inferred. Training rows are put on that grid: rows in one step are averaged, empty steps
  are interpolated. Later rows go to the step that contains them, ``[t, t + freq)``.
* ``setup.forecast_horizon`` is how many steps :meth:`TimeSeriesExperiment.forecast` (and the
  ``forecast`` report) looks past the data.
* ``create_model.params.confidence`` (every model, default 0.99) is the interval's coverage.

``predict`` returns, per input row in input order, ``actual`` (``NaN`` when the row carries
none), ``forecast``, ``lower``, ``upper``, ``anomaly`` (the actual is outside the interval) and
``horizon`` (steps since the last actual the forecast used; 1 = one step ahead).

**State.** The experiment keeps the model's state at the last actual it has taken in.
``predict(rows)`` forecasts each new row from everything before it, then takes in its actual
(ARIMA: Kalman filter update; Holt-Winters: smoothing recursion; SSA, LSTM, autoencoder: the
window of past values; Prophet: nothing), so the next call continues from there; the model is
never refitted. Rows without actuals get multi-step forecasts and do not move the state.
``predict(rows, update=False)`` and ``score`` leave the state unchanged. Rows at or before the
state's end get the forecast recorded when their step was taken in (the last
``keep_train_rows`` steps are remembered, starting with the in-sample one-step forecasts of
training).

Why this module is long: the experiment's state (the forecaster at the last actual it took in)
is read and moved by ``predict``, ``forecast``, the recall of earlier steps, the metrics and the
drift scores, under one lock; they belong to one class. What stands alone has its own module:
the forecasters (``_forecasters``, ``_holt_winters``, ``_ssa``, ``_prophet``,
``_neural_forecasters``), the time grid
(``_timegrid``), per-step helpers (``_ts_steps``) and the figures (``_ts_reports``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import numpy as np
import pandas as pd

from observml.errors import ConfigError, ConfigProblem, DataError
from observml.experiments._timegrid import TimeGrid, infer_freq
from observml.experiments._torch import DEEP_INSTALL
from observml.experiments._ts_steps import forecast_metrics, horizons, place, regularize
from observml.experiments.base import Experiment
from observml.experiments.spec import ModelSpec
from observml.io.numbers import coerce_numeric
from observml.io.rows import DataLike, require_columns
from observml.retraining.drift import FloatArray

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.experiments._forecasters import FloatArray, Forecaster

__all__ = ["MODELS", "TimeSeriesExperiment"]

_FC: Final = "observml.experiments._forecasters"
_NN: Final = "observml.experiments._neural_forecasters"
_OPTIONS: Final[Mapping[str, Any]] = {"confidence": 0.99}
#: Share of empty grid steps in training above which the frequency is surely wrong.
_MAX_GAP_SHARE: Final = 0.5

MODELS: Final[Mapping[str, ModelSpec]] = {
    "arima": ModelSpec(
        f"{_FC}:ArimaForecaster",
        options=_OPTIONS,
        summary="seasonal ARIMA (statsmodels SARIMAX); actuals update the Kalman filter",
    ),
    "exponential_smoothing": ModelSpec(
        "observml.experiments._holt_winters:HoltWintersForecaster",
        options=_OPTIONS,
        summary="Holt-Winters exponential smoothing (statsmodels); actuals update the states",
    ),
    "ssa": ModelSpec(
        "observml.experiments._ssa:SSAForecaster",
        options=_OPTIONS,
        summary="singular spectrum analysis with the recurrent forecast, as a linear filter",
    ),
    "prophet": ModelSpec(
        "observml.experiments._prophet:ProphetForecaster",
        options=_OPTIONS,
        extra="prophet",
        requires=("prophet",),
        summary="Prophet curve fit (optional 'prophet' extra)",
    ),
    "lstm": ModelSpec(
        f"{_NN}:LSTMForecaster",
        options=_OPTIONS,
        extra="deep",
        requires=("torch",),
        install=DEEP_INSTALL,
        instead="'arima': like the LSTM it forecasts each step from the series' past and flags"
        " actuals outside the forecast interval",
        summary="LSTM one-step forecaster, PyTorch (optional 'deep' extra)",
    ),
    "ae": ModelSpec(
        f"{_NN}:WindowAEForecaster",
        options=_OPTIONS,
        extra="deep",
        requires=("torch",),
        install=DEEP_INSTALL,
        instead="'ssa': PCA of the series' sliding windows, the linear form of the window"
        " autoencoder",
        summary="dense autoencoder of sliding windows, newest value masked (optional 'deep' extra)",
    ),
}

_HISTORY_COLUMNS: Final = ("actual", "forecast", "std", "horizon")


class TimeSeriesExperiment(Experiment):
    """Forecast ``setup.target`` and flag actuals outside the interval (module docstring)."""

    experiment_type: ClassVar[str] = "time_series"
    MODELS: ClassVar[Mapping[str, ModelSpec]] = MODELS
    DEFAULT_MODEL: ClassVar[str] = "arima"
    DEFAULT_METRIC: ClassVar[str] = "mape"
    GROUND_TRUTH: ClassVar[bool] = True  # the stream carries the actuals: judge by the metric
    ORDERED_ROWS: ClassVar[bool] = True
    SETUP_DEFAULTS: ClassVar[Mapping[str, Any]] = {
        **Experiment.SETUP_DEFAULTS,
        "freq": None,
        "forecast_horizon": 24,
    }

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self._state_lock = threading.RLock()

    # -- configuration --------------------------------------------------------------------
    def _check_setup(self, raw: Mapping[str, Any], problems: list[ConfigProblem]) -> dict[str, Any]:
        setup = super()._check_setup(raw, problems)
        for key, what in (("target", "the column to forecast"), ("datetime_column", "its time")):
            if not setup.get(key):
                problems.append(
                    ConfigProblem(
                        f"setup.{key}", f"time_series needs {what}. Add '{key}: <column>'."
                    )
                )
        if setup.get("features"):
            problems.append(
                ConfigProblem(
                    "setup.features",
                    "time_series forecasts setup.target from its own history; other"
                    " columns are not used. Remove setup.features.",
                )
            )
        horizon = setup.get("forecast_horizon")
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 0:
            problems.append(
                ConfigProblem(
                    "setup.forecast_horizon", f"expected an integer >= 0, got {horizon!r}."
                )
            )
        freq = setup.get("freq")
        if freq is not None:
            try:
                TimeGrid(str(freq)).offset  # noqa: B018 - parsing is the check
            except ValueError:
                problems.append(
                    ConfigProblem(
                        "setup.freq",
                        f"{freq!r} is not a pandas frequency. Use e.g. 'min', '15min', 'h',"
                        " 'D' or 'MS'.",
                    )
                )
        return setup

    def _select_features(self, frame: pd.DataFrame, settings: Any) -> list[str]:
        target = str(settings.setup["target"])
        require_columns(frame, [target], self.where("train"))
        return [target]

    # -- training -------------------------------------------------------------------------
    def train(self, data: DataLike) -> Self:
        """Fit the model; ``metrics_`` gains in-sample ``train_mae``/``train_mape``/...."""
        super().train(data)
        history = self.history_
        scored = forecast_metrics(
            history["actual"].to_numpy(),
            history["forecast"].to_numpy(),
            history["std"].to_numpy(),
            self.z_,
        )
        self.metrics_.update({f"train_{k}": v for k, v in scored.items()})
        self.metrics_.update({f"model_{k}": v for k, v in self.forecaster_.describe().items()})
        return self

    def _fit(self, frame: pd.DataFrame) -> None:
        settings = self.settings_
        where = self.where("train")
        target = settings.setup["target"]
        confidence = settings.options.get("confidence", 0.99)
        if not isinstance(confidence, int | float) or not 0 < confidence < 1:
            raise ConfigError(
                f"expected a number between 0 and 1 (e.g. 0.99), got {confidence!r}.",
                key="create_model.params.confidence",
            )
        times = self._times(frame)
        values = coerce_numeric(
            frame[target], where, column=target, decimal=self._decimal(settings)
        ).to_numpy()
        freq = settings.setup.get("freq") or infer_freq(times)
        if freq is None:
            raise DataError(
                f"{where}: column {settings.setup['datetime_column']!r} has one distinct"
                " timestamp; a time series needs at least two."
            )
        grid = TimeGrid(str(freq))
        anchor = grid.align(times.min())
        y, filled = regularize(grid, anchor, times, values)
        column = settings.setup["datetime_column"]
        if filled > _MAX_GAP_SHARE * len(y):
            raise DataError(
                f"{where}: the timestamps in column {column!r} fill only"
                f" {1 - filled / len(y):.0%} of the {freq!r} steps between first and last."
                " Set setup.freq to the data's real spacing."
            )
        forecaster: Forecaster = settings.spec.build(settings.params, {})
        grid_times = grid.times(anchor, np.arange(len(y)))
        if len(y) < forecaster.min_rows:
            raise DataError(
                f"{where}: column {target!r} has {len(y)} steps of {freq!r};"
                f" {settings.model} needs at least {forecaster.min_rows}. Send more rows."
            )
        try:
            forecaster.fit(y, grid_times)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise DataError(
                f"{where}: {settings.model} could not be fitted on column {target!r}"
                f" ({len(y)} steps of {freq!r}): {exc}"
            ) from exc
        from scipy.stats import norm

        self.forecaster_ = forecaster
        self.freq_ = str(freq)
        self.z_ = float(norm.ppf(0.5 + float(confidence) / 2))
        self.filled_steps_ = int(filled)
        self.last_time_ = grid_times[-1]
        self.fit_warnings_ = list(forecaster.fit_warnings)
        keep = max(1, int(settings.setup["keep_train_rows"]))
        mean, std = forecaster.in_sample()
        history = pd.DataFrame(
            {"actual": y, "forecast": mean, "std": std, "horizon": np.ones(len(y))},
            index=grid_times,
        )
        self.history_ = history.iloc[-keep:]
        self.train_series_ = history["actual"].iloc[-keep:].copy()

    # -- predicting -----------------------------------------------------------------------
    def predict(self, data: DataLike, *, update: bool = True) -> pd.DataFrame:
        """Forecast each row; with ``update`` the actuals are taken in (module docstring).

        Args:
            data: Rows with ``setup.datetime_column`` and, where known, ``setup.target``.
            update: Take in the actuals so the next call continues after them; ``False``
                leaves the experiment unchanged.

        Returns:
            One row per input row (same order and index): the datetime column, ``actual``,
            ``forecast``, ``lower``, ``upper``, ``anomaly`` and ``horizon``.

        Raises:
            ModelNotTrainedError: Called before :meth:`train`.
            DataError: A column is missing or not numeric, or rows are older than the steps
                the experiment remembers.
        """
        self._check_trained()
        frame = self.prepare(data, action="predict")
        return self._forecast_rows(frame, commit=update)

    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self._forecast_rows(frame, commit=True)

    def forecast(self, steps: int | None = None) -> pd.DataFrame:
        """Forecast the ``steps`` steps after the last actual taken in (state unchanged).

        Args:
            steps: How many; ``None`` uses ``setup.forecast_horizon``.

        Returns:
            One row per future step: the datetime column, ``forecast``, ``lower``, ``upper``
            and ``horizon``.
        """
        self._check_trained()
        count = int(self.settings_.setup["forecast_horizon"] if steps is None else steps)
        if count < 1:
            raise DataError(f"experiment {self.name!r} forecast: steps must be >= 1, got {count}.")
        grid = TimeGrid(self.freq_)
        with self._state_lock:
            times = grid.times(self.last_time_, np.arange(1, count + 1))
            mean, std = self.forecaster_.forecast(count, times)
        return pd.DataFrame(
            {
                self.settings_.setup["datetime_column"]: times,
                "forecast": mean,
                "lower": mean - self.z_ * std,
                "upper": mean + self.z_ * std,
                "horizon": np.arange(1, count + 1),
            }
        )

    def _times(self, frame: pd.DataFrame) -> pd.DatetimeIndex:
        values = self.time_values(frame)
        column = self.settings_.setup["datetime_column"]
        if values is None:
            require_columns(frame, [column], self.where("predict"))
            raise AssertionError("unreachable")  # pragma: no cover
        return pd.DatetimeIndex(values)

    def _actuals(self, frame: pd.DataFrame, where: str) -> FloatArray:
        target = self.settings_.setup["target"]
        if target not in frame.columns:
            return np.full(len(frame), np.nan)
        values: FloatArray = np.array(
            coerce_numeric(
                frame[target],
                where,
                column=target,
                allow_nan=True,
                decimal=self._decimal(self.settings_),
            ),
            dtype="float64",
        )
        return values

    def _forecast_rows(
        self, frame: pd.DataFrame, *, commit: bool, action: str = "predict"
    ) -> pd.DataFrame:
        where = self.where(action)
        times = self._times(frame)
        actual = self._actuals(frame, where)
        grid = TimeGrid(self.freq_)
        n = len(frame)
        mean, std, horizon = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
        with self._state_lock:
            steps = grid.steps(self.last_time_, times)
            past = steps <= 0
            if past.any():
                self._recall(grid, times, steps, past, mean, std, horizon, actual, where)
            future = ~past
            if future.any():
                count = int(steps[future].max())
                y = place(steps[future] - 1, actual[future], count)
                new_times = grid.times(self.last_time_, np.arange(1, count + 1))
                m, s = self._advance(y, new_times, commit)
                at = steps[future] - 1
                mean[future], std[future] = m[at], s[at]
                horizon[future] = horizons(y)[at]
        lower, upper = mean - self.z_ * std, mean + self.z_ * std
        anomaly = np.isfinite(actual) & np.isfinite(std) & ((actual < lower) | (actual > upper))
        column = self.settings_.setup["datetime_column"]
        out = {
            column: times,
            "actual": actual,
            "forecast": mean,
            "lower": lower,
            "upper": upper,
            "anomaly": anomaly,
            "horizon": horizon.astype(int),
        }
        return pd.DataFrame(out, index=frame.index)

    def _advance(
        self, y: FloatArray, times: pd.DatetimeIndex, commit: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Forecast the new steps ``y``; with ``commit`` take in up to the last actual."""
        seen = np.flatnonzero(np.isfinite(y))
        if not commit or seen.size == 0:
            return self.forecaster_.update(y, times, commit=False)
        k = int(seen[-1]) + 1
        mean, std = self.forecaster_.update(y[:k], times[:k], commit=True)
        if k < len(y):
            more_mean, more_std = self.forecaster_.update(y[k:], times[k:], commit=False)
            mean, std = np.concatenate([mean, more_mean]), np.concatenate([std, more_std])
        keep = max(1, int(self.settings_.setup["keep_train_rows"]))
        tail = slice(max(0, k - keep), k)  # only what the history keeps
        taken = pd.DataFrame(
            {
                "actual": y[tail],
                "forecast": mean[tail],
                "std": std[tail],
                "horizon": horizons(y[:k])[tail],
            },
            index=times[tail],
        )
        self.history_ = pd.concat([self.history_, taken]).iloc[-keep:]
        self.last_time_ = times[k - 1]
        return mean, std

    def _recall(
        self,
        grid: TimeGrid,
        times: pd.DatetimeIndex,
        steps: Any,
        past: Any,
        mean: FloatArray,
        std: FloatArray,
        horizon: FloatArray,
        actual: FloatArray,
        where: str,
    ) -> None:
        """Fill rows at or before the state's end from the remembered forecasts."""
        wanted = grid.times(self.last_time_, steps[past])
        missing = ~wanted.isin(self.history_.index)
        if missing.any():
            first = times[past][int(np.flatnonzero(missing)[0])]
            column = self.settings_.setup["datetime_column"]
            raise DataError(
                f"{where}: column {column!r} has {first} at or before the last step taken in"
                f" ({self.last_time_}), and the experiment remembers only"
                f" {len(self.history_)} steps back to {self.history_.index[0]}. Send rows"
                " newer than the last step, or retrain."
            )
        found = self.history_.reindex(wanted)
        mean[past] = found["forecast"].to_numpy()
        std[past] = found["std"].to_numpy()
        horizon[past] = found["horizon"].to_numpy()
        remembered = found["actual"].to_numpy()
        actual[past] = np.where(np.isfinite(actual[past]), actual[past], remembered)

    # -- drift ----------------------------------------------------------------------------
    def score_limits(self) -> list[float]:
        """The interval's edges in units of :meth:`_drift_scores` (the standardized residual)."""
        return [-self.z_, self.z_]

    def _drift_scores(self, result: pd.DataFrame) -> FloatArray:
        """The standardized one-step residual ``(actual - forecast) / std`` (NaN without one)."""
        forecast = result["forecast"].to_numpy(dtype="float64")
        std = (result["upper"].to_numpy(dtype="float64") - forecast) / self.z_
        with np.errstate(divide="ignore", invalid="ignore"):
            residual: FloatArray = (result["actual"].to_numpy(dtype="float64") - forecast) / std
        return residual

    def _reference_scores(self, frame: pd.DataFrame, size: int) -> FloatArray:
        """The same residuals over the in-sample one-step forecasts of the training series."""
        tail = self.history_.iloc[-size:]
        with np.errstate(divide="ignore", invalid="ignore"):
            residual: FloatArray = ((tail["actual"] - tail["forecast"]) / tail["std"]).to_numpy(
                dtype="float64"
            )
        return residual

    # -- metrics --------------------------------------------------------------------------
    def _metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        result = self._forecast_rows(frame, commit=False, action="score")
        order = np.argsort(
            result[self.settings_.setup["datetime_column"]].to_numpy(), kind="stable"
        )
        ordered = result.iloc[order]
        actual = ordered["actual"].to_numpy(dtype="float64")
        if not np.isfinite(actual).any():
            target = self.settings_.setup["target"]
            raise DataError(
                f"{self.where('score')}: column {target!r} has no actual values; scoring"
                " compares forecasts with actuals."
            )
        metrics = forecast_metrics(
            actual,
            ordered["forecast"].to_numpy(dtype="float64"),
            (ordered["upper"] - ordered["forecast"]).to_numpy(dtype="float64") / self.z_,
            self.z_,
        )
        metrics.update(self._naive(ordered, metrics))
        return metrics

    def _naive(self, ordered: pd.DataFrame, metrics: Mapping[str, float]) -> dict[str, float]:
        """MAPE of the last-value forecast on the same rows, and our MAE relative to its."""
        actual = ordered["actual"].to_numpy(dtype="float64")
        column = self.settings_.setup["datetime_column"]
        first = ordered[column].iloc[0]
        before = self.history_["actual"][self.history_.index < first].dropna()
        previous = before.iloc[-1] if len(before) else np.nan
        seen = np.array(pd.Series(actual).ffill().shift(1), dtype="float64")
        seen[0] = previous
        seen = np.where(np.isnan(seen), previous, seen)
        naive = forecast_metrics(actual, seen, np.full(len(actual), np.nan), self.z_)
        out = {"naive_mape": naive["mape"], "naive_mae": naive["mae"]}
        if naive["mae"] > 0:
            out["relative_mae"] = metrics["mae"] / naive["mae"]
        return out

    # -- reports --------------------------------------------------------------------------
    def _model_report_names(self) -> list[str]:
        return ["forecast", "components", "residuals"]

    def _model_reports(self) -> dict[str, Figure]:
        from observml.experiments import _ts_reports

        with self._state_lock:
            history = self.history_.copy()
            future = self.forecast() if self.settings_.setup["forecast_horizon"] else None
            series = self.train_series_
            components = self.forecaster_.components(
                series.to_numpy(), pd.DatetimeIndex(series.index)
            )
        return {
            "forecast": _ts_reports.forecast_figure(self, history, future),
            "components": _ts_reports.components_figure(self, series.index, components),
            "residuals": _ts_reports.residuals_figure(self, history),
        }

    def eda_reports(self) -> dict[str, Figure]:
        """Return ``histogram_<target>`` and ``autocorrelation`` of the training series."""
        from observml.experiments import _ts_reports

        figures = super().eda_reports()
        figures["autocorrelation"] = _ts_reports.autocorrelation_figure(self, self.train_series_)
        return figures

    def plot_names(self) -> list[str]:
        """Return the names :meth:`reports` produces."""
        names = super().plot_names()
        return [*names, "autocorrelation"] if self.settings_.eda else names

    # -- copying and pickling -------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("_state_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._state_lock = threading.RLock()
