"""Training jobs: run a fit off the caller's thread, report status, and really stop it.

A job runs its work in a child process by default, so :meth:`Job.stop` can terminate a fit
that is deep inside a library call; ``isolation="thread"`` runs it in a thread instead (faster
to start, stop takes effect when the work returns). Jobs never run inside a broker callback.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any, Literal, TypeAlias

from observml.errors import ExperimentError, ObservMLError

__all__ = ["Isolation", "Job", "JobState", "JobStatus", "JobStoppedError", "run_isolated"]

logger = logging.getLogger(__name__)

JobState: TypeAlias = Literal["queued", "running", "succeeded", "failed", "stopped"]
Isolation: TypeAlias = Literal["process", "thread"]
_FINAL: tuple[JobState, ...] = ("succeeded", "failed", "stopped")


class JobStoppedError(ExperimentError):
    """The job was stopped by ``stop_training`` before it finished."""


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job, safe to hand to the API."""

    job_id: str
    experiment: str
    kind: str
    state: JobState = "queued"
    progress: float = 0.0
    stage: str = "queued"
    error: str | None = None
    error_type: str | None = None
    run_id: str | None = None
    version: int | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the status as a JSON-ready dict."""
        return {
            "job_id": self.job_id,
            "experiment": self.experiment,
            "kind": self.kind,
            "state": self.state,
            "progress": round(self.progress, 3),
            "stage": self.stage,
            "error": self.error,
            "error_type": self.error_type,
            "run_id": self.run_id,
            "version": self.version,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
        }


class Job:
    """A unit of work with a status; ``body(job)`` runs in a worker thread.

    The body reports progress with :meth:`update` and runs heavy work through
    :func:`run_isolated` so that :meth:`stop` can end it.
    """

    def __init__(self, experiment: str, kind: str, body: Callable[[Job], dict[str, Any]]) -> None:
        self._status = JobStatus(uuid.uuid4().hex[:12], experiment, kind)
        self._body = body
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.stop_requested = threading.Event()
        self._child: multiprocessing.process.BaseProcess | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"observml-job-{experiment}-{kind}", daemon=True
        )

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self._status.job_id

    @property
    def status(self) -> JobStatus:
        """The current status snapshot."""
        with self._lock:
            return self._status

    @property
    def done(self) -> bool:
        """Whether the job reached a final state."""
        return self._done.is_set()

    def start(self) -> Job:
        """Start the worker thread; return self."""
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job ends (or ``timeout``) and return its status."""
        self._done.wait(timeout)
        return self.status

    def update(self, **changes: Any) -> None:
        """Change fields of the status (``progress``, ``stage``, ``run_id``, ...)."""
        with self._lock:
            self._status = replace(self._status, **changes)

    def stop(self) -> bool:
        """Ask the job to stop; terminates its child process. Return False if already done."""
        if self.done:
            return False
        self.stop_requested.set()
        child = self._child
        if child is not None and child.is_alive():
            child.terminate()
        return True

    def check_stopped(self) -> None:
        """Raise :class:`JobStoppedError` if a stop was requested (call between stages)."""
        if self.stop_requested.is_set():
            raise JobStoppedError(f"{self._status.experiment}: training was stopped.")

    def attach_child(self, child: multiprocessing.process.BaseProcess | None) -> None:
        """Record the child process doing the work so :meth:`stop` can terminate it."""
        self._child = child
        if child is not None and self.stop_requested.is_set():
            child.terminate()

    def _run(self) -> None:
        self.update(state="running", stage="starting", started_at=time.time())
        try:
            result = self._body(self)
            self.check_stopped()
        except JobStoppedError:
            self.update(state="stopped", stage="stopped", finished_at=time.time())
        except Exception as exc:  # the job's failure is reported in its status
            if not isinstance(exc, ObservMLError):
                logger.error("job %s failed", self.job_id, exc_info=True)
            self.update(
                state="failed",
                stage="failed",
                error=str(exc),
                error_type=type(exc).__name__,
                finished_at=time.time(),
            )
        else:
            self.update(
                state="succeeded",
                stage="done",
                progress=1.0,
                result=result,
                finished_at=time.time(),
            )
        finally:
            self._done.set()


def _child_main(conn: Connection, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = func(*args)
        conn.send_bytes(pickle.dumps(("ok", result), protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as exc:  # sent back to the parent as data
        payload: tuple[str, Any]
        try:
            pickle.dumps(exc)
            payload = ("error", exc)
        except Exception:  # an unpicklable error travels as text
            payload = ("error", ExperimentError(f"{type(exc).__name__}: {exc}"))
        conn.send_bytes(pickle.dumps((*payload, traceback.format_exc())))
    finally:
        conn.close()


def run_isolated(job: Job, func: Callable[..., Any], *args: Any, isolation: Isolation) -> Any:
    """Run ``func(*args)`` in a child process (or inline for ``"thread"``) and return its result.

    Raises:
        JobStoppedError: The job was stopped while ``func`` ran.
        Exception: Whatever ``func`` raised, re-raised in this process.
    """
    job.check_stopped()
    if isolation == "thread":
        return func(*args)
    ctx = multiprocessing.get_context("spawn")
    parent, child_end = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(child_end, func, args), daemon=True)
    child.start()
    child_end.close()
    job.attach_child(child)
    try:
        while not parent.poll(0.2):
            if not child.is_alive():
                if parent.poll(0):  # the result arrived as the child exited
                    break
                job.check_stopped()
                raise ExperimentError(
                    f"{job.status.experiment}: the training process died (exit code"
                    f" {child.exitcode}). Check memory limits and the logs."
                )
        message = pickle.loads(parent.recv_bytes())
    except EOFError:
        job.check_stopped()
        raise ExperimentError(
            f"{job.status.experiment}: the training process ended without a result."
        ) from None
    finally:
        parent.close()
        child.join(timeout=5)
        job.attach_child(None)
    job.check_stopped()
    if message[0] == "ok":
        return message[1]
    logger.debug("training failed in the child process:\n%s", message[2])
    raise message[1]
