"""Reading the files the commands take: rows (``--data``, ``--file``) and experiment configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from observml.errors import ConfigError, DataError

__all__ = ["SUFFIXES", "read_experiment_config", "read_rows"]

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


def read_experiment_config(path: str | Path) -> dict[str, Any]:
    """Read an experiment config (YAML or JSON mapping of setup/create_model/retrain/...)."""
    file = Path(path)
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML or JSON: {exc}.", source=str(file)) from exc
    if not isinstance(loaded, dict):
        raise ConfigError(
            "expected a mapping with setup, create_model, retrain (and optionally type).",
            source=str(file),
        )
    return loaded
