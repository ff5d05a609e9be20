"""The harness on the real SKAB folder (../shared/datasets/skab; GPL, never copied in)."""

from __future__ import annotations

import pytest

from observml.benchmarks.skab import (
    LEADERBOARD,
    SkabFile,
    default_configs,
    load_skab,
    run_config,
)
from tests.services import DATASETS, service_missing

SKAB = DATASETS / "skab"


@pytest.fixture(scope="module")
def files() -> list[SkabFile]:
    if not (SKAB / "valve1").is_dir():
        service_missing(f"the SKAB data folder is not at {SKAB}")
    return load_skab(SKAB)


def test_the_protocol_sees_skabs_34_files_and_23801_test_rows(files: list[SkabFile]) -> None:
    assert len(files) == 34
    assert sum(len(f.frame) for f in files) == 37401
    assert sum(len(f.frame) - 400 for f in files) == 23801
    assert sum(int(f.anomaly.iloc[400:].sum()) for f in files) == 12771


def test_the_leaderboard_pca_row_reproduces(files: list[SkabFile]) -> None:
    config = next(c for c in default_configs() if c.name == "pca_leaderboard")
    published = next(row for row in LEADERBOARD if row.method == "T²+Q (PCA)")
    summary = run_config(files, config).summary()
    assert summary["f1"] == pytest.approx(published.f1, abs=0.01)
    # measured 0.7546 / 32.02 % / 22.65 %: the leaderboard's 26.62 % FAR comes from its code's
    # unsorted eigenvalues as well (docs/benchmarks.md); F1 and MAR stay close
    assert summary["mar"] == pytest.approx(published.mar, abs=3.0)
    assert (summary["f1"], summary["far"], summary["mar"]) == (0.7546, 32.02, 22.65)


def test_the_shipped_dynamic_pca_reaches_the_goal(files: list[SkabFile]) -> None:
    config = next(c for c in default_configs() if c.name == "pca_dynamic")
    summary = run_config(files, config).summary()
    # issue 14's goal: F1 >= 0.80 at FAR <= 15 %, one config for all 34 files
    assert summary["f1"] >= 0.80
    assert summary["far"] <= 15.0
    assert summary == {**summary, "f1": 0.8219, "far": 12.76, "mar": 22.54, "nab": 37.4}
