"""A job's calls to the MLOps store, each retried while the store is briefly unavailable.

Inside a training job every store call (start the run, log, upload, register, set an alias,
end the run) goes through :class:`RetryingStore`: a call that fails with a transient error
(:class:`~observml.errors.ServiceUnavailableError`, which the plugins raise for a refused
connection, a pool timeout, ``database is locked`` or a 5xx answer) is tried again with
exponential backoff (:func:`observml.plugins.retry.retry_call`). When the attempts are used
up the job fails with an error naming the call and how many attempts it took. Any other error
(a rejected value, a missing run, a refused password) fails the job at once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from observml.errors import AuthenticationError, ServiceUnavailableError
from observml.plugins.retry import retry_call

if TYPE_CHECKING:
    from observml.plugins.mlops import MLOpsPlugin
    from observml.runtime.jobs import Job

__all__ = ["StoreRetry", "retrying_store"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StoreRetry:
    """How a job retries a store call that failed transiently.

    Attributes:
        attempts: Calls at most, the first included.
        first_wait: Seconds before the second attempt; doubles each time.
        max_wait: Longest wait between two attempts.
    """

    attempts: int = 6
    first_wait: float = 0.5
    max_wait: float = 10.0

    def call(self, operation: str, fn: Callable[[], T], *, job: Job | None = None) -> T:
        """Return ``fn()``, retried on transient errors; say which call failed and how often.

        Raises:
            ServiceUnavailableError: Still unavailable after every attempt (names
                ``operation``, the attempts and the seconds spent).
            Exception: Any error that is not transient, unchanged, at once.
        """
        tries = 0
        started = time.monotonic()

        def attempt() -> T:
            nonlocal tries
            tries += 1
            return fn()

        def on_retry(exc: BaseException, wait: float, retry: int) -> None:
            logger.warning(
                "%s failed (attempt %d of %d), again in %.1f s: %s",
                operation,
                retry,
                self.attempts,
                wait,
                exc,
            )
            if job is not None:
                job.update(stage=f"retrying: {operation} (attempt {retry + 1} of {self.attempts})")

        try:
            return retry_call(
                attempt,
                retry_on=(ServiceUnavailableError,),
                give_up_on=(AuthenticationError,),
                max_retries=self.attempts - 1,
                interval_start=self.first_wait,
                interval_max=self.max_wait,
                on_retry=on_retry,
                sleep=_interruptible(job),
            )
        except AuthenticationError:
            raise
        except ServiceUnavailableError as exc:
            spent = time.monotonic() - started
            raise ServiceUnavailableError(
                f"{operation} failed after {tries} attempt{'s' if tries > 1 else ''} over"
                f" {spent:.1f} s: {exc}"
            ) from exc


def retrying_store(mlops: MLOpsPlugin, policy: StoreRetry, job: Job | None = None) -> MLOpsPlugin:
    """Return ``mlops`` with every method call retried by ``policy`` (see :class:`StoreRetry`)."""
    return cast("MLOpsPlugin", _RetryingStore(mlops, policy, job))


class _RetryingStore:
    """Delegates to the plugin; a method call becomes ``policy.call("MLOps <method>", ...)``."""

    def __init__(self, mlops: MLOpsPlugin, policy: StoreRetry, job: Job | None) -> None:
        self._mlops = mlops
        self._policy = policy
        self._job = job

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._mlops, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        operation = f"MLOps store call {name}"

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._policy.call(operation, lambda: attr(*args, **kwargs), job=self._job)

        return call


def _interruptible(job: Job | None) -> Callable[[float], object]:
    """Wait between attempts, but end the wait (and the job) when the job is stopped."""
    if job is None:
        return time.sleep

    def wait(seconds: float) -> None:
        if job.stop_requested.wait(seconds):
            job.check_stopped()

    return wait
