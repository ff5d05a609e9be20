"""Anomaly detectors behind the ``fault_detection`` models (PyOD's template method).

:class:`BaseDetector` does the common part once: ``fit`` calls the subclass's ``_fit``, then
sets ``threshold_`` (by default the ``1 - contamination`` quantile of the training scores; a
detector with a natural boundary overrides ``_threshold``). ``decision_function`` returns scores
where higher means more anomalous, and ``predict`` returns ``score > threshold_``.

Each adapter wraps a configured library estimator (``adapter(estimator, **options)``):

* :class:`SklearnDetector`: IsolationForest, EllipticEnvelope, LocalOutlierFactor (novelty),
  OneClassSVM; score ``-score_samples``; threshold the estimator's own ``offset_``.
* :class:`PCAMonitor`: PCA with Hotelling's T² and SPE (Q) and their control limits.
* :class:`DBSCANDetector`: distance to the nearest core sample in units of ``eps``.
"""

from __future__ import annotations

import abc
from numbers import Real
from typing import Any, ClassVar

import numpy as np
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval

__all__ = ["BaseDetector", "DBSCANDetector", "PCAMonitor", "SklearnDetector"]


class BaseDetector(abc.ABC):
    """Template: subclasses implement ``_fit`` and ``_score``; the base sets ``threshold_``.

    Args:
        contamination: Expected share of anomalies in the training data (for the quantile
            threshold); ``None`` when the detector has its own boundary.
        scale: Standardise features before fitting (distance-based detectors need it).
    """

    #: The options' types and ranges, in scikit-learn's vocabulary, checked when an experiment
    #: config is validated (``create_model.params``), long before ``fit``.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "contamination": [Interval(Real, 0, 0.5, closed="neither"), None],
        "scale": ["boolean"],
    }

    def __init__(self, contamination: float | None = 0.05, scale: bool = False) -> None:
        self.contamination = contamination
        self.scale = scale

    def fit(self, X: np.ndarray) -> BaseDetector:
        """Fit on normal-operation data and set ``threshold_``."""
        if self.contamination is not None and not 0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")
        self.scaler_ = StandardScaler().fit(X) if self.scale else None
        Z = self._transform(X)
        self._fit(Z)
        self.threshold_ = float(self._threshold(Z))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Return anomaly scores (higher = more anomalous)."""
        return self._score(self._transform(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return True where a row is anomalous."""
        result: np.ndarray = self.decision_function(X) > self.threshold_
        return result

    def _transform(self, X: np.ndarray) -> np.ndarray:
        scaler = getattr(self, "scaler_", None)
        return X if scaler is None else scaler.transform(X)

    def _threshold(self, Z: np.ndarray) -> float:
        """Return the ``1 - contamination`` quantile of the training scores."""
        contamination = 0.05 if self.contamination is None else self.contamination
        return float(np.quantile(self._score(Z), 1.0 - contamination))

    @abc.abstractmethod
    def _fit(self, Z: np.ndarray) -> None:
        """Fit on the (scaled) training data."""

    @abc.abstractmethod
    def _score(self, Z: np.ndarray) -> np.ndarray:
        """Return scores of (scaled) rows; higher = more anomalous."""


class SklearnDetector(BaseDetector):
    """A scikit-learn outlier estimator with ``score_samples`` (higher = more normal).

    When the estimator takes ``contamination`` it gets ours, and its ``offset_`` (set during
    its own fit, so the training data is not scored twice) becomes the threshold.
    """

    def __init__(
        self, estimator: Any, contamination: float | None = 0.05, scale: bool = False
    ) -> None:
        super().__init__(contamination, scale)
        self.estimator = estimator

    def _fit(self, Z: np.ndarray) -> None:
        params = self.estimator.get_params()
        if "contamination" in params and self.contamination is not None:
            self.estimator.set_params(contamination=self.contamination)
        self.estimator.fit(Z)

    def _threshold(self, Z: np.ndarray) -> float:
        offset = getattr(self.estimator, "offset_", None)
        if offset is not None:
            return -float(np.ravel(offset)[0])
        return super()._threshold(Z)

    def _score(self, Z: np.ndarray) -> np.ndarray:
        result: np.ndarray = -self.estimator.score_samples(Z)
        return result


class PCAMonitor(BaseDetector):
    """Multivariate statistical process control with PCA: Hotelling's T² and SPE (Q).

    Data are standardised; ``T²`` sums squared scores over the retained components divided by
    their variances, ``SPE`` is the squared reconstruction error. Limits at confidence
    ``alpha``: ``T²`` from the F distribution, ``SPE`` from Box's chi-square approximation
    fitted to the training SPE (Nomikos & MacGregor). The anomaly score is
    ``max(T²/T²_lim, SPE/SPE_lim)``, so the threshold is 1.

    Contributions per variable: ``z_j * sum_i t_i p_ji / lambda_i / T²_lim + e_j² / SPE_lim``;
    they sum to ``T²/T²_lim + SPE/SPE_lim``.

    Args:
        estimator: A configured :class:`sklearn.decomposition.PCA`.
        alpha: Confidence level of the control limits.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "alpha": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(self, estimator: Any, alpha: float = 0.99) -> None:
        super().__init__(contamination=None, scale=True)
        self.estimator = estimator
        self.alpha = alpha

    def _fit(self, Z: np.ndarray) -> None:
        from scipy import stats  # here, not at the top: restoring a monitor needs none of it

        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        pca = self.estimator.fit(Z)
        n, k = Z.shape[0], int(pca.n_components_)
        self.variances_ = np.maximum(pca.explained_variance_, 1e-12)
        if n > k:
            f_value = stats.f.ppf(self.alpha, k, n - k)
            self.t2_limit_ = float(k * (n - 1) * (n + 1) / (n * (n - k)) * f_value)
        else:
            self.t2_limit_ = float(stats.chi2.ppf(self.alpha, k))
        spe = self._statistics(Z)[1]
        mean, var = float(spe.mean()), float(spe.var())
        if mean <= 1e-12 or var <= 1e-24:
            self.spe_limit_ = max(float(spe.max()) * 1.01, 1e-9)
        else:
            g, h = var / (2 * mean), 2 * mean**2 / var
            self.spe_limit_ = float(g * stats.chi2.ppf(self.alpha, h))

    def _threshold(self, Z: np.ndarray) -> float:
        return 1.0

    def _statistics(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pca = self.estimator
        centred = Z - pca.mean_
        scores = centred @ pca.components_.T
        residual = centred - scores @ pca.components_
        t2 = np.einsum("ij,ij->i", scores / self.variances_, scores)
        spe = np.einsum("ij,ij->i", residual, residual)
        return t2, spe, residual

    def _score(self, Z: np.ndarray) -> np.ndarray:
        t2, spe, _ = self._statistics(Z)
        result: np.ndarray = np.maximum(t2 / self.t2_limit_, spe / self.spe_limit_)
        return result

    def monitor(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Return ``t2``, ``spe``, ``score`` and ``contributions`` (rows x variables)."""
        Z = self._transform(X)
        pca = self.estimator
        centred = Z - pca.mean_
        scores = centred @ pca.components_.T
        residual = centred - scores @ pca.components_
        t2 = np.einsum("ij,ij->i", scores / self.variances_, scores)
        spe = np.einsum("ij,ij->i", residual, residual)
        t2_parts = centred * ((scores / self.variances_) @ pca.components_)
        contributions = t2_parts / self.t2_limit_ + residual**2 / self.spe_limit_
        score = np.maximum(t2 / self.t2_limit_, spe / self.spe_limit_)
        return {"t2": t2, "spe": spe, "score": score, "contributions": contributions}


class DBSCANDetector(BaseDetector):
    """DBSCAN's noise rule for new rows: farther than ``eps`` from every core sample.

    The score is the distance to the nearest core sample divided by ``eps`` (threshold 1).
    With ``eps: null`` in the params, ``eps`` is the ``eps_quantile`` quantile of each training
    row's distance to its ``min_samples``-th neighbour (the knee of the k-distance curve).

    Args:
        estimator: A configured :class:`sklearn.cluster.DBSCAN`.
        eps_quantile: Quantile used when ``eps`` is not given.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "eps_quantile": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, estimator: Any, eps_quantile: float = 0.95) -> None:
        super().__init__(contamination=None, scale=True)
        self.estimator = estimator
        self.eps_quantile = eps_quantile

    def _fit(self, Z: np.ndarray) -> None:
        from sklearn.neighbors import NearestNeighbors  # a fitted detector needs only its own

        dbscan = self.estimator
        if dbscan.eps is None:
            k = min(int(dbscan.min_samples), len(Z) - 1)
            distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)
            dbscan.set_params(eps=max(float(np.quantile(distances[:, k], self.eps_quantile)), 1e-9))
        dbscan.fit(Z)
        core = dbscan.components_ if len(dbscan.components_) else Z
        self.eps_ = float(dbscan.eps)
        self.n_clusters_ = int(dbscan.labels_.max() + 1)
        self.core_index_ = NearestNeighbors(n_neighbors=1).fit(core)

    def _threshold(self, Z: np.ndarray) -> float:
        return 1.0

    def _score(self, Z: np.ndarray) -> np.ndarray:
        distances, _ = self.core_index_.kneighbors(Z)
        result: np.ndarray = distances[:, 0] / self.eps_
        return result
