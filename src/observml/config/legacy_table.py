"""What ObservML 1.0's names mean in observml: experiment classes, model keys, parameters.

The tables :mod:`observml.config.legacy` translates with, and the small converters their
entries name. :data:`LEGACY_TYPES` maps ``load_object.name`` to an experiment type;
:data:`LEGACY_MODELS` maps each 1.0 model key to an observml model and says, parameter by
parameter, how an old value reads (:class:`OldParam`); :data:`RETRAIN_METRICS` does the same for
``setup.retrain.metric``. :meth:`OldModel.modern_params` reads an old ``create_model.params``
through its entry. A converter either returns the modern value, returns :data:`DROP`
(leave the parameter out), or raises :class:`UntranslatableError` saying what to do instead.
The full table is in ``docs/configuration.md``.

Pure data and functions: nothing here imports a model library.

Why this module is long: it is one table, an entry per ObservML 1.0 model (21 keys over four
types) with each of its parameters, and the small converters those entries name; a reader
checks a row against its converter, so they stay side by side, and split up the table would
no longer read as the one list docs/configuration.md repeats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from observml.errors import ConfigProblem

__all__ = [
    "DROP",
    "LEGACY_MODELS",
    "LEGACY_TYPES",
    "NO_DEFAULT",
    "PM4PY_COLUMNS",
    "RETRAIN_METRICS",
    "UNMAPPED_METRICS",
    "OldModel",
    "OldParam",
    "UntranslatableError",
    "number",
]

#: ``load_object.name`` of ObservML 1.0 -> observml experiment type.
LEGACY_TYPES: Final[Mapping[str, str]] = {
    "FaultDetectionExperiment": "fault_detection",
    "FaultIsolationExperiment": "fault_isolation",
    "TimeSeriesAnomalyExperiment": "time_series",
    "ProcessMiningExperiment": "process_mining",
}
#: Column names of pm4py's defaults, which ObservML 1.0's process mining read implicitly.
PM4PY_COLUMNS: Final[Mapping[str, str]] = {
    "case_column": "case:concept:name",
    "activity_column": "concept:name",
    "timestamp_column": "time:timestamp",
}
#: Half-width of Prophet's default 80 % interval in standard deviations (``z`` of 0.9).
_PROPHET_Z80: Final = 1.2815515655446004


class UntranslatableError(Exception):
    """An old value that has no faithful modern form; the message says what to do."""


#: A converter's answer: leave the parameter out.
DROP: Final = object()
#: :attr:`OldParam.default` when the old model had no default worth writing out.
NO_DEFAULT: Final = object()


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
    default: Any = NO_DEFAULT
    why: str = ""


@dataclass(frozen=True)
class OldModel:
    """One ObservML 1.0 model key.

    Attributes:
        model: The observml model key (every 1.0 model has one).
        params: Its parameters that need mapping (any other name passes through unchanged and
            is checked against the observml model like any config).
    """

    model: str
    params: tuple[OldParam, ...] = ()

    def modern_params(
        self, params: Mapping[str, Any], changes: list[str], problems: list[ConfigProblem]
    ) -> dict[str, Any]:
        """Return ``create_model.params`` of this 1.0 model in observml's names and values.

        Each change is appended to ``changes`` (for the notice), each value with no faithful
        modern form to ``problems``. Names this entry does not list pass through unchanged.
        """
        out = {k: v for k, v in params.items() if k not in {p.name for p in self.params}}
        dropped: dict[str, list[str]] = {}  # reason -> names, one notice entry per reason
        for param in self.params:
            where = f"create_model.params.{param.name}"
            given = param.name in params
            if not given and param.default is NO_DEFAULT:
                continue
            value = params[param.name] if given else param.default
            shown = value if given else f"(1.0 default {value!r})"
            if param.new is None and param.convert is None:
                dropped.setdefault(param.why, []).append(param.name)
                continue
            try:
                new_value = param.convert(value) if param.convert else value
            except UntranslatableError as exc:
                problems.append(ConfigProblem(where, f"{exc}."))
                continue
            if new_value is DROP or param.new is None:
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


# -- value converters ---------------------------------------------------------------------
def number(value: Any) -> float:
    """Return ``value`` as a float; a non-number (``true`` included) is untranslatable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UntranslatableError(f"expected a number, got {value!r}")
    return float(value)


def _confidence(z: float) -> float:
    """Two-sided coverage of a normal band of half-width ``z`` standard deviations."""
    tail = math.erfc(z / math.sqrt(2))
    if not 0 < tail < 1:
        raise UntranslatableError(
            "the threshold is outside what a confidence between 0 and 1 can express; set"
            " create_model.params.confidence (e.g. 0.99) instead"
        )
    return round(1 - float(f"{tail:.3g}"), 10)


def _k_abs_error(value: Any) -> float:
    # 1.0 flagged |e| > mean|e| + k std|e|; for normal errors mean|e| and std|e| are
    # sqrt(2/pi) and sqrt(1 - 2/pi) standard deviations.
    return _confidence(math.sqrt(2 / math.pi) + number(value) * math.sqrt(1 - 2 / math.pi))


def _k_sigma(value: Any) -> float:
    return _confidence(number(value))


def _prophet_factor(value: Any) -> float:
    return _confidence(number(value) * 2 * _PROPHET_Z80)


def _significance(value: Any) -> float:
    alpha = number(value)
    if not 0 < alpha < 1:
        raise UntranslatableError(f"expected a significance level between 0 and 1, got {value!r}")
    return round(1 - alpha, 10)


def _contamination(value: Any) -> Any:
    if value == "auto":
        return None  # observml then keeps scikit-learn's own 'auto' boundary
    share = number(value)
    if not 0 < share < 0.5:
        raise UntranslatableError(f"expected 'auto' or a share between 0 and 0.5, got {value!r}")
    return value


def _both_tests(value: Any) -> Any:
    if isinstance(value, list | tuple) and {str(v).lower() for v in value} == {"ht2", "spe"}:
        return DROP
    raise UntranslatableError(
        f"observml's pca always flags on both Hotelling's T2 and SPE; {value!r} asked for"
        " fewer. Remove detect_outliers to accept both"
    )


def _normalize(value: Any) -> Any:
    if value is True:
        return DROP
    raise UntranslatableError(
        "observml's pca always standardises the features; remove normalize: false to accept that"
    )


def _optional_count(value: Any) -> Any:
    return DROP if value is None else value


def _trend(value: Any) -> Any:
    names = {"additive": "add", "multiplicative": "mul"}
    return names.get(value, value) if isinstance(value, str) else value


def _window(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UntranslatableError(
            f"observml's ssa takes a window length in steps (an integer >= 2), got {value!r}"
        )
    return value


def _share(value: Any) -> float:
    """SPMF's support or confidence: a share (``0.1``) or a percentage text (``"10%"``)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            share = math.nan
    elif isinstance(value, str):
        share = math.nan
    else:
        share = number(value)
    if not 0 < share <= 1:
        raise UntranslatableError(
            f"expected a share in (0, 1] such as 0.1, or a percentage such as '10%', got {value!r}"
        )
    return round(share, 10)


def _rule_min_len(value: Any) -> Any:
    if number(value) <= 2:
        return DROP
    raise UntranslatableError(
        f"observml's fpgrowth keeps every rule of 2 up to max_len activities; min_len {value!r}"
        " has no counterpart. Remove min_len"
    )


def _required_items(value: Any) -> Any:
    if value is None or value in ("", '""') or (isinstance(value, list | tuple) and not value):
        return DROP
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UntranslatableError(
        f"ObservML 1.0 named required items by SPMF's item numbers; observml by activity name,"
        f" got {value!r}. Give create_model.params.required_items as a list of activity names"
    )


def _layer_sizes(value: Any) -> Any:
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise UntranslatableError(
            f"expected a list of layer sizes (integers >= 1), got {value!r}; set"
            " create_model.params.hidden instead"
        )
    return list(value)


def _activation(value: Any) -> Any:
    if value not in ("relu", "tanh", "elu"):
        raise UntranslatableError(
            f"observml's ae takes activation relu, tanh or elu, got {value!r}"
        )
    return value


def _same(name: str, default: Any = NO_DEFAULT, convert: Any = None, why: str = "") -> OldParam:
    return OldParam(name, name, convert, default, why)


def _gone(why: str, *names: str) -> tuple[OldParam, ...]:
    return tuple(OldParam(name, None, why=why) for name in names)


_THRESHOLD = "confidence of the forecast interval, equal under normally distributed errors"
_UNUSED = "ObservML 1.0 never passed it to the model"
_STANDARDISED = "confidence of the forecast interval: 1.0 flagged standardised errors beyond k"
_SHUFFLE = (
    "observml shuffles the training windows with its seed and holds out the latest ones for"
    " early stopping either way"
)
_AUTO_ARIMA = (
    "auto_arima's search bounds; observml fits one order: set create_model.params.order"
    " (default [1, 1, 1])"
)
_SHARE = "SPMF's percentage as a share"

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
            "lstm",
            (
                _same("seq_length", 1),
                _same("cell_no", 6),
                _same("patience", 10),
                OldParam("threshold_for_anomaly", "confidence", _k_sigma, 3, _STANDARDISED),
                *_gone(_SHUFFLE, "shuffle"),
            ),
        ),
        "ae": OldModel(
            "ae",
            (
                _same("window", 10),
                _same("epoch_no", 10),
                _same("batch_size", 64),
                OldParam("neuron_no_enc", "hidden", _layer_sizes, why="the encoder's sizes"),
                OldParam("act_enc", "activation", _activation, why="one for both halves"),
                OldParam("threshold_for_anomaly", "confidence", _k_abs_error, 3, _THRESHOLD),
                *_gone("observml's decoder mirrors the encoder's sizes", "neuron_no_dec"),
                *_gone("the length of observml's hidden sets it", "layer_no"),
                *_gone("observml uses act_enc's activation in the decoder too", "act_dec"),
                *_gone(_SHUFFLE, "shuffle"),
            ),
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
        "apriori": OldModel(
            "apriori",
            (
                OldParam("minsup", "min_support", _share, why=_SHARE),
                OldParam("min_conf", "min_confidence", _share, why=_SHARE),
            ),
        ),
        "fpgrowth": OldModel(
            "fpgrowth",
            (
                OldParam("minsup", "min_support", _share, why=_SHARE),
                OldParam("min_conf", "min_confidence", _share, why=_SHARE),
                OldParam("min_len", None, _rule_min_len, why="every rule has two activities"),
            ),
        ),
        "cmspam": OldModel(
            "cmspam",
            (
                OldParam("minsup", "min_support", _share, "50%", _SHARE),
                OldParam("req_items", "required_items", _required_items, why="none were required"),
            ),
        ),
        "topk": OldModel(
            "topk",
            (OldParam("minconf_ar", "min_confidence", _share, why=_SHARE),),
        ),
    },
}

#: Retrain metric of 1.0 (``setup.retrain.metric``) -> observml metric and threshold conversion.
RETRAIN_METRICS: Final[Mapping[str, tuple[str, Callable[[float], float] | None]]] = {
    "accuracy": ("accuracy", None),
    "mae": ("mae", None),
    "mape": ("mape", lambda t: t * 100),  # observml's mape is in percent
    "mse": ("rmse", math.sqrt),
}
#: Retrain metrics of 1.0 with no faithful observml counterpart -> why.
UNMAPPED_METRICS: Final[Mapping[str, str]] = {
    "f1": "ObservML 1.0's F1 was binary (class 1); observml's f1 is macro-averaged",
    "precision": "ObservML 1.0's precision was binary (class 1); observml's is macro-averaged",
    "recall": "ObservML 1.0's recall was binary (class 1); observml's is macro-averaged",
    "r2": "observml reports no R2 for time series (mae, rmse, mape, anomaly_rate, coverage)",
}
