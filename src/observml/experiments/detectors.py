"""Anomaly detectors behind the ``fault_detection`` models (PyOD's template method).

:class:`BaseDetector` does the common part once: ``fit`` calls the subclass's ``_fit``, then
sets ``threshold_`` (by default the ``1 - contamination`` quantile of the training scores; a
detector with a natural boundary overrides ``_threshold``). ``decision_function`` returns scores
where higher means more anomalous, and ``predict`` returns ``score > threshold_``.

Each adapter wraps a configured library estimator (``adapter(estimator, **options)``):

* :class:`SklearnDetector`: IsolationForest, EllipticEnvelope, LocalOutlierFactor (novelty),
  OneClassSVM; score ``-score_samples``; threshold the estimator's own ``offset_``.
* :class:`PCAMonitor`: (dynamic) PCA with Hotelling's T² and SPE (Q), optional smoothing,
  and their control limits.
* :class:`DBSCANDetector`: distance to the nearest core sample in units of ``eps``.
"""

from __future__ import annotations

import abc
from numbers import Integral, Real
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval, StrOptions

from observml.experiments._spe_limits import SPE_LIMITS, eigenvalues_of

__all__ = [
    "SPE_LIMITS",
    "BaseDetector",
    "DBSCANDetector",
    "PCAMonitor",
    "SklearnDetector",
]


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


def _lagged(Z: np.ndarray, lags: int) -> np.ndarray:
    """Return ``[z_t, z_(t-1), ..., z_(t-lags)]`` per row (the first ``lags`` rows wrap: drop)."""
    if lags == 0:
        return Z
    return np.hstack([np.roll(Z, shift, axis=0) for shift in range(lags + 1)])


def _rolling(values: np.ndarray, size: int, method: str) -> np.ndarray:
    """Rolling median/mean over the previous ``size`` rows (fewer at the start), per column."""
    if size <= 1 or len(values) == 0:
        return values
    frame = pd.DataFrame(values).rolling(size, min_periods=1)
    result: np.ndarray = (frame.median() if method == "median" else frame.mean()).to_numpy()
    return result


#: What a monitor saved before dynamic PCA and smoothing did (its parameters then).
_SAVED_BEFORE_LAGS: Final[dict[str, Any]] = {
    "lags": 0,
    "smoothing": 1,
    "smoothing_method": "median",
    "spe_limit": "box",
    "t2_factor": 1.0,
}


class PCAMonitor(BaseDetector):
    """Multivariate statistical process control with PCA: Hotelling's T² and SPE (Q).

    Data are standardised; ``T²`` sums squared scores over the retained components divided by
    their variances, ``SPE`` is the squared reconstruction error. Limits at confidence
    ``alpha``: ``T²`` from the F distribution; ``SPE`` by ``spe_limit``:

    * ``box`` (default): Box's scaled chi-square ``g * chi2(h)`` fitted to the mean and
      variance of the training SPE (Nomikos & MacGregor 1995).
    * ``jackson_mudholkar``: Jackson & Mudholkar (1979) from the residual eigenvalues
      ``theta_i = sum_j lambda_j**i`` over the discarded components.
    * ``summed_eigenvalues``: the same formula with ``theta_i = (sum_j lambda_j)**i``, the slip
      in the SKAB leaderboard's code; only to reproduce that leaderboard.

    The anomaly score is ``max(T² / (t2_factor * T²_lim), SPE / SPE_lim)``, so the threshold
    is 1.

    **Dynamic PCA** (Ku, Storer & Georgakis 1995): with ``lags = L`` each standardised row is
    extended with its ``L`` previous rows before the PCA (``p * (L + 1)`` columns), so the
    model sees the process's dynamics; the first ``L`` training rows only serve as history.
    **Smoothing**: T² and SPE are each replaced by their rolling median (or mean) over the
    last ``smoothing`` samples before being compared with their limits.

    **Streaming state.** Rows need the ``L`` rows and ``smoothing - 1`` statistics before them.
    The monitor keeps them in ``history_rows_`` and ``history_stats_`` (from the end of the
    training data); :meth:`monitor` with ``commit=True`` (what the experiment's ``predict``
    does) moves them to the end of the scored batch, so consecutive batches of a stream are
    scored as one series. Scoring without commit (``decision_function``, metrics) continues
    from the kept state and leaves it unchanged.

    Contributions per variable (summed over its lags):
    ``z_j * sum_i t_i p_ji / lambda_i / T²_lim + e_j² / SPE_lim``; unsmoothed, they sum to
    ``T²/T²_lim + SPE/SPE_lim`` of the raw statistics.

    Args:
        estimator: A configured :class:`sklearn.decomposition.PCA`.
        alpha: Confidence level of the control limits.
        lags: Previous rows appended to each row (0 = static PCA).
        smoothing: Samples in the rolling window over T² and SPE (1 = none).
        smoothing_method: ``median`` or ``mean``.
        spe_limit: ``box``, ``jackson_mudholkar`` or ``summed_eigenvalues`` (see above).
        t2_factor: T² alarms above ``t2_factor`` times its limit (1 = at its limit).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "lags": [Interval(Integral, 0, 100, closed="both")],
        "smoothing": [Interval(Integral, 1, 1000, closed="both")],
        "smoothing_method": [StrOptions({"median", "mean"})],
        "spe_limit": [StrOptions(set(SPE_LIMITS))],
        "t2_factor": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        estimator: Any,
        alpha: float = 0.99,
        lags: int = 0,
        smoothing: int = 1,
        smoothing_method: str = "median",
        spe_limit: str = "box",
        t2_factor: float = 1.0,
    ) -> None:
        super().__init__(contamination=None, scale=True)
        self.estimator = estimator
        self.alpha = alpha
        self.lags = lags
        self.smoothing = smoothing
        self.smoothing_method = smoothing_method
        self.spe_limit = spe_limit
        self.t2_factor = t2_factor

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a monitor; one saved before ``lags`` and smoothing existed gets their defaults.

        Such a monitor scored each row on its own: no lags, no smoothing, Box's SPE limit, T² at
        its limit, and no history to carry from one batch to the next.
        """
        state = {**_SAVED_BEFORE_LAGS, **state}
        vars(self).update(state)
        if "history_rows_" not in state and "variances_" in state:
            features = int(getattr(self.estimator, "n_features_in_", 0))
            self.history_rows_ = np.empty((0, features))
            self.history_stats_ = np.empty((0, 2))

    def _fit(self, Z: np.ndarray) -> None:
        from scipy import stats  # here, not at the top: restoring a monitor needs none of it

        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.spe_limit not in SPE_LIMITS:
            raise ValueError(
                f"spe_limit must be one of {sorted(SPE_LIMITS)}, got {self.spe_limit!r}"
            )
        lags = int(self.lags)
        if Z.shape[0] <= lags + 1:
            raise ValueError(f"lags={lags} needs more than {lags + 1} training rows")
        A = _lagged(Z, lags)[lags:]
        pca = self.estimator.fit(A)
        n, k = A.shape[0], int(pca.n_components_)
        self.variances_ = np.maximum(pca.explained_variance_, 1e-12)
        if n > k:
            f_value = stats.f.ppf(self.alpha, k, n - k)
            self.t2_limit_ = float(k * (n - 1) * (n + 1) / (n * (n - k)) * f_value)
        else:
            self.t2_limit_ = float(stats.chi2.ppf(self.alpha, k))
        t2, spe = self._raw_statistics(A)[:2]
        self.spe_limit_ = SPE_LIMITS[self.spe_limit](spe, eigenvalues_of(A), k, self.alpha)
        keep = max(int(self.smoothing) - 1, 0)
        self.history_rows_ = Z[Z.shape[0] - lags :].copy()
        self.history_stats_ = np.column_stack([t2, spe])[len(t2) - keep :].copy()

    def _threshold(self, Z: np.ndarray) -> float:
        return 1.0

    def _raw_statistics(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pca = self.estimator
        centred = A - pca.mean_
        scores = centred @ pca.components_.T
        residual = centred - scores @ pca.components_
        t2 = np.einsum("ij,ij->i", scores / self.variances_, scores)
        spe = np.einsum("ij,ij->i", residual, residual)
        return t2, spe, scores

    def _score(self, Z: np.ndarray) -> np.ndarray:
        return self._monitor_scaled(Z, continued=True, commit=False)["score"]

    def monitor(
        self, X: np.ndarray, *, continued: bool = True, commit: bool = False
    ) -> dict[str, np.ndarray]:
        """Return ``t2``, ``spe``, ``score`` and ``contributions`` (rows x variables).

        Args:
            X: Rows in time order (unscaled features).
            continued: The rows follow the kept state (new data); ``False`` scores them on
                their own (the training rows): the first ``lags`` rows repeat the first row
                as history and the smoothing window starts at the first row.
            commit: Keep the end of ``X`` as the state the next call continues from.

        ``t2`` and ``spe`` are the smoothed statistics compared with the limits.
        """
        return self._monitor_scaled(self._transform(X), continued=continued, commit=commit)

    def _monitor_scaled(
        self, Z: np.ndarray, *, continued: bool, commit: bool
    ) -> dict[str, np.ndarray]:
        lags, m = int(self.lags), Z.shape[0]
        if continued:
            rows_before = self.history_rows_
        else:
            rows_before = np.repeat(Z[:1], lags, axis=0)
        full = np.vstack([rows_before, Z])
        A = _lagged(full, lags)[lags:]
        t2, spe, scores = self._raw_statistics(A)
        raw = np.column_stack([t2, spe])
        before = self.history_stats_ if continued else raw[:0]
        window = np.vstack([before, raw])
        smoothed = _rolling(window, int(self.smoothing), self.smoothing_method)[len(before) :]
        t2_s, spe_s = smoothed[:, 0], smoothed[:, 1]
        if commit:
            keep = max(int(self.smoothing) - 1, 0)
            self.history_rows_ = full[full.shape[0] - lags :].copy()
            self.history_stats_ = window[window.shape[0] - keep :].copy()
        pca = self.estimator
        centred = A - pca.mean_
        residual = centred - scores @ pca.components_
        t2_parts = centred * ((scores / self.variances_) @ pca.components_)
        parts = t2_parts / self.t2_limit_ + residual**2 / self.spe_limit_
        p = Z.shape[1]
        contributions = parts.reshape(m, lags + 1, p).sum(axis=1)
        score = np.maximum(t2_s / (self.t2_factor * self.t2_limit_), spe_s / self.spe_limit_)
        return {"t2": t2_s, "spe": spe_s, "score": score, "contributions": contributions}


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
