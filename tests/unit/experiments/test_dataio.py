from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from observml.errors import DataError
from observml.io.rows import (
    check_format,
    coerce_numeric,
    parse_datetime,
    require_columns,
    require_non_empty,
    to_frame,
)

FRAME = pd.DataFrame(
    {"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "ds": pd.date_range("2024-01-01", periods=3, freq="h")}
)


def test_dataframe_is_returned_as_is() -> None:
    assert to_frame(FRAME) is FRAME


@pytest.mark.parametrize(
    "orient",
    [
        pytest.param("records", id="records"),
        pytest.param("split", id="split"),
        pytest.param("columns", id="columns"),
    ],
)
@pytest.mark.parametrize(
    "as_bytes", [pytest.param(False, id="str"), pytest.param(True, id="bytes")]
)
def test_json_orients_round_trip(orient: str, as_bytes: bool) -> None:
    epoch_ms = FRAME.assign(ds=FRAME["ds"].astype("datetime64[ms]").astype("int64"))
    text = epoch_ms.to_json(orient=orient)
    frame = to_frame(text.encode() if as_bytes else text)
    assert list(frame.columns) == ["a", "b", "ds"]
    assert frame["a"].tolist() == [1.0, 2.0, 3.0]
    # dates arrive as epoch milliseconds; parse_datetime turns them back
    assert parse_datetime(frame["ds"], None, "data").tolist() == FRAME["ds"].tolist()


def test_iso_dates_parse() -> None:
    frame = to_frame(FRAME.to_json(orient="records", date_format="iso"))
    assert parse_datetime(frame["ds"], None, "data").tolist() == FRAME["ds"].tolist()


def test_single_flat_object_is_one_row() -> None:
    assert to_frame('{"a": 1, "b": "x"}').to_dict("records") == [{"a": 1, "b": "x"}]


def test_parsed_objects_are_accepted() -> None:
    records = json.loads(FRAME.drop(columns="ds").to_json(orient="records"))
    split = json.loads(FRAME.drop(columns="ds").to_json(orient="split"))
    assert to_frame(records)["b"].tolist() == [4, 5, 6]
    assert to_frame(split)["b"].tolist() == [4, 5, 6]
    assert to_frame({"a": [1, 2], "b": [3, 4]}).shape == (2, 2)


def test_columns_orient_sorts_numeric_row_labels() -> None:
    frame = to_frame({"a": {"10": 3, "2": 2, "0": 1}})
    assert frame["a"].tolist() == [1, 2, 3]
    assert frame.index.tolist() == [0, 2, 10]


def test_records_key_unwraps_wide_rows() -> None:
    frame = to_frame({"rows": [{"a": 1}, {"a": 2}]}, fmt={"records_key": "rows"})
    assert frame["a"].tolist() == [1, 2]


def test_long_format_pivots_one_column_per_target() -> None:
    body = {
        "tsdata": [
            {"target": "s1", "date": "2024-01-01T00:15:00", "value": 2.0},
            {"target": "s1", "date": "2024-01-01T00:00:00", "value": 1.0},
            {"target": "s2", "date": "2024-01-01T00:00:00", "value": 10.0},
            {"target": "s2", "date": "2024-01-01T00:15:00", "value": 20.0},
            {"target": "s2", "date": "2024-01-01T00:15:00", "value": 40.0},
        ]
    }
    frame = to_frame(json.dumps(body), fmt={"type": "long"})
    assert list(frame.columns) == ["s1", "s2"]
    assert frame.index.name == "date"
    assert frame.index.is_monotonic_increasing
    assert frame.loc["2024-01-01 00:15", "s2"] == 30.0  # duplicates averaged
    last = to_frame(body, fmt={"type": "long", "aggfunc": "last"})
    assert last.loc["2024-01-01 00:15", "s2"] == 40.0


def test_long_format_custom_field_names() -> None:
    body = {"points": [{"sensor": "x", "t": "2024-01-01", "v": 1}]}
    fmt = {
        "type": "long",
        "records_key": "points",
        "index": "t",
        "columns": "sensor",
        "values": "v",
    }
    assert to_frame(body, fmt=fmt)["x"].tolist() == [1.0]


def test_long_format_on_a_long_dataframe() -> None:
    rows = pd.DataFrame({"target": ["a", "b"], "date": ["2024-01-01"] * 2, "value": [1, 2]})
    assert list(to_frame(rows, fmt={"type": "long"}).columns) == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "fmt", "match"),
    [
        pytest.param("{not json", None, "not valid JSON", id="bad-json"),
        pytest.param(b"\xff\xfe", None, "not valid JSON", id="bad-bytes"),
        pytest.param(42, None, "got int", id="scalar"),
        pytest.param([1, 2], None, "row 0 is a int", id="rows-not-objects"),
        pytest.param({"x": 1, "y": [1]}, None, "split' orient", id="unknown-object"),
        pytest.param({"a": [1], "b": [1, 2]}, None, "different lengths", id="ragged-lists"),
        pytest.param(
            {"columns": ["a"], "data": [[1, 2]]}, None, "split' row 0 has 2", id="split-row"
        ),
        pytest.param({"rows": []}, {"records_key": "data"}, "under key 'data'", id="records-key"),
        pytest.param({"tsdata": []}, {"type": "long"}, "no rows", id="long-empty"),
        pytest.param({"other": []}, {"type": "long"}, "under key 'tsdata'", id="long-key"),
        pytest.param(
            {"tsdata": [{"target": "a", "date": "2024-01-01"}]},
            {"type": "long"},
            "missing column.*'value'",
            id="long-missing-field",
        ),
        pytest.param(
            {"tsdata": [{"target": "a", "date": "2024-01-01", "value": "high"}]},
            {"type": "long"},
            "column 'value' must be numeric; row 0 has 'high'",
            id="long-bad-value",
        ),
        pytest.param(
            {"tsdata": [{"target": "a", "date": "yesterday", "value": 1}]},
            {"type": "long"},
            "column 'date' is not a datetime",
            id="long-bad-date",
        ),
    ],
)
def test_bad_bodies_name_what_was_expected(data: object, fmt: dict | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        to_frame(data, fmt=fmt, where="test")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "match"),
    [
        pytest.param({"kind": "long"}, "unknown key.*'kind'.*Accepted: type", id="unknown-key"),
        pytest.param({"type": "pivot"}, "type: expected one of wide, long", id="type"),
        pytest.param({"aggfunc": "mode"}, "aggfunc: expected one of", id="aggfunc"),
        pytest.param(["long"], "expected a mapping", id="not-mapping"),
    ],
)
def test_check_format_errors(fmt: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        check_format(fmt)  # type: ignore[arg-type]


def test_check_format_defaults() -> None:
    assert check_format(None)["type"] == "wide"
    assert check_format({"type": "long"})["values"] == "value"


def test_require_columns_names_missing_and_present() -> None:
    with pytest.raises(DataError, match=r"where: missing column\(s\) 'x', 'y'. The data has 'a'"):
        require_columns(FRAME, ["a", "x", "y"], "where")
    require_columns(FRAME, ["a", "b"], "where")


def test_require_non_empty() -> None:
    with pytest.raises(DataError, match="where: no rows"):
        require_non_empty(pd.DataFrame(), "where")


def test_coerce_numeric_accepts_numeric_strings() -> None:
    values = coerce_numeric(pd.Series(["1", "2.5"], name="a"), "w")
    assert values.dtype == np.float64
    assert values.tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("values", "allow_nan", "match"),
    [
        pytest.param(["1", "x"], False, "column 'a' must be numeric; row 1 has 'x'", id="text"),
        pytest.param([1.0, None], False, "column 'a' has 1 missing value", id="nan"),
    ],
)
def test_coerce_numeric_errors(values: list, allow_nan: bool, match: str) -> None:
    with pytest.raises(DataError, match=match):
        coerce_numeric(pd.Series(values, name="a"), "w", allow_nan=allow_nan)


def test_coerce_numeric_allow_nan() -> None:
    assert coerce_numeric(pd.Series([1.0, None]), "w", allow_nan=True).isna().sum() == 1


def test_parse_datetime_with_format_and_errors() -> None:
    parsed = parse_datetime(pd.Series(["01/02/2024"], name="d"), "%d/%m/%Y", "w")
    assert parsed.iloc[0] == pd.Timestamp("2024-02-01")
    with pytest.raises(DataError, match=r"column 'd' is not a datetime \(format '%Y'"):
        parse_datetime(pd.Series(["01/02/2024"], name="d"), "%Y", "w")
    with pytest.raises(DataError, match="column 'd' has a missing timestamp at row 1"):
        parse_datetime(pd.Series(["2024-01-01", None], name="d"), None, "w")
