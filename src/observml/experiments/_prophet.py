"""Prophet for the ``time_series`` experiment (the optional ``prophet`` extra)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from observml.experiments._forecasters import (
    FloatArray,
    Forecaster,
    captured_warnings,
    residual_sigma,
)

__all__ = ["ProphetForecaster"]


class ProphetForecaster(Forecaster):
    """Prophet (install the ``prophet`` extra); intervals from the in-sample residual sigma.

    Prophet fits a curve of time (trend, seasonalities); new actuals do not change its
    forecasts, so ``update`` only predicts. ``uncertainty_samples`` is 0 so predictions are
    deterministic (and a loaded model predicts exactly as the saved one).

    Args:
        growth: ``"linear"``, ``"flat"`` or ``"logistic"``.
        seasonality_mode: ``"additive"`` or ``"multiplicative"``.
        yearly_seasonality: ``"auto"``, true/false or a Fourier order.
        weekly_seasonality: As above.
        daily_seasonality: As above.
        changepoint_prior_scale: Trend flexibility.
        seasonality_prior_scale: Seasonality strength.
    """

    takes_actuals: ClassVar[bool] = False

    def __init__(
        self,
        growth: str = "linear",
        seasonality_mode: str = "additive",
        yearly_seasonality: bool | int | str = "auto",
        weekly_seasonality: bool | int | str = "auto",
        daily_seasonality: bool | int | str = "auto",
        changepoint_prior_scale: float = 0.05,
        seasonality_prior_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.growth = growth
        self.seasonality_mode = seasonality_mode
        self.yearly_seasonality = yearly_seasonality
        self.weekly_seasonality = weekly_seasonality
        self.daily_seasonality = daily_seasonality
        self.changepoint_prior_scale = changepoint_prior_scale
        self.seasonality_prior_scale = seasonality_prior_scale

    def fit(self, y: FloatArray, times: pd.DatetimeIndex) -> None:
        """Fit Prophet on ``ds``/``y``."""
        import importlib

        prophet = importlib.import_module("prophet")
        model = prophet.Prophet(
            growth=self.growth,
            seasonality_mode=self.seasonality_mode,
            yearly_seasonality=self.yearly_seasonality,
            weekly_seasonality=self.weekly_seasonality,
            daily_seasonality=self.daily_seasonality,
            changepoint_prior_scale=self.changepoint_prior_scale,
            seasonality_prior_scale=self.seasonality_prior_scale,
            uncertainty_samples=0,
        )
        frame = pd.DataFrame({"ds": times.tz_localize(None), "y": y})
        with captured_warnings("prophet fit", self.fit_warnings):
            model.fit(frame)
        self.model_ = model
        self.fitted_ = self._predict(times)
        self.sigma_ = residual_sigma(y, self.fitted_, 0)

    def _predict(self, times: pd.DatetimeIndex) -> FloatArray:
        frame = pd.DataFrame({"ds": times.tz_localize(None)})
        with captured_warnings("prophet predict", self.fit_warnings):
            predicted = self.model_.predict(frame)
        return np.asarray(predicted["yhat"], dtype="float64")

    def in_sample(self) -> tuple[FloatArray, FloatArray]:
        """Return Prophet's fit of the training times."""
        return self.fitted_.copy(), np.full(len(self.fitted_), self.sigma_)

    def update(
        self, y: FloatArray, times: pd.DatetimeIndex, *, commit: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Predict ``times`` (actuals do not change a Prophet fit)."""
        return self._predict(times), np.full(len(times), self.sigma_)

    def forecast(self, steps: int, times: pd.DatetimeIndex) -> tuple[FloatArray, FloatArray]:
        """Predict the future ``times``."""
        return self._predict(times), np.full(len(times), self.sigma_)

    def components(self, y: FloatArray, times: pd.DatetimeIndex) -> dict[str, FloatArray]:
        """Return Prophet's trend and seasonal terms over ``times``."""
        frame = pd.DataFrame({"ds": times.tz_localize(None)})
        with captured_warnings("prophet predict", self.fit_warnings):
            predicted = self.model_.predict(frame)
        names = ["trend", "yearly", "weekly", "daily"]
        return {n: np.asarray(predicted[n], dtype="float64") for n in names if n in predicted}

    def describe(self) -> dict[str, float]:
        """Return the residual sigma."""
        return {"sigma": self.sigma_}
