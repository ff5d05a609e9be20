"""Report figures of the ``time_series`` experiment (names chosen by the experiment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from observml.experiments import reports

if TYPE_CHECKING:
    from observml.experiments._forecasters import FloatArray
    from observml.experiments.spec import ExperimentSettings


class TimeSeriesExperiment(Protocol):
    """What the figures read of a trained ``time_series`` experiment."""

    name: str
    settings_: ExperimentSettings
    freq_: str
    last_time_: pd.Timestamp
    train_series_: pd.Series
    z_: float


__all__ = [
    "TimeSeriesExperiment",
    "autocorrelation_figure",
    "components_figure",
    "forecast_figure",
    "residuals_figure",
]


def _confidence(experiment: TimeSeriesExperiment) -> str:
    return f"{experiment.settings_.options.get('confidence', 0.99):.0%} interval"


def forecast_figure(
    experiment: TimeSeriesExperiment, history: pd.DataFrame, future: pd.DataFrame | None
) -> go.Figure:
    """Actuals, one-step forecasts with their interval and anomalies, then the future."""
    z = experiment.z_
    actual = history["actual"].to_numpy(dtype="float64")
    mean = history["forecast"].to_numpy(dtype="float64")
    std = history["std"].to_numpy(dtype="float64")
    lower, upper = mean - z * std, mean + z * std
    anomaly = np.isfinite(std) & np.isfinite(actual) & ((actual < lower) | (actual > upper))
    x = pd.DatetimeIndex(history.index)
    n_future = 0
    if future is not None and len(future):
        column = experiment.settings_.setup["datetime_column"]
        n_future = len(future)
        x = x.append(pd.DatetimeIndex(future[column]))
        actual = np.concatenate([actual, np.full(n_future, np.nan)])
        mean = np.concatenate([mean, future["forecast"].to_numpy(dtype="float64")])
        lower = np.concatenate([lower, future["lower"].to_numpy(dtype="float64")])
        upper = np.concatenate([upper, future["upper"].to_numpy(dtype="float64")])
        anomaly = np.concatenate([anomaly, np.zeros(n_future, dtype=bool)])
    judged = np.isfinite(std)
    rate = float(anomaly[: len(history)][judged].mean()) if judged.any() else float("nan")
    usable = np.isfinite(actual[: len(history)]) & np.isfinite(mean[: len(history)])
    error = np.abs(actual[: len(history)] - mean[: len(history)])[usable]
    scale = np.abs(actual[: len(history)])[usable]
    mape = (
        float(np.mean(error[scale > 1e-12] / scale[scale > 1e-12]) * 100) if usable.any() else 0.0
    )
    title = (
        f"{experiment.name}: {experiment.settings_.model} one-step forecasts"
        + (f" and {n_future} steps ahead" if n_future else "")
        + f" (MAPE {mape:.2f}%, {rate:.1%} outside the interval)"
    )
    figure = reports.line_chart(
        {"actual": actual, "forecast": mean},
        x=x,
        title=title,
        y_title=str(experiment.settings_.setup["target"]),
        marks=anomaly,
        bands={_confidence(experiment): (lower, upper)},
    )
    if n_future:
        figure.add_vline(x=experiment.last_time_, line_dash="dot", line_color="grey")
    return figure


def components_figure(
    experiment: TimeSeriesExperiment, index: pd.Index, components: Mapping[str, FloatArray]
) -> go.Figure:
    """One panel per component of the training series (the observed values first)."""
    panels = {"observed": experiment.train_series_.to_numpy(dtype="float64"), **components}
    names = list(panels)
    figure = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names)
    keep = reports.thin(len(index))
    x = np.asarray(index)[keep]
    for row, name in enumerate(names, start=1):
        values = np.asarray(panels[name], dtype="float64")[-len(index) :]
        figure.add_scatter(x=x, y=values[keep], mode="lines", name=name, row=row, col=1)
        flat = _flat_range(values)
        if flat is not None:  # else the axis zooms into float noise (ticks 100.0000000001)
            figure.update_yaxes(range=flat, row=row, col=1)
    return reports.styled(
        figure,
        title=f"{experiment.name}: components of the training series"
        f" ({experiment.settings_.model})",
        height=220 * len(names) + 100,
        showlegend=False,
    )


def _flat_range(values: FloatArray) -> list[float] | None:
    """A y range of +-1 % around a series that is constant up to rounding, else ``None``."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    scale = max(abs(low), abs(high))
    if high - low > 1e-9 * scale:
        return None
    middle, half = (low + high) / 2, 0.01 * scale or 1.0
    return [middle - half, middle + half]


def residuals_figure(experiment: TimeSeriesExperiment, history: pd.DataFrame) -> go.Figure:
    """Actual minus forecast, with the interval half-width around zero."""
    z = experiment.z_
    residual = (history["actual"] - history["forecast"]).to_numpy(dtype="float64")
    width = z * history["std"].to_numpy(dtype="float64")
    outside = np.isfinite(width) & np.isfinite(residual) & (np.abs(residual) > width)
    judged = np.isfinite(residual)
    sigma = float(np.sqrt(np.mean(residual[judged] ** 2))) if judged.any() else float("nan")
    return reports.line_chart(
        {"residual": residual},
        x=pd.DatetimeIndex(history.index),
        title=f"{experiment.name}: one-step residuals (RMSE {sigma:.4g})",
        y_title="actual - forecast",
        marks=outside,
        bands={_confidence(experiment): (-width, width)},
    )


def autocorrelation_figure(experiment: TimeSeriesExperiment, series: pd.Series) -> go.Figure:
    """Autocorrelation of the training series with the ±1.96/√n band."""
    from statsmodels.tsa.stattools import acf

    values = series.to_numpy(dtype="float64")
    lags = int(max(1, min(48, len(values) // 2 - 1)))
    correlation = acf(values, nlags=lags, fft=True)
    figure = reports.bar_chart(
        {str(lag): float(v) for lag, v in enumerate(correlation)},
        title=f"{experiment.name}: autocorrelation of {experiment.settings_.setup['target']}",
        x_title=f"lag (steps of {experiment.freq_})",
        y_title="autocorrelation",
    )
    bound = 1.96 / np.sqrt(len(values))
    for level in (bound, -bound):
        figure.add_hline(y=level, line_dash="dash", line_color="grey")
    return figure
