"""Step bookkeeping and forecast metrics of the ``time_series`` experiment."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from observml.experiments._forecasters import FloatArray
from observml.experiments._timegrid import TimeGrid

__all__ = ["forecast_metrics", "horizons", "place", "regularize"]


def regularize(
    grid: TimeGrid, anchor: pd.Timestamp, times: pd.DatetimeIndex, values: FloatArray
) -> tuple[FloatArray, int]:
    """Average ``values`` per grid step and interpolate empty steps; return (y, n_filled)."""
    steps = grid.steps(anchor, times)
    steps -= steps.min()
    count = int(steps.max()) + 1
    totals = np.bincount(steps, weights=values, minlength=count)
    counts = np.bincount(steps, minlength=count)
    y = np.full(count, np.nan)
    present = counts > 0
    y[present] = totals[present] / counts[present]
    filled = int((~present).sum())
    if filled:
        positions = np.arange(count)
        y[~present] = np.interp(positions[~present], positions[present], y[present])
    return y, filled


def place(positions: Any, values: FloatArray, count: int) -> FloatArray:
    """Put ``values`` at ``positions`` of a NaN array (duplicates averaged, NaN ignored)."""
    known = np.isfinite(values)
    totals = np.bincount(positions[known], weights=values[known], minlength=count)
    counts = np.bincount(positions[known], minlength=count)
    y = np.full(count, np.nan)
    y[counts > 0] = totals[counts > 0] / counts[counts > 0]
    return y


def horizons(y: FloatArray) -> FloatArray:
    """Steps since the last actual before each step (1 = one step ahead)."""
    position = np.arange(len(y))
    seen = np.where(np.isfinite(y), position, -1)
    before = np.concatenate([[-1], np.maximum.accumulate(seen)[:-1]]) if len(y) else seen
    result: FloatArray = (position - before).astype("float64")
    return result


def forecast_metrics(
    actual: FloatArray, forecast: FloatArray, std: FloatArray, z: float
) -> dict[str, float]:
    """MAE, RMSE, MAPE (%), anomaly rate and coverage over rows with actual and forecast."""
    usable = np.isfinite(actual) & np.isfinite(forecast)
    if not usable.any():
        return {"mae": float("nan"), "rmse": float("nan"), "mape": float("nan"), "n_samples": 0.0}
    error = actual[usable] - forecast[usable]
    nonzero = np.abs(actual[usable]) > 1e-12
    out = {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mape": float(np.mean(np.abs(error[nonzero]) / np.abs(actual[usable][nonzero])) * 100)
        if nonzero.any()
        else float("nan"),
        "n_samples": float(usable.sum()),
    }
    width = std[usable]
    if np.isfinite(width).any():
        inside = np.abs(error) <= z * width
        judged = np.isfinite(width)
        out["anomaly_rate"] = float(np.mean(~inside[judged]))
        out["coverage"] = float(np.mean(inside[judged]))
    return out
