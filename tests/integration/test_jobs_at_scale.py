"""Many trainings at once on real MLflow: bounded by ``global.max_jobs``, retried when the store
is briefly busy, failed at once when it is not coming back.

The embedded defaults (``ExperimentHub.from_config()`` with no config: MLflow on SQLite, the
local datastream) are what issue 13 measured: 20 trainings at once used to exhaust MLflow's
connection pool and fail half of them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin
from observml.runtime.jobs import Job
from tests.services import require_module

require_module("mlflow", "mlflow")

from observml.plugins.mlflow_plugin import MLflowPlugin  # noqa: E402 - after the import check

pytestmark = [pytest.mark.integration, pytest.mark.mlflow, pytest.mark.slow]

EXPERIMENTS = 50
SLEEPY = "tests.unit.experiment_types_for_tests:SleepyDetector"


def sensors(n: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0, 1, (n, 5)), columns=[f"s{i}" for i in range(5)])


class RunningWatch:
    """Polls every experiment's status from another thread; keeps the most seen running."""

    def __init__(self, hub: ExperimentHub, names: list[str]) -> None:
        self.hub, self.names = hub, names
        self.most_running = 0
        self.positions_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> RunningWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self) -> None:
        while not self._stop.is_set():
            states = [self.hub.status(name) for name in self.names]
            running = sum(s["state"] == "running" for s in states)
            self.most_running = max(self.most_running, running)
            self.positions_seen.update(s["queue_position"] for s in states if s["queue_position"])
            self._stop.wait(0.01)


def train_all(hub: ExperimentHub, names: list[str]) -> tuple[list[Job], RunningWatch]:
    with RunningWatch(hub, names) as watch:
        jobs = [hub.train(name, data=sensors(500, seed=i)) for i, name in enumerate(names)]
        statuses = [job.wait(600) for job in jobs]
    assert all(job.done for job in jobs), "a job did not end within 10 minutes"
    failed = {s.experiment: s.error for s in statuses if s.state != "succeeded"}
    assert failed == {}
    return jobs, watch


def test_fifty_trainings_at_once_on_the_embedded_defaults_all_succeed_bounded() -> None:
    names = [f"unit-{i:02d}" for i in range(EXPERIMENTS)]
    with ExperimentHub.from_config() as hub:
        assert hub.job_isolation == "auto"  # background jobs fit in (warm) children
        for name in names:
            hub.create_experiment(name, "fault_detection", {"create_model": {"model": "pca"}})

        jobs, watch = train_all(hub, names)

        assert 1 <= watch.most_running <= hub.max_jobs
        assert hub.job_queue()["peak_running"] == hub.max_jobs
        assert max(watch.positions_seen) > 1  # places in the queue were visible
        assert {hub.status(n)["champion_version"] for n in names} == {1}
        assert all(j.status.version == 1 for j in jobs)
        versions = {n: [v["version"] for v in hub.versions(n)] for n in names[:5]}
        assert versions == {n: [1] for n in names[:5]}  # one version each: no retried duplicate
        assert hub._jobs.children.started <= hub.max_jobs  # the children were reused


def test_fifty_trainings_at_once_on_an_mlflow_server_all_succeed(mlflow_server_uri: str) -> None:
    names = [f"srv-{i:02d}-{time.monotonic_ns()}" for i in range(EXPERIMENTS)]
    with ExperimentHub() as hub:
        hub.register_plugin(MLflowPlugin(mlflow_server_uri))
        hub.register_plugin(InMemoryDataStreamPlugin())
        for name in names:
            hub.create_experiment(name, "fault_detection", {"create_model": {"model": "pca"}})

        _, watch = train_all(hub, names)

        assert 1 <= watch.most_running <= hub.max_jobs
        assert {hub.status(n)["champion_version"] for n in names} == {1}


#: MLflow sets ``PRAGMA busy_timeout = 20000`` on every SQLite session: a writer waits 20 s
#: for the lock before "database is locked". A lock held longer than that is what a job meets.
MLFLOW_BUSY_TIMEOUT = 20.0


@pytest.fixture
def busy_store(tmp_path: Path) -> Iterator[tuple[ExperimentHub, Path]]:
    """A hub (one job at a time, fits in a thread) on a SQLite store of its own."""
    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    uri = f"sqlite:///{path.as_posix()}"
    with ExperimentHub(job_isolation="thread", max_jobs=1) as hub:
        hub.register_plugin(MLflowPlugin(uri, artifact_location=(tmp_path / "art").as_uri()))
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub, path


def hold_write_lock(path: Path, seconds: float, taken: threading.Event) -> threading.Thread:
    """Another connection takes the SQLite write lock and keeps it ``seconds``."""

    def hold() -> None:
        connection = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            taken.set()
            time.sleep(seconds)  # a real lock held by another writer, not a timed assertion
            connection.execute("COMMIT")
        finally:
            connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_a_store_locked_mid_job_is_retried_and_the_job_succeeds(
    busy_store: tuple[ExperimentHub, Path], caplog: pytest.LogCaptureFixture
) -> None:
    hub, path = busy_store
    hub.create_experiment("pump", SLEEPY, {"create_model": {"params": {"seconds": 1.0}}})
    caplog.set_level(logging.WARNING, logger="observml.runtime.store_retry")
    job = hub.train("pump", data=sensors(100))
    wait_for(lambda: job.status.stage == "fitting")  # the run is open; the fit naps 1 s
    taken = threading.Event()
    holder = hold_write_lock(path, MLFLOW_BUSY_TIMEOUT + 3, taken)
    assert taken.wait(10)

    status = job.wait(120)
    holder.join(10)

    assert status.state == "succeeded", status.error
    retries = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert retries, "the locked store was never met: nothing was retried"
    assert "is busy (database is locked)" in retries[0]
    assert hub.status("pump")["champion_version"] == 1
    assert [v["version"] for v in hub.versions("pump")] == [1]


def test_a_store_locked_for_longer_than_the_retries_fails_the_job_naming_the_call(
    busy_store: tuple[ExperimentHub, Path],
) -> None:
    hub, path = busy_store
    hub._jobs.retry = type(hub._jobs.retry)(attempts=2, first_wait=0.1, max_wait=0.2)
    hub.create_experiment("pump", SLEEPY, {"create_model": {"params": {"seconds": 0.5}}})
    job = hub.train("pump", data=sensors(100))
    wait_for(lambda: job.status.stage == "fitting")
    taken = threading.Event()
    holder = hold_write_lock(path, 2 * MLFLOW_BUSY_TIMEOUT + 5, taken)
    assert taken.wait(10)

    status = job.wait(120)
    holder.join(10)

    assert status.state == "failed"
    assert status.error_type == "ServiceUnavailableError"
    assert status.error is not None
    assert "failed after 2 attempts" in status.error
    assert "MLOps store call" in status.error
    assert "is busy (database is locked)" in status.error


def test_a_non_transient_store_failure_fails_the_job_at_once(
    tmp_path: Path, mlflow_sqlite_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the artifact folder should be", encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="observml.runtime.store_retry")
    with ExperimentHub(job_isolation="thread", max_jobs=1) as hub:
        hub.register_plugin(MLflowPlugin(mlflow_sqlite_uri, artifact_location=blocker.as_uri()))
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})

        status = hub.train("pump", data=sensors(200), wait=True).status

    assert status.state == "failed"
    assert status.error is not None
    assert "not-a-folder" in status.error
    assert status.error_type != "ServiceUnavailableError"
    assert not [r for r in caplog.records if "failed (attempt" in r.getMessage()]
