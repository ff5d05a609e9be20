"""Check a config mapping against a constructor signature (sklearn's ``_get_param_names`` idea).

Config keys equal constructor parameter names, so ``Cls(**config)`` is the whole mapping. This
module finds unknown keys (listing the accepted ones), missing required ones and values their
annotation does not take (:mod:`observml.config.annotation` checks and converts each value). An
annotation that cannot be resolved (a name imported only for type checkers) leaves that one
parameter unchecked, not the others. Every observml section and every plugin, built-in or
third-party, is checked this way.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Mapping
from typing import Any

from observml.config.annotation import check
from observml.errors import ConfigProblem

__all__ = ["accepted_parameters", "check_arguments", "check_value"]


def accepted_parameters(cls: type[Any]) -> dict[str, inspect.Parameter]:
    """Return the keyword parameters of ``cls``'s constructor (without ``self``/varargs)."""
    signature = inspect.signature(cls)
    return {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def check_arguments(
    cls: type[Any], raw: Mapping[str, Any], where: str, problems: list[ConfigProblem]
) -> dict[str, Any]:
    """Validate ``raw`` as keyword arguments of ``cls`` and return them converted.

    Problems are appended to ``problems`` with key paths under ``where`` (an item of a list or
    mapping adds ``[i]`` or ``.key``).
    """
    params = accepted_parameters(cls)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
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
        checked = check(value, hints.get(key, inspect.Parameter.empty))
        if not checked.ok:
            hint = f" {checked.hint}" if checked.hint else ""
            message = f"expected {checked.expected}, got {_show(checked.got)}.{hint}"
            problems.append(ConfigProblem(key_path + checked.at, message))
            continue
        values[key] = checked.value
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
    checked = check(value, annotation)
    return checked.ok, checked.value, checked.expected


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The constructor's annotations; one that cannot be resolved is left out (unchecked)."""
    target: Any = cls if hasattr(cls, "__dataclass_fields__") else cls.__init__
    try:
        return typing.get_type_hints(target)
    except Exception:
        pass  # one bad name must not leave every parameter unchecked: resolve one by one
    owners = reversed(target.__mro__) if isinstance(target, type) else [target]
    hints: dict[str, Any] = {}
    for owner in owners:
        module = sys.modules.get(getattr(owner, "__module__", "") or "")
        namespace = getattr(owner, "__globals__", None) or (vars(module) if module else {})
        for name, annotation in inspect.get_annotations(owner).items():
            if not isinstance(annotation, str):
                hints[name] = annotation
                continue
            try:  # what typing.get_type_hints does, for this one annotation
                hints[name] = eval(annotation, dict(namespace))
            except Exception:  # e.g. a name imported only under TYPE_CHECKING
                hints.pop(name, None)
    return hints


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
