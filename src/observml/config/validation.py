"""Check a config mapping against a constructor signature (sklearn's ``_get_param_names`` idea).

Config keys equal constructor parameter names, so ``Cls(**config)`` is the whole mapping. This
module finds unknown keys (listing the accepted ones), missing required ones and values of the
wrong type, and converts strings from ``${VAR}`` expansion to the annotated type.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from observml.errors import ConfigProblem

__all__ = ["accepted_parameters", "check_arguments", "check_value"]

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def accepted_parameters(cls: type[Any]) -> dict[str, inspect.Parameter]:
    """Return the keyword parameters of ``cls``'s constructor (without ``self``/varargs)."""
    signature = inspect.signature(cls)
    return {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _accepts_var_keyword(cls: type[Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())


def _hints(cls: type[Any]) -> dict[str, Any]:
    target = cls.__init__ if not hasattr(cls, "__dataclass_fields__") else cls
    try:
        return typing.get_type_hints(target)
    except Exception:
        return {}


def check_arguments(
    cls: type[Any], raw: Mapping[str, Any], where: str, problems: list[ConfigProblem]
) -> dict[str, Any]:
    """Validate ``raw`` as keyword arguments of ``cls`` and return them converted.

    Problems are appended to ``problems`` with key paths under ``where``.
    """
    params = accepted_parameters(cls)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    open_ended = _accepts_var_keyword(cls)
    for key, value in raw.items():
        key_path = f"{where}.{key}"
        if key not in params:
            if not open_ended:
                accepted = ", ".join(params) or "none"
                problems.append(
                    ConfigProblem(key_path, f"unknown key. {cls.__name__} accepts: {accepted}.")
                )
            else:
                values[key] = value
            continue
        annotation = hints.get(key, inspect.Parameter.empty)
        ok, converted, expected = _convert(value, annotation)
        if not ok:
            problems.append(ConfigProblem(key_path, f"expected {expected}, got {value!r}."))
            continue
        values[key] = converted
    for name, param in params.items():
        if param.default is param.empty and name not in raw:
            problems.append(
                ConfigProblem(
                    f"{where}.{name}", f"missing; {cls.__name__} needs it. Add '{name}: <value>'."
                )
            )
    return values


def check_value(value: Any, annotation: Any) -> tuple[bool, Any, str]:
    """Return ``(ok, converted, expected description)`` of one value for ``annotation``."""
    return _convert(value, annotation)


def _convert(value: Any, annotation: Any) -> tuple[bool, Any, str]:
    """Return ``(ok, converted, expected description)`` for one value."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True, value, "any value"
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return True, None, "nothing"
        descriptions = []
        for option in options:
            if option is type(None):
                continue
            ok, converted, expected = _convert(value, option)
            if ok:
                return True, converted, expected
            descriptions.append(expected)
        return False, value, " or ".join(descriptions)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value in choices:
            return True, value, ""
        return False, value, "one of " + ", ".join(repr(c) for c in choices)
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        return isinstance(value, list), value, "a list"
    if origin in (dict, Mapping) or annotation is dict:
        return isinstance(value, dict), value, "a mapping"
    if annotation in _NAMES:
        return _convert_scalar(value, annotation)
    return True, value, getattr(annotation, "__name__", str(annotation))


def _convert_scalar(value: Any, annotation: type[Any]) -> tuple[bool, Any, str]:
    expected = _NAMES[annotation]
    if annotation is bool:
        if isinstance(value, bool):
            return True, value, expected
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return True, value.strip().lower() in _TRUE, expected
        return False, value, expected
    if isinstance(value, bool):
        return annotation is str, value, expected
    if annotation is str:
        return (
            (True, str(value), expected)
            if isinstance(value, int | float)
            else (
                isinstance(value, str),
                value,
                expected,
            )
        )
    if isinstance(value, int | float):
        if annotation is int and isinstance(value, float):
            return value.is_integer(), int(value), expected
        return True, annotation(value), expected
    if isinstance(value, str):
        try:
            return True, annotation(value.strip()), expected
        except ValueError:
            return False, value, expected
    return False, value, expected
