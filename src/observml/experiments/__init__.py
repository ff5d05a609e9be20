"""Experiment types: fault detection, fault isolation, time series and process mining.

Importing this package imports only the contract; each type's module (and its libraries) loads
when the type is resolved through the registry's ``experiment`` plugin type.
"""

from __future__ import annotations

from observml.experiments.base import Experiment, load_experiment
from observml.experiments.spec import ExperimentSettings, ModelSpec

__all__ = [
    "Experiment",
    "ExperimentSettings",
    "ModelSpec",
    "load_experiment",
]
