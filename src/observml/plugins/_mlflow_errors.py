"""MLflow's failures in observml's terms: one :func:`translate` for every error the plugin meets.

MLflow raises :class:`~mlflow.exceptions.MlflowException` with an ``error_code``, and plain
``requests``/``urllib3``/``OSError`` failures when a server is away. The plugin turns each into
an :mod:`observml.errors` type whose message names what was being done, the store (password
masked) and what to do.
"""

from __future__ import annotations

import re
from typing import Final

from observml.config.redact import mask_text
from observml.errors import DataError, NotFoundError, ObservMLError, ServiceUnavailableError

__all__ = ["first_line", "is_unreachable", "translate"]


def translate(exc: Exception, what: str, uri: str, hint: str | None = None) -> ObservMLError:
    """Return the observml error for MLflow's ``exc`` met while working on ``what``.

    ``uri`` is the store's address, already masked; ``hint`` replaces the generic advice of a
    not-found error.
    """
    detail = first_line(exc)
    code = getattr(exc, "error_code", None)
    if code == "RESOURCE_DOES_NOT_EXIST":
        fix = hint or "Check the id or name; list what exists with search_runs/list_versions."
        return NotFoundError(f"{what}: not found in the MLflow store at {uri} ({detail}). {fix}")
    if is_unreachable(exc):
        busy = [ln for ln in str(exc).splitlines() if any(t in ln for t in _TRANSIENT_TEXT)]
        if busy:
            return ServiceUnavailableError(
                f"{what}: the MLflow store at {uri} is busy ({_bare(busy[0])})."
                " Fewer jobs at once"
                " (global.max_jobs) or a database server instead of SQLite gives it room."
            )
        return ServiceUnavailableError(
            f"{what}: the MLflow store at {uri} is unreachable ({detail}). Is the tracking"
            " server running? MLflow's own retries are set by MLFLOW_HTTP_REQUEST_MAX_RETRIES"
            " and MLFLOW_HTTP_REQUEST_TIMEOUT."
        )
    if code == "INVALID_PARAMETER_VALUE":
        return DataError(f"{what}: MLflow rejected the values: {detail}")
    return ObservMLError(f"{what}: MLflow store at {uri} failed ({code}): {detail}")


def _bare(line: str) -> str:
    """``(sqlite3.OperationalError) database is locked`` -> ``database is locked``."""
    return mask_text(re.sub(r"^\([\w.]+\)\s*", "", line.strip()))


def first_line(exc: BaseException) -> str:
    """Return the first line of an error's message, with passwords masked."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return mask_text(text.splitlines()[0] if text else type(exc).__name__)


#: SQLAlchemy's errors that mean "try again": no pooled connection free in time, a locked
#: SQLite file, a database server that went away or refused the connection.
_TRANSIENT_SQLALCHEMY: Final = ("TimeoutError", "OperationalError", "DisconnectionError")
_TRANSIENT_TEXT: Final = ("database is locked", "QueuePool limit", "database is busy")


def is_unreachable(exc: BaseException) -> bool:
    """Return True when ``exc`` (or what caused it) is a network or availability failure.

    That includes what passes when retried: a refused or timed-out connection, a 5xx answer
    MLflow's own HTTP retries gave up on, SQLAlchemy's pool timeout (``QueuePool limit ...
    reached``) and SQLite's ``database is locked``.
    """
    if getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
        return True
    seen: BaseException | None = exc
    while seen is not None:
        kind = type(seen)
        if isinstance(seen, OSError) or kind.__module__.startswith(("requests", "urllib3")):
            return True
        if kind.__module__.startswith("sqlalchemy") and kind.__name__ in _TRANSIENT_SQLALCHEMY:
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return text.startswith("API request to ") or any(t in text for t in _TRANSIENT_TEXT)
