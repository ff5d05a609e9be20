"""The CLI prints its answer and observml's own errors; the libraries below it stay quiet.

Each command runs as a new process, as a person runs it, on the embedded defaults (MLflow on
SQLite, the local queue) in the test's ``OBSERVML_HOME``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from observml import datasets
from observml.demo import DemoOptions, demo_config
from observml.demo.setup import LINE, LOAD, ORDERS, PUMP

pytestmark = [pytest.mark.slow]

#: What MLflow, alembic, tqdm and pika print when they are let through.
THIRD_PARTY = re.compile(
    r"INFO mlflow|mlflow\.store|alembic|Creating initial MLflow|Downloading artifacts|"
    r"it/s\]|pika|Traceback",
)
OBSERVML = [str(Path(sys.executable).parent / "observml")]


def observml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["OBSERVML_HOME"] = str(cwd / ".observml")
    return subprocess.run(
        [*OBSERVML, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """A pump detector trained through the CLI into a fresh embedded store; the rows file."""
    rows = tmp_path / "rows.csv"
    plant = datasets.pump_sensors(300, seed=1, faults=False).drop(columns=["fault", "fault_type"])
    plant.to_csv(rows, index=False)
    config = tmp_path / "pump.yaml"
    config.write_text("setup: {datetime_column: ds}\ncreate_model: {model: pca}\n", "utf-8")
    done = observml(
        "train", "pump", "--type", "fault_detection", "--experiment-config", str(config),
        "--data", str(rows), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert not THIRD_PARTY.search(done.stderr), done.stderr  # the store was created here
    return rows


def test_cli_status_and_predict_print_no_third_party_lines(trained: Path, tmp_path: Path) -> None:
    status = observml("status", "pump", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "pump: fault_detection" in status.stdout
    assert status.stderr == ""
    predict = observml("predict", "pump", "--data", str(trained), "--limit", "2", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    assert "300 rows predicted by pump" in predict.stdout
    assert predict.stderr == ""
    assert list((tmp_path / ".observml" / "model-cache").iterdir())  # kept for the next one


def test_cli_debug_lets_mlflow_speak(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    quiet = observml("health", cwd=tmp_path / "a")
    assert quiet.returncode == 0, quiet.stderr
    assert not THIRD_PARTY.search(quiet.stderr), quiet.stderr
    (tmp_path / "b").mkdir()
    loud = observml("--debug", "health", cwd=tmp_path / "b")
    assert loud.returncode == 0, loud.stderr
    assert "Creating initial MLflow database tables" in loud.stderr


def test_demo_config_has_no_yaml_anchors() -> None:
    text = demo_config(DemoOptions(), experiments=[PUMP, LINE, LOAD, ORDERS])
    assert "&id" not in text
    assert "*id" not in text
    document = yaml.safe_load(text)
    retrain = [e["config"]["retrain"] for e in document["experiments"][1:]]
    assert retrain == [{"enabled": False}] * 3  # each spelled out where it applies
