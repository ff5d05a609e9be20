"""Reading rows from the files the commands take (``--data``, ``--file``)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pandas as pd

from observml.errors import DataError

__all__ = ["SUFFIXES", "read_rows"]

#: The file types :func:`read_rows` reads.
SUFFIXES: Final = (".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq")


def read_rows(path: str | Path) -> pd.DataFrame:
    """Read rows from a CSV, JSON (records/split/columns), JSON-lines or Parquet file.

    Raises:
        DataError: Unknown suffix, unreadable content, or Parquet without pyarrow.
    """
    from observml.io.rows import to_frame

    file = Path(path)
    suffix = file.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(file)
        if suffix == ".json":
            return to_frame(file.read_text(encoding="utf-8"), where=str(file))
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(file, lines=True)
        if suffix in (".parquet", ".pq"):
            return _read_parquet(file)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: cannot read the rows: {exc}.") from exc
    raise DataError(
        f"{file}: unknown file type {suffix or '(none)'!r}. Use one of {', '.join(SUFFIXES)}."
    )


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(file)
    except ImportError as exc:
        raise DataError(
            f"{file}: reading Parquet needs pyarrow, which is not installed."
            " Install it with: pip install pyarrow"
        ) from exc
