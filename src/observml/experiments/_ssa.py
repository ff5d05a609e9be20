"""Singular spectrum analysis (SSA) forecasting with numpy.

SSA embeds the series in a trajectory matrix of lagged windows (length ``L``), keeps the ``r``
leading eigenvectors of its lag-covariance matrix (the signal subspace), reconstructs the
signal by diagonal averaging, and forecasts with the linear recurrence formula (LRF) the
subspace implies (Golyandina & Zhigljavsky, *Singular Spectrum Analysis for Time Series*, 2013).

Because the end of the reconstruction uses only the last ``2L - 2`` values, "reconstruct, then
apply the LRF" is one fixed linear filter of those values. :class:`SSAForecaster` computes
that filter once: a one-step forecast is a dot product, new actuals shift the window (the
model is not refitted), and multi-step forecasts iterate the filter. Interval widths come from
the in-sample one-step error and the filter's MA(∞) weights.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from observml.errors import ConfigError
from observml.experiments._forecasters import FloatArray, Forecaster, gap_std, psi_std

__all__ = ["SSAForecaster", "ssa_filter"]

#: Window lengths tried when ``window_size`` is not given (those with 3 L <= rows).
WINDOW_CANDIDATES: Final = (12, 24, 48)
#: Largest number of components tried when ``n_components`` is not given.
MAX_COMPONENTS: Final = 20
_HOLDOUT: Final = 0.2


def _eigen(y: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Return the eigenvalues (descending) and eigenvectors of the lag-covariance matrix."""
    trajectory = sliding_window_view(y, window)
    values, vectors = np.linalg.eigh(trajectory.T @ trajectory)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def ssa_filter(vectors: FloatArray, window: int, rank: int) -> FloatArray | None:
    """Return the one-step filter over the last ``2L - 2`` values (oldest first), or None.

    None when the LRF does not exist for this rank (the subspace contains the last axis).
    """
    basis = vectors[:, :rank]
    pi = basis[-1]
    nu2 = float(pi @ pi)
    if nu2 >= 1 - 1e-9:
        return None
    lrf = basis[:-1] @ pi / (1 - nu2)
    projector = basis @ basis.T
    m = 2 * window - 2
    rebuild = np.zeros((window - 1, m))
    for q in range(window - 1, m):  # the last L-1 positions
        starts = range(q - window + 1, m - window + 1)
        for e in starts:
            rebuild[q - window + 1, e : e + window] += projector[q - e] / len(starts)
    result: FloatArray = lrf @ rebuild
    return result


def _one_step(values: FloatArray, taps: FloatArray) -> FloatArray:
    """Forecast ``values[t]`` for t >= len(taps) from the values before it."""
    m = len(taps)
    result: FloatArray = sliding_window_view(values[:-1], m) @ taps
    return result


class SSAForecaster(Forecaster):
    """SSA with the recurrent forecast, as a linear filter (see the module docstring).

    Args:
        window_size: Embedding window ``L``; ``None`` tries 12, 24 and 48 (those with
            ``3 L <= rows``) on a holdout (the last 20% of training).
        n_components: Components kept, ``r < L``; ``None`` picks the best on the holdout.
    """

    def __init__(self, window_size: int | None = None, n_components: int | None = None) -> None:
        super().__init__()
        self.window_size = window_size
        self.n_components = n_components

    @property
    def min_rows(self) -> int:  # type: ignore[override]
        """Three windows."""
        return 3 * (self.window_size or min(WINDOW_CANDIDATES))

    def _check(self) -> None:
        for name in ("window_size", "n_components"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(
                    f"expected an integer or null, got {value!r}.",
                    key=f"create_model.params.{name}",
                )
        if self.window_size is not None and self.window_size < 3:
            raise ConfigError(
                f"expected at least 3, got {self.window_size}.",
                key="create_model.params.window_size",
            )
        if self.n_components is not None and not (
            1 <= self.n_components < (self.window_size or min(WINDOW_CANDIDATES))
        ):
            raise ConfigError(
                f"expected 1 <= n_components < window_size, got {self.n_components}.",
                key="create_model.params.n_components",
            )

    def _choose(self, y: FloatArray) -> tuple[int, int]:
        n = len(y)
        windows = (
            [self.window_size]
            if self.window_size
            else [w for w in WINDOW_CANDIDATES if 3 * w <= n] or [max(3, n // 3)]
        )
        if self.window_size and self.n_components:
            return self.window_size, self.n_components
        best: tuple[float, int, int] | None = None
        for window in windows:
            m = 2 * window - 2
            split = n - max(int(n * _HOLDOUT), 1)
            if split < 2 * window:
                split = n  # too short for a holdout: judge in-sample
            _, vectors = _eigen(y[:split], window)
            ranks = [self.n_components] if self.n_components else range(1, window)
            for rank in ranks:
                if rank > MAX_COMPONENTS and not self.n_components:
                    break
                taps = ssa_filter(vectors, window, rank)
                if taps is None:
                    continue
                start = max(split, m) if split < n else m
                predicted = _one_step(y[start - m :], taps)
                error = float(np.mean((y[start:] - predicted) ** 2))
                if np.isfinite(error) and (best is None or error < best[0]):
                    best = (error, window, rank)
        if best is None:
            raise ValueError("no window/rank gives a usable recurrence; set window_size")
        return best[1], best[2]

    def fit(self, y: FloatArray, times: pd.DatetimeIndex) -> None:
        """Choose ``L`` and ``r`` (unless given), then build the filter on all of ``y``."""
        self._check()
        window, rank = self._choose(y)
        values, vectors = _eigen(y, window)
        taps = ssa_filter(vectors, window, rank)
        if taps is None:
            raise ValueError(f"SSA with window {window} and {rank} components has no recurrence")
        self.window_ = window
        self.rank_ = rank
        self.eigenvalues_ = values
        self.vectors_ = vectors[:, : min(window, MAX_COMPONENTS)]
        self.taps_ = taps
        m = len(taps)
        fitted = np.full(len(y), np.nan)
        fitted[m:] = _one_step(y, taps)
        self.fitted_ = fitted
        errors = (y - fitted)[m:]
        self.sigma_ = float(np.sqrt(np.mean(errors**2))) if errors.size else float("nan")
        self.tail_ = y[-m:].copy()
        self.weights_ = self._psi(max(200, 4 * window))

    def _psi(self, steps: int) -> FloatArray:
        ar = self.taps_[::-1]
        psi = np.zeros(steps)
        psi[0] = 1.0
        for j in range(1, steps):
            k = min(j, len(ar))
            psi[j] = float(ar[:k] @ psi[j - 1 :: -1][:k])
        return psi

    def _weights(self, steps: int) -> FloatArray:
        if steps > len(self.weights_):
            self.weights_ = self._psi(steps)
        return self.weights_[:steps]

    def in_sample(self) -> tuple[FloatArray, FloatArray]:
        """Return the filter's one-step forecasts of the training values."""
        std = np.where(np.isnan(self.fitted_), np.nan, self.sigma_)
        return self.fitted_.copy(), std

    def update(
        self, y: FloatArray, times: pd.DatetimeIndex, *, commit: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Apply the filter to each new value; gaps are filled with their forecast."""
        taps = self.taps_
        m = len(taps)
        if not np.isnan(y).any():
            values = np.concatenate([self.tail_, y])
            mean = _one_step(values, taps)
        else:
            values = np.concatenate([self.tail_, np.empty(len(y))])
            mean = np.empty(len(y))
            for i, value in enumerate(y):
                mean[i] = values[i : i + m] @ taps
                values[m + i] = mean[i] if np.isnan(value) else value
        std = gap_std(y, self.sigma_, self._weights)
        if commit:
            self.tail_ = values[-m:].copy()
        return mean, std

    def forecast(self, steps: int, times: pd.DatetimeIndex) -> tuple[FloatArray, FloatArray]:
        """Iterate the filter ``steps`` times from the current window."""
        mean, _ = self.update(np.full(steps, np.nan), times, commit=False)
        return mean, psi_std(self.sigma_, self._weights(steps), steps)

    def components(self, y: FloatArray, times: pd.DatetimeIndex) -> dict[str, FloatArray]:
        """Return the reconstructed leading components of ``y`` and what is left over."""
        window = self.window_
        if len(y) < window + 1:
            return {"signal": y.copy()}
        trajectory = sliding_window_view(y, window)
        out: dict[str, FloatArray] = {}
        signal = np.zeros(len(y))
        shown = min(self.rank_, 4)
        for i in range(self.rank_):
            u = self.vectors_[:, i]
            part = _diagonal_average(np.outer(trajectory @ u, u), len(y))
            signal += part
            if i < shown:
                out[f"component {i + 1}"] = part
        if self.rank_ > shown:
            out[f"components {shown + 1}-{self.rank_}"] = signal - sum(out.values())
        out["noise"] = y - signal
        return out

    def describe(self) -> dict[str, float]:
        """Return ``L``, ``r``, the share of variance kept and the one-step sigma."""
        share = float(self.eigenvalues_[: self.rank_].sum() / self.eigenvalues_.sum())
        return {
            "window_size": float(self.window_),
            "n_components": float(self.rank_),
            "variance_share": share,
            "sigma": self.sigma_,
        }


def _diagonal_average(matrix: FloatArray, n: int) -> FloatArray:
    """Average a K x L matrix along its anti-diagonals into a series of length K + L - 1."""
    k, window = matrix.shape
    index = np.arange(k)[:, None] + np.arange(window)[None, :]
    total = np.bincount(index.ravel(), weights=matrix.ravel(), minlength=n)
    count = np.bincount(index.ravel(), minlength=n)
    result: FloatArray = total / count
    return result
