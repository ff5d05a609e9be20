"""Bounded retries: what is retried, what is not, and how long the waits are."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from observml.plugins.retry import backoff_delays, retry_call


class Refused(ConnectionError):
    """Stands for a refused connection (recoverable)."""


class LoginRefused(Refused):
    """Stands for pika's auth errors, which subclass its connection error."""


def failing(times: int, error: BaseException) -> tuple[Callable[[], str], list[int]]:
    """Return a function that raises ``error`` ``times`` times, then returns "ok"."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "ok"

    return call, calls


def test_retry_call_returns_first_success_without_waiting() -> None:
    waits: list[float] = []
    call, calls = failing(0, Refused("down"))
    assert retry_call(call, retry_on=(Refused,), sleep=waits.append) == "ok"
    assert (len(calls), waits) == (1, [])


def test_retry_call_retries_recoverable_errors_then_succeeds() -> None:
    waits: list[float] = []
    logged: list[tuple[str, float, int]] = []
    call, calls = failing(2, Refused("down"))
    result = retry_call(
        call,
        retry_on=(Refused,),
        max_retries=3,
        interval_start=0.5,
        jitter=0,
        sleep=waits.append,
        on_retry=lambda exc, wait, n: logged.append((str(exc), wait, n)),
    )
    assert result == "ok"
    assert len(calls) == 3
    assert waits == [0.5, 1.0]
    assert logged == [("down", 0.5, 1), ("down", 1.0, 2)]


def test_retry_call_gives_up_at_once_on_give_up_errors_even_if_subclass() -> None:
    waits: list[float] = []
    call, calls = failing(5, LoginRefused("ACCESS_REFUSED"))
    with pytest.raises(LoginRefused, match="ACCESS_REFUSED"):
        retry_call(call, retry_on=(Refused,), give_up_on=(LoginRefused,), sleep=waits.append)
    assert (len(calls), waits) == (1, [])


def test_retry_call_reraises_last_error_when_retries_run_out() -> None:
    waits: list[float] = []
    call, calls = failing(10, Refused("still down"))
    with pytest.raises(Refused, match="still down"):
        retry_call(call, retry_on=(Refused,), max_retries=2, sleep=waits.append)
    assert len(calls) == 3
    assert len(waits) == 2


def test_retry_call_does_not_retry_other_errors() -> None:
    call, calls = failing(1, ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        retry_call(call, retry_on=(Refused,), sleep=lambda seconds: None)
    assert len(calls) == 1


def test_retry_call_timeout_bounds_unlimited_retries() -> None:
    call, calls = failing(10, Refused("down"))
    with pytest.raises(Refused, match="down"):
        retry_call(call, retry_on=(Refused,), max_retries=None, timeout=0.0, sleep=lambda s: None)
    assert len(calls) == 1


def test_retry_call_sleep_can_interrupt_the_wait() -> None:
    class Stopped(Exception):
        pass

    def stop(seconds: float) -> None:
        raise Stopped

    call, calls = failing(10, Refused("down"))
    with pytest.raises(Stopped):
        retry_call(call, retry_on=(Refused,), sleep=stop)
    assert len(calls) == 1


def test_retry_call_without_any_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="set max_retries or timeout"):
        retry_call(lambda: 1, retry_on=(Refused,), max_retries=None)


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        pytest.param(1, 0.5, id="first"),
        pytest.param(2, 1.0, id="doubles"),
        pytest.param(3, 2.0, id="doubles-again"),
        pytest.param(10, 3.0, id="capped"),
    ],
)
def test_backoff_delays_double_up_to_the_maximum(retry: int, expected: float) -> None:
    delay = backoff_delays(interval_start=0.5, interval_max=3.0, jitter=0)
    assert delay(retry) == expected


def test_backoff_delays_jitter_only_shortens_the_wait() -> None:
    delay = backoff_delays(interval_start=1.0, interval_max=8.0, jitter=0.5)
    waits = [delay(4) for _ in range(200)]
    assert all(4.0 <= wait <= 8.0 for wait in waits)
    assert len(set(waits)) > 1
