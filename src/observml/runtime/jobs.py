"""Training jobs: run a fit off the caller's thread, report status, and really stop it.

A job's body runs in a worker thread. With ``isolation="process"`` the fit itself runs in a
fresh child process, so :meth:`Job.stop` can kill a fit that is deep inside a library call, a
crash or an out-of-memory kill takes only the child down, and the job ends ``failed`` with the
exit code or signal. The child never re-runs the caller's ``__main__`` (see
:func:`run_isolated`). ``isolation="thread"`` runs the fit in the worker thread: no child to
start, but a stop takes effect only when the fit returns. :func:`choose_isolation` turns the
``global.job_isolation`` setting (default ``auto``) into one of the two for each job. Jobs never
run inside a broker callback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from loky import ProcessPoolExecutor
from loky.process_executor import (
    BrokenProcessPool,
    ShutdownExecutorError,
)

from observml.errors import ExperimentError, ObservMLError
from observml.runtime.child_exit import child_lost, describe_exit, unpicklable

if TYPE_CHECKING:
    from observml.runtime.children import ChildPool

__all__ = [
    "Isolation",
    "IsolationSetting",
    "Job",
    "JobQueueView",
    "JobState",
    "JobStatus",
    "JobStoppedError",
    "choose_isolation",
    "describe_exit",
    "run_isolated",
]

logger = logging.getLogger(__name__)

#: Jobs whose fit runs in a child process now; interpreter exit stops them.
_LIVE_JOBS: set[Job] = set()
_LIVE_LOCK = threading.Lock()
_EXIT_HOOK = False

JobState: TypeAlias = Literal["queued", "running", "succeeded", "failed", "stopped"]
Isolation: TypeAlias = Literal["process", "thread"]
#: The ``global.job_isolation`` setting: ``auto`` picks per job (see :func:`choose_isolation`).
IsolationSetting: TypeAlias = Literal["auto", "process", "thread"]
_FINAL: tuple[JobState, ...] = ("succeeded", "failed", "stopped")


class JobQueueView(Protocol):
    """What a queued job asks of the queue it waits in (see :mod:`observml.runtime.job_queue`)."""

    def position(self, job: Job) -> int | None:
        """Return the job's place in the queue (1: next), or ``None``."""

    def cancel(self, job: Job) -> bool:
        """Take the job out of the queue; return whether it was waiting there."""


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
    #: While ``queued``: 1 for the next job to start, 2 after it, ...; else ``None``.
    queue_position: int | None = None

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
            "queue_position": self.queue_position,
        }


class Job:
    """A unit of work with a status; ``body(job)`` runs in a worker thread.

    The body reports progress with :meth:`update` and runs heavy work through
    :func:`run_isolated` so that :meth:`stop` can end it.
    """

    def __init__(
        self,
        experiment: str,
        kind: str,
        body: Callable[[Job], dict[str, Any]],
        *,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self._status = JobStatus(uuid.uuid4().hex[:12], experiment, kind)
        self._body = body
        self._on_cancel = on_cancel
        self._on_end: list[Callable[[Job], None]] = []
        #: The queue this job waits in (``None`` once it started, or outside a queue).
        self.queue: JobQueueView | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.stop_requested = threading.Event()
        self._child: ProcessPoolExecutor | None = None
        #: The process id of the child running the fit (``None`` for a thread job).
        self.child_pid: int | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"observml-job-{experiment}-{kind}", daemon=True
        )

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self._status.job_id

    @property
    def status(self) -> JobStatus:
        """The current status snapshot (with the place in the queue while ``queued``)."""
        with self._lock:
            status = self._status
        queue = self.queue
        if status.state == "queued" and queue is not None:
            return replace(status, queue_position=queue.position(self))
        return status

    @property
    def done(self) -> bool:
        """Whether the job reached a final state."""
        return self._done.is_set()

    def start(self) -> Job:
        """Start the worker thread; return self."""
        self._thread.start()
        return self

    def on_end(self, callback: Callable[[Job], None]) -> None:
        """Call ``callback(job)`` once the job reached a final state (set before :meth:`start`)."""
        self._on_end.append(callback)

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job ends (or ``timeout``) and return its status."""
        self._done.wait(timeout)
        return self.status

    def update(self, **changes: Any) -> None:
        """Change fields of the status (``progress``, ``stage``, ``run_id``, ...)."""
        with self._lock:
            self._status = replace(self._status, **changes)

    def stop(self) -> bool:
        """Ask the job to stop; kills its child process. Return False if already done."""
        if self.done:
            return False
        self.stop_requested.set()
        queue = self.queue
        if queue is not None and queue.cancel(self):
            self.end_unstarted()
            return True
        child = self._child
        if child is not None:
            child.shutdown(wait=False, kill_workers=True)
        return True

    def check_stopped(self) -> None:
        """Raise :class:`JobStoppedError` if a stop was requested (call between stages)."""
        if self.stop_requested.is_set():
            raise JobStoppedError(f"{self._status.experiment}: training was stopped.")

    def attach_child(self, child: ProcessPoolExecutor | None) -> None:
        """Record the executor whose child does the work so :meth:`stop` can kill it."""
        self._child = child
        if child is not None and self.stop_requested.is_set():
            child.shutdown(wait=False, kill_workers=True)

    def end_unstarted(self) -> None:
        """End a job that never started (stopped while queued): state ``stopped``, body unrun."""
        now = time.time()
        self.update(state="stopped", stage="stopped", started_at=None, finished_at=now)
        try:
            if self._on_cancel is not None:
                self._on_cancel()
        finally:
            self._finish()

    def _finish(self) -> None:
        self._done.set()
        for callback in self._on_end:
            try:
                callback(self)
            except Exception:  # a broken callback must not keep the next job waiting
                logger.error("job %s: end callback failed", self.job_id, exc_info=True)

    def _run(self) -> None:
        self.queue = None
        if self.stop_requested.is_set():  # stopped while the queue was starting it
            self.end_unstarted()
            return
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
            self._finish()


def choose_isolation(setting: IsolationSetting, *, wait: bool) -> Isolation:
    """Return where a job's fit runs.

    ``auto``: a job the caller waits for runs in this process, since the caller is blocked
    and nobody else stops it, and it skips a fresh interpreter's imports; a background job
    runs in a child process, which ``stop_training`` kills and whose crash leaves the hub up.

    Args:
        setting: ``global.job_isolation``.
        wait: Whether the caller blocks until the job ends (``train(..., wait=True)``).
    """
    if setting == "auto":
        return "thread" if wait else "process"
    return setting


def run_isolated(
    job: Job,
    func: Callable[..., Any],
    *args: Any,
    isolation: Isolation,
    children: ChildPool | None = None,
) -> Any:
    """Run ``func(*args)`` in a child process (or inline for ``"thread"``); return its result.

    The child is an interpreter started by loky: it imports what ``func`` and ``args`` need
    and never runs the caller's ``__main__``, so a script needs no ``if __name__ ==
    "__main__":`` guard. Objects defined in ``__main__`` (a script, ``python -c``, a notebook)
    travel by value (cloudpickle). The job records the child so :meth:`Job.stop` can kill it.
    With ``children`` the child is borrowed from that pool of warm children and given back
    when ``func`` returned or raised; a stopped or dead child is never given back.

    Raises:
        JobStoppedError: The job was stopped while ``func`` ran.
        ExperimentError: The child process died (exit code or signal, and what to do).
        Exception: Whatever ``func`` raised, re-raised in this process.
    """
    job.check_stopped()
    if isolation == "thread":
        return func(*args)
    executor = children.acquire() if children is not None else ProcessPoolExecutor(max_workers=1)
    job.attach_child(executor)
    with _LIVE_LOCK:
        _LIVE_JOBS.add(job)
    alive = False  # the child answered: it returned a result or raised func's own error
    try:
        job.child_pid = _call(job, executor, os.getpid)
        _stop_live_jobs_at_exit()  # after loky registered its own exit hook (see there)
        try:
            result = executor.submit(func, *args).result()
        except (ShutdownExecutorError, BrokenProcessPool) as exc:
            job.check_stopped()
            raise child_lost(job.status.experiment, exc) from (exc if unpicklable(exc) else None)
        except BaseException:
            alive = not job.stop_requested.is_set()
            raise
        alive = not job.stop_requested.is_set()
    finally:
        with _LIVE_LOCK:
            _LIVE_JOBS.discard(job)
        job.attach_child(None)
        job.child_pid = None
        if children is not None:
            children.release(executor, reusable=alive)
        else:
            executor.shutdown(wait=True, kill_workers=not alive)
    return result


def _call(job: Job, executor: ProcessPoolExecutor, func: Callable[..., Any], *args: Any) -> Any:
    """Run one call in the child; turn a dead or killed child into the job's error."""
    try:
        return executor.submit(func, *args).result()
    except (ShutdownExecutorError, BrokenProcessPool) as exc:
        job.check_stopped()
        raise child_lost(job.status.experiment, exc) from (exc if unpicklable(exc) else None)


def _stop_live_jobs_at_exit() -> None:
    """Make interpreter exit stop the jobs still fitting instead of waiting for them.

    At exit, before joining threads, loky joins each executor, which waits for the running
    call: a script that ends while a job trains would wait for the whole fit. Hooks in that
    list run newest first, so this one, registered after loky's, stops the jobs before loky
    waits. ``threading._register_atexit`` is the hook ``concurrent.futures`` and loky use.
    """
    global _EXIT_HOOK
    with _LIVE_LOCK:
        if _EXIT_HOOK:
            return
        _EXIT_HOOK = True
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - another Python implementation
        return
    with contextlib.suppress(RuntimeError):  # already shutting down
        register(_stop_live_jobs)


def _stop_live_jobs() -> None:
    with _LIVE_LOCK:
        jobs = list(_LIVE_JOBS)
    for job in jobs:
        job.stop()
