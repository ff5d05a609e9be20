"""Reading rows out of queue messages and writing result messages.

An incoming message carries one row (a JSON object) or many (a JSON array of objects, pandas'
``split`` orient, pandas' default column-oriented ``to_json()`` with dates as epoch
milliseconds, or the old long "pivot" format when the experiment's ``setup.format`` says so).
``text/csv`` bodies are read as CSV with a header row. A header ``x-observml-format`` holding a
JSON format block overrides the experiment's for that message: it says only how to read the
rows (checked against the same table as ``setup.format``); nothing in a message can change an
experiment's type, model or code. A body that cannot be read, however hostile (deeply nested,
not UTF-8, huge numbers), is a :class:`~observml.errors.DataError` for that message alone, so
the message is dead-lettered with the reason and the rest of its batch goes on.

A result message is JSON::

    {"message_id": "<input id>", "experiment": "pump", "version": 3,
     "rows": [{"score": 0.12, "anomaly": false, ...}, ...]}   # one row per input row
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from observml.errors import DataError, ObservMLError
from observml.io.rows import to_frame
from observml.plugins.datastream import Message, OutgoingMessage

__all__ = [
    "FORMAT_HEADER",
    "RESULT_CONTENT_TYPE",
    "SOURCE_ID_HEADER",
    "encode_result",
    "encode_rows",
    "frame_from_message",
    "json_records",
    "rows_from_message",
]

FORMAT_HEADER: Final = "x-observml-format"
#: Header on a result message naming the input message it answers.
SOURCE_ID_HEADER: Final = "x-observml-source-id"
RESULT_CONTENT_TYPE: Final = "application/json"
_CSV_TYPES: Final = ("text/csv", "application/csv")


def frame_from_message(message: Message, fmt: Mapping[str, Any] | None) -> pd.DataFrame:
    """Return the rows a message carries as a DataFrame.

    Raises:
        DataError: The body cannot be read; the message says what was expected.
    """
    where = f"message {str(message.message_id or '(no id)')[:200]}"
    try:
        return _read_frame(message, fmt, where)
    except ObservMLError:
        raise
    except Exception as exc:  # hostile bodies: deep nesting, bad bytes, odd shapes
        raise DataError(
            f"{where}: the body cannot be read as rows ({type(exc).__name__}: {str(exc)[:200]})."
            " Send a JSON object or array of flat rows."
        ) from exc


def _read_frame(message: Message, fmt: Mapping[str, Any] | None, where: str) -> pd.DataFrame:
    override = message.headers.get(FORMAT_HEADER)
    if override:
        try:
            fmt = json.loads(override) if isinstance(override, str | bytes) else dict(override)
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"{where}: header {FORMAT_HEADER} is not a JSON format block: {exc}."
            ) from exc
    content_type = (message.content_type or "application/json").split(";")[0].strip().lower()
    if not message.body.strip():
        raise DataError(f"{where}: empty body. Send a JSON object or array of rows.")
    if content_type in _CSV_TYPES:
        try:
            frame = pd.read_csv(io.BytesIO(message.body))
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"{where}: the CSV body cannot be read: {exc}.") from exc
    else:
        frame = to_frame(message.body, fmt=fmt, where=where)
    if frame.empty:
        raise DataError(f"{where}: the body holds no rows.")
    return frame


def rows_from_message(
    message: Message, fmt: Mapping[str, Any] | None
) -> list[dict[str, Any]] | pd.DataFrame:
    """Return a message's rows: plain dicts on the fast path (JSON rows), else a DataFrame.

    One JSON object or an array of flat objects is decoded with ``json`` alone, so a batch of
    one-row messages becomes one DataFrame in one call; every other shape goes through
    :func:`frame_from_message`.
    """
    if _wide(fmt) and _plain_json(message):
        try:
            data = json.loads(message.body)
        except (ValueError, RecursionError):
            data = None
        rows = _flat_rows(data)
        if rows is not None:
            return rows
    return frame_from_message(message, fmt)


def rows_from_batch(
    batch: Sequence[Message], fmt: Mapping[str, Any] | None
) -> list[list[dict[str, Any]]] | None:
    """Every message's rows from one ``json`` call, or ``None`` when any needs the slow path.

    A batch of plain JSON messages (objects or arrays of flat objects) is decoded as one JSON
    array; anything else (another format, a bad body) returns ``None`` and the caller reads the
    messages one by one with :func:`rows_from_message`, which says what is wrong with each.
    """
    if not batch or not _wide(fmt) or not all(_plain_json(m) for m in batch):
        return None
    try:
        decoded = json.loads(b"[" + b",".join(m.body for m in batch) + b"]")
    except (ValueError, RecursionError):
        return None
    if len(decoded) != len(batch):  # a body held a bare list fragment, e.g. "1,2"
        return None
    out: list[list[dict[str, Any]]] = []
    for data in decoded:
        rows = _flat_rows(data)
        if rows is None:
            return None
        out.append(rows)
    return out


def _wide(fmt: Mapping[str, Any] | None) -> bool:
    """Whether ``fmt`` reads bodies as plain rows (no long format, no records key)."""
    return fmt is None or (fmt.get("type", "wide") == "wide" and not fmt.get("records_key"))


def _plain_json(message: Message) -> bool:
    """Whether ``message`` is JSON without a per-message format override."""
    content_type = message.content_type or "application/json"
    return content_type.startswith("application/json") and FORMAT_HEADER not in message.headers


def _flat_rows(data: Any) -> list[dict[str, Any]] | None:
    """``data`` as rows when it is a non-empty flat object or array of flat objects."""
    if isinstance(data, dict):
        return [data] if data and _flat(data) else None
    if isinstance(data, list) and data and all(isinstance(r, dict) and _flat(r) for r in data):
        return data
    return None


def _flat(row: Mapping[str, Any]) -> bool:
    return not any(isinstance(v, dict | list) for v in row.values())


def json_records(result: pd.DataFrame) -> list[dict[str, Any]]:
    """Return ``result`` as JSON-ready rows (NaN -> None, timestamps -> ISO strings)."""
    if result.empty:
        return []
    numeric = result.select_dtypes("number")
    if not numeric.empty and not np.isfinite(numeric.to_numpy(dtype=float, na_value=0.0)).all():
        result = result.replace([np.inf, -np.inf], np.nan)
    missing = result.isna()
    if not missing.to_numpy().any():  # nothing to turn into None: pandas' own boxing will do
        plain: list[dict[str, Any]] = result.to_dict(orient="records")
        return plain
    clean = result.astype(object).where(~missing, None)
    records: list[dict[str, Any]] = clean.to_dict(orient="records")
    return records


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def encode_rows(
    message_id: str | None, experiment: str, version: int | None, rows: list[dict[str, Any]]
) -> OutgoingMessage:
    """Build the result message for one input message from its JSON-ready result rows."""
    document = {
        "message_id": message_id,
        "experiment": experiment,
        "version": version,
        "rows": rows,
    }
    body = json.dumps(document, default=_json_default, allow_nan=False)
    headers = {SOURCE_ID_HEADER: message_id} if message_id else {}
    return OutgoingMessage(
        body=body.encode("utf-8"),
        headers=headers,
        message_id=f"{message_id}.result" if message_id else None,
        content_type=RESULT_CONTENT_TYPE,
    )


def encode_result(
    message_id: str | None, experiment: str, version: int | None, result: pd.DataFrame
) -> OutgoingMessage:
    """Build the result message for one input message from its result frame."""
    return encode_rows(message_id, experiment, version, json_records(result))
