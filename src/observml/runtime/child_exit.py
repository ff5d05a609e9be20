"""How a training child ended without a result, said in words with what to do about it."""

from __future__ import annotations

import re
import signal
from typing import Final

from loky.process_executor import (
    BrokenProcessPool,
    ShutdownExecutorError,
    TerminatedWorkerError,
)

from observml.errors import ExperimentError

__all__ = ["child_lost", "describe_exit", "unpicklable"]

#: loky names a dead worker's exit status like ``{SIGKILL(-9)}`` or ``{EXIT(3)}``.
_EXIT_CODE: Final = re.compile(r"exit codes of the workers are \{\w+\((-?\d+)\)")
_CRASH: Final = (
    "A native library crashed; its crash report (faulthandler) is on the hub's stderr."
    " Try another model, or update the library the report names."
)
_SIGNAL_FIXES: Final = {
    "SIGKILL": "That is usually the out-of-memory killer (see `dmesg`): train on fewer rows"
    " or give the hub more memory.",
    "SIGSEGV": _CRASH,
    "SIGBUS": _CRASH,
    "SIGILL": _CRASH,
    "SIGFPE": _CRASH,
    "SIGABRT": _CRASH,
    "SIGTERM": "Something outside the hub stopped it; use stop_training() to stop a job.",
    "SIGINT": "Something outside the hub stopped it; use stop_training() to stop a job.",
}


def unpicklable(exc: BaseException) -> bool:
    """Whether loky's ``exc`` means the task or its result could not be (un)pickled."""
    return isinstance(exc, BrokenProcessPool) and not isinstance(exc, TerminatedWorkerError)


def child_lost(experiment: str, exc: BaseException) -> ExperimentError:
    """Say how the child was lost: shut down, died, or unable to exchange data.

    The caller checks first whether its job was stopped (the child killed on purpose).
    """
    if isinstance(exc, ShutdownExecutorError):
        return ExperimentError(
            f"experiment {experiment!r}: the training process was shut down. Train again."
        )
    if isinstance(exc, TerminatedWorkerError):
        found = _EXIT_CODE.search(str(exc))
        exitcode = int(found.group(1)) if found else None
        return ExperimentError(describe_exit(experiment, exitcode))
    return ExperimentError(  # the task or its result could not be (un)pickled
        f"experiment {experiment!r}: the training process could not exchange"
        f" data with the hub: {exc} Check that the experiment type and what it keeps can"
        " be pickled, or set global.job_isolation: thread."
    )


def describe_exit(experiment: str, exitcode: int | None) -> str:
    """Say how a training process ended without a result, and what to do about it.

    Args:
        experiment: The experiment's name.
        exitcode: The process's exit code; negative for the signal that killed it.
    """
    where = f"experiment {experiment!r}: the training process"
    debug = " To see the failure in this process, set global.job_isolation: thread."
    if exitcode is None:
        return f"{where} died without a result. Check the hub's log for its output.{debug}"
    if exitcode >= 0:
        return (
            f"{where} exited with code {exitcode} before it returned a model: the training"
            " code called sys.exit() or os._exit(), or the interpreter aborted. Check the"
            f" hub's log for its output.{debug}"
        )
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    fix = _SIGNAL_FIXES.get(name, "Check what sent that signal.")
    return f"{where} was killed by {name} before it returned a model. {fix}{debug}"
