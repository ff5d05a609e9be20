"""Checks of an experiment config's sections, shared by every experiment type.

:meth:`observml.experiments.base.Experiment.validate_config` runs them in order and collects
every problem (with its key) before it raises one :class:`~observml.errors.ConfigError`; a type
adds its own ``setup`` checks by overriding ``_check_setup``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from observml.errors import ConfigError, ConfigProblem, DataError
from observml.experiments.spec import ModelSpec
from observml.io.numbers import check_decimal
from observml.io.rows import check_format

__all__ = [
    "TOP_KEYS",
    "as_bool",
    "check_model",
    "check_setup",
    "check_setup_format",
    "check_top_level",
    "section",
]

#: Keys an experiment config may have at its top.
TOP_KEYS: Final = ("setup", "eda", "create_model", "retrain", "type", "description")


def check_top_level(config: Any, problems: list[ConfigProblem]) -> Mapping[str, Any]:
    """Return ``config`` if it is a mapping (else ``{}``); note unknown top-level keys."""
    if not isinstance(config, Mapping):
        problems.append(ConfigProblem("", "expected a mapping of setup/eda/create_model."))
        return {}
    for key in config:
        if key not in TOP_KEYS:
            problems.append(
                ConfigProblem(str(key), f"unknown key. Accepted: {', '.join(TOP_KEYS[:4])}.")
            )
    return config


def section(config: Mapping[str, Any], key: str, problems: list[ConfigProblem]) -> dict[str, Any]:
    """Return the mapping under ``key`` (``{}`` when it is left out or not a mapping)."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(ConfigProblem(key, f"expected a mapping, got {type(value).__name__}."))
        return {}
    return dict(value)


def as_bool(value: Any, key: str, problems: list[ConfigProblem]) -> bool:
    """Read an on/off value (``true``, ``"yes"``, ``{enabled: true}``, ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "off", "true", "false", "yes", "no"):
        return value.lower() in ("on", "true", "yes")
    if isinstance(value, Mapping) and set(value) <= {"enabled"}:
        return as_bool(value.get("enabled", True), f"{key}.enabled", problems)
    problems.append(ConfigProblem(key, f"expected on/off (true/false), got {value!r}."))
    return False


def check_setup(
    raw: Mapping[str, Any],
    defaults: Mapping[str, Any],
    experiment_type: str,
    problems: list[ConfigProblem],
) -> dict[str, Any]:
    """Merge ``setup`` over the type's ``defaults``; check the keys every type shares."""
    for key in raw:
        if key not in defaults:
            problems.append(
                ConfigProblem(
                    f"setup.{key}",
                    f"unknown key for {experiment_type}. Accepted: {', '.join(defaults)}.",
                )
            )
    setup = {**defaults, **raw}
    features = setup.get("features")
    if features is not None and (
        not isinstance(features, list) or not all(isinstance(f, str) for f in features)
    ):
        problems.append(ConfigProblem("setup.features", "expected a list of column names."))
    if "decimal" in defaults:
        try:
            check_decimal(setup.get("decimal"))
        except DataError as exc:
            problems.append(ConfigProblem("setup.decimal", str(exc).partition(": ")[2]))
    keep = setup.get("keep_train_rows")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        problems.append(ConfigProblem("setup.keep_train_rows", "expected an integer >= 0."))
    return setup


def check_setup_format(
    setup: Mapping[str, Any], problems: list[ConfigProblem]
) -> dict[str, Any] | None:
    """Return the checked ``setup.format`` (how rows arrive), or ``None`` when not set."""
    if setup.get("format") is None:
        return None
    try:
        return check_format(setup["format"], "setup.format")
    except DataError as exc:
        key, _, message = str(exc).partition(": ")
        problems.append(ConfigProblem(key, message))
        return None


def check_model(
    raw: Mapping[str, Any],
    models: Mapping[str, ModelSpec],
    *,
    default: str,
    experiment_type: str,
    problems: list[ConfigProblem],
) -> tuple[str, ModelSpec | None, dict[str, Any], dict[str, Any]]:
    """Check ``create_model``; return ``(model, spec, params, options)`` with defaults filled."""
    for key in raw:
        if key not in ("model", "params"):
            problems.append(
                ConfigProblem(f"create_model.{key}", "unknown key. Accepted: model, params.")
            )
    model = raw.get("model", default)
    spec = models.get(model) if isinstance(model, str) else None
    if spec is None:
        problems.append(
            ConfigProblem(
                "create_model.model",
                f"unknown {experiment_type} model {model!r}. Valid: {', '.join(models)}.",
            )
        )
        return str(model), None, {}, {}
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        problems.append(ConfigProblem("create_model.params", "expected a mapping."))
        return model, spec, {}, {}
    try:
        accepted = spec.accepted()
    except ConfigError as exc:
        problems.extend(exc.problems)
        return model, spec, {}, {}
    for key in params:
        if key not in accepted:
            problems.append(
                ConfigProblem(
                    f"create_model.params.{key}",
                    f"not a parameter of {model!r}. Accepted: {', '.join(accepted)}.",
                )
            )
    problems.extend(spec.check({k: v for k, v in params.items() if k in accepted}))
    options = {k: params.get(k, v) for k, v in spec.options.items()}
    kwargs = {**spec.defaults, **{k: v for k, v in params.items() if k not in spec.options}}
    return model, spec, kwargs, options
