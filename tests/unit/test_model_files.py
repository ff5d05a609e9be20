"""Frames in a saved state: the ones written without a read-back come back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml.store.model_files import PARTS_DIR, STATE_FILE, plain_frame, read_state, write_state

EDGES = pd.DataFrame(
    {
        "f": [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-308, 1.7976931348623157e308],
        "i": np.array([0, -1, 1, np.iinfo(np.int64).min, np.iinfo(np.int64).max, 7, 8]),
        "b": [True, False, True, True, False, False, True],
        "with space / slash": np.linspace(0, 1, 7),
    }
)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(EDGES, id="edge-values"),
        pytest.param(pd.DataFrame({"x": np.array([], dtype="float64")}), id="empty"),
        pytest.param(
            pd.DataFrame(np.random.default_rng(0).normal(size=(500, 5)), columns=list("abcde")),
            id="training-rows",
        ),
    ],
)
def test_plain_frames_come_back_exactly_without_a_read_back(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    assert plain_frame(frame)
    write_state(tmp_path, {"train_data_": frame})
    assert json.loads((tmp_path / STATE_FILE).read_text())["parts"]["train_data_"] == "parquet"
    back = read_state(tmp_path, allow_pickle=False, where="test")["train_data_"]
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert type(back.index) is pd.RangeIndex


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(EDGES.set_index("i"), id="an-index"),
        pytest.param(EDGES.iloc[::2], id="a-sliced-range"),
        pytest.param(EDGES.rename_axis("row"), id="a-named-index"),
        pytest.param(pd.DataFrame({"f": np.array([1.5, np.nan], "float32")}), id="float32"),
        pytest.param(EDGES.assign(s=list("abcdefg")), id="text"),
        pytest.param(EDGES.assign(t=pd.date_range("2024", periods=7, freq="h")), id="times"),
        pytest.param(pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]), id="duplicate-columns"),
    ],
)
def test_other_frames_are_read_back_and_compared(frame: pd.DataFrame, tmp_path: Path) -> None:
    assert not plain_frame(frame)
    write_state(tmp_path, {"train_data_": frame})
    where = json.loads((tmp_path / STATE_FILE).read_text())["parts"]["train_data_"]
    if where == "parquet":
        back = read_state(tmp_path, allow_pickle=False, where="test")["train_data_"]
        pd.testing.assert_frame_equal(back, frame, check_exact=True)
    else:  # parquet could not hold it: another format did
        assert not (tmp_path / PARTS_DIR / "train_data_.parquet").exists()
