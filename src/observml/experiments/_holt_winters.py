"""Holt-Winters exponential smoothing for the ``time_series`` experiment (statsmodels)."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from observml.errors import ConfigError
from observml.experiments._forecasters import (
    FloatArray,
    Forecaster,
    captured_warnings,
    gap_std,
    psi_std,
    residual_sigma,
)

__all__ = ["HoltWintersForecaster"]

_TRENDS: Final = (None, "add", "mul")


class HoltWintersForecaster(Forecaster):
    """Holt-Winters exponential smoothing (statsmodels ``ExponentialSmoothing``).

    The parameters and initial states are fitted by statsmodels; new actuals then go through
    the same smoothing recursion (the one statsmodels runs, verified to match its fitted
    values), so the level, trend and seasons follow the data while the smoothing constants
    stay as fitted. Intervals use the additive-error formula of Hyndman et al. (2008, class 1)
    with the in-sample one-step error; for multiplicative models they are an approximation.

    Args:
        trend: ``None``, ``"add"`` or ``"mul"``.
        damped_trend: Damp the trend.
        seasonal: ``None``, ``"add"`` or ``"mul"``.
        seasonal_periods: Steps per season (needed with ``seasonal``).
        initialization_method: How statsmodels initialises the states (``"estimated"``,
            ``"heuristic"``, ``"legacy-heuristic"``).
    """

    def __init__(
        self,
        trend: str | None = None,
        damped_trend: bool = False,
        seasonal: str | None = None,
        seasonal_periods: int | None = None,
        initialization_method: str = "estimated",
    ) -> None:
        super().__init__()
        self.trend = trend
        self.damped_trend = damped_trend
        self.seasonal = seasonal
        self.seasonal_periods = seasonal_periods
        self.initialization_method = initialization_method

    def _check(self) -> int:
        for name in ("trend", "seasonal"):
            if getattr(self, name) not in _TRENDS:
                raise ConfigError(
                    f"expected add, mul or null, got {getattr(self, name)!r}.",
                    key=f"create_model.params.{name}",
                )
        if self.damped_trend and self.trend is None:
            raise ConfigError(
                "damped_trend needs a trend. Set trend: add (or mul).",
                key="create_model.params.damped_trend",
            )
        if self.seasonal is None:
            return 0
        m = self.seasonal_periods
        if not isinstance(m, int) or isinstance(m, bool) or m < 2:
            raise ConfigError(
                f"seasonal: {self.seasonal} needs seasonal_periods >= 2 (steps per season),"
                f" got {m!r}.",
                key="create_model.params.seasonal_periods",
            )
        return m

    @property
    def min_rows(self) -> int:  # type: ignore[override]
        """Two full seasons (statsmodels' requirement) or ten rows."""
        return max(10, 2 * self._check() + 1)

    def fit(self, y: FloatArray, times: pd.DatetimeIndex) -> None:
        """Fit with statsmodels, then keep the parameters and the end state."""
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        m = self._check()
        model = ExponentialSmoothing(
            y,
            trend=self.trend,
            damped_trend=self.damped_trend,
            seasonal=self.seasonal,
            seasonal_periods=m or None,
            initialization_method=self.initialization_method,
        )
        with captured_warnings("exponential_smoothing fit", self.fit_warnings):
            results = model.fit()
        params = results.params
        self.m_ = m
        self.alpha_ = float(params["smoothing_level"])
        self.beta_ = float(params["smoothing_trend"]) if self.trend else 0.0
        self.gamma_ = float(params["smoothing_seasonal"]) if m else 0.0
        self.phi_ = float(params["damping_trend"]) if self.damped_trend else 1.0
        level = float(params["initial_level"])
        slope = float(params["initial_trend"]) if self.trend else 0.0
        seasons = np.asarray(params["initial_seasons"], dtype="float64") if m else np.zeros(0)
        self.state_ = (level, slope, seasons)
        mean, state = self._run(y, self.state_)
        self.fitted_ = mean
        self.state_ = state
        self.statsmodels_fitted_ = np.asarray(results.fittedvalues, dtype="float64")
        self.level_ = np.asarray(results.level, dtype="float64")
        self.slope_ = np.asarray(results.trend, dtype="float64") if self.trend else None
        self.season_ = np.asarray(results.season, dtype="float64") if m else None
        self.sigma_ = residual_sigma(y, mean, min(len(y) // 10, 2 * max(m, 1)))

    # The smoothing recursion (statsmodels' ``ExponentialSmoothing._predict``, one step).
    def _trended(self, level: float, slope: float, steps: float = 1.0) -> float:
        if self.trend == "add":
            return level + steps * slope
        if self.trend == "mul":
            return float(level * slope**steps)
        return level

    def _damped_sum(self, h: int) -> float:
        if not self.damped_trend:
            return float(h)
        return float(np.sum(self.phi_ ** np.arange(1, h + 1)))

    def _run(
        self, y: FloatArray, state: tuple[float, float, FloatArray]
    ) -> tuple[FloatArray, tuple[float, float, FloatArray]]:
        level, slope, initial = state
        seasons = [float(v) for v in initial]
        alpha, beta, gamma, phi = self.alpha_, self.beta_, self.gamma_, self.phi_
        mean = np.empty(len(y))
        for i, value in enumerate(y):
            base = self._trended(level, slope, phi)
            season = seasons[0] if seasons else 0.0
            forecast = base * season if self.seasonal == "mul" else base + season
            mean[i] = forecast
            actual = forecast if np.isnan(value) else float(value)
            if self.seasonal == "mul":
                new_level = alpha * actual / season + (1 - alpha) * base
            else:
                new_level = alpha * (actual - season) + (1 - alpha) * base
            if self.trend == "add":
                slope = beta * (new_level - level) + (1 - beta) * phi * slope
            elif self.trend == "mul":
                slope = beta * (new_level / level) + (1 - beta) * slope**phi
            if seasons:
                if self.seasonal == "mul":
                    new_season = gamma * actual / base + (1 - gamma) * season
                else:
                    new_season = gamma * (actual - base) + (1 - gamma) * season
                seasons = [*seasons[1:], new_season]
            level = new_level
        return mean, (level, slope, np.asarray(seasons, dtype="float64"))

    def _mean_ahead(self, steps: int, state: tuple[float, float, FloatArray]) -> FloatArray:
        level, slope, seasons = state
        mean = np.empty(steps)
        for h in range(1, steps + 1):
            base = self._trended(level, slope, self._damped_sum(h))
            if len(seasons):
                season = seasons[(h - 1) % len(seasons)]
                mean[h - 1] = base * season if self.seasonal == "mul" else base + season
            else:
                mean[h - 1] = base
        return mean

    def _weights(self, steps: int) -> FloatArray:
        """Effect of a one-step error on forecasts 0..steps-1 steps later (class 1 models)."""
        weights = np.ones(steps)
        for j in range(1, steps):
            slope = self.beta_ * self._damped_sum(j) if self.trend else 0.0
            seasonal = self.gamma_ if self.m_ and j % self.m_ == 0 else 0.0
            weights[j] = self.alpha_ * (1 + slope) + seasonal
        return weights

    def in_sample(self) -> tuple[FloatArray, FloatArray]:
        """Return the fitted one-step values and the residual sigma."""
        return self.fitted_.copy(), np.full(len(self.fitted_), self.sigma_)

    def update(
        self, y: FloatArray, times: pd.DatetimeIndex, *, commit: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Smooth ``y`` with the fitted constants; gaps follow the pure forecast."""
        mean, state = self._run(y, self.state_)
        std = gap_std(y, self.sigma_, self._weights)
        if commit:
            self.state_ = state
        return mean, std

    def forecast(self, steps: int, times: pd.DatetimeIndex) -> tuple[FloatArray, FloatArray]:
        """Return the h-step forecasts and their standard deviation."""
        mean = self._mean_ahead(steps, self.state_)
        return mean, psi_std(self.sigma_, self._weights(steps), steps)

    def components(self, y: FloatArray, times: pd.DatetimeIndex) -> dict[str, FloatArray]:
        """Return statsmodels' level, trend and season over the last ``len(y)`` rows."""
        n = len(y)
        out = {"level": self.level_[-n:]}
        if self.slope_ is not None:
            out["trend"] = self.slope_[-n:]
        if self.season_ is not None:
            out["season"] = self.season_[-n:]
        return out

    def describe(self) -> dict[str, float]:
        """Return the smoothing constants and the residual sigma."""
        out = {"smoothing_level": self.alpha_, "sigma": self.sigma_}
        if self.trend:
            out["smoothing_trend"] = self.beta_
        if self.damped_trend:
            out["damping_trend"] = self.phi_
        if self.m_:
            out["smoothing_seasonal"] = self.gamma_
        return out
