"""Reading message bodies in batches and writing result rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from observml.io.messages import FORMAT_HEADER, json_records, rows_from_batch, rows_from_message
from observml.plugins.datastream import Message


def message(body: bytes, **kwargs: object) -> Message:
    return Message(body=body, **kwargs)  # type: ignore[arg-type]


def test_a_batch_of_json_rows_is_read_in_one_call() -> None:
    batch = [message(b'{"a": 1, "b": 2.5}'), message(b'[{"a": 3}, {"a": 4, "b": null}]')]
    assert rows_from_batch(batch, None) == [[{"a": 1, "b": 2.5}], [{"a": 3}, {"a": 4, "b": None}]]
    assert rows_from_batch(batch, None) == [rows_from_message(m, None) for m in batch]


@pytest.mark.parametrize(
    "bodies",
    [
        [b'{"a": 1}', b"{not json"],  # one bad body: each is read alone, the bad one named
        [b'{"a": 1}, {"a": 2}', b'{"a": 3}'],  # two objects in one body: counts differ
        [b'{"a": [1', b"2]}"],  # a body split over two messages joins into one
        [b'{"a": {"nested": 1}}'],  # nested values are the long format's business
        [b"[]"],
        [b"{}"],
        [b"42"],
    ],
)
def test_anything_unusual_takes_the_per_message_path(bodies: list[bytes]) -> None:
    assert rows_from_batch([message(b) for b in bodies], None) is None


def test_other_formats_and_content_types_take_the_per_message_path() -> None:
    plain = message(b'{"a": 1}')
    assert rows_from_batch([plain], {"type": "long"}) is None
    assert rows_from_batch([plain, message(b"a\n1\n", content_type="text/csv")], None) is None
    assert rows_from_batch([message(b'{"a": 1}', headers={FORMAT_HEADER: "{}"})], None) is None
    assert rows_from_batch([], None) is None


def test_json_records_turns_missing_values_into_none_and_keeps_clean_rows_fast() -> None:
    clean = pd.DataFrame({"score": [0.5, 1.5], "anomaly": [False, True]})
    rows = json_records(clean)
    assert rows == [{"score": 0.5, "anomaly": False}, {"score": 1.5, "anomaly": True}]
    assert type(rows[0]["score"]) is float
    assert type(rows[0]["anomaly"]) is bool
    gaps = pd.DataFrame({"score": [np.nan, np.inf], "label": ["x", None]})
    assert json_records(gaps) == [{"score": None, "label": "x"}, {"score": None, "label": None}]
    assert not any(
        isinstance(v, float) and math.isnan(v) for r in json_records(gaps) for v in r.values()
    )
