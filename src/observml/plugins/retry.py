"""Bounded retries with exponential backoff and jitter (kombu's ``retry_over_time`` idea).

Only errors listed in ``retry_on`` are retried, and never those in ``give_up_on``: pika's
authentication errors subclass its connection error, so wrong credentials must be named in
``give_up_on`` to fail at once instead of after every retry.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["backoff_delays", "retry_call"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Called before each wait with ``(error, seconds_to_wait, retry_number)``.
OnRetry = Callable[[BaseException, float, int], None]


def backoff_delays(
    *, interval_start: float, interval_max: float, factor: float = 2.0, jitter: float = 0.5
) -> Callable[[int], float]:
    """Return a function mapping retry number ``n`` (from 1) to the seconds to wait before it.

    The delay doubles (``factor``) from ``interval_start`` up to ``interval_max``; ``jitter``
    removes up to that fraction at random, so many clients restarting together spread out.
    """

    def delay(n: int) -> float:
        base = min(interval_max, interval_start * factor ** max(n - 1, 0))
        return base * (1.0 - jitter * random.random())  # jitter, not crypto

    return delay


def retry_call(
    fn: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    give_up_on: tuple[type[BaseException], ...] = (),
    max_retries: int | None = 3,
    interval_start: float = 0.5,
    interval_max: float = 5.0,
    jitter: float = 0.5,
    timeout: float | None = None,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``fn`` until it returns, retrying recoverable errors a bounded number of times.

    Args:
        fn: The operation; called with no arguments.
        retry_on: Errors worth another try (a refused connection, a lost stream).
        give_up_on: Errors re-raised at once even when they subclass one in ``retry_on``.
        max_retries: Retries after the first call; ``None`` leaves only ``timeout`` as bound.
        interval_start: Seconds before the first retry; doubles each time.
        interval_max: Longest wait between two calls.
        jitter: Fraction of each wait removed at random (0 disables).
        timeout: Give up once this many seconds have passed, even with retries left.
        on_retry: Called before each wait, e.g. to log it.
        sleep: How to wait; a caller that must stay interruptible passes a function that raises
            its own exception when asked to stop.

    Returns:
        What ``fn`` returned.

    Raises:
        ValueError: Neither ``max_retries`` nor ``timeout`` bounds the retries.
        BaseException: The last error once the retries or the time are used up, or any error
            that is not in ``retry_on`` (or is in ``give_up_on``), unchanged.
    """
    if max_retries is None and timeout is None:
        raise ValueError(
            "retry_call: set max_retries or timeout; unbounded retries are not allowed."
        )
    delays = backoff_delays(interval_start=interval_start, interval_max=interval_max, jitter=jitter)
    deadline = None if timeout is None else time.monotonic() + timeout
    retries = 0
    while True:
        try:
            return fn()
        except give_up_on:
            raise
        except retry_on as exc:
            retries += 1
            wait = delays(retries)
            out_of_retries = max_retries is not None and retries > max_retries
            out_of_time = deadline is not None and time.monotonic() + wait > deadline
            if out_of_retries or out_of_time:
                raise
            if on_retry is not None:
                on_retry(exc, wait, retries)
            else:
                logger.debug("retry %d in %.2fs after %r", retries, wait, exc)
            sleep(wait)
