"""The typed, frozen sections a hub config is read into (see :mod:`.hub_config` for reading).

Nothing here reads files or imports plugins: the registry, the hub and the API build on these
types, and :mod:`observml.config.section_reader` fills them from a hub config's YAML.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_PLUGINS",
    "HOME_ENV_VAR",
    "ExperimentInstanceSection",
    "ExperimentTypeSection",
    "GlobalSection",
    "HubConfig",
    "PluginSection",
    "StreamingSection",
    "default_max_jobs",
    "default_stream_workers",
]

#: Path of the hub config when none is given on the command line.
CONFIG_ENV_VAR: Final = "OBSERVML_CONFIG"
#: Folder for the embedded stores (default ``./.observml``).
HOME_ENV_VAR: Final = "OBSERVML_HOME"
DEFAULT_CONFIG_FILE: Final = "hub_config.yaml"


@dataclass(frozen=True)
class PluginSection:
    """One ``plugins.<plugin_type>`` section."""

    plugin_type: str
    #: The YAML key ``type``: which implementation of the plugin type (``mlflow``, ...).
    type: str
    config: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True

    @property
    def where(self) -> str:
        """The key path of this section, for messages."""
        return f"plugins.{self.plugin_type}"


@dataclass(frozen=True)
class ExperimentTypeSection:
    """One ``experiments:`` entry: an experiment type loaded from ``module``/``class``."""

    name: str
    module: str
    class_name: str
    enabled: bool = True

    @property
    def target(self) -> str:
        """``module:Class`` for the registry."""
        return f"{self.module}:{self.class_name}"


@dataclass(frozen=True)
class ExperimentInstanceSection:
    """One ``experiments:`` entry with ``type``: an experiment the hub creates on start."""

    name: str
    type: str
    config: Mapping[str, Any] = field(default_factory=dict)
    streaming: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class GlobalSection:
    """The ``global:`` section."""

    log_level: str = "INFO"
    health_timeout: float = 5.0
    job_isolation: Literal["auto", "process", "thread"] = "auto"
    #: Training and retraining jobs running at once; the rest wait ``queued``. ``None``: the
    #: CPUs this process may use (see :func:`default_max_jobs`).
    max_jobs: int | None = None
    #: The key model folders are signed with (HMAC-SHA256); else ``$OBSERVML_MODEL_KEY``, else
    #: ``$OBSERVML_HOME/model.key`` (see :mod:`observml.store.signing`).
    model_key: str | None = field(default=None, repr=False)
    #: Load model folders no hub key signed (e.g. from an older observml). Off by default.
    trust_unsigned_models: bool = False


def default_stream_workers() -> int:
    """Return the default of ``streaming.workers``: usable CPUs plus 4, at most 32.

    A batch waits on the broker's confirms part of its time, so a few more threads than CPUs
    keep them busy (the rule of :class:`~concurrent.futures.ThreadPoolExecutor`).
    """
    return min(32, default_max_jobs() + 4)


def default_max_jobs() -> int:
    """Return the default of ``global.max_jobs``: the CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class StreamingSection:
    """The ``streaming:`` section: how prediction streams batch, log and retrain."""

    batch_size: int = 100
    max_wait: float = 0.5
    prefetch: int = 200
    retrain_rows: int = 5000
    holdout_fraction: float = 0.2
    log_interval: float = 5.0
    champion_refresh: float = 5.0
    #: Threads that run the streams' batches when the datastream can subscribe (see
    #: :func:`default_stream_workers`); ``None``: that default.
    workers: int | None = None


#: Plugins used when the config does not mention a plugin type: no servers needed.
DEFAULT_PLUGINS: Final[Mapping[str, PluginSection]] = {
    "mlops": PluginSection("mlops", "mlflow", {}),
    "datastream": PluginSection("datastream", "local", {}),
}


@dataclass(frozen=True)
class HubConfig:
    """A validated hub configuration."""

    plugins: Mapping[str, PluginSection] = field(default_factory=lambda: dict(DEFAULT_PLUGINS))
    #: ``experiments:`` entries with ``type``: the experiments the hub creates and runs.
    experiments: tuple[ExperimentInstanceSection, ...] = ()
    #: ``experiments:`` entries with ``module``/``class``: experiment types of your own.
    types: tuple[ExperimentTypeSection, ...] = ()
    global_: GlobalSection = field(default_factory=GlobalSection)
    streaming: StreamingSection = field(default_factory=StreamingSection)
    api: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1
    source: str | None = None

    def enabled_plugins(self) -> list[PluginSection]:
        """Return the enabled plugin sections in file order."""
        return [s for s in self.plugins.values() if s.enabled]

    def type_targets(self) -> dict[str, str]:
        """Return ``{name: "module:Class"}`` of the enabled experiment types of the file."""
        return {e.name: e.target for e in self.types if e.enabled}
