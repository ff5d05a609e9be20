"""Experiment configs of ObservML 1.0: read as they are, translated to the modern form.

An ObservML 1.0 experiment file names its class in ``load_object`` and uses short model keys::

    load_object: {module: framework.FaultDetection, name: FaultDetectionExperiment}
    setup: {datetime_column: ds, datetime_format: ms}
    eda:
    create_model: {model: ee, params: {contamination: 0.1}}

:func:`translate` turns such a mapping into the modern config (``type``, ``setup``, ``eda``,
``create_model``, ``retrain``) and lists every change; :func:`modernize` is what the experiment
classes call: it translates a 1.0 config and logs one line saying what changed, and returns a
modern config untouched. ``load_object.module`` is never imported: the type comes from
``load_object.name`` through :data:`LEGACY_TYPES`. Model keys and parameters are mapped by
:data:`LEGACY_MODELS`. An old default that the new model does not share is written out when the
file leaves the parameter out, so the model is the one the file described; a parameter with no
counterpart is dropped only when that cannot change what is flagged (``why`` says why), and
refused otherwise. The tables and their converters are in :mod:`observml.config.legacy_table`
(re-exported here); the full table is in ``docs/configuration.md``.

Pure data and functions: nothing here imports a model library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from observml.config.legacy_table import (
    LEGACY_MODELS,
    LEGACY_TYPES,
    PM4PY_COLUMNS,
    RETRAIN_METRICS,
    UNMAPPED_METRICS,
    OldModel,
    OldParam,
    UntranslatableError,
    number,
)
from observml.errors import ConfigError, ConfigProblem

__all__ = [
    "LEGACY_MODELS",
    "LEGACY_TYPES",
    "MODERN_ORDER",
    "OldModel",
    "OldParam",
    "Translation",
    "config_type",
    "is_legacy",
    "modernize",
    "ordered",
    "translate",
]

logger = logging.getLogger(__name__)

#: Top-level keys of a modern experiment config, in the documented order.
MODERN_ORDER: Final = ("type", "description", "setup", "eda", "create_model", "retrain")
_RELATIVE_REF: Final = re.compile(r"^\$\{\.([A-Za-z_][\w.]*)\}$")


@dataclass(frozen=True)
class Translation:
    """What :func:`translate` returns."""

    config: dict[str, Any]
    experiment_type: str
    changes: tuple[str, ...]


# -- public functions ---------------------------------------------------------------------
def is_legacy(config: Any) -> bool:
    """Return True when ``config`` is an ObservML 1.0 experiment config (has ``load_object``)."""
    return isinstance(config, Mapping) and "load_object" in config


def config_type(config: Mapping[str, Any], source: str | None = None) -> str | None:
    """Return the experiment type a config names: ``type:``, or 1.0's ``load_object.name``.

    Raises:
        ConfigError: ``load_object.name`` is not one of the four ObservML 1.0 classes.
    """
    if is_legacy(config):
        problems: list[ConfigProblem] = []
        found = _legacy_type(config["load_object"], problems)
        if found is None:
            raise ConfigError(problems=problems, source=source)
        return found
    value = config.get("type")
    return value if isinstance(value, str) else None


def translate(
    config: Mapping[str, Any], *, experiment_type: str | None = None, source: str | None = None
) -> Translation:
    """Return the modern form of an ObservML 1.0 config and the list of what changed.

    Args:
        config: The 1.0 mapping (with ``load_object``).
        experiment_type: The type it is created as, when the caller knows it; must agree with
            ``load_object.name``.
        source: Where the config came from, for error messages.

    Raises:
        ConfigError: Every part that has no faithful modern form, each with its key.
    """
    problems: list[ConfigProblem] = []
    changes: list[str] = []
    kind = _legacy_type(config.get("load_object"), problems)
    for wanted in (config.get("type"), experiment_type):
        if kind is not None and wanted is not None and kind != wanted:
            problems.append(
                ConfigProblem(
                    "load_object.name",
                    f"{config['load_object']['name']} is a {kind} experiment, not {wanted}."
                    f" Create it as type {kind}, or fix load_object.name.",
                )
            )
            break
    if kind is None or problems:
        raise ConfigError(problems=problems, source=source)
    changes.append(f"load_object -> type: {kind} (its module is not imported)")
    modern: dict[str, Any] = {"type": kind}
    rest = {k: v for k, v in config.items() if k not in ("load_object", "type")}
    retrain = _setup(rest, kind, modern, changes, problems)
    if "eda" in rest:
        eda = rest.pop("eda")
        if eda is None or eda == {}:
            eda = True
            changes.append("eda: (empty) -> true (1.0 ran the EDA whenever the key was there)")
        modern["eda"] = eda
    if "create_model" in rest:
        modern["create_model"] = _create_model(rest.pop("create_model"), kind, changes, problems)
    _retrain(rest, retrain, kind, modern, changes, problems)
    modern.update(rest)  # anything else is left for the experiment's own checks
    if problems:
        raise ConfigError(problems=problems, source=source)
    return Translation(ordered(modern), kind, tuple(changes))


def modernize(config: Any, experiment_type: str | None, *, where: str) -> Any:
    """Return ``config`` in the modern form, logging one line when it was a 1.0 config.

    A config that is not an ObservML 1.0 config is returned unchanged (the same object).

    Raises:
        ConfigError: The 1.0 config has parts with no faithful modern form.
    """
    if not is_legacy(config):
        return config
    result = translate(config, experiment_type=experiment_type, source=where)
    logger.warning(
        "%s: read an ObservML 1.0 config: %s. 'observml config migrate FILE' writes the"
        " modern form.",
        where,
        "; ".join(result.changes),
    )
    return result.config


def ordered(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``config`` with its top-level keys in :data:`MODERN_ORDER`, others after."""
    first = {k: config[k] for k in MODERN_ORDER if k in config}
    return {**first, **{k: v for k, v in config.items() if k not in first}}


# -- internals ----------------------------------------------------------------------------
def _legacy_type(load_object: Any, problems: list[ConfigProblem]) -> str | None:
    name = load_object.get("name") if isinstance(load_object, Mapping) else None
    found = LEGACY_TYPES.get(name) if isinstance(name, str) else None
    if found is None:
        problems.append(
            ConfigProblem(
                "load_object.name",
                f"{name!r} is not an ObservML 1.0 experiment class. Known:"
                f" {', '.join(LEGACY_TYPES)}; or replace load_object with"
                " 'type: <fault_detection|fault_isolation|time_series|process_mining>'.",
            )
        )
    return found


def _setup(
    rest: dict[str, Any],
    kind: str,
    modern: dict[str, Any],
    changes: list[str],
    problems: list[ConfigProblem],
) -> Any:
    """Translate ``setup`` into ``modern``; return 1.0's nested ``setup.retrain`` (or None)."""
    raw = rest.pop("setup", None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        modern["setup"] = raw  # the experiment's own check reports it
        return None
    setup = {k: _resolve(v, raw, f"setup.{k}", problems) for k, v in raw.items()}
    for key, value in raw.items():
        if setup[key] is not value:
            changes.append(f"setup.{key}: {value} -> {setup[key]!r}")
    if "ds" in setup and "datetime_column" not in setup:
        setup["datetime_column"] = setup.pop("ds")
        changes.append("setup.ds -> datetime_column")
    if setup.get("datetime_format") == "ms":
        setup["datetime_format"] = None
        changes.append("setup.datetime_format: ms -> null (numbers are read as epoch milliseconds)")
    elif setup.get("datetime_format") in ("s", "us", "ns", "D", "h", "m"):
        problems.append(
            ConfigProblem(
                "setup.datetime_format",
                f"{setup['datetime_format']!r} read numeric timestamps in that unit in 1.0;"
                " observml reads numbers as epoch milliseconds. Send milliseconds or ISO text,"
                " and remove the unit.",
            )
        )
    if "predict_window" in setup:
        del setup["predict_window"]
        changes.append("setup.predict_window dropped (it only limited the prediction plots)")
    if isinstance(setup.get("format"), Mapping):
        setup["format"] = _format(setup["format"], changes, problems)
    if kind == "process_mining":
        missing = {k: v for k, v in PM4PY_COLUMNS.items() if k not in setup}
        if missing:
            setup.update(missing)
            changes.append(
                "setup: the pm4py column names 1.0 read ("
                + ", ".join(f"{k}: {v}" for k, v in missing.items())
                + ")"
            )
    retrain = setup.pop("retrain", None)
    modern["setup"] = setup
    return retrain


def _resolve(value: Any, scope: Mapping[str, Any], key: str, problems: list[ConfigProblem]) -> Any:
    """Resolve an OmegaConf relative reference such as ``${.format.index}`` within ``scope``."""
    match = _RELATIVE_REF.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    found: Any = scope
    for part in match.group(1).split("."):
        if not isinstance(found, Mapping) or part not in found:
            problems.append(
                ConfigProblem(key, f"{value} refers to a key this section does not have.")
            )
            return value
        found = found[part]
    return found


def _format(raw: Mapping[str, Any], changes: list[str], problems: list[ConfigProblem]) -> Any:
    if "name" not in raw:
        return dict(raw)  # already the modern shape
    if raw["name"] != "pivot":
        problems.append(
            ConfigProblem(
                "setup.format.name",
                f"{raw['name']!r}: ObservML 1.0 knew only 'pivot'. Use the modern"
                " setup.format (docs/data-formats.md).",
            )
        )
        return dict(raw)
    fmt: dict[str, Any] = {"type": "long"}
    for old, new in (("id", "records_key"), ("index", "index"), ("columns", "columns")):
        if old in raw:
            fmt[new] = raw[old]
    if "values" in raw:
        fmt["values"] = raw["values"]
    changes.append(
        "setup.format: name: pivot -> type: long, id -> records_key (max_level dropped: 1.0"
        " always read one level)"
    )
    return fmt


def _create_model(raw: Any, kind: str, changes: list[str], problems: list[ConfigProblem]) -> Any:
    if not isinstance(raw, Mapping):
        return raw
    section = dict(raw)
    key = section.get("model")
    old = LEGACY_MODELS[kind].get(key) if isinstance(key, str) else None
    if old is None:
        return section  # a modern key, or one the experiment's check rejects with the list
    if old.model != key:
        changes.append(f"create_model.model: {key} -> {old.model}")
    section["model"] = old.model
    params = section.get("params")
    if params is None:
        params = {}
    if isinstance(params, Mapping):
        section["params"] = old.modern_params(dict(params), changes, problems)
    return section


def _retrain(
    rest: dict[str, Any],
    nested: Any,
    kind: str,
    modern: dict[str, Any],
    changes: list[str],
    problems: list[ConfigProblem],
) -> None:
    """Move 1.0's ``setup.retrain`` to the top-level ``retrain`` block."""
    had_top = "retrain" in rest
    top = rest.pop("retrain", None)
    if top is not None:
        modern["retrain"] = top  # already the modern block
    elif had_top:
        changes.append("retrain: (empty) dropped (1.0 only ran a check there that changed nothing)")
    if not nested:
        return
    if kind in ("fault_detection", "process_mining"):
        changes.append(f"setup.retrain dropped (1.0's {kind} experiment never read it)")
        return
    if not isinstance(nested, Mapping):
        problems.append(ConfigProblem("setup.retrain", "expected a mapping."))
        return
    if top is not None:
        problems.append(
            ConfigProblem("setup.retrain", "both setup.retrain and retrain are set. Keep one.")
        )
        return
    metric = nested.get("metric")
    if "retrain_window" in nested:
        changes.append(
            "setup.retrain.retrain_window dropped (how many rows a retrain uses is the hub's"
            " streaming.retrain_rows)"
        )
    if metric is None:
        changes.append("setup.retrain dropped (without a metric it never fired in 1.0)")
        return
    name = str(metric).lower()
    if name in UNMAPPED_METRICS or name not in RETRAIN_METRICS:
        why = UNMAPPED_METRICS.get(name, f"{metric!r} is not a metric ObservML 1.0 reported")
        problems.append(
            ConfigProblem(
                "setup.retrain.metric",
                f"{why}. Remove setup.retrain and write a retrain block (docs/models.md).",
            )
        )
        return
    new_metric, convert = RETRAIN_METRICS[name]
    block: dict[str, Any] = {"metric": new_metric}
    threshold = nested.get("metric_threshold", 0.0)
    try:
        block["threshold"] = convert(number(threshold)) if convert else threshold
    except UntranslatableError as exc:
        problems.append(ConfigProblem("setup.retrain.metric_threshold", f"{exc}."))
        return
    block["higher_better"] = nested.get("higher_better", True)
    modern["retrain"] = block
    direction = "" if "higher_better" in nested else ", higher_better: true (the 1.0 default)"
    changes.append(
        f"setup.retrain -> retrain: metric {metric} -> {new_metric}, metric_threshold"
        f" {threshold!r} -> threshold {block['threshold']!r}{direction}"
    )
