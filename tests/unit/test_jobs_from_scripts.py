"""A first script trains and predicts: no ``__main__`` guard, ``-c``, stdin, a Jupyter kernel.

Each runs a fresh interpreter in a temporary working directory with ``OBSERVML_HOME`` there.
The two plain-script tests use the embedded defaults (MLflow on SQLite, the local queue); the
others use the memory plugins, since only the way Python starts differs. The README block
waits for its job (it trains in the script's process); the custom-type script trains in the
background, so its fit runs in a child process that must not re-run the script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.mlflow]

#: The README's Python block, as the README shows it.
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("```python\n") + len("```python\n")
    return text[start : text.index("```", start)]


#: docs/models.md's ZScoreDetector, defined in the script and used by its ``__main__`` name,
#: trained as a background job so that its fit runs in a child process.
CUSTOM_TYPE_SCRIPT = textwrap.dedent(
    """
    import os
    from collections.abc import Mapping
    from typing import ClassVar

    import numpy as np
    import pandas as pd

    from observml import ExperimentHub
    from observml.experiments.base import Experiment, ModelSpec

    print(f"the script body ran in {os.getpid()}")


    class ZScoreDetector(Experiment):
        experiment_type: ClassVar[str] = "zscore"
        MODELS: ClassVar[Mapping[str, ModelSpec]] = {
            "scaler": ModelSpec("sklearn.preprocessing:StandardScaler", options={"limit": 3.0})
        }
        DEFAULT_MODEL: ClassVar[str] = "scaler"
        DEFAULT_METRIC: ClassVar[str] = "anomaly_rate"

        def _fit(self, frame):
            with open("fitted_in.txt", "a") as out:  # a notebook does not show a child's print
                out.write(f"{os.getpid()}\\n")
            self.scaler_ = self.settings_.spec.build(self.settings_.params, {})
            self.scaler_.fit(self.feature_matrix(frame, action="train"))
            self.limit_ = float(self.settings_.options["limit"])

        def _scores(self, frame):
            return np.abs(self.scaler_.transform(self.feature_matrix(frame))).max(axis=1)

        def _predict(self, frame):
            score = self._scores(frame)
            return pd.DataFrame({"score": score, "anomaly": score > self.limit_}, frame.index)

        def _metrics(self, frame):
            return {"anomaly_rate": float(np.mean(self._scores(frame) > self.limit_))}

        def _model_report_names(self):
            return []

        def _model_reports(self):
            return {}


    rng = np.random.default_rng(0)
    history = pd.DataFrame(rng.normal(0, 1, (300, 3)), columns=["temp", "pressure", "flow"])
    faulty = pd.DataFrame(rng.normal(8, 1, (3, 3)), columns=["temp", "pressure", "flow"])
    with ExperimentHub.from_config() as hub:
        hub.create_experiment("pump", "__main__:ZScoreDetector", {})
        job = hub.train("pump", data=history)  # a background job: its fit runs in a child
        job.wait()
        print("job", job.status.state, job.status.error)
        print(hub.predict("pump", data=faulty))
    """
)

MEMORY_CONFIG = "plugins:\n  mlops: {type: memory}\n  datastream: {type: memory}\n"


def _run(
    args: list[str], cwd: Path, *, stdin: str | None = None, config: str | None = None
) -> subprocess.CompletedProcess[str]:
    if config is not None:
        (cwd / "hub_config.yaml").write_text(config, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "OBSERVML_CONFIG"}
    env.update(OBSERVML_HOME=str(cwd / "home"), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,  # the bound: it exits within a minute, never hangs
    )


def _assert_trained_in_a_child(stdout: str, cwd: Path) -> None:
    """The custom-type script ran once, fitted once in another process, flagged the faults."""
    lines = stdout.splitlines()
    ran = [line for line in lines if line.startswith("the script body ran in ")]
    assert len(ran) == 1, stdout
    fitted = (cwd / "fitted_in.txt").read_text(encoding="utf-8").split()
    assert len(fitted) == 1
    assert fitted[0] != ran[0].removeprefix("the script body ran in ")
    assert "job succeeded None" in lines, stdout
    header = lines[lines.index("job succeeded None") + 1].split()
    assert header == ["score", "anomaly"]
    assert [line.split()[-1] for line in lines[-3:]] == ["True", "True", "True"]


def test_the_readme_block_runs_as_a_script_without_a_main_guard(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(readme_block(), encoding="utf-8")
    assert "__main__" not in script.read_text(encoding="utf-8")
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "bootstrapping phase" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[-5].split() == ["ds", "score", "anomaly"]
    assert [line.split()[0] for line in lines[-4:-1]] == ["1997", "1998", "1999"]
    flagged, _, total = lines[-1].partition(" of ")
    assert total == "1000 new rows flagged by version 1"
    assert 200 < int(flagged) < 600  # the second half holds a drift, a step and spikes
    assert (tmp_path / "home" / "mlflow.db").is_file()


def test_a_type_defined_in_the_script_trains_in_a_child_process(tmp_path: Path) -> None:
    script = tmp_path / "custom.py"
    script.write_text(CUSTOM_TYPE_SCRIPT, encoding="utf-8")
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    _assert_trained_in_a_child(done.stdout, tmp_path)


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_the_script_trains_from_python_c_and_from_stdin(tmp_path: Path, how: str) -> None:
    if how == "-c":
        done = _run(["-c", CUSTOM_TYPE_SCRIPT], tmp_path, config=MEMORY_CONFIG)
    else:
        done = _run(["-"], tmp_path, stdin=CUSTOM_TYPE_SCRIPT, config=MEMORY_CONFIG)
    assert done.returncode == 0, done.stderr
    _assert_trained_in_a_child(done.stdout, tmp_path)


def test_a_jupyter_kernel_trains_a_type_defined_in_a_cell(tmp_path: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    (tmp_path / "hub_config.yaml").write_text(MEMORY_CONFIG, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "OBSERVML_CONFIG"}
    env["OBSERVML_HOME"] = str(tmp_path / "home")
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=env)
    output: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        content = message["content"]
        if message["msg_type"] == "stream":
            output.append(content["text"])
        elif message["msg_type"] == "error":
            output.append("\n".join(content["traceback"]))

    try:
        reply = client.execute_interactive(CUSTOM_TYPE_SCRIPT, timeout=60, output_hook=collect)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    text = "".join(output)
    assert reply["content"]["status"] == "ok", text
    _assert_trained_in_a_child(text, tmp_path)
