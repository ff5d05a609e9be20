"""Check ``create_model.params`` values before anything is built: at the door, not at training.

Each value is checked against what its target declares, in this order:

Values nested deeper than 8 levels, integers past 64 bits and NaN/Infinity are refused first.

1. the target's own ``_parameter_constraints`` (every scikit-learn estimator since 1.2, and our
   adapters in :mod:`observml.experiments.detectors`), with scikit-learn's
   ``validate_parameter_constraints``, so the library's own rule and wording are used;
2. else the constructor's annotation (``order: Sequence[int]``, ``alpha: float``);
3. else the type of the constructor's default (``n_iter=10`` takes a number, ``verbose=False``
   true or false, ``covariance_type="diag"`` a string); a default of ``None`` takes anything.

A value equal to the experiment type's own default for that parameter (``ModelSpec.defaults``,
e.g. DBSCAN's ``eps: null``, which the adapter fills in) is accepted as it is.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from observml.config.validation import check_value
from observml.errors import ConfigProblem

__all__ = ["check_params"]

#: Nesting depth past which a parameter value is refused outright (no model takes more).
_MAX_DEPTH = 8


def check_params(
    raw: Mapping[str, Any],
    *,
    target: Callable[..., Any],
    adapter: Callable[..., Any] | None,
    options: Mapping[str, Any],
    defaults: Mapping[str, Any],
    where: str = "create_model.params",
) -> list[ConfigProblem]:
    """Return one problem per value in ``raw`` that its target or adapter does not accept.

    Args:
        raw: ``create_model.params`` as given (unknown names are checked elsewhere).
        target: The model class or function the params go to.
        adapter: The class wrapping the model, which takes the ``options``.
        options: Option name -> default (parameters our own code reads).
        defaults: The experiment type's defaults for target parameters.
        where: Key path prefix of the problems.
    """
    problems: list[ConfigProblem] = []
    for name, value in raw.items():
        key = f"{where}.{name}"
        if _too_deep(value, _MAX_DEPTH):
            problems.append(ConfigProblem(key, f"nested deeper than {_MAX_DEPTH} levels."))
            continue
        if _too_big(value):
            problems.append(
                ConfigProblem(
                    key, f"{_show(value)} holds an integer past 64 bits; no model takes one."
                )
            )
            continue
        if name in defaults and _same(value, defaults[name]):
            continue
        owner = adapter if name in options and adapter is not None else target
        fallback = options.get(name, inspect.Parameter.empty)
        message = _check_one(owner, name, value, fallback if name in options else None)
        if message:
            problems.append(ConfigProblem(key, message))
    return problems


def _check_one(owner: Callable[..., Any], name: str, value: Any, option_default: Any) -> str:
    """Return why ``owner`` does not take ``value`` for ``name`` (``""`` when it does)."""
    if isinstance(value, float) and not math.isfinite(value):
        # JSON NaN/Infinity: no parameter of ours or scikit-learn's wants one
        return f"expected a finite number, got {value!r}."
    constraints = getattr(owner, "_parameter_constraints", None)
    if isinstance(constraints, Mapping) and name in constraints:
        from sklearn.utils._param_validation import (
            InvalidParameterError,
            validate_parameter_constraints,
        )

        try:
            validate_parameter_constraints(
                {name: constraints[name]}, {name: value}, caller_name=_label(owner)
            )
        except InvalidParameterError as exc:
            return f"{exc}".rstrip(".") + "."
        return ""
    parameter = _parameter(owner, name)
    annotation = _annotation(owner, name)
    if annotation is not inspect.Parameter.empty:
        ok, expected = _check_annotation(value, annotation)
        return "" if ok else f"expected {expected}, got {_show(value)}."
    default = option_default if parameter is None else parameter.default
    if default is inspect.Parameter.empty or default is None:
        return ""
    return _check_like(value, default)


def _check_annotation(value: Any, annotation: Any) -> tuple[bool, str]:
    """Check ``value`` against a type annotation, element types of sequences included."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(annotation)):
            return True, "nothing"
        found = [_check_annotation(value, option) for option in options]
        if any(ok for ok, _ in found):
            return True, ""
        return False, " or ".join(expected for _, expected in found)
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, "a list"
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if len(args) == 1:
            checked = [_check_annotation(item, args[0]) for item in value]
            bad = next((expected for ok, expected in checked if not ok), None)
            if bad is not None:
                return False, f"a list of {bad}"
        return True, ""
    ok, converted, expected = check_value(value, annotation)
    if ok and isinstance(value, str) and isinstance(converted, int | float | bool):
        # "0.5", "yes" or "2" (for Literal[1, 2]) as text is for ${VAR} in a config file only:
        # the model gets the value as given, so it must already be the number
        return False, expected
    return ok, expected


def _check_like(value: Any, default: Any) -> str:
    """Accept ``value`` when it has the kind of the default (bool, number, string, list)."""
    if isinstance(default, bool):
        return "" if isinstance(value, bool) else f"expected true or false, got {_show(value)}."
    if isinstance(default, numbers.Real):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return ""
        return f"expected a number (default {default!r}), got {_show(value)}."
    if isinstance(default, str):
        if isinstance(value, str):
            return ""
        return f"expected a string (default {default!r}), got {_show(value)}."
    if isinstance(default, list | tuple):
        return "" if isinstance(value, list | tuple) else f"expected a list, got {_show(value)}."
    return ""


def _parameter(owner: Callable[..., Any], name: str) -> inspect.Parameter | None:
    try:
        return inspect.signature(owner).parameters.get(name)
    except (TypeError, ValueError):
        return None


def _annotation(owner: Callable[..., Any], name: str) -> Any:
    target: Any = owner
    if isinstance(owner, type):
        target = vars(owner).get("__init__") or next(
            (vars(base)["__init__"] for base in owner.__mro__ if "__init__" in vars(base)), owner
        )
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: fall back to the default's type
        return inspect.Parameter.empty
    annotation = hints.get(name, inspect.Parameter.empty)
    return inspect.Parameter.empty if annotation is Any else annotation


def _label(owner: Callable[..., Any]) -> str:
    return getattr(owner, "__name__", type(owner).__name__)


def _same(value: Any, default: Any) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # an array-like default: never equal to JSON
        return False


def _too_deep(value: Any, depth: int) -> bool:
    if depth <= 0:
        return True
    if isinstance(value, Mapping):
        return any(_too_deep(v, depth - 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_too_deep(v, depth - 1) for v in value)
    return False


def _too_big(value: Any) -> bool:
    """Whether ``value`` holds an integer numpy cannot hold (JSON allows any length)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**63
    if isinstance(value, Mapping):
        return any(_too_big(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_too_big(v) for v in value)
    return False


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
