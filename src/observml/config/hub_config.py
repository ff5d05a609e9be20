"""``hub_config.yaml`` -> typed, frozen sections, with every problem reported at once.

Shape (the spec's, plus ``global`` and ``experiments``)::

    version: 1
    global: {log_level: INFO, health_timeout: 5}
    plugins:
      mlops:      {enabled: true, type: mlflow,   config: {mlflow_uri: local}}
      datastream: {enabled: true, type: rabbitmq, config: {host: localhost, port: 5672}}
        streaming: {batch_size: 100, max_wait: 0.5}
    experiments:
      # an experiment type of your own (module/class) ...
      - {name: my_detector, module: mypkg.detect, class: MyDetector, enabled: true}
      # ... and experiments the hub runs (type/config), restored and streaming on start
      - {name: pump, type: fault_detection, config: pump.yaml, streaming: true}

Strings may use ``${VAR}`` and ``${VAR:-default}``; they are expanded from the environment.
A plugin type the file does not mention gets its embedded default (``mlflow`` on a local store,
the ``local`` on-disk queue); ``enabled: false`` switches it off.

This module finds and reads the file; :mod:`observml.config.section_reader` checks each section.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final

import yaml

from observml.config.registry import check_plugin_sections
from observml.config.section_reader import kind_of, read_sections
from observml.config.sections import CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE, HubConfig
from observml.errors import ConfigError, ConfigProblem

__all__ = ["expand_env", "find_config_file", "load_config", "parse_config"]

_ENV_PATTERN: Final = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the config file to use: ``path``, ``$OBSERVML_CONFIG``, ``./hub_config.yaml``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_config(
    path: str | os.PathLike[str] | None = None, *, check_plugins: bool = True
) -> HubConfig:
    """Read and validate a hub config; with no file, return the embedded defaults.

    Args:
        path: The YAML file; ``None`` looks at ``$OBSERVML_CONFIG`` then ``./hub_config.yaml``.
        check_plugins: Also import each enabled plugin class and check its ``config:`` keys.

    Raises:
        ConfigError: With every problem found, each naming its file and key path.
    """
    found = find_config_file(path)
    if found is None:
        return HubConfig()
    source = _display_path(found)
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the config file: {exc.strerror or exc}. Check the path, or run without"
            " a config to use the embedded defaults.",
            source=str(found),
        ) from exc
    return parse_config(text, source=source, check_plugins=check_plugins, base_dir=found.parent)


def parse_config(
    text: str,
    *,
    source: str | None = None,
    check_plugins: bool = True,
    base_dir: Path | None = None,
) -> HubConfig:
    """Validate YAML text as a hub config (see :func:`load_config`).

    ``base_dir`` is where relative paths in the file (experiment config files) start from.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"invalid YAML: {problem}. Fix the syntax (indentation, ':' after keys, quotes).",
            key=where,
            source=source,
        ) from exc
    if raw is None:
        raw = {}
    problems: list[ConfigProblem] = []
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the file must be a mapping of sections, got {kind_of(raw)}. Start with 'plugins:'.",
            source=source,
        )
    raw = expand_env(raw, "", problems)
    config = read_sections(raw, problems, base_dir or Path())
    if check_plugins:
        broken = {p.key.split(".")[1] for p in problems if p.key.startswith("plugins.")}
        if not any(p.key == "plugins" for p in problems):
            problems.extend(check_plugin_sections(config, skip=broken))
    if problems:
        raise ConfigError(source=source, problems=problems)
    return HubConfig(
        plugins=config.plugins,
        experiments=config.experiments,
        types=config.types,
        global_=config.global_,
        streaming=config.streaming,
        api=config.api,
        version=config.version,
        source=source,
    )


def expand_env(value: Any, key: str, problems: list[ConfigProblem]) -> Any:
    """Return ``value`` with ``${VAR}`` / ``${VAR:-default}`` expanded in every string."""
    if isinstance(value, dict):
        return {
            k: expand_env(v, f"{key}.{k}" if key else str(k), problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        found = os.environ.get(name)
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        problems.append(
            ConfigProblem(
                key,
                f"environment variable {name} is not set. Set it, or write"
                f" '${{{name}:-default}}' to give a default.",
            )
        )
        return match.group(0)

    return _ENV_PATTERN.sub(substitute, value)


# -- internals -----------------------------------------------------------------------------
def _display_path(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
