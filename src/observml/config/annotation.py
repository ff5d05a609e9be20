"""One config value checked against a type annotation, and converted to what it names.

:mod:`observml.config.validation` checks a whole mapping against a constructor's signature with
:func:`check`, one keyword argument at a time; :func:`describe` says in a config author's words
what an annotation takes. What YAML gives (and ``${VAR}`` expansion, which gives text) is
converted to the annotated type. What each annotation takes:

===============================================  ===========================================
annotation                                       takes (and becomes)
===============================================  ===========================================
``int``, ``float``                               a number, or its text (``"5"``)
``bool``                                         true/false, or the text yes/no/on/off/1/0
``str``                                          text, or a number (its text); not true/false
``Literal[...]``, an ``Enum``                    one of the values (an enum: its member)
``Path`` (any ``PurePath``)                      non-empty text (the path)
``list[T]``, ``Sequence[T]``, ``Iterable[T]``    a YAML list (not text), each item as ``T``
``tuple[T, ...]``, ``tuple[A, B]``               a list of ``T`` / of ``A``, ``B`` (a tuple)
``set[T]``, ``frozenset[T]``                     a list of hashable ``T`` (a set)
``dict[K, V]``, ``Mapping[K, V]``                a mapping, keys as ``K``, values as ``V``
``A | B``, ``A | None``                          what ``A`` or ``B`` takes (a value that is
                                                 already one of them is kept); null for None
``Any``, no annotation, ``object``               anything
``type[C]``, ``Callable``, any other class       a subclass, a callable, an instance of the
                                                 class: none of which YAML can write
===============================================  ===========================================

``Annotated[T, ...]`` and ``NewType`` read as ``T``; a ``TypeVar`` as its bound. A protocol that
is not ``@runtime_checkable`` and an unresolved (text) annotation leave the value unchecked.
"""

from __future__ import annotations

import collections.abc as abc
import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any, Final, Literal, NamedTuple, Union

__all__ = ["Checked", "check", "describe"]

_SCALARS: Final = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_PLURALS: Final = {int: "integers", float: "numbers", bool: "true/false values", str: "strings"}
_TRUE: Final = ("true", "yes", "on", "1")
_FALSE: Final = ("false", "no", "off", "0")
#: Origins read from a YAML list, and the container each becomes.
_LISTS: Final[Mapping[Any, Callable[[list[Any]], Any]]] = {
    list: list,
    abc.Sequence: list,
    abc.MutableSequence: list,
    abc.Iterable: list,
    abc.Collection: list,
    tuple: tuple,
    set: set,
    abc.MutableSet: set,
    frozenset: frozenset,
    abc.Set: frozenset,
}
_MAPPINGS: Final = (dict, abc.Mapping, abc.MutableMapping)
_NOT_IN_YAML: Final = (
    "A config file cannot write one: build the object in Python and pass it there, or give"
    " the parameter a type a config can hold (text, a number, a list, a mapping)."
)


class Checked(NamedTuple):
    """One value checked against one annotation.

    Attributes:
        ok: Whether the annotation takes the value.
        value: The value converted to the annotated type (as given when not ``ok``).
        expected: What the annotation takes, e.g. ``"a list of strings"``.
        at: Where in the value it failed: ``""`` for the value itself, ``"[2]"`` for a list
            item, ``".host"`` for a mapping's value (nested: ``"[0].port"``).
        got: The part of the value that failed.
        hint: What to do, when that is known (a full sentence), else ``""``.
    """

    ok: bool
    value: Any
    expected: str
    at: str = ""
    got: Any = None
    hint: str = ""


def check(value: Any, annotation: Any) -> Checked:
    """Return ``value`` checked against ``annotation`` and converted to the type it names."""
    annotation = _underlying(annotation)
    if annotation in (inspect.Parameter.empty, Any, object) or isinstance(annotation, str):
        return Checked(True, value, "any value")
    if annotation is None or annotation is type(None):
        return Checked(value is None, None, "null", got=value)
    origin = typing.get_origin(annotation)
    base: Any = origin or annotation
    if origin in (Union, types.UnionType):
        return _check_union(value, typing.get_args(annotation))
    if origin is Literal:
        return _check_choice(value, typing.get_args(annotation), describe(annotation))
    if base in _LISTS:
        return _check_items(value, annotation, base)
    if base in _MAPPINGS or typing.is_typeddict(annotation):
        return _check_mapping(value, annotation)
    if not isinstance(base, type):
        return Checked(True, value, describe(annotation))  # e.g. a ForwardRef left over
    if issubclass(base, enum.Enum):
        return _check_choice(value, tuple(base), describe(base))
    if base in _SCALARS:
        return _check_scalar(value, base)
    if issubclass(base, PurePath):
        if isinstance(value, PurePath) or (isinstance(value, str) and value.strip()):
            return Checked(True, base(value), "a path")
        return _fail(value, "a path (non-empty text)")
    return _check_instance(value, annotation, base)


def _check_union(value: Any, options: tuple[Any, ...]) -> Checked:
    real = [o for o in options if o is not type(None)]
    if value is None and len(real) < len(options):
        return Checked(True, None, "null")
    if len(real) == 1:
        return check(value, real[0])  # Optional[X]: report as X, item paths included
    results = [check(value, option) for option in real]
    kept = [r for r in results if r.ok and r.value is value]
    converted = [r for r in results if r.ok]
    if kept or converted:
        return (kept or converted)[0]  # "5" stays text for ``int | str``, 5 stays a number
    return _fail(value, " or ".join(describe(o) for o in real))


def _check_choice(value: Any, choices: tuple[Any, ...], expected: str) -> Checked:
    """``Literal`` or ``Enum``: the value itself, or text that converts to it (``${VAR}``)."""
    for choice in choices:
        plain = choice.value if isinstance(choice, enum.Enum) else choice
        if isinstance(value, enum.Enum) and value is choice:
            return Checked(True, choice, expected)
        if type(value) is type(plain) and value == plain:
            return Checked(True, choice, expected)
    if isinstance(value, str):
        for choice in choices:
            plain = choice.value if isinstance(choice, enum.Enum) else choice
            if type(plain) in _SCALARS and type(plain) is not str:
                ok, converted = _check_scalar(value, type(plain))[:2]
                if ok and converted == plain:
                    return Checked(True, choice, expected)
    return _fail(value, expected)


def _check_scalar(value: Any, annotation: type[Any]) -> Checked:
    expected = _SCALARS[annotation]
    fail = _fail(value, expected)
    if annotation is bool:
        if isinstance(value, bool):
            return Checked(True, value, expected)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return Checked(True, value.strip().lower() in _TRUE, expected)
        return fail
    if isinstance(value, bool):
        hint = "Quote it to mean the text (unquoted yes/no/true/false are booleans in YAML)."
        hint = hint if annotation is str else ""
        return Checked(False, value, expected, "", value, hint)
    if annotation is str:
        if isinstance(value, str):
            return Checked(True, value, expected)
        return Checked(True, str(value), expected) if isinstance(value, int | float) else fail
    if isinstance(value, int | float):
        if annotation is int and isinstance(value, float):
            return Checked(True, int(value), expected) if value.is_integer() else fail
        return Checked(True, value if type(value) is annotation else annotation(value), expected)
    if isinstance(value, str):
        try:
            return Checked(True, annotation(value.strip()), expected)
        except ValueError:
            return fail
    return fail


def _check_items(value: Any, annotation: Any, base: Any) -> Checked:
    """A list-like annotation: a YAML list (a tuple or set from Python), item by item."""
    expected = describe(annotation)
    takes_sets = _LISTS[base] in (set, frozenset) or base in (abc.Iterable, abc.Collection)
    if not isinstance(value, list | tuple) and not (
        takes_sets and isinstance(value, set | frozenset)
    ):
        return _fail(value, expected)
    items = list(value)
    args = typing.get_args(annotation)
    if base is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            return _fail(value, expected)
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(items)
    out = []
    for index, (item, item_type) in enumerate(zip(items, item_types, strict=True)):
        checked = check(item, item_type)
        if not checked.ok:
            return checked._replace(at=f"[{index}]{checked.at}")
        out.append(checked.value)
    make = _LISTS[base]
    if type(value) is make and all(a is b for a, b in zip(out, items, strict=True)):
        return Checked(True, value, expected)
    try:
        return Checked(True, make(out), expected)
    except TypeError:  # an unhashable item for a set
        return _fail(value, "a list of distinct, hashable items (text, numbers)")


def _check_mapping(value: Any, annotation: Any) -> Checked:
    expected = describe(annotation)
    if not isinstance(value, Mapping):
        return _fail(value, expected)
    args = typing.get_args(annotation) if not typing.is_typeddict(annotation) else ()
    key_type, value_type = args if len(args) == 2 else (Any, Any)
    out: dict[Any, Any] = {}
    same = isinstance(value, dict)
    for key, item in value.items():
        checked_key = check(key, key_type)
        if not checked_key.ok:
            return Checked(False, value, f"a key that is {checked_key.expected}", f".{key}", key)
        checked = check(item, value_type)
        if not checked.ok:
            return checked._replace(at=f".{key}{checked.at}")
        out[checked_key.value] = checked.value
        same = same and checked_key.value is key and checked.value is item
    return Checked(True, value if same else out, expected)


def _check_instance(value: Any, annotation: Any, cls: Any) -> Checked:
    """Any other class: ``type[C]``, a callable, or an instance checked with ``isinstance``."""
    if cls is type:
        args = typing.get_args(annotation)
        bound = args[0] if args and isinstance(args[0], type) else object
        ok = isinstance(value, type) and issubclass(value, bound)
        return Checked(ok, value, describe(annotation), got=value, hint="" if ok else _NOT_IN_YAML)
    if cls is abc.Callable:
        return Checked(callable(value), value, "a callable", got=value, hint=_NOT_IN_YAML)
    try:
        ok = isinstance(value, cls)
    except TypeError:  # a protocol that is not runtime-checkable: nothing to check against
        return Checked(True, value, describe(annotation))
    return Checked(ok, value, describe(annotation), got=value, hint="" if ok else _NOT_IN_YAML)


# -- annotations ---------------------------------------------------------------------------
def _underlying(annotation: Any) -> Any:
    """``Annotated[T, ...]``, ``NewType`` and a bound ``TypeVar`` read as the type inside."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif isinstance(annotation, typing.NewType):
            annotation = annotation.__supertype__
        elif isinstance(annotation, typing.TypeVar):
            if annotation.__constraints__:
                return Union[annotation.__constraints__]  # noqa: UP007 - built from a tuple
            return annotation.__bound__ if annotation.__bound__ is not None else Any
        else:
            return annotation


def describe(annotation: Any) -> str:
    """Return what a value for ``annotation`` must be, in a config author's words."""
    annotation = _underlying(annotation)
    origin = typing.get_origin(annotation)
    base: Any = origin or annotation
    args = typing.get_args(annotation)
    if annotation in (inspect.Parameter.empty, Any, object):
        return "any value"
    if annotation is None or annotation is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in base)
    if base in _LISTS:
        return _describe_items(base, args)
    if base in _MAPPINGS or typing.is_typeddict(annotation):
        keys, values = args if len(args) == 2 else (Any, Any)
        if keys not in (Any, str):
            return f"a mapping of {_plural(keys)} to {_plural(values)}"
        return "a mapping" if values is Any else f"a mapping whose values are {_plural(values)}"
    if base in _SCALARS:
        return _SCALARS[base]
    if isinstance(base, type) and issubclass(base, PurePath):
        return "a path"
    if base is type:
        return f"a subclass of {_name(args[0])}" if args else "a class"
    if base is abc.Callable:
        return "a callable"
    return f"a {_name(annotation)} object"


def _describe_items(base: Any, args: tuple[Any, ...]) -> str:
    if base is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {len(args)} items: " + ", ".join(describe(a) for a in args)
    kind = "a list of distinct" if _LISTS[base] in (set, frozenset) else "a list of"
    return f"{kind} {_plural(args[0])}" if args and args[0] is not Any else "a list"


def _plural(annotation: Any) -> str:
    annotation = _underlying(annotation)
    if annotation in _PLURALS:
        return _PLURALS[annotation]
    if annotation in (Any, object):
        return "values"
    return f"items that are each {describe(annotation)}"


def _name(annotation: Any) -> str:
    module = getattr(annotation, "__module__", "")
    name = getattr(annotation, "__qualname__", None) or str(annotation)
    return name if module in ("builtins", "") else f"{module}.{name}"


def _fail(value: Any, expected: str, hint: str = "") -> Checked:
    return Checked(False, value, expected, "", value, hint)
