"""One job queue per hub: at most ``max_jobs`` run, the rest wait ``queued`` in order."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.errors import ConfigError, ServiceUnavailableError
from observml.runtime.job_queue import JobQueue
from observml.runtime.jobs import Job

SLEEPY = "tests.unit.experiment_types_for_tests:SleepyDetector"


def sensors(n: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0, 1, (n, 3)), columns=["temp", "pressure", "flow"])


def wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def sleepy(seconds: float) -> dict[str, object]:
    return {"create_model": {"params": {"seconds": seconds}}}


@pytest.fixture
def one_at_a_time() -> Iterator[ExperimentHub]:
    """A memory-backed hub that runs one job at a time, in threads."""
    with ExperimentHub(job_isolation="thread", max_jobs=1) as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def test_jobs_beyond_max_jobs_wait_queued_with_their_place(one_at_a_time: ExperimentHub) -> None:
    hub = one_at_a_time
    for name, seconds in (("a", 1.0), ("b", 0.0), ("c", 0.0)):
        hub.create_experiment(name, SLEEPY, sleepy(seconds))
    first = hub.train("a", data=sensors(50))
    wait_for(lambda: first.status.state == "running")
    second, third = hub.train("b", data=sensors(50)), hub.train("c", data=sensors(50))

    assert (second.status.state, second.status.queue_position) == ("queued", 1)
    assert (third.status.state, third.status.queue_position) == ("queued", 2)
    status = hub.status("c")
    assert (status["state"], status["queue_position"]) == ("queued", 2)
    assert status["job"]["queue_position"] == 2
    assert hub.job_queue() == {"max_jobs": 1, "running": 1, "queued": 2, "peak_running": 1}

    for job in (first, second, third):
        assert job.wait(60).state == "succeeded", job.status.error
    assert third.status.queue_position is None
    assert hub.status("c")["queue_position"] is None
    assert hub.job_queue()["peak_running"] == 1
    assert second.status.started_at is not None
    assert first.status.finished_at is not None
    assert second.status.started_at >= first.status.finished_at


def test_stopping_a_queued_job_takes_it_out_of_the_queue(one_at_a_time: ExperimentHub) -> None:
    hub = one_at_a_time
    for name, seconds in (("a", 1.0), ("b", 0.0), ("c", 0.0)):
        hub.create_experiment(name, SLEEPY, sleepy(seconds))
    first = hub.train("a", data=sensors(50))
    wait_for(lambda: first.status.state == "running")
    second, third = hub.train("b", data=sensors(50)), hub.train("c", data=sensors(50))

    assert hub.stop_training("b") is True
    assert second.done
    assert second.status.state == "stopped"
    assert second.status.started_at is None  # it never ran
    assert third.status.queue_position == 1  # moved up
    assert hub.job_queue()["queued"] == 1
    assert hub.runs("b") == []  # no MLOps run was opened for it
    assert third.wait(60).state == "succeeded"
    assert hub.status("b")["state"] == "untrained"
    assert hub.train("b", data=sensors(50), wait=True).status.state == "succeeded"


def test_retraining_jobs_wait_in_the_same_queue(one_at_a_time: ExperimentHub) -> None:
    hub = one_at_a_time
    hub.create_experiment("a", SLEEPY, sleepy(1.0))
    hub.create_experiment("b", SLEEPY, sleepy(0.0))
    assert hub.train("b", data=sensors(200), wait=True).status.state == "succeeded"
    training = hub.train("a", data=sensors(50))
    wait_for(lambda: training.status.state == "running")

    retrain = hub.retrain("b", data=sensors(200, seed=1))

    assert (retrain.status.kind, retrain.status.state) == ("retrain", "queued")
    assert retrain.status.queue_position == 1
    assert retrain.wait(60).state == "succeeded", retrain.status.error
    assert hub.job_queue()["peak_running"] == 1


def test_a_retrain_stopped_while_queued_frees_the_retrain_slot(
    one_at_a_time: ExperimentHub,
) -> None:
    hub = one_at_a_time
    hub.create_experiment("a", SLEEPY, sleepy(1.0))
    hub.create_experiment("b", SLEEPY, sleepy(0.0))
    hub.train("b", data=sensors(200), wait=True)
    training = hub.train("a", data=sensors(50))
    wait_for(lambda: training.status.state == "running")
    hub.retrain("b", data=sensors(200, seed=1))

    assert hub.stop_training("b") is True

    assert hub.status("b")["retrain_in_flight"] is False
    again = hub.retrain("b", data=sensors(200, seed=2))  # not "a retrain is already running"
    assert again.wait(60).state == "succeeded", again.status.error


def test_max_jobs_comes_from_the_config_and_defaults_to_the_cpus(
    write_config: Callable[[str], object],
) -> None:
    from observml.config import default_max_jobs, parse_config

    config = parse_config("global: {max_jobs: 3}\nplugins: {}\n")
    with ExperimentHub(config=config) as hub:
        assert hub.max_jobs == 3
    with ExperimentHub() as hub:
        assert hub.max_jobs == default_max_jobs() >= 1
    with pytest.raises(ConfigError, match=r"global.max_jobs: expected a whole number of 1 or"):
        parse_config("global: {max_jobs: 0}\n")


def test_a_closed_queue_refuses_new_jobs_and_ends_them_stopped() -> None:
    queue = JobQueue(1)
    queue.close()
    job = Job("pump", "train", lambda job: {})

    with pytest.raises(ServiceUnavailableError, match=r"'pump': the hub is shutting down"):
        queue.submit(job)

    assert job.done
    assert job.status.state == "stopped"


def test_shutdown_stops_queued_jobs_without_starting_them() -> None:
    with ExperimentHub(job_isolation="thread", max_jobs=1) as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("a", SLEEPY, sleepy(0.5))
        hub.create_experiment("b", SLEEPY, sleepy(0.0))
        first = hub.train("a", data=sensors(50))
        wait_for(lambda: first.status.state == "running")
        queued = hub.train("b", data=sensors(50))
    assert queued.status.state == "stopped"
    assert queued.status.started_at is None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_jobs_reuse_a_warm_child_and_a_stopped_jobs_child_is_killed_not_reused() -> None:
    with ExperimentHub(job_isolation="process", max_jobs=1) as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("quick", SLEEPY, sleepy(0.0))
        hub.create_experiment("slow", SLEEPY, sleepy(600.0))
        first = hub.train("quick", data=sensors(50))
        assert first.wait(120).state == "succeeded", first.status.error
        second = hub.train("quick", data=sensors(50, seed=1))
        assert second.wait(120).state == "succeeded", second.status.error
        assert hub._jobs.children.started == 1  # the second job borrowed the first one's child
        champion, _ = hub._get("quick").champion()
        warm_pid = getattr(champion, "fit_pid_", None)
        assert warm_pid is not None
        assert alive(warm_pid)

        slow = hub.train("slow", data=sensors(50))
        wait_for(lambda: slow.child_pid is not None)
        assert slow.child_pid == warm_pid  # the same warm child
        assert hub.stop_training("slow") is True

        assert slow.status.state == "stopped"
        wait_for(lambda: not alive(warm_pid))  # stop really stops: the child is killed
        third = hub.train("quick", data=sensors(50, seed=2))
        assert third.wait(120).state == "succeeded", third.status.error
        assert hub._jobs.children.started == 2  # a new child, never the killed one
