"""Turn what producers send into a DataFrame, and check columns with errors that name them.

Accepted shapes (see ``docs/data-formats.md``):

* a :class:`pandas.DataFrame` (used as is);
* ``records``: a list of row mappings ``[{"a": 1, "b": 2}, ...]``;
* ``split``: ``{"columns": [...], "data": [[...], ...], "index": [...]}`` (``index`` optional);
* ``columns`` (pandas' default ``to_json()``): ``{"a": {"0": 1, "1": 2}, ...}`` or
  ``{"a": [1, 2], ...}``;
* one row as a flat object ``{"a": 1, "b": 2}`` (every value a scalar);
* a JSON ``str``/``bytes`` of any of those;
* the old system's long "pivot" format, when ``fmt`` says ``type: long``:
  ``{"tsdata": [{"target": "s1", "date": "...", "value": 0.1}, ...]}`` becomes one column per
  ``target``, indexed by ``date``.

``fmt`` (the experiment's ``setup.format``) keys, with defaults:

==============  ============  ==========================================================
key             default       meaning
==============  ============  ==========================================================
``type``        ``"wide"``    ``"wide"`` (one row per observation) or ``"long"`` (pivot)
``records_key`` ``None``      key of the row list when rows arrive wrapped in an object;
                              for ``long`` it defaults to ``"tsdata"``
``index``       ``"date"``    long only: field that becomes the index (parsed as datetime)
``columns``     ``"target"``  long only: field whose values become the column names
``values``      ``"value"``   long only: field holding the numbers
``aggfunc``     ``"mean"``    long only: how duplicates of one (index, column) combine
``dayfirst``    ``False``     long only: parse ``01/02/2024`` as 1 February
==============  ============  ==========================================================
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
import pandas as pd

from observml.errors import DataError
from observml.io.numbers import coerce_numeric

__all__ = [
    "FORMAT_DEFAULTS",
    "DataLike",
    "check_format",
    "coerce_numeric",
    "parse_datetime",
    "require_columns",
    "require_non_empty",
    "to_frame",
]

#: What :func:`to_frame` accepts.
DataLike: TypeAlias = pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any] | str | bytes

#: Keys of ``setup.format`` and their defaults.
FORMAT_DEFAULTS: Final[Mapping[str, Any]] = {
    "type": "wide",
    "records_key": None,
    "index": "date",
    "columns": "target",
    "values": "value",
    "aggfunc": "mean",
    "dayfirst": False,
}
_FORMAT_TYPES: Final = ("wide", "long")
_AGGFUNCS: Final = ("mean", "first", "last", "sum", "max", "min", "median")
_LONG_RECORDS_KEY: Final = "tsdata"


def check_format(fmt: Mapping[str, Any] | None, where: str = "setup.format") -> dict[str, Any]:
    """Return ``fmt`` merged over :data:`FORMAT_DEFAULTS`, or raise naming the bad key.

    Raises:
        DataError: An unknown key, an unknown ``type`` or ``aggfunc``.
    """
    if fmt is None:
        return dict(FORMAT_DEFAULTS)
    if not isinstance(fmt, Mapping):
        raise DataError(
            f"{where}: expected a mapping such as {{type: long, records_key: tsdata}},"
            f" got {type(fmt).__name__}."
        )
    unknown = sorted(set(fmt) - set(FORMAT_DEFAULTS))
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}."
            f" Accepted: {', '.join(FORMAT_DEFAULTS)}."
        )
    merged = {**FORMAT_DEFAULTS, **fmt}
    if merged["type"] not in _FORMAT_TYPES:
        raise DataError(
            f"{where}.type: expected one of {', '.join(_FORMAT_TYPES)}, got {merged['type']!r}."
        )
    if merged["aggfunc"] not in _AGGFUNCS:
        raise DataError(
            f"{where}.aggfunc: expected one of {', '.join(_AGGFUNCS)}, got {merged['aggfunc']!r}."
        )
    return merged


def to_frame(
    data: DataLike | pd.Series, *, fmt: Mapping[str, Any] | None = None, where: str = "data"
) -> pd.DataFrame:
    """Convert ``data`` to a DataFrame (see the module docstring for the shapes accepted).

    Args:
        data: The body: a DataFrame, rows, a ``split``/``columns`` dict, or JSON text of those.
        fmt: The ``setup.format`` block; ``None`` means wide rows.
        where: Prefix of error messages (e.g. ``"experiment 'pump' predict data"``).

    Returns:
        A new DataFrame (a DataFrame passed in is returned as is, never modified).

    Raises:
        DataError: The body is not valid JSON or not one of the accepted shapes.
    """
    settings = check_format(fmt, f"{where}: setup.format")
    if isinstance(data, pd.DataFrame):
        if settings["type"] == "long" and _looks_long(data, settings):
            return _pivot(data, settings, where)
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, str | bytes | bytearray):
        data = _parse_json(data, where)
    if settings["type"] == "long":
        return _pivot(_long_rows(data, settings, where), settings, where)
    if isinstance(data, Mapping) and settings["records_key"] is not None:
        data = _unwrap(data, settings["records_key"], where)
    return _wide(data, where)


def _parse_json(text: str | bytes | bytearray, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{where}: not valid JSON ({exc}). Send rows as JSON records"
            " ([{\"col\": value}, ...]) or in pandas 'split' orient."
        ) from exc


def _unwrap(body: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in body:
        raise DataError(
            f"{where}: expected the rows under key {key!r} (setup.format.records_key);"
            f" the body has keys {', '.join(map(repr, list(body)[:10])) or 'none'}."
        )
    return body[key]


def _wide(data: Any, where: str) -> pd.DataFrame:
    if isinstance(data, Mapping):
        if "columns" in data and "data" in data:
            return _from_split(data, where)
        if data and all(isinstance(v, Mapping) for v in data.values()):
            return _from_columns(data, where)
        if data and all(isinstance(v, list) for v in data.values()):
            lengths = {len(v) for v in data.values()}
            if len(lengths) > 1:
                raise DataError(
                    f"{where}: column lists have different lengths ({sorted(lengths)});"
                    " every column needs one value per row."
                )
            return pd.DataFrame(dict(data))
        if data and not any(isinstance(v, Mapping | list) for v in data.values()):
            return pd.DataFrame([dict(data)])  # one row as a JSON object
        raise DataError(
            f"{where}: a JSON object must be in 'split' orient ({{columns, data[, index]}}),"
            " column-oriented ({col: {row: value}} or {col: [values]}), or wrapped rows with"
            " setup.format.records_key set. Got keys"
            f" {', '.join(map(repr, list(data)[:10])) or 'none'}."
        )
    if isinstance(data, list):
        if data and not all(isinstance(row, Mapping) for row in data):
            bad = next(i for i, row in enumerate(data) if not isinstance(row, Mapping))
            raise DataError(
                f"{where}: row {bad} is a {type(data[bad]).__name__}; 'records' rows must be"
                ' objects like {"col": value}.'
            )
        return pd.DataFrame.from_records(data) if data else pd.DataFrame()
    raise DataError(
        f"{where}: expected a DataFrame, a list of row objects, a 'split' or column-oriented"
        f" object, or JSON text of those; got {type(data).__name__}."
    )


def _from_split(data: Mapping[str, Any], where: str) -> pd.DataFrame:
    columns, rows = data["columns"], data["data"]
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise DataError(f"{where}: 'split' orient needs 'columns' and 'data' to be lists.")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise DataError(
                f"{where}: 'split' row {i} has {len(row) if isinstance(row, list) else 'no'}"
                f" values; expected {len(columns)} (one per column)."
            )
    index = data.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(rows)):
        raise DataError(f"{where}: 'split' index must be a list with one entry per row.")
    return pd.DataFrame(rows, columns=columns, index=index)


def _from_columns(data: Mapping[str, Any], where: str) -> pd.DataFrame:
    frame = pd.DataFrame({k: dict(v) for k, v in data.items()})
    labels = [str(i) for i in frame.index]
    if labels and all(label.lstrip("-").isdigit() for label in labels):
        frame.index = pd.Index([int(label) for label in labels])
        frame = frame.sort_index()
    return frame


# -- long "pivot" format ------------------------------------------------------------------
def _looks_long(frame: pd.DataFrame, settings: Mapping[str, Any]) -> bool:
    return {settings["index"], settings["columns"], settings["values"]} <= set(frame.columns)


def _long_rows(data: Any, settings: Mapping[str, Any], where: str) -> pd.DataFrame:
    key = settings["records_key"] or _LONG_RECORDS_KEY
    rows = data
    if isinstance(data, Mapping):
        rows = _unwrap(data, key, where)
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise DataError(
            f"{where}: the long format expects {{{key!r}: [{{{settings['columns']!r}: ...,"
            f" {settings['index']!r}: ..., {settings['values']!r}: ...}}, ...]}}"
            f" (or the bare list); got {type(rows).__name__}."
        )
    return pd.DataFrame.from_records(rows)


def _pivot(rows: pd.DataFrame, settings: Mapping[str, Any], where: str) -> pd.DataFrame:
    index, columns, values = settings["index"], settings["columns"], settings["values"]
    if rows.empty:
        raise DataError(f"{where}: the long format body has no rows.")
    require_columns(rows, [index, columns, values], f"{where} (long format)")
    rows = rows[[index, columns, values]].copy()
    rows[index] = parse_datetime(
        rows[index], None, f"{where} (long format)", column=index, dayfirst=settings["dayfirst"]
    )
    rows[values] = coerce_numeric(rows[values], f"{where} (long format)", column=values)
    wide = rows.pivot_table(
        index=index, columns=columns, values=values, aggfunc=settings["aggfunc"], sort=False
    )
    order = list(dict.fromkeys(rows[columns]))
    wide = wide.reindex(columns=order).sort_index()
    wide.columns = pd.Index([str(c) for c in wide.columns])
    wide.columns.name = None
    return wide


# -- checks -------------------------------------------------------------------------------
def require_non_empty(frame: pd.DataFrame, where: str) -> None:
    """Raise :class:`DataError` when ``frame`` has no rows."""
    if len(frame) == 0:
        raise DataError(f"{where}: no rows. Send at least one row of data.")


def require_columns(frame: pd.DataFrame, columns: Iterable[str], where: str) -> None:
    """Raise :class:`DataError` naming every column of ``columns`` missing from ``frame``."""
    present = set(map(str, frame.columns))
    missing = [c for c in columns if c not in present]
    if missing:
        have = ", ".join(map(repr, list(frame.columns)[:20])) or "none"
        raise DataError(
            f"{where}: missing column(s) {', '.join(map(repr, missing))}. The data has {have}."
            " Check setup.features / setup.target or the data's column names."
        )


def parse_datetime(
    values: pd.Series | pd.Index,
    datetime_format: str | None,
    where: str,
    *,
    column: str | None = None,
    dayfirst: bool = False,
) -> pd.Series:
    """Parse a column as datetimes; numbers are epoch milliseconds (pandas' JSON default).

    Raises:
        DataError: A value cannot be parsed (naming the column, the value and the format).
    """
    series = values.to_series(index=range(len(values))) if isinstance(values, pd.Index) else values
    name = column if column is not None else str(series.name)
    if series.dtype.kind == "M":
        return series
    if series.isna().any():
        position = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise DataError(
            f"{where}: column {name!r} has a missing timestamp at row {position};"
            " every row needs one."
        )
    try:
        if series.dtype.kind in "iuf":
            return pd.to_datetime(series, unit="ms")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format": we say it
            return pd.to_datetime(series, format=datetime_format, dayfirst=dayfirst)
    except (ValueError, TypeError, OverflowError) as exc:
        expected = f"format {datetime_format!r}" if datetime_format else "an ISO date/time"
        raise DataError(
            f"{where}: column {name!r} is not a datetime ({expected}, or epoch milliseconds):"
            f" {exc}. Set setup.datetime_format to the format the data uses."
        ) from exc
