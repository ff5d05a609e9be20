"""A custom experiment type, as docs/models.md shows one, importable by a training child."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from observml.experiments.base import Experiment, ModelSpec


class ZScoreDetector(Experiment):
    """Flags rows where any sensor is more than ``limit`` standard deviations from its mean."""

    experiment_type: ClassVar[str] = "zscore"
    MODELS: ClassVar[Mapping[str, ModelSpec]] = {
        "scaler": ModelSpec(
            "sklearn.preprocessing:StandardScaler", options={"limit": 3.0}, summary="largest |z|"
        )
    }
    DEFAULT_MODEL: ClassVar[str] = "scaler"
    DEFAULT_METRIC: ClassVar[str] = "anomaly_rate"

    def _fit(self, frame: pd.DataFrame) -> None:
        settings = self.settings_
        self.scaler_ = settings.spec.build(settings.params, {})
        self.scaler_.fit(self.feature_matrix(frame, action="train"))
        self.limit_ = float(settings.options["limit"])

    def _scores(self, frame: pd.DataFrame) -> np.ndarray:
        return np.abs(self.scaler_.transform(self.feature_matrix(frame))).max(axis=1)

    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        score = self._scores(frame)
        return pd.DataFrame({"score": score, "anomaly": score > self.limit_}, index=frame.index)

    def _metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        return {"anomaly_rate": float(np.mean(self._scores(frame) > self.limit_))}

    def _model_report_names(self) -> list[str]:
        return []

    def _model_reports(self) -> dict[str, Any]:
        return {}


class SleepyDetector(ZScoreDetector):
    """A ZScoreDetector whose fit sleeps ``seconds`` first (a long fit to stop or kill).

    ``fit_pid_`` records which process fitted it.
    """

    MODELS: ClassVar[Mapping[str, ModelSpec]] = {
        "scaler": ModelSpec(
            "sklearn.preprocessing:StandardScaler",
            options={"limit": 3.0, "seconds": 600.0},
            summary="largest |z|, after a nap",
        )
    }

    def _fit(self, frame: pd.DataFrame) -> None:
        time.sleep(float(self.settings_.options["seconds"]))
        super()._fit(frame)
        self.fit_pid_ = os.getpid()


class FragileDetector(ZScoreDetector):
    """A ZScoreDetector whose fit fails once the file ``options.fail_when`` exists.

    A champion trains; the test then creates the file and every retrain fails, as a retrain on
    rows the model cannot read would.
    """

    MODELS: ClassVar[Mapping[str, ModelSpec]] = {
        "scaler": ModelSpec(
            "sklearn.preprocessing:StandardScaler",
            options={"limit": 3.0, "fail_when": ""},
            summary="largest |z|, unless told to fail",
        )
    }

    def _fit(self, frame: pd.DataFrame) -> None:
        marker = str(self.settings_.options["fail_when"])
        if marker and os.path.exists(marker):
            raise ValueError(f"told to fail by {marker}")
        super()._fit(frame)
