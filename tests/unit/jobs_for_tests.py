"""Calls a training child makes in the job tests: importable by name in the child process."""

from __future__ import annotations

import ctypes
import os
import time

from observml.errors import DataError


def exit_with(code: int) -> None:
    """Leave the process at once, as training code calling ``os._exit`` would."""
    os._exit(code)


def segfault() -> None:
    """Crash the process the way a broken native library does."""
    ctypes.string_at(0)


def sleep(seconds: float) -> str:
    """Sleep, then return which process did it."""
    time.sleep(seconds)
    return f"slept in {os.getpid()}"


def raise_data_error(column: str) -> None:
    """Fail the way a fit on bad data fails."""
    raise DataError(f"training data: column {column!r} holds text. Fix the data.")


class Unloadable:
    """A result that pickles in the child but cannot be loaded back in process ``home``."""

    def __init__(self, home: int) -> None:
        self.home = home

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return _load, (self.home,)


def _load(home: int) -> Unloadable:
    if os.getpid() == home:
        raise RuntimeError("this object cannot be loaded in the hub")
    return Unloadable(home)


def unloadable_result(home: int) -> Unloadable:
    """Return a fitted object the hub's process cannot unpickle."""
    return Unloadable(home)
