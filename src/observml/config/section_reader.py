"""The sections of a hub config mapping checked one by one and built into typed sections.

:mod:`observml.config.hub_config` reads the file (YAML, ``${VAR}`` expansion) and describes its
shape; :func:`read_sections` takes the mapping it yields and checks ``version``, ``global``,
``streaming``, ``plugins``, ``experiments`` and ``api``, appending every problem with its key
path instead of stopping at the first. Experiment configs named by path in ``experiments:`` are
read relative to the hub config's folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from observml.config.sections import (
    DEFAULT_PLUGINS,
    ExperimentInstanceSection,
    ExperimentTypeSection,
    GlobalSection,
    HubConfig,
    PluginSection,
    StreamingSection,
    default_max_jobs,
)
from observml.config.validation import check_arguments
from observml.errors import ConfigProblem

__all__ = ["kind_of", "read_sections"]

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


def kind_of(value: Any) -> str:
    """Return what a YAML value is, for messages: ``a mapping``, ``a list``, ``int 5``, ..."""
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), f"{type(value).__name__} {value!r}"
    )


def read_sections(raw: dict[str, Any], problems: list[ConfigProblem], base_dir: Path) -> HubConfig:
    """Return the sections of a hub config mapping; append each problem to ``problems``.

    Args:
        raw: The file's mapping, ``${VAR}`` already expanded.
        problems: Where every problem goes, with its key path.
        base_dir: Where relative paths in the file (experiment config files) start from.
    """
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
        problems.append(ConfigProblem("api", f"expected a mapping, got {kind_of(api)}."))
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
        problems.append(ConfigProblem("global", f"expected a mapping, got {kind_of(raw)}."))
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
    max_jobs = values.get("max_jobs")
    if max_jobs is not None and (
        isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1
    ):
        problems.append(
            ConfigProblem(
                "global.max_jobs",
                f"expected a whole number of 1 or more, got {max_jobs!r}. Leave it out to run"
                f" as many jobs at once as there are CPUs ({default_max_jobs()} here).",
            )
        )
        max_jobs = None
    return GlobalSection(
        log_level=level,
        health_timeout=timeout,
        job_isolation=isolation,
        max_jobs=max_jobs,
        model_key=values.get("model_key") or None,
        trust_unsigned_models=bool(values.get("trust_unsigned_models", False)),
    )


def _parse_streaming(raw: Any, problems: list[ConfigProblem]) -> StreamingSection:
    if raw is None:
        return StreamingSection()
    if not isinstance(raw, dict):
        problems.append(ConfigProblem("streaming", f"expected a mapping, got {kind_of(raw)}."))
        return StreamingSection()
    values = check_arguments(StreamingSection, raw, "streaming", problems)
    for key, value in values.items():
        if value is None:  # workers: the default
            continue
        if value <= 0 or (key == "holdout_fraction" and value >= 1):
            bound = "between 0 and 1" if key == "holdout_fraction" else "positive"
            problems.append(ConfigProblem(f"streaming.{key}", f"must be {bound}, got {value}."))
    return StreamingSection(**values)


def _parse_plugins(raw: Any, problems: list[ConfigProblem]) -> dict[str, PluginSection]:
    plugins = dict(DEFAULT_PLUGINS)
    if raw is None:
        return plugins
    if not isinstance(raw, dict):
        problems.append(ConfigProblem("plugins", f"expected a mapping, got {kind_of(raw)}."))
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
                    f" got {kind_of(section)}.",
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
                ConfigProblem(f"{where}.type", f"expected a plugin name, got {kind_of(name)}.")
            )
            name = None
        config = section.get("config") or {}
        if not isinstance(config, dict):
            problems.append(
                ConfigProblem(f"{where}.config", f"expected a mapping, got {kind_of(config)}.")
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
        problems.append(ConfigProblem("experiments", f"expected a list, got {kind_of(raw)}."))
        return (), ()
    types: list[ExperimentTypeSection] = []
    instances: list[ExperimentInstanceSection] = []
    seen: dict[str, set[str]] = {"type": set(), "instance": set()}
    for index, item in enumerate(raw):
        where = f"experiments[{index}]"
        if not isinstance(item, dict):
            problems.append(ConfigProblem(where, f"expected a mapping, got {kind_of(item)}."))
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
                        f"{where}.{key}", f"missing or not a string (got {kind_of(value)})."
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
        problems.append(
            ConfigProblem(where, f"{raw!r} must hold a mapping, got {kind_of(loaded)}.")
        )
        return {}
    problems.append(
        ConfigProblem(where, f"expected a mapping or a path to a YAML file, got {kind_of(raw)}.")
    )
    return {}


def _unknown_keys(
    raw: Mapping[str, Any], allowed: tuple[str, ...], where: str, problems: list[ConfigProblem]
) -> None:
    for key in raw:
        if key not in allowed:
            problems.append(
                ConfigProblem(
                    f"{where}.{key}" if where else str(key),
                    f"unknown key. Accepted keys here: {', '.join(allowed)}.",
                )
            )
