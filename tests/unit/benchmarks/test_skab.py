"""The SKAB harness on a tiny synthetic SKAB-shaped folder (SKAB itself is never copied)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml.benchmarks.skab import default_configs, load_config, load_skab, run_config
from observml.benchmarks.skab.data import SENSORS
from observml.benchmarks.skab.protocol import BenchmarkConfig, changepoint_windows
from observml.errors import ConfigError, DataError
from tests.unit.cli_helpers import run

ROWS, FAULT = 560, (450, 520)  # 400 train rows, 160 predicted, 70 of them anomalous


def _write_file(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(ROWS)
    base = rng.normal(size=(ROWS, 1))
    values = base + 0.3 * rng.normal(size=(ROWS, len(SENSORS)))  # correlated sensors
    anomaly = np.zeros(ROWS, dtype=int)
    anomaly[FAULT[0] : FAULT[1]] = 1
    values[FAULT[0] : FAULT[1], 2] += 6.0  # one sensor breaks the correlation
    changepoint = np.zeros(ROWS, dtype=int)
    changepoint[[FAULT[0], FAULT[1]]] = 1
    frame = pd.DataFrame(values, columns=list(SENSORS))
    frame.insert(0, "datetime", pd.Timestamp("2020-03-09 10:00:00") + pd.to_timedelta(t, "s"))
    frame["anomaly"], frame["changepoint"] = anomaly.astype(float), changepoint.astype(float)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=";", index=False)


@pytest.fixture
def skab_folder(tmp_path: Path) -> Path:
    root = tmp_path / "skab"
    for seed, name in enumerate(["valve1/0.csv", "valve1/1.csv", "valve2/0.csv", "other/1.csv"]):
        _write_file(root / name, seed)
    _write_file(root / "anomaly-free" / "anomaly-free.csv", 9)  # never used by the protocol
    return root


@pytest.fixture
def pca_config(tmp_path: Path) -> Path:
    path = tmp_path / "pca.yaml"
    path.write_text(
        "name: small_pca\ntype: fault_detection\nconfig:\n  eda: false\n  create_model:\n"
        "    model: pca\n    params: {n_components: 0.8, alpha: 0.999, smoothing: 3,"
        " spe_limit: jackson_mudholkar}\n",
        encoding="utf-8",
    )
    return path


def test_load_skab_reads_the_labelled_files_in_order(skab_folder: Path) -> None:
    _write_file(skab_folder / "valve1" / "10.csv", 5)
    files = load_skab(skab_folder)
    assert [f.name for f in files] == [
        "valve1/0",
        "valve1/1",
        "valve1/10",
        "valve2/0",
        "other/1",
    ]
    assert list(files[0].sensors.columns) == ["datetime", *SENSORS]
    assert int(files[0].anomaly.sum()) == FAULT[1] - FAULT[0]


def test_load_skab_refuses_another_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not a SKAB data folder \(no valve1, valve2, other"):
        load_skab(tmp_path)


def test_run_config_pools_the_files_through_the_hub(skab_folder: Path, pca_config: Path) -> None:
    files = load_skab(skab_folder)
    seen: list[int] = []
    result = run_config(files, load_config(pca_config), lambda _c, done, _t: seen.append(done))
    assert seen == [1, 2, 3, 4]
    pooled = result.confusion
    assert pooled.tp + pooled.fp + pooled.fn + pooled.tn == 4 * (ROWS - 400)
    assert pooled.tp + pooled.fn == 4 * (FAULT[1] - FAULT[0])
    # the broken correlation is what PCA's SPE sees: nearly every fault row, few others
    assert pooled.f1 > 0.9
    assert pooled.far < 0.1
    summary = result.summary()
    assert set(summary) == {"config", "f1", "far", "mar", "nab", "seconds"}
    assert summary["config"] == "small_pca"
    assert summary["f1"] == pytest.approx(pooled.f1, abs=1e-4)
    assert 50 < summary["nab"] <= 100  # the fault's start is caught within its 60 s window


def test_run_config_reports_a_bad_config(skab_folder: Path) -> None:
    files = load_skab(skab_folder)
    bad = BenchmarkConfig("bad", config={"create_model": {"model": "pca", "params": {"lags": -1}}})
    with pytest.raises(ConfigError, match=r"lags"):
        run_config(files, bad)


def test_load_config_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("type: fault_detection\nmodel: pca\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model"):
        load_config(path)


def test_changepoint_windows_are_60_s_and_cut_at_the_next() -> None:
    times = pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(100), "s"))
    flags = np.zeros(100, dtype=bool)
    flags[[2, 30, 95]] = True
    assert changepoint_windows(times, flags) == [(2, 29), (30, 90), (95, 99)]


def test_default_configs_ship_with_the_package() -> None:
    names = [c.name for c in default_configs()]
    assert names == ["iforest", "pca_dynamic", "pca_jackson_mudholkar", "pca_leaderboard"]
    assert all(c.type == "fault_detection" for c in default_configs())


def test_cli_json_prints_one_object_per_config(
    skab_folder: Path, pca_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "out" / "skab.html"
    argv = ["benchmark", "skab", str(skab_folder), "--config", str(pca_config)]
    code, out, err = run(
        [*argv, "--config", str(pca_config), "--json", "--report", str(report)], capsys
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    assert [set(line) for line in lines] == [{"config", "f1", "far", "mar", "nab", "seconds"}] * 2
    assert lines[0]["f1"] == lines[1]["f1"] > 0.9  # the same config twice: the same scores
    html = report.read_text(encoding="utf-8")
    assert "T²+Q (PCA) (published)" in html
    assert html.count("its max, alarms below") == 4  # one trace figure per file


def test_cli_table_prints_beside_the_leaderboard(
    skab_folder: Path, pca_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["benchmark", "skab", str(skab_folder), "--config", str(pca_config)], capsys
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["METHOD", "F1", "FAR"]
    assert lines[1].startswith("small_pca (observml)")
    conv_ae = next(line for line in lines if line.startswith("Conv-AE (published)"))
    assert conv_ae.split()[2:5] == ["0.78", "13.55", "28.02"]


def test_cli_refuses_a_folder_that_is_not_skab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["benchmark", "skab", str(tmp_path)], capsys)
    assert code == 1
    assert "not a SKAB data folder" in err
