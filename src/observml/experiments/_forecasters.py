"""Forecasting back ends of the ``time_series`` experiment, on a regular grid of float values.

Every back end follows :class:`Forecaster`: ``fit`` on the training values, then ``update``
with new values as they arrive (each gets the forecast made *before* it was seen; ``NaN`` marks
a step without an actual, which gets a multi-step forecast), and ``forecast`` past the end.
Forecasts come as a mean and a standard deviation; the experiment turns them into intervals.

* :class:`ArimaForecaster`: statsmodels ``SARIMAX``; new actuals go through
  ``results.extend`` (the Kalman filter takes them in, the parameters stay as fitted).
* ``HoltWintersForecaster`` (``_holt_winters.py``): statsmodels Holt-Winters
  ``ExponentialSmoothing``; new actuals go through the same smoothing recursion.
* ``ProphetForecaster`` (``_prophet.py``): Prophet (optional ``prophet`` extra); a curve fit
  of time, so actuals do not change its forecasts.
* ``SSAForecaster`` (``_ssa.py``): singular spectrum analysis as a linear filter.
"""

from __future__ import annotations

import abc
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from observml.errors import ConfigError
from observml.retraining.drift import FloatArray

__all__ = [
    "ArimaForecaster",
    "FloatArray",
    "Forecaster",
    "captured_warnings",
    "decompose",
    "gap_std",
    "psi_std",
    "residual_sigma",
]

logger = logging.getLogger(__name__)


@contextmanager
def captured_warnings(where: str, sink: list[str]) -> Iterator[None]:
    """Record the warnings a library emits while fitting, log them and keep them in ``sink``.

    Optimisers warn about convergence and starting values as a matter of course; those are
    expected here, so they are logged (and kept on the model) rather than raised.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        text = f"{item.category.__name__}: {item.message}"
        if text not in sink:
            sink.append(text)
            logger.warning("%s: %s", where, text)


def psi_std(sigma: float, weights: FloatArray, steps: int) -> FloatArray:
    """Return the h-step forecast standard deviation for h = 1..steps from MA(∞) weights.

    ``weights[j]`` is the effect of a shock on the forecast ``j`` steps later (``weights[0]``
    is 1), so the h-step variance is ``sigma² * sum(weights[:h]²)``.
    """
    padded = np.zeros(steps)
    n = min(steps, len(weights))
    padded[:n] = weights[:n]
    result: FloatArray = sigma * np.sqrt(np.cumsum(padded**2))
    return result


def residual_sigma(actual: FloatArray, fitted: FloatArray, burn: int) -> float:
    errors = (actual - fitted)[burn:]
    errors = errors[np.isfinite(errors)]
    if errors.size < 2:
        return float("nan")
    return float(np.sqrt(np.mean(errors**2)))


class Forecaster(abc.ABC):
    """A univariate forecaster on a regular grid (the experiment handles the timestamps)."""

    #: Whether new actuals change later forecasts.
    takes_actuals: ClassVar[bool] = True
    #: Fewest training values the model can be fitted on.
    min_rows: int = 10

    def __init__(self) -> None:
        self.fit_warnings: list[str] = []

    @abc.abstractmethod
    def fit(self, y: FloatArray, times: pd.DatetimeIndex) -> None:
        """Fit on the training values ``y`` (no NaN) observed at ``times``."""

    @abc.abstractmethod
    def in_sample(self) -> tuple[FloatArray, FloatArray]:
        """Return the one-step forecasts of the training values and their std (NaN = none)."""

    @abc.abstractmethod
    def update(
        self, y: FloatArray, times: pd.DatetimeIndex, *, commit: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Forecast each value of ``y`` from everything before it, then take it in.

        Args:
            y: The next values on the grid; ``NaN`` where there is no actual (those steps get
                a multi-step forecast and leave the state as a pure forecast would).
            times: Their timestamps.
            commit: Keep the state after ``y``; otherwise the forecaster is left unchanged.

        Returns:
            The forecast mean and standard deviation for each step.
        """

    @abc.abstractmethod
    def forecast(self, steps: int, times: pd.DatetimeIndex) -> tuple[FloatArray, FloatArray]:
        """Return mean and std for the ``steps`` steps after the state's end (no change)."""

    @abc.abstractmethod
    def components(self, y: FloatArray, times: pd.DatetimeIndex) -> dict[str, FloatArray]:
        """Return named components of the training values (the last ``len(y)`` of them)."""

    def describe(self) -> dict[str, float]:
        """Return the fitted parameters as numbers (for logging)."""
        return {}


# -- ARIMA --------------------------------------------------------------------------------
class ArimaForecaster(Forecaster):
    """Seasonal ARIMA through statsmodels ``SARIMAX``; new actuals extend the Kalman filter.

    Args:
        order: ``(p, d, q)``.
        seasonal_order: ``(P, D, Q, s)``; ``s`` = steps per season (0 = none).
        trend: ``"n"``, ``"c"``, ``"t"``, ``"ct"`` or ``None`` (no deterministic trend).
        enforce_stationarity: Keep the AR part stationary while fitting.
        enforce_invertibility: Keep the MA part invertible while fitting.
        method: The statsmodels optimiser (``"lbfgs"``, ``"powell"``, ``"nm"``...).
        maxiter: Optimiser iterations; bounds the training time.
    """

    def __init__(
        self,
        order: Sequence[int] = (1, 1, 1),
        seasonal_order: Sequence[int] = (0, 0, 0, 0),
        trend: str | None = None,
        enforce_stationarity: bool = True,
        enforce_invertibility: bool = True,
        method: str = "lbfgs",
        maxiter: int = 50,
    ) -> None:
        super().__init__()
        self.order = order
        self.seasonal_order = seasonal_order
        self.trend = trend
        self.enforce_stationarity = enforce_stationarity
        self.enforce_invertibility = enforce_invertibility
        self.method = method
        self.maxiter = maxiter

    def _orders(self) -> tuple[tuple[int, int, int], tuple[int, int, int, int]]:
        order = _int_tuple(self.order, 3, "order", "(p, d, q)")
        seasonal = _int_tuple(self.seasonal_order, 4, "seasonal_order", "(P, D, Q, s)")
        if any(seasonal[:3]) and seasonal[3] < 2:
            raise ConfigError(
                f"seasonal_order {list(seasonal)} has seasonal terms but s = {seasonal[3]}."
                " Set s to the number of steps per season (e.g. 12 for monthly data).",
                key="create_model.params.seasonal_order",
            )
        return (order[0], order[1], order[2]), (seasonal[0], seasonal[1], seasonal[2], seasonal[3])

    @property
    def min_rows(self) -> int:  # type: ignore[override]
        """Enough rows for the differencing and a few seasons."""
        order, seasonal = self._orders()
        return max(10, sum(order) + (seasonal[1] + 2) * max(seasonal[3], 1) + 2)

    def fit(self, y: FloatArray, times: pd.DatetimeIndex) -> None:
        """Fit SARIMAX by maximum likelihood (at most ``maxiter`` iterations)."""
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        order, seasonal = self._orders()
        model = SARIMAX(
            y,
            order=order,
            seasonal_order=seasonal,
            trend=self.trend,
            enforce_stationarity=self.enforce_stationarity,
            enforce_invertibility=self.enforce_invertibility,
        )
        with captured_warnings("arima fit", self.fit_warnings):
            self.results_ = model.fit(disp=False, method=self.method, maxiter=int(self.maxiter))
        self.burn_ = int(self.results_.loglikelihood_burn)

    def in_sample(self) -> tuple[FloatArray, FloatArray]:
        """Return the filter's one-step predictions (NaN during the diffuse burn-in)."""
        mean, std = self._filtered(self.results_)
        mean[: self.burn_] = np.nan
        std[: self.burn_] = np.nan
        return mean, std

    @staticmethod
    def _filtered(results: Any) -> tuple[FloatArray, FloatArray]:
        filtered = results.filter_results
        mean = np.array(filtered.forecasts[0], dtype="float64")
        std = np.sqrt(np.array(filtered.forecasts_error_cov[0, 0], dtype="float64"))
        return mean, std

    def update(
        self, y: FloatArray, times: pd.DatetimeIndex, *, commit: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Run the Kalman filter over ``y`` with the fitted parameters (``results.extend``)."""
        extended = self.results_.extend(y)
        if commit:
            self.results_ = extended
            self.burn_ = 0
        return self._filtered(extended)

    def forecast(self, steps: int, times: pd.DatetimeIndex) -> tuple[FloatArray, FloatArray]:
        """Return ``get_forecast(steps)``'s mean and standard error."""
        result = self.results_.get_forecast(steps)
        mean = np.asarray(result.predicted_mean, dtype="float64")
        std = np.sqrt(np.asarray(result.var_pred_mean, dtype="float64"))
        return mean, std

    def components(self, y: FloatArray, times: pd.DatetimeIndex) -> dict[str, FloatArray]:
        """Return an STL split when the model is seasonal, else a moving-average trend."""
        _, seasonal = self._orders()
        return decompose(y, seasonal[3])

    def describe(self) -> dict[str, float]:
        """Return the fitted coefficients and the AIC."""
        names = list(self.results_.model.param_names)
        values = np.asarray(self.results_.params, dtype="float64")
        out = {str(k): float(v) for k, v in zip(names, values, strict=True)}
        out["aic"] = float(self.results_.aic)
        return out

    # -- saving: parameters and data, not statsmodels' results object ----------------------
    def __getstate__(self) -> dict[str, Any]:
        """Keep the fitted model as its parameters, data and initial state (plain arrays).

        statsmodels' results object can only be pickled; these arrays rebuild it exactly
        (:meth:`__setstate__` runs the Kalman filter again), so a saved ARIMA needs no pickle.
        """
        state = dict(vars(self))
        results = state.pop("results_", None)
        if results is not None:
            init = results.model.ssm.initialization
            known = init.initialization_type == "known"
            state["fitted_"] = {
                "params": np.asarray(results.params, dtype="float64"),
                "endog": np.asarray(results.model.endog, dtype="float64").ravel(),
                "known": known,
                "state": np.asarray(init.constant, dtype="float64") if known else None,
                "cov": np.asarray(init.stationary_cov, dtype="float64") if known else None,
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        fitted = state.pop("fitted_", None)
        vars(self).update(state)
        if fitted is not None:
            self.results_ = self._rebuild(fitted)

    def _rebuild(self, fitted: dict[str, Any]) -> Any:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        order, seasonal = self._orders()
        model = SARIMAX(
            np.asarray(fitted["endog"], dtype="float64"),
            order=order,
            seasonal_order=seasonal,
            trend=self.trend,
            enforce_stationarity=self.enforce_stationarity,
            enforce_invertibility=self.enforce_invertibility,
        )
        if fitted["known"]:
            model.ssm.initialize_known(
                np.asarray(fitted["state"], dtype="float64"),
                np.asarray(fitted["cov"], dtype="float64"),
            )
        return model.smooth(np.asarray(fitted["params"], dtype="float64"))


def decompose(y: FloatArray, period: int) -> dict[str, FloatArray]:
    """Split ``y`` into trend, seasonal and remainder (STL) or trend and remainder."""
    if period >= 2 and len(y) >= 2 * period + 1:
        from statsmodels.tsa.seasonal import STL

        fitted = STL(y, period=period, robust=True).fit()
        return {
            "trend": np.asarray(fitted.trend, dtype="float64"),
            "seasonal": np.asarray(fitted.seasonal, dtype="float64"),
            "remainder": np.asarray(fitted.resid, dtype="float64"),
        }
    window = max(3, min(len(y) // 20, 101))
    trend = pd.Series(y).rolling(window, center=True, min_periods=1).mean().to_numpy()
    return {"trend": trend, "remainder": y - trend}


def _int_tuple(value: Any, length: int, name: str, shape: str) -> tuple[int, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or len(value) != length
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise ConfigError(
            f"expected {length} non-negative integers {shape}, got {value!r}.",
            key=f"create_model.params.{name}",
        )
    return tuple(int(v) for v in value)


def gap_std(y: FloatArray, sigma: float, weights: Any) -> FloatArray:
    """Std of each step's forecast: h-step where h counts the steps since the last actual."""
    position = np.arange(len(y))
    seen = np.where(np.isfinite(y), position, -1)
    before = np.concatenate([[-1], np.maximum.accumulate(seen)[:-1]]) if len(y) else seen
    horizon = (position - before).astype(int)
    if not len(y):
        return np.zeros(0)
    table = psi_std(sigma, weights(int(horizon.max())), int(horizon.max()))
    result: FloatArray = table[horizon - 1]
    return result
