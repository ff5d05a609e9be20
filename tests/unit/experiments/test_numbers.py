"""One coercion path: numbers sent as text are read the same way for training and prediction."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandas.api.types import is_numeric_dtype

from observml.errors import ConfigError, DataError
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.io.numbers import check_decimal, coerce_numeric, read_numbers, unreadable


def test_text_numbers_become_floats_and_empty_strings_missing() -> None:
    frame = pd.DataFrame(
        {
            "flow": ["12.5", " 13 ", "", "1e3"],
            "batch": ["A1", "A2", "A3", "A4"],
            "blank": ["", "", " ", ""],
            "plain": [1, 2, 3, 4],
        }
    )
    read = read_numbers(frame)
    assert read["flow"].dtype == "float64"
    assert read["flow"].tolist()[:2] == [12.5, 13.0]
    assert np.isnan(read["flow"].iloc[2])
    assert read["flow"].iloc[3] == 1000.0
    assert read["batch"].tolist() == ["A1", "A2", "A3", "A4"]  # labels stay as they are
    assert not is_numeric_dtype(read["blank"])  # no number at all: not a measurement column
    assert read["plain"].dtype.kind == "i"
    assert not is_numeric_dtype(frame["flow"])  # the input is not modified


def test_comma_decimals_only_where_configured() -> None:
    frame = pd.DataFrame({"temp": ["12,5", "13,25"]})
    assert not is_numeric_dtype(read_numbers(frame)["temp"])
    assert read_numbers(frame, decimal=",")["temp"].tolist() == [12.5, 13.25]
    with pytest.raises(DataError, match=r"row 0 has '12,5' \(str\)\. .*setup\.decimal: ','"):
        coerce_numeric(frame["temp"], "data")
    assert coerce_numeric(frame["temp"], "data", decimal=",").tolist() == [12.5, 13.25]


def test_coerce_numeric_treats_empty_strings_as_missing() -> None:
    values = pd.Series(["1.5", "", "2"], name="flow")
    with pytest.raises(DataError, match=r"column 'flow' has 1 missing value\(s\) \(first at row 1"):
        coerce_numeric(values, "data")
    assert coerce_numeric(values, "data", allow_nan=True).isna().tolist() == [False, True, False]


def test_unreadable_names_each_column_with_an_example() -> None:
    frame = pd.DataFrame({"a": ["1", "x"], "b": ["", ""], "c": [1.0, 2.0]})
    assert unreadable(frame, ["a", "b", "c"]) == ["'a' ('x' in row 1)", "'b' (empty)"]


def test_check_decimal() -> None:
    assert check_decimal(",") == ","
    with pytest.raises(DataError, match=r"setup.decimal: expected '\.' or ','"):
        check_decimal(";")


def csv_rows(frame: pd.DataFrame, decimal: str = ".") -> list[dict[str, Any]]:
    """What a producer doing ``json.dumps(row)`` for ``csv.DictReader`` rows sends: text."""
    text = frame.to_csv(index=False, sep=";", decimal=decimal)
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    decoded: list[dict[str, Any]] = json.loads(json.dumps(rows))
    return decoded


def plant(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="min").astype(str),
            "feed_flow": rng.normal(12.5, 0.5, n).round(3),
            "temp": rng.normal(80.0, 1.0, n).round(3),
        }
    )


@pytest.mark.parametrize("decimal", [pytest.param(".", id="point"), pytest.param(",", id="comma")])
def test_training_and_prediction_read_text_numbers_alike(decimal: str) -> None:
    frame = plant(300)
    config = {"setup": {"datetime_column": "timestamp", "decimal": decimal}}
    from_text = FaultDetectionExperiment("pump", config).train(csv_rows(frame, decimal))
    from_numbers = FaultDetectionExperiment("pump", config).train(frame)
    assert from_text.features_ == ["feed_flow", "temp"]
    rows = csv_rows(frame.head(50), decimal)
    scores = from_text.predict(rows)["score"].to_numpy()
    np.testing.assert_allclose(scores, from_numbers.predict(frame.head(50))["score"].to_numpy())


def test_no_numeric_columns_names_what_could_not_be_read() -> None:
    rows = csv_rows(plant(20), decimal=",")  # comma decimals, but setup.decimal is '.'
    experiment = FaultDetectionExperiment("pump", {"setup": {"datetime_column": "timestamp"}})
    with pytest.raises(DataError) as caught:
        experiment.train(rows)
    message = str(caught.value)
    assert "no numeric feature columns. Not read as numbers: 'feed_flow' ('" in message
    assert "in row 0), 'temp' ('" in message
    assert "'timestamp'" not in message  # the datetime column is not a feature
    assert "setup.decimal: ','" in message


def test_setup_decimal_is_checked() -> None:
    experiment = FaultDetectionExperiment("pump", {"setup": {"decimal": ";"}})
    with pytest.raises(ConfigError, match=r"setup\.decimal"):
        experiment.validate_config()
