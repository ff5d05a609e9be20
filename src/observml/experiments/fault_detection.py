"""Fault detection: unsupervised anomaly detection on multivariate sensor data.

Config::

    setup: {datetime_column: ds, target: null, normal_label: 0, features: null}
    create_model: {model: iforest, params: {contamination: 0.05, n_estimators: 100}}

``setup.target`` (optional) names a label column: it is never a feature, and when present in
scored data gives precision/recall (a row is a fault where the label differs from
``normal_label``). ``predict`` returns per row ``score`` (higher = more anomalous) and
``anomaly``; the ``pca`` model adds ``t2``, ``spe`` and ``contribution_<column>`` per feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np
import pandas as pd

from observml.errors import DataError
from observml.experiments._torch import DEEP_INSTALL
from observml.experiments.base import Experiment
from observml.experiments.spec import ModelSpec

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["FaultDetectionExperiment"]

_SK: Final = "observml.experiments.detectors:SklearnDetector"

MODELS: Final[Mapping[str, ModelSpec]] = {
    "iforest": ModelSpec(
        "sklearn.ensemble:IsolationForest",
        defaults={"random_state": 0},
        options={"contamination": 0.05},
        adapter=_SK,
        summary="isolation forest; threshold from contamination",
    ),
    "elliptic_envelope": ModelSpec(
        "sklearn.covariance:EllipticEnvelope",
        defaults={"random_state": 0},
        options={"contamination": 0.05},
        adapter=_SK,
        summary="robust covariance (Mahalanobis distance)",
    ),
    "lof": ModelSpec(
        "sklearn.neighbors:LocalOutlierFactor",
        defaults={"novelty": True},
        options={"contamination": 0.05, "scale": True},
        exclude=("novelty",),
        adapter=_SK,
        summary="local outlier factor (novelty mode), standardised features",
        in_sample_scores=False,
    ),
    "one_class_svm": ModelSpec(
        "sklearn.svm:OneClassSVM",
        defaults={"nu": 0.05, "gamma": "scale"},
        options={"scale": True},
        adapter=_SK,
        summary="one-class SVM; nu bounds the training anomaly share",
    ),
    "pca": ModelSpec(
        "sklearn.decomposition:PCA",
        defaults={"n_components": 0.9, "svd_solver": "full"},
        options={
            "alpha": 0.99,
            "lags": 0,
            "smoothing": 1,
            "smoothing_method": "median",
            "spe_limit": "box",
            "t2_factor": 1.0,
        },
        adapter="observml.experiments.detectors:PCAMonitor",
        summary="(dynamic) PCA with Hotelling T² and SPE (Q) control limits at confidence alpha",
    ),
    "dbscan": ModelSpec(
        "sklearn.cluster:DBSCAN",
        defaults={"eps": None, "min_samples": 10},
        options={"eps_quantile": 0.95},
        adapter="observml.experiments.detectors:DBSCANDetector",
        summary="DBSCAN noise rule: farther than eps from every core sample",
        in_sample_scores=False,
    ),
    "window_ae": ModelSpec(
        "observml.experiments._window_ae:WindowAutoencoder",
        extra="deep",
        requires=("torch",),
        install=DEEP_INSTALL,
        instead="'pca': its SPE is the reconstruction error of a linear autoencoder",
        summary="autoencoder (1-D conv or dense) of sensor windows, PyTorch ('deep' extra)",
        in_sample_scores=False,
    ),
}


class FaultDetectionExperiment(Experiment):
    """Detect abnormal rows in multivariate sensor data (see the module docstring)."""

    experiment_type: ClassVar[str] = "fault_detection"
    MODELS: ClassVar[Mapping[str, ModelSpec]] = MODELS
    DEFAULT_MODEL: ClassVar[str] = "iforest"
    DEFAULT_METRIC: ClassVar[str] = "anomaly_rate"
    SETUP_DEFAULTS: ClassVar[Mapping[str, Any]] = {
        **Experiment.SETUP_DEFAULTS,
        "normal_label": 0,
    }

    # -- fitting and predicting -----------------------------------------------------------
    def _fit(self, frame: pd.DataFrame) -> None:
        settings = self.settings_
        X = self.feature_matrix(frame, action="train")
        detector = settings.spec.build(settings.params, settings.options)
        try:
            detector.fit(X)
        except ValueError as exc:
            raise DataError(
                f"{self.where('train')}: {settings.model} could not be fitted on"
                f" {X.shape[0]} rows x {X.shape[1]} features: {exc}"
            ) from exc
        self.detector_ = detector
        self.threshold_ = float(detector.threshold_)

    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        X = self.feature_matrix(frame)
        columns: dict[str, Any] = {}
        time = self.time_values(frame)
        if time is not None and self.settings_.setup["datetime_column"] in frame.columns:
            columns[self.settings_.setup["datetime_column"]] = time.to_numpy()
        if self.settings_.model == "pca":
            stats = self.detector_.monitor(X, commit=True)  # the next batch continues here
            columns["score"] = stats["score"]
            columns["anomaly"] = stats["score"] > self.threshold_
            columns["t2"] = stats["t2"]
            columns["spe"] = stats["spe"]
            for j, name in enumerate(self.features_):
                columns[f"contribution_{name}"] = stats["contributions"][:, j]
        else:
            scores = self.detector_.decision_function(X)
            columns["score"] = scores
            columns["anomaly"] = scores > self.threshold_
        return pd.DataFrame(columns, index=frame.index)

    def anomaly_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the scores of a parsed frame (no output frame built)."""
        scores: np.ndarray = self.detector_.decision_function(self.feature_matrix(frame))
        return scores

    # -- metrics --------------------------------------------------------------------------
    def _metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        scores = self.anomaly_scores(frame)
        flagged = scores > self.threshold_
        metrics = {
            "anomaly_rate": float(flagged.mean()),
            "mean_score": float(scores.mean()),
            "n_samples": float(len(scores)),
        }
        target = self.settings_.setup.get("target")
        if target and target in frame.columns:
            actual = (frame[target] != self.settings_.setup["normal_label"]).to_numpy()
            metrics.update(_binary_metrics(actual, flagged))
        return metrics

    # -- reports --------------------------------------------------------------------------
    def _model_report_names(self) -> list[str]:
        names = ["scores", "control_chart"]
        return names + ["contributions"] if self.settings_.model == "pca" else names

    def _model_reports(self) -> dict[str, Figure]:
        from observml.experiments import reports

        frame = self.train_data_
        X = self.feature_matrix(frame)
        time = self.time_values(frame)
        x = None if time is None else time.to_numpy()
        model = self.settings_.model
        if model == "pca":
            stats = self.detector_.monitor(X, continued=False)
            scores = stats["score"]
        else:
            scores = self.detector_.decision_function(X)
        flagged = scores > self.threshold_
        figures: dict[str, Figure] = {
            "scores": reports.line_chart(
                {"score": scores},
                x=x,
                title=f"{self.name}: anomaly score ({model}), {flagged.mean():.1%} flagged",
                y_title="score (higher = more anomalous)",
                limits={"threshold": self.threshold_},
                marks=flagged,
            )
        }
        if model == "pca":
            figures["control_chart"] = reports.control_chart(
                {
                    "Hotelling T²": (stats["t2"], self.detector_.t2_limit_),
                    "SPE (Q)": (stats["spe"], self.detector_.spe_limit_),
                },
                x=x,
                title=f"{self.name}: PCA control chart (alpha {self.detector_.alpha})",
            )
            rows = flagged if flagged.any() else np.ones(len(flagged), dtype=bool)
            mean = stats["contributions"][rows].mean(axis=0)
            order = np.argsort(-mean)  # largest first: the likely culprits lead
            figures["contributions"] = reports.bar_chart(
                {self.features_[j]: float(mean[j]) for j in order},
                title=f"{self.name}: mean contribution per variable"
                + (" over flagged rows" if flagged.any() else ""),
                y_title="contribution (share of limits)",
            )
        else:
            figures["control_chart"] = reports.control_chart(
                {"anomaly score": (scores, self.threshold_)},
                x=x,
                title=f"{self.name}: control chart ({model})",
            )
        return figures


def _binary_metrics(actual: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision/recall/F1/accuracy of ``flagged`` against ``actual`` faults (0 when undefined)."""
    tp = float(np.sum(actual & flagged))
    fp = float(np.sum(~actual & flagged))
    fn = float(np.sum(actual & ~flagged))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float(np.mean(actual == flagged)),
        "fault_rate": float(actual.mean()),
    }
