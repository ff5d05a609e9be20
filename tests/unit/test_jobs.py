"""Training jobs: the fit runs in a child that stops when asked and never dies silently."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.errors import ConfigError
from observml.runtime.jobs import (
    IsolationSetting,
    Job,
    choose_isolation,
    describe_exit,
    run_isolated,
)
from tests.unit import jobs_for_tests

ROOT = Path(__file__).resolve().parents[2]
SLEEPY = "tests.unit.experiment_types_for_tests:SleepyDetector"


def sensors(n: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0, 1, (n, 3)), columns=["temp", "pressure", "flow"])


def wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def in_child(func: Callable[..., Any], *args: Any) -> Job:
    """Start a job whose body runs ``func(*args)`` in a child process."""
    return Job(
        "pump", "train", lambda job: {"value": run_isolated(job, func, *args, isolation="process")}
    ).start()


def fitted_in(hub: ExperimentHub, name: str) -> int:
    """Return the process id that fitted the champion of a SleepyDetector experiment."""
    champion, _ = hub._get(name).champion()
    return int(champion.fit_pid_)  # type: ignore[union-attr]


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="process") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def test_a_child_returns_the_result_and_raises_the_error_of_its_call() -> None:
    status = in_child(jobs_for_tests.sleep, 0).wait(60)
    assert status.state == "succeeded", status.error
    assert status.result["value"].startswith("slept in ")
    assert status.result["value"] != f"slept in {os.getpid()}"
    status = in_child(jobs_for_tests.raise_data_error, "temp").wait(60)
    assert status.state == "failed"
    assert status.error_type == "DataError"
    assert status.error == "training data: column 'temp' holds text. Fix the data."


@pytest.mark.parametrize(
    ("func", "args", "what"),
    [
        pytest.param(
            jobs_for_tests.exit_with,
            (3,),
            "exited with code 3 before it returned a model: the training code called sys.exit()",
            id="os-exit",
        ),
        pytest.param(
            jobs_for_tests.segfault,
            (),
            "was killed by SIGSEGV before it returned a model. A native library crashed",
            id="segfault",
        ),
    ],
)
def test_a_child_that_dies_fails_the_job_saying_how_and_what_to_do(
    func: Callable[..., Any], args: tuple[Any, ...], what: str
) -> None:
    status = in_child(func, *args).wait(60)
    assert status.state == "failed"
    assert status.error_type == "ExperimentError"
    assert status.error is not None
    assert status.error.startswith(f"experiment 'pump': the training process {what}")
    assert status.error.endswith("set global.job_isolation: thread.")


def test_a_result_the_hub_cannot_load_fails_the_job_saying_so() -> None:
    status = in_child(jobs_for_tests.unloadable_result, os.getpid()).wait(60)
    assert status.state == "failed"
    assert status.error_type == "ExperimentError"
    assert status.error is not None
    assert status.error.startswith(
        "experiment 'pump': the training process could not exchange data with the hub: A result"
        " has failed to un-serialize."
    )
    assert status.error.endswith("or set global.job_isolation: thread.")


def test_stop_kills_the_child_and_the_job_ends_stopped() -> None:
    job = in_child(jobs_for_tests.sleep, 600)
    wait_for(lambda: job.child_pid is not None)
    pid = job.child_pid
    assert pid is not None
    assert pid != os.getpid()
    assert job.stop() is True
    assert job.wait(30).state == "stopped"
    wait_for(lambda: not alive(pid))
    assert job.stop() is False


def test_a_killed_training_child_fails_the_job_with_the_signal_and_the_fix(
    hub: ExperimentHub,
) -> None:
    hub.create_experiment("slow", SLEEPY, {})
    job = hub.train("slow", data=sensors(100))
    wait_for(lambda: job.child_pid is not None and job.status.stage == "fitting")
    os.kill(job.child_pid or 0, signal.SIGKILL)
    status = job.wait(10)  # the bound the issue sets: failed within seconds, never a hang
    assert status.state == "failed", status
    assert status.error == describe_exit("slow", -signal.SIGKILL)
    assert "killed by SIGKILL" in status.error
    assert "out-of-memory killer" in status.error
    mlops = hub.get_plugin("mlops")
    assert isinstance(mlops, InMemoryMLOpsPlugin)
    assert mlops.get_run(status.run_id or "").status == "FAILED"
    assert hub.status("slow")["trained"] is False
    again = hub.train("slow", {"create_model": {"params": {"seconds": 0}}}, data=sensors(100))
    assert again.wait(60).state == "succeeded", again.status.error


@pytest.mark.parametrize(
    ("exitcode", "text"),
    [
        pytest.param(1, "exited with code 1 before it returned a model", id="exit-code"),
        pytest.param(-9, "was killed by SIGKILL before it returned a model. That is", id="kill"),
        pytest.param(-6, "was killed by SIGABRT before it returned a model. A native", id="abort"),
        pytest.param(-15, "was killed by SIGTERM before it returned a model. Some", id="term"),
        pytest.param(-200, "was killed by signal 200 before it returned a model.", id="unknown"),
        pytest.param(None, "died without a result. Check the hub's log", id="no-status"),
    ],
)
def test_describe_exit_names_what_happened(exitcode: int | None, text: str) -> None:
    message = describe_exit("pump", exitcode)
    assert message.startswith(f"experiment 'pump': the training process {text}")


def test_an_unknown_job_isolation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"global.job_isolation: expected 'auto', 'process' or"):
        ExperimentHub(job_isolation="proces")


@pytest.mark.parametrize(
    ("setting", "wait", "where"),
    [
        pytest.param("auto", True, "thread", id="auto-waited"),
        pytest.param("auto", False, "process", id="auto-background"),
        pytest.param("process", True, "process", id="process"),
        pytest.param("thread", False, "thread", id="thread"),
    ],
)
def test_choose_isolation_runs_only_background_jobs_in_a_child_by_default(
    setting: IsolationSetting, wait: bool, where: str
) -> None:
    assert choose_isolation(setting, wait=wait) == where


def test_auto_trains_a_waited_job_here_and_a_background_job_in_a_child() -> None:
    with ExperimentHub() as hub:
        assert hub.job_isolation == "auto"
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("nap", SLEEPY, {"create_model": {"params": {"seconds": 0}}})
        waited = hub.train("nap", data=sensors(50), wait=True)
        assert waited.status.state == "succeeded", waited.status.error
        assert fitted_in(hub, "nap") == os.getpid()
        background = hub.train("nap", data=sensors(50))
        assert background.wait(60).state == "succeeded", background.status.error
        assert fitted_in(hub, "nap") != os.getpid()


def test_a_script_that_ends_while_a_job_trains_exits_and_the_child_dies(tmp_path: Path) -> None:
    """No shutdown, no wait: the interpreter's exit stops the job instead of waiting for it."""
    script = tmp_path / "leave.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time

            import numpy as np
            import pandas as pd

            from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin

            hub = ExperimentHub(job_isolation="process")
            hub.register_plugin(InMemoryMLOpsPlugin())
            hub.register_plugin(InMemoryDataStreamPlugin())
            hub.create_experiment("slow", {SLEEPY!r}, {{}})
            job = hub.train("slow", data=pd.DataFrame(np.ones((20, 2)), columns=["a", "b"]))
            while job.child_pid is None:
                time.sleep(0.05)
            print(job.child_pid)
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,  # the fit sleeps 600 s: reaching this means the exit waited for it
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())
    wait_for(lambda: not alive(pid))
