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
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from observml.config.registry import check_plugin_sections
from observml.config.sections import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_FILE,
    DEFAULT_PLUGINS,
    ExperimentInstanceSection,
    ExperimentTypeSection,
    GlobalSection,
    HubConfig,
    PluginSection,
    StreamingSection,
)
from observml.config.validation import check_arguments
from observml.errors import ConfigError, ConfigProblem

__all__ = ["expand_env", "find_config_file", "load_config", "parse_config"]

_TOP_LEVEL_KEYS: Final = ("version", "global", "plugins", "experiments", "streaming", "api")
_SECTION_KEYS: Final = ("enabled", "type", "config")
_EXPERIMENT_KEYS: Final = ("name", "module", "class", "enabled")
_INSTANCE_KEYS: Final = ("name", "type", "config", "streaming", "enabled")
_SUPPORTED_VERSIONS: Final = (1,)
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_REMOVED_TASKQUEUE: Final = (
    "the task queue plugin was removed from observml (training runs as a job inside the hub)."
    " Delete this section."
)
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
            f"the file must be a mapping of sections, got {_kind(raw)}. Start with 'plugins:'.",
            source=source,
        )
    raw = expand_env(raw, "", problems)
    config = _parse(raw, problems, base_dir or Path())
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
        return {k: expand_env(v, _join(key, str(k)), problems) for k, v in value.items()}
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


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), f"{type(value).__name__} {value!r}"
    )


def _unknown_keys(
    raw: Mapping[str, Any], allowed: tuple[str, ...], where: str, problems: list[ConfigProblem]
) -> None:
    for key in raw:
        if key not in allowed:
            problems.append(
                ConfigProblem(
                    _join(where, str(key)),
                    f"unknown key. Accepted keys here: {', '.join(allowed)}.",
                )
            )


def _parse(raw: dict[str, Any], problems: list[ConfigProblem], base_dir: Path) -> HubConfig:
    if "taskqueue" in raw:
        problems.append(ConfigProblem("taskqueue", _REMOVED_TASKQUEUE))
    _unknown_keys({k: v for k, v in raw.items() if k != "taskqueue"}, _TOP_LEVEL_KEYS, "", problems)
    version = raw.get("version", 1)
    if version not in _SUPPORTED_VERSIONS or isinstance(version, bool):
        problems.append(
            ConfigProblem("version", f"unsupported version {version!r}. Use 'version: 1'.")
        )
    api = raw.get("api") or {}
    if not isinstance(api, dict):
        problems.append(ConfigProblem("api", f"expected a mapping, got {_kind(api)}."))
        api = {}
    _check_api(api, problems)
    types, instances = _parse_experiments(raw.get("experiments"), problems, base_dir)
    return HubConfig(
        plugins=_parse_plugins(raw.get("plugins"), problems),
        experiments=instances,
        types=types,
        global_=_parse_global(raw.get("global"), problems),
        streaming=_parse_streaming(raw.get("streaming"), problems),
        api=api,
        version=version if isinstance(version, int) else 1,
    )


def _check_api(raw: Mapping[str, Any], problems: list[ConfigProblem]) -> None:
    """Check the ``api:`` section as ``observml serve`` will read it (imports no fastapi)."""
    from observml.config.api_settings import ApiSettings  # the api layer builds on this module

    ApiSettings.check(raw, problems)


def _parse_global(raw: Any, problems: list[ConfigProblem]) -> GlobalSection:
    if raw is None:
        return GlobalSection()
    if not isinstance(raw, dict):
        problems.append(ConfigProblem("global", f"expected a mapping, got {_kind(raw)}."))
        return GlobalSection()
    values = check_arguments(GlobalSection, raw, "global", problems)
    level = str(values.get("log_level", "INFO")).upper()
    if level not in _LOG_LEVELS:
        problems.append(
            ConfigProblem(
                "global.log_level", f"unknown level {level!r}. Use one of {', '.join(_LOG_LEVELS)}."
            )
        )
    timeout = float(values.get("health_timeout", 5.0))
    if timeout <= 0:
        problems.append(
            ConfigProblem("global.health_timeout", "must be a positive number of seconds.")
        )
    isolation = values.get("job_isolation", "auto")
    return GlobalSection(
        log_level=level,
        health_timeout=timeout,
        job_isolation=isolation,
        model_key=values.get("model_key") or None,
        trust_unsigned_models=bool(values.get("trust_unsigned_models", False)),
    )


def _parse_streaming(raw: Any, problems: list[ConfigProblem]) -> StreamingSection:
    if raw is None:
        return StreamingSection()
    if not isinstance(raw, dict):
        problems.append(ConfigProblem("streaming", f"expected a mapping, got {_kind(raw)}."))
        return StreamingSection()
    values = check_arguments(StreamingSection, raw, "streaming", problems)
    for key, value in values.items():
        if value <= 0 or (key == "holdout_fraction" and value >= 1):
            bound = "between 0 and 1" if key == "holdout_fraction" else "positive"
            problems.append(ConfigProblem(f"streaming.{key}", f"must be {bound}, got {value}."))
    return StreamingSection(**values)


def _parse_plugins(raw: Any, problems: list[ConfigProblem]) -> dict[str, PluginSection]:
    plugins = dict(DEFAULT_PLUGINS)
    if raw is None:
        return plugins
    if not isinstance(raw, dict):
        problems.append(ConfigProblem("plugins", f"expected a mapping, got {_kind(raw)}."))
        return plugins
    for plugin_type, section in raw.items():
        where = f"plugins.{plugin_type}"
        if plugin_type == "taskqueue":
            problems.append(ConfigProblem(where, _REMOVED_TASKQUEUE))
            continue
        if not isinstance(section, dict):
            problems.append(
                ConfigProblem(
                    where,
                    "expected a mapping with 'enabled', 'type' and 'config',"
                    f" got {_kind(section)}.",
                )
            )
            continue
        _unknown_keys(section, _SECTION_KEYS, where, problems)
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(
                ConfigProblem(f"{where}.enabled", f"expected true or false, got {enabled!r}.")
            )
            enabled = True
        name = section.get("type")
        if name is None and enabled:
            problems.append(
                ConfigProblem(
                    f"{where}.type",
                    "missing. Say which implementation to use, e.g. 'type: mlflow' (run"
                    " 'observml plugins' to list them).",
                )
            )
        elif name is not None and (not isinstance(name, str) or not name.strip()):
            problems.append(
                ConfigProblem(f"{where}.type", f"expected a plugin name, got {_kind(name)}.")
            )
            name = None
        config = section.get("config") or {}
        if not isinstance(config, dict):
            problems.append(
                ConfigProblem(f"{where}.config", f"expected a mapping, got {_kind(config)}.")
            )
            config = {}
        plugins.pop(plugin_type, None)  # keep file order after the defaults it replaces
        plugins[plugin_type] = PluginSection(plugin_type, name or "", config, enabled)
    return plugins


def _parse_experiments(
    raw: Any, problems: list[ConfigProblem], base_dir: Path
) -> tuple[tuple[ExperimentTypeSection, ...], tuple[ExperimentInstanceSection, ...]]:
    """Split ``experiments:`` into type registrations (module/class) and instances (type)."""
    if raw is None:
        return (), ()
    if not isinstance(raw, list):
        problems.append(ConfigProblem("experiments", f"expected a list, got {_kind(raw)}."))
        return (), ()
    types: list[ExperimentTypeSection] = []
    instances: list[ExperimentInstanceSection] = []
    seen: dict[str, set[str]] = {"type": set(), "instance": set()}
    for index, item in enumerate(raw):
        where = f"experiments[{index}]"
        if not isinstance(item, dict):
            problems.append(ConfigProblem(where, f"expected a mapping, got {_kind(item)}."))
            continue
        is_instance = "type" in item and "module" not in item
        allowed = _INSTANCE_KEYS if is_instance else _EXPERIMENT_KEYS
        _unknown_keys(item, allowed, where, problems)
        required = ("name", "type") if is_instance else ("name", "module", "class")
        values: dict[str, str] = {}
        for key in required:
            value = item.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(
                    ConfigProblem(
                        f"{where}.{key}", f"missing or not a string (got {_kind(value)})."
                    )
                )
            else:
                values[key] = value.strip()
        flags = {}
        for flag, default in (("enabled", True), ("streaming", False)):
            flags[flag] = item.get(flag, default)
            if not isinstance(flags[flag], bool):
                problems.append(
                    ConfigProblem(
                        f"{where}.{flag}", f"expected true or false, got {flags[flag]!r}."
                    )
                )
                flags[flag] = default
        if len(values) != len(required):
            continue
        kind = "instance" if is_instance else "type"
        if values["name"] in seen[kind]:
            problems.append(ConfigProblem(f"{where}.name", f"duplicate name {values['name']!r}."))
        seen[kind].add(values["name"])
        if is_instance:
            config = _instance_config(item.get("config"), f"{where}.config", problems, base_dir)
            instances.append(
                ExperimentInstanceSection(
                    values["name"], values["type"], config, flags["streaming"], flags["enabled"]
                )
            )
        else:
            types.append(
                ExperimentTypeSection(
                    values["name"], values["module"], values["class"], flags["enabled"]
                )
            )
    return tuple(types), tuple(instances)


def _instance_config(
    raw: Any, where: str, problems: list[ConfigProblem], base_dir: Path
) -> dict[str, Any]:
    """Return an experiment's config given inline or as a path to a YAML file."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            loaded = yaml.safe_load((base_dir / raw).read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(ConfigProblem(where, f"cannot read {raw!r}: {exc.strerror or exc}."))
            return {}
        except yaml.YAMLError as exc:
            problems.append(ConfigProblem(where, f"{raw!r} is not valid YAML: {exc}."))
            return {}
        if isinstance(loaded, dict):
            return loaded
        problems.append(ConfigProblem(where, f"{raw!r} must hold a mapping, got {_kind(loaded)}."))
        return {}
    problems.append(
        ConfigProblem(where, f"expected a mapping or a path to a YAML file, got {_kind(raw)}.")
    )
    return {}
