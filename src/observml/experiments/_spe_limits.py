"""Control limits of the SPE (Q) statistic of a PCA monitor, by ``spe_limit`` name.

Each is ``limit(train_spe, eigenvalues, n_components, alpha)``: the SPE of the training rows,
the eigenvalues of their covariance (largest first), how many components the monitor keeps, and
the confidence level. SciPy is imported when a limit is computed (at fit), never when a fitted
monitor is restored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import numpy as np

__all__ = ["SPE_LIMITS", "eigenvalues_of"]


def eigenvalues_of(A: np.ndarray) -> np.ndarray:
    """Eigenvalues of the covariance of ``A`` (ddof 1), largest first."""
    values: np.ndarray = np.maximum(np.linalg.eigvalsh(np.cov(A, rowvar=False))[::-1], 0.0)
    return values


def _box_limit(spe: np.ndarray, eigenvalues: np.ndarray, k: int, alpha: float) -> float:
    """Box's ``g * chi2_alpha(h)`` matched to the training SPE's mean and variance."""
    from scipy import stats  # limits are set at fit; restoring a monitor needs none of SciPy's

    mean, var = float(spe.mean()), float(spe.var())
    if mean <= 1e-12 or var <= 1e-24:
        return max(float(spe.max()) * 1.01, 1e-9)
    g, h = var / (2 * mean), 2 * mean**2 / var
    return float(g * stats.chi2.ppf(alpha, h))


def _jm_formula(theta: tuple[float, float, float], alpha: float, spe: np.ndarray) -> float:
    from scipy import stats

    t1, t2, t3 = theta
    if t1 <= 1e-12 or t2 <= 1e-24:
        return max(float(spe.max()) * 1.01, 1e-9)
    h0 = 1 - 2 * t1 * t3 / (3 * t2**2)
    c = float(stats.norm.ppf(alpha))
    base = 1 + c * h0 * np.sqrt(2 * t2) / t1 + t2 * h0 * (h0 - 1) / t1**2
    return float(t1 * max(base, 1e-12) ** (1 / h0))


def _jackson_mudholkar_limit(
    spe: np.ndarray, eigenvalues: np.ndarray, k: int, alpha: float
) -> float:
    """Jackson & Mudholkar (1979): ``theta_i = sum of lambda_j**i`` over the residual space."""
    rest = eigenvalues[k:]
    theta = (float(rest.sum()), float((rest**2).sum()), float((rest**3).sum()))
    return _jm_formula(theta, alpha, spe)


def _summed_eigenvalue_limit(
    spe: np.ndarray, eigenvalues: np.ndarray, k: int, alpha: float
) -> float:
    """The SKAB leaderboard's variant: ``theta_i = (sum of lambda_j)**i`` (so ``h0 = 1/3``)."""
    total = float(eigenvalues[k:].sum())
    return _jm_formula((total, total**2, total**3), alpha, spe)


#: ``spe_limit`` name -> ``limit(train_spe, eigenvalues, n_components, alpha)``.
SPE_LIMITS: Final[Mapping[str, Callable[[np.ndarray, np.ndarray, int, float], float]]] = {
    "box": _box_limit,
    "jackson_mudholkar": _jackson_mudholkar_limit,
    "summed_eigenvalues": _summed_eigenvalue_limit,
}
