"""The CLI's logging: observml's own records on stderr, third-party ones only with ``--debug``.

MLflow (its "Creating initial MLflow database tables" INFO line, alembic's migration lines, tqdm
bars while it downloads artifacts) and pika (an ERROR line per connection stage and a traceback
when the broker refuses a login) report what observml then reports once, as one error line. So
without ``--debug`` their records are dropped, MLflow is told not to configure its own log
handler, and its artifact progress bars are switched off.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Final, TextIO

__all__ = ["THIRD_PARTY_ENV", "CliHandler", "OwnRecords", "cli_handlers", "setup_logging"]

#: Environment MLflow reads when it is imported or downloads artifacts; set (unless already
#: set by the user) when ``--debug`` is off.
THIRD_PARTY_ENV: Final = {
    "MLFLOW_CONFIGURE_LOGGING": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
#: Third-party loggers whose level is raised when ``--debug`` is off (they may have their own
#: handlers, which the filter on ours does not reach).
_QUIET_LOGGERS: Final = {
    "mlflow": logging.WARNING,
    "alembic": logging.WARNING,
    "pika": logging.CRITICAL,
}
_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OwnRecords(logging.Filter):
    """Pass observml's records (and any CRITICAL one); drop the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return whether ``record`` is observml's own or critical."""
        own = record.name == "observml" or record.name.startswith("observml.")
        return own or record.levelno >= logging.CRITICAL


class CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The CLI's console handler: it writes to whatever ``sys.stderr`` is when a record comes.

    Bound to the stream of its creation, a handler outliving a command (a second command in
    one process, click's test runner swapping and closing stderr) would write to a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """Ignore: the stream is always the current ``sys.stderr``."""


def cli_handlers() -> list[CliHandler]:
    """Return the CLI's handlers on the root logger (at most one after :func:`setup_logging`)."""
    return [h for h in logging.getLogger().handlers if isinstance(h, CliHandler)]


def setup_logging(debug: bool) -> CliHandler:
    """Attach the CLI's stderr handler to the root logger and quiet third-party output.

    A handler of an earlier command in the same process is replaced, so they do not pile up.

    Returns:
        The handler, so a caller may give it another formatter.
    """
    root = logging.getLogger()
    for old in cli_handlers():
        root.removeHandler(old)
    handler = CliHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    if debug:
        handler.setLevel(logging.DEBUG)
        logging.getLogger("observml").setLevel(logging.DEBUG)
    else:
        handler.setLevel(logging.WARNING)
        handler.addFilter(OwnRecords())
        for name, value in THIRD_PARTY_ENV.items():
            os.environ.setdefault(name, value)
        for name, level in _QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
    logging.getLogger().addHandler(handler)
    return handler
