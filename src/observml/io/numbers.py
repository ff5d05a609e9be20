"""Reading numbers out of rows: the one place a value becomes a float.

Producers send numbers in many ways: JSON numbers, numbers as strings (``"12.5"``, what
``json.dumps`` of a ``csv.DictReader`` row gives), comma decimals (``"12,5"``, where
``setup.decimal: ","`` says so) and empty strings for a missing reading. Training, prediction,
streaming and retraining all read rows through :func:`read_numbers` (via
``Experiment.prepare``) and :func:`coerce_numeric` (the feature matrix), so a row is read the
same way on every path.

Rules (see ``docs/data-formats.md``):

* a column whose dtype is already numeric or boolean is used as is;
* in a text column, surrounding spaces are ignored, an empty string (or only spaces) is a
  missing value, and with ``decimal=","`` a comma is the decimal mark (``"12,5"`` is 12.5);
  no thousands separators are read, and a number too large for a float (``10**400``,
  ``"inf"``) is not a reading;
* a text column becomes numeric only when it holds a number and every value that is not
  missing reads as one; otherwise it stays as it is (labels, ids, a column left empty), and
  :func:`unreadable` names an example value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np
import pandas as pd

from observml.errors import DataError

__all__ = ["DECIMAL_MARKS", "check_decimal", "coerce_numeric", "read_numbers", "unreadable"]

#: The decimal marks ``setup.decimal`` accepts.
DECIMAL_MARKS: Final = (".", ",")


def check_decimal(decimal: object, where: str = "setup.decimal") -> str:
    """Return ``decimal`` when it is ``"."`` or ``","``, else raise naming the key."""
    if decimal not in DECIMAL_MARKS:
        raise DataError(
            f"{where}: expected '.' or ',' (the mark between a number's whole and decimal"
            f" part), got {decimal!r}."
        )
    return str(decimal)


def _parse(values: pd.Series, decimal: str) -> pd.Series:
    """``values`` as float64 with NaN wherever a value is missing or not a number."""
    if values.dtype.kind in "fiub":
        return values.astype("float64")
    text = values.astype("string").str.strip()
    if decimal == ",":
        text = text.str.replace(",", ".", regex=False)
    text = text.mask(text == "")
    parsed = pd.to_numeric(text, errors="coerce").astype("float64")
    return parsed.where(np.isfinite(parsed))  # "1e999", 10**400: not a reading


def _bad(values: pd.Series, parsed: pd.Series) -> np.ndarray:
    """Positions holding a value that is there but is not a number."""
    present = values.notna().to_numpy(dtype=bool)
    if values.dtype.kind not in "fiub":
        blank = values.astype("string").str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        present = present & ~blank
    bad: np.ndarray = parsed.isna().to_numpy() & present
    return bad


def read_numbers(
    frame: pd.DataFrame, columns: Iterable[str] | None = None, *, decimal: str = "."
) -> pd.DataFrame:
    """Return ``frame`` with each text column of ``columns`` that holds only numbers as floats.

    Args:
        frame: The rows (not modified).
        columns: The columns to read (default every column); absent ones are skipped.
        decimal: ``"."`` or ``","``, the decimal mark of numbers sent as text.

    Returns:
        ``frame`` itself when nothing changed, else a copy with the converted columns. A
        column with any value that is not a number is left as it was.
    """
    names = list(frame.columns) if columns is None else [c for c in columns if c in frame]
    converted: dict[str, pd.Series] = {}
    for name in names:
        values = frame[name]
        if not isinstance(values, pd.Series) or values.dtype.kind in "fiubM":
            continue
        parsed = _parse(values, decimal)
        if parsed.notna().any() and not _bad(values, parsed).any():
            converted[str(name)] = parsed
    return frame.assign(**converted) if converted else frame


def unreadable(frame: pd.DataFrame, columns: Iterable[str], *, decimal: str = ".") -> list[str]:
    """Describe each of ``columns`` that is not numeric, with its first value that is not.

    For error messages: ``["'feed_flow' ('12 5' in row 0)", "'batch' ('A1' in row 0)"]``.
    """
    out = []
    for name in columns:
        if name not in frame:
            continue
        values = frame[name]
        if not isinstance(values, pd.Series) or values.dtype.kind in "fiub":
            continue
        parsed = _parse(values, decimal) if values.dtype.kind != "M" else None
        bad = _bad(values, parsed) if parsed is not None else np.zeros(0, dtype=bool)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            out.append(f"{str(name)!r} ({values.iloc[row]!r} in row {row})")
        elif parsed is None:
            out.append(f"{str(name)!r} (datetimes)")
        elif parsed.isna().all():
            out.append(f"{str(name)!r} (empty)")
    return out


def coerce_numeric(
    values: pd.Series,
    where: str,
    *,
    column: str | None = None,
    allow_nan: bool = False,
    decimal: str = ".",
) -> pd.Series:
    """Return ``values`` as float64, or raise naming the column and the first bad value.

    Args:
        values: One column.
        where: Error prefix.
        column: The column's name for messages (defaults to ``values.name``).
        allow_nan: Accept missing values (empty strings included); otherwise one is an error.
        decimal: ``"."`` or ``","``, the decimal mark of numbers sent as text.

    Raises:
        DataError: A value is not a number, or is missing when ``allow_nan`` is false.
    """
    name = column if column is not None else str(values.name)
    result = _parse(values, decimal)
    bad = _bad(values, result)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        hint = (
            " Numbers with a decimal comma need setup.decimal: ','."
            if decimal == "." and "," in str(values.iloc[position])
            else ""
        )
        raise DataError(
            f"{where}: column {name!r} must be numeric; row {position} has"
            f" {values.iloc[position]!r} ({type(values.iloc[position]).__name__}).{hint}"
        )
    if not allow_nan:
        missing = result.isna().to_numpy()
        if missing.any():
            position = int(np.flatnonzero(missing)[0])
            raise DataError(
                f"{where}: column {name!r} has {int(missing.sum())} missing value(s) (first at"
                f" row {position}); expected a number in every row. Fill or drop them first."
            )
    return result
