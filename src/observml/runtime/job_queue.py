"""One hub's training and retraining jobs in one queue: at most ``max_jobs`` run at once.

A job submitted while ``max_jobs`` others run waits ``queued``, in submission order; its place
(1: the next to start) is in its status. Each job that ends starts the next one waiting.
Stopping a waiting job takes it out of the queue (it ends ``stopped`` without having run).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from observml.errors import ServiceUnavailableError
from observml.runtime.jobs import Job

__all__ = ["JobQueue"]


class JobQueue:
    """Runs jobs at most ``max_jobs`` at a time, the rest first in, first out.

    Args:
        max_jobs: How many jobs may run at once (``global.max_jobs``); at least 1.
    """

    def __init__(self, max_jobs: int) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be 1 or more, got {max_jobs}.")
        self.max_jobs = max_jobs
        self._waiting: deque[Job] = deque()
        self._running: set[Job] = set()
        self._lock = threading.Lock()
        self._closed = False
        #: The most jobs that ever ran at once (what a test or a bench checks).
        self.peak_running = 0

    def submit(self, job: Job) -> Job:
        """Start ``job`` now if a slot is free, else queue it; return it.

        Raises:
            ServiceUnavailableError: The hub is shutting down.
        """
        with self._lock:
            closed = self._closed
        if closed:
            job.end_unstarted()
            raise ServiceUnavailableError(
                f"experiment {job.status.experiment!r}: the hub is shutting down; no new"
                " jobs start. Train again on a running hub."
            )
        job.on_end(self._ended)
        with self._lock:
            start = len(self._running) < self.max_jobs and not self._waiting
            if start:
                self._take_slot(job)
            else:
                job.queue = self
                self._waiting.append(job)
        if start:
            job.start()
        return job

    def position(self, job: Job) -> int | None:
        """Return the job's place in the queue (1: next to start), or ``None``."""
        with self._lock:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return None

    def cancel(self, job: Job) -> bool:
        """Take ``job`` out of the queue; return whether it was waiting there."""
        with self._lock:
            try:
                self._waiting.remove(job)
            except ValueError:
                return False
        return True

    def close(self) -> list[Job]:
        """Refuse new jobs and return the ones waiting (the caller stops them)."""
        with self._lock:
            self._closed = True
            return list(self._waiting)

    def snapshot(self) -> dict[str, Any]:
        """Return ``max_jobs``, the jobs running and waiting now, and the peak so far."""
        with self._lock:
            return {
                "max_jobs": self.max_jobs,
                "running": len(self._running),
                "queued": len(self._waiting),
                "peak_running": self.peak_running,
            }

    def _take_slot(self, job: Job) -> None:
        self._running.add(job)
        self.peak_running = max(self.peak_running, len(self._running))

    def _ended(self, job: Job) -> None:
        """A job ended (or was stopped while waiting): start the next ones waiting."""
        starting: list[Job] = []
        with self._lock:
            self._running.discard(job)
            while self._waiting and len(self._running) < self.max_jobs and not self._closed:
                nxt = self._waiting.popleft()
                self._take_slot(nxt)
                starting.append(nxt)
        for nxt in starting:
            nxt.start()
