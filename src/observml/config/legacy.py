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
refused otherwise. The full table is in ``docs/configuration.md``.

Pure data and functions: nothing here imports a model library.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

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

#: ``load_object.name`` of ObservML 1.0 -> observml experiment type.
LEGACY_TYPES: Final[Mapping[str, str]] = {
    "FaultDetectionExperiment": "fault_detection",
    "FaultIsolationExperiment": "fault_isolation",
    "TimeSeriesAnomalyExperiment": "time_series",
    "ProcessMiningExperiment": "process_mining",
}
#: Top-level keys of a modern experiment config, in the documented order.
MODERN_ORDER: Final = ("type", "description", "setup", "eda", "create_model", "retrain")

#: Column names of pm4py's defaults, which ObservML 1.0's process mining read implicitly.
_PM4PY_COLUMNS: Final[Mapping[str, str]] = {
    "case_column": "case:concept:name",
    "activity_column": "concept:name",
    "timestamp_column": "time:timestamp",
}
#: Half-width of Prophet's default 80 % interval in standard deviations (``z`` of 0.9).
_PROPHET_Z80: Final = 1.2815515655446004
_RELATIVE_REF: Final = re.compile(r"^\$\{\.([A-Za-z_][\w.]*)\}$")


class _Untranslatable(Exception):
    """An old value that has no faithful modern form; the message says what to do."""


_DROP: Final = object()  # a converter's answer: leave the parameter out
_NO_DEFAULT: Final = object()


@dataclass(frozen=True)
class OldParam:
    """How one ObservML 1.0 model parameter reads in observml.

    Attributes:
        name: The old parameter name.
        new: The observml name; ``None`` drops it (``why`` says why that is safe).
        convert: Turns the old value into the new one (may answer "drop"); raises when the
            value has no faithful modern form.
        default: The old model's default, converted and written when the file leaves the
            parameter out.
        why: The conversion or the reason for dropping, shown in the notice.
    """

    name: str
    new: str | None
    convert: Callable[[Any], Any] | None = None
    default: Any = _NO_DEFAULT
    why: str = ""


@dataclass(frozen=True)
class OldModel:
    """One ObservML 1.0 model key.

    Attributes:
        model: The observml model key; ``None`` when observml has no such model yet.
        params: Its parameters that need mapping (any other name passes through unchanged and
            is checked against the observml model like any config).
        closest: For a model observml lacks: the closest observml model and why.
    """

    model: str | None
    params: tuple[OldParam, ...] = ()
    closest: str = ""


@dataclass(frozen=True)
class Translation:
    """What :func:`translate` returns."""

    config: dict[str, Any]
    experiment_type: str
    changes: tuple[str, ...]


# -- value converters ---------------------------------------------------------------------
def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Untranslatable(f"expected a number, got {value!r}")
    return float(value)


def _confidence(z: float) -> float:
    """Two-sided coverage of a normal band of half-width ``z`` standard deviations."""
    tail = math.erfc(z / math.sqrt(2))
    if not 0 < tail < 1:
        raise _Untranslatable(
            "the threshold is outside what a confidence between 0 and 1 can express; set"
            " create_model.params.confidence (e.g. 0.99) instead"
        )
    return round(1 - float(f"{tail:.3g}"), 10)


def _k_abs_error(value: Any) -> float:
    # 1.0 flagged |e| > mean|e| + k std|e|; for normal errors mean|e| and std|e| are
    # sqrt(2/pi) and sqrt(1 - 2/pi) standard deviations.
    return _confidence(math.sqrt(2 / math.pi) + _number(value) * math.sqrt(1 - 2 / math.pi))


def _k_sigma(value: Any) -> float:
    return _confidence(_number(value))


def _prophet_factor(value: Any) -> float:
    return _confidence(_number(value) * 2 * _PROPHET_Z80)


def _significance(value: Any) -> float:
    alpha = _number(value)
    if not 0 < alpha < 1:
        raise _Untranslatable(f"expected a significance level between 0 and 1, got {value!r}")
    return round(1 - alpha, 10)


def _contamination(value: Any) -> Any:
    if value == "auto":
        return None  # observml then keeps scikit-learn's own 'auto' boundary
    share = _number(value)
    if not 0 < share < 0.5:
        raise _Untranslatable(f"expected 'auto' or a share between 0 and 0.5, got {value!r}")
    return value


def _both_tests(value: Any) -> Any:
    if isinstance(value, list | tuple) and {str(v).lower() for v in value} == {"ht2", "spe"}:
        return _DROP
    raise _Untranslatable(
        f"observml's pca always flags on both Hotelling's T2 and SPE; {value!r} asked for"
        " fewer. Remove detect_outliers to accept both"
    )


def _normalize(value: Any) -> Any:
    if value is True:
        return _DROP
    raise _Untranslatable(
        "observml's pca always standardises the features; remove normalize: false to accept that"
    )


def _optional_count(value: Any) -> Any:
    return _DROP if value is None else value


def _trend(value: Any) -> Any:
    names = {"additive": "add", "multiplicative": "mul"}
    return names.get(value, value) if isinstance(value, str) else value


def _window(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Untranslatable(
            f"observml's ssa takes a window length in steps (an integer >= 2), got {value!r}"
        )
    return value


def _same(name: str, default: Any = _NO_DEFAULT, convert: Any = None, why: str = "") -> OldParam:
    return OldParam(name, name, convert, default, why)


def _gone(why: str, *names: str) -> tuple[OldParam, ...]:
    return tuple(OldParam(name, None, why=why) for name in names)


_THRESHOLD = "confidence of the forecast interval, equal under normally distributed errors"
_UNUSED = "ObservML 1.0 never passed it to the model"
_AUTO_ARIMA = (
    "auto_arima's search bounds; observml fits one order: set create_model.params.order"
    " (default [1, 1, 1])"
)
_SEQUENTIAL_RULES = (
    "'sequential_rules': FP-growth association rules over the activities and directly-follows"
    " pairs of each case"
)

#: Per experiment type: ObservML 1.0 model key -> how it reads in observml.
LEGACY_MODELS: Final[Mapping[str, Mapping[str, OldModel]]] = {
    "fault_detection": {
        "iforest": OldModel(
            "iforest",
            (_same("contamination", "auto", _contamination, "'auto' is written null"),),
        ),
        "ee": OldModel("elliptic_envelope", (_same("contamination", 0.1),)),
        "dbscan": OldModel(
            "dbscan",
            (
                _same("eps", 2),
                _same(
                    "min_samples",
                    None,
                    _optional_count,
                    "empty meant 2 x the number of features in 1.0; observml's default is 10",
                ),
            ),
        ),
        "pca": OldModel(
            "pca",
            (
                _same("alpha", 0.05, _significance, "confidence = 1 - significance"),
                _same("n_components", 0.95),
                OldParam("detect_outliers", None, _both_tests, why="both are always on"),
                OldParam("normalize", None, _normalize, why="observml always standardises"),
            ),
        ),
    },
    "fault_isolation": {
        "dt": OldModel("decision_tree"),
        "rf": OldModel("random_forest"),
        "nb": OldModel("naive_bayes"),
        "hmm": OldModel(
            "hmm",
            (
                _same("n_iter", 1000),
                _same("covariance_type", "diag"),
                *_gone("observml's hmm has one Gaussian per state (a state per class)", "n_mix"),
            ),
        ),
        "mc": OldModel("markov_chain", _gone("it did nothing in 1.0", "placeholder")),
        "bn": OldModel("bayes_net", _gone("it did nothing in 1.0", "placeholder")),
    },
    "time_series": {
        "arima": OldModel(
            "arima",
            (
                *_gone(_AUTO_ARIMA, "start_p", "max_p", "start_q", "max_q", "d"),
                *_gone("auto_arima with its default m=1 never fitted a seasonal part", "seasonal"),
                OldParam("threshold_for_anomaly", "confidence", _k_abs_error, why=_THRESHOLD),
            ),
        ),
        "es": OldModel(
            "exponential_smoothing",
            (
                _same("trend", convert=_trend),
                _same("seasonal", convert=_trend),
                OldParam("threshold_for_anomaly", "confidence", _k_abs_error, why=_THRESHOLD),
                *_gone(_UNUSED, "freq"),
            ),
        ),
        "ssa": OldModel(
            "ssa",
            (
                _same("window_size", 10, _window),
                OldParam("threshold", "confidence", _k_sigma, 3, _THRESHOLD),
                *_gone(_UNUSED, "lower_frequency_bound", "lower_frequency_contribution"),
            ),
        ),
        "prophet": OldModel(
            "prophet",
            (
                OldParam("factor", "confidence", _prophet_factor, 1.0, _THRESHOLD),
                *_gone("it only extended the training plot", "periods"),
                *_gone("ObservML 1.0 never used it", "forecast_window"),
            ),
        ),
        "lstm": OldModel(
            None,
            closest="'arima': like the LSTM it forecasts each step from the series' past and"
            " flags actuals outside the forecast interval",
        ),
        "ae": OldModel(
            None,
            closest="'ssa': SSA is PCA of the series' sliding windows, the linear form of the"
            " window autoencoder, and flags actuals far from what it reconstructs",
        ),
    },
    "process_mining": {
        "heuristics": OldModel(
            "heuristics_miner",
            _gone(
                "observml's heuristics_miner keeps every activity; 1.0 left out those seen"
                " fewer than mac times (default 10)",
                "mac",
            ),
        ),
        "apriori": OldModel(None, closest=f"{_SEQUENTIAL_RULES} (Apriori finds the same itemsets)"),
        "fpgrowth": OldModel(None, closest=f"{_SEQUENTIAL_RULES} (the same algorithm)"),
        "cmspam": OldModel(
            None,
            closest=f"{_SEQUENTIAL_RULES} (CM-SPAM mined sequential patterns; the pairs keep"
            " the order of steps)",
        ),
        "topk": OldModel(
            None,
            closest=f"{_SEQUENTIAL_RULES} (max_rules keeps the most confident rules, as"
            " TopKRules' k did)",
        ),
    },
}

#: Retrain metric of 1.0 (``setup.retrain.metric``) -> observml metric and threshold conversion.
_RETRAIN_METRICS: Final[Mapping[str, tuple[str, Callable[[float], float] | None]]] = {
    "accuracy": ("accuracy", None),
    "mae": ("mae", None),
    "mape": ("mape", lambda t: t * 100),  # observml's mape is in percent
    "mse": ("rmse", math.sqrt),
}
_UNMAPPED_METRICS: Final[Mapping[str, str]] = {
    "f1": "ObservML 1.0's F1 was binary (class 1); observml's f1 is macro-averaged",
    "precision": "ObservML 1.0's precision was binary (class 1); observml's is macro-averaged",
    "recall": "ObservML 1.0's recall was binary (class 1); observml's is macro-averaged",
    "r2": "observml reports no R2 for time series (mae, rmse, mape, anomaly_rate, coverage)",
}


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
        missing = {k: v for k, v in _PM4PY_COLUMNS.items() if k not in setup}
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
    if old.model is None:
        problems.append(
            ConfigProblem(
                "create_model.model",
                f"ObservML 1.0's {key!r} is not in observml yet. The closest {kind} model is"
                f" {old.closest}. Use it (its params differ: see docs/models.md).",
            )
        )
        return section
    if old.model != key:
        changes.append(f"create_model.model: {key} -> {old.model}")
    section["model"] = old.model
    params = section.get("params")
    if params is None:
        params = {}
    if isinstance(params, Mapping):
        section["params"] = _params(dict(params), old, changes, problems)
    return section


def _params(
    params: dict[str, Any], old: OldModel, changes: list[str], problems: list[ConfigProblem]
) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if k not in {p.name for p in old.params}}
    dropped: dict[str, list[str]] = {}  # reason -> names, one notice entry per reason
    for param in old.params:
        where = f"create_model.params.{param.name}"
        given = param.name in params
        if not given and param.default is _NO_DEFAULT:
            continue
        value = params[param.name] if given else param.default
        shown = value if given else f"(1.0 default {value!r})"
        if param.new is None and param.convert is None:
            dropped.setdefault(param.why, []).append(param.name)
            continue
        try:
            new_value = param.convert(value) if param.convert else value
        except _Untranslatable as exc:
            problems.append(ConfigProblem(where, f"{exc}."))
            continue
        if new_value is _DROP or param.new is None:
            if given:
                dropped.setdefault(param.why, []).append(param.name)
            else:
                changes.append(f"params.{param.name}: {shown} left out ({param.why})")
            continue
        if param.new in params and param.new != param.name:
            problems.append(
                ConfigProblem(where, f"both {param.name} and {param.new} are set. Keep one.")
            )
            continue
        out[param.new] = new_value
        if given and param.new == param.name and new_value == value:
            continue
        why = f" ({param.why})" if param.why else ""
        changes.append(f"params.{param.name}: {shown} -> {param.new}: {new_value!r}{why}")
    for why, names in dropped.items():
        changes.append(f"params.{', '.join(names)} dropped ({why})")
    return out


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
    if name in _UNMAPPED_METRICS or name not in _RETRAIN_METRICS:
        why = _UNMAPPED_METRICS.get(name, f"{metric!r} is not a metric ObservML 1.0 reported")
        problems.append(
            ConfigProblem(
                "setup.retrain.metric",
                f"{why}. Remove setup.retrain and write a retrain block (docs/models.md).",
            )
        )
        return
    new_metric, convert = _RETRAIN_METRICS[name]
    block: dict[str, Any] = {"metric": new_metric}
    threshold = nested.get("metric_threshold", 0.0)
    try:
        block["threshold"] = convert(_number(threshold)) if convert else threshold
    except _Untranslatable as exc:
        problems.append(ConfigProblem("setup.retrain.metric_threshold", f"{exc}."))
        return
    block["higher_better"] = nested.get("higher_better", True)
    modern["retrain"] = block
    direction = "" if "higher_better" in nested else ", higher_better: true (the 1.0 default)"
    changes.append(
        f"setup.retrain -> retrain: metric {metric} -> {new_metric}, metric_threshold"
        f" {threshold!r} -> threshold {block['threshold']!r}{direction}"
    )
