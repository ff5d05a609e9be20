"""observml: an ExperimentHub for process-monitoring machine learning.

Importing this package imports no mlflow, pika, fastapi or click: plugins and the service are
loaded when used.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from observml.config import HubConfig, load_config
from observml.config.registry import PluginRegistry
from observml.errors import (
    ConfigError,
    DataError,
    ExperimentError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    ModelNotTrainedError,
    NotFoundError,
    ObservMLError,
    PluginError,
    PluginNotConfiguredError,
    ServiceUnavailableError,
    TrainingInProgressError,
)
from observml.hub.hub import ExperimentHub
from observml.plugins.base import Plugin
from observml.plugins.datastream import DataStreamPlugin, Message
from observml.plugins.memory import InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.plugins.mlops import MLOpsPlugin

try:
    __version__ = _metadata.version("observml")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DataStreamPlugin",
    "ExperimentError",
    "ExperimentExistsError",
    "ExperimentHub",
    "ExperimentNotFoundError",
    "HubConfig",
    "InMemoryDataStreamPlugin",
    "InMemoryMLOpsPlugin",
    "MLOpsPlugin",
    "Message",
    "ModelNotTrainedError",
    "NotFoundError",
    "ObservMLError",
    "Plugin",
    "PluginError",
    "PluginNotConfiguredError",
    "PluginRegistry",
    "ServiceUnavailableError",
    "TrainingInProgressError",
    "__version__",
    "load_config",
]
