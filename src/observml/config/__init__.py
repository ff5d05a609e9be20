"""Configuration: the hub config file, the one plugin registry, and checking what users write.

* :mod:`~observml.config.hub_config` — ``hub_config.yaml`` found and read (``${VAR}``
  expanded), and :mod:`~observml.config.section_reader` checking its sections into the types of
  :mod:`~observml.config.sections` (every problem reported with its key path);
* :mod:`~observml.config.registry` — the one table of plugins and experiment types, and entry
  points; module paths only on trusted lookups;
* :mod:`~observml.config.validation` — keyword arguments checked against signatures, each
  value by :mod:`~observml.config.annotation` against its annotation;
* :mod:`~observml.config.legacy` — ObservML 1.0 experiment configs translated, with
  :mod:`~observml.config.legacy_table` saying what 1.0's classes, model keys and parameters
  mean in observml;
* :mod:`~observml.config.redact` — secrets masked wherever configs are shown.

Must not import: the hub, the runtime, plugins' drivers (mlflow, pika) or the API.
"""

from __future__ import annotations

from observml.config.hub_config import expand_env, find_config_file, load_config, parse_config
from observml.config.sections import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_FILE,
    DEFAULT_PLUGINS,
    HOME_ENV_VAR,
    ExperimentInstanceSection,
    ExperimentTypeSection,
    GlobalSection,
    HubConfig,
    PluginSection,
    StreamingSection,
    default_max_jobs,
    default_stream_workers,
)

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
    "expand_env",
    "find_config_file",
    "load_config",
    "parse_config",
]
