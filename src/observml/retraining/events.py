"""Events people read: every decision and every dead letter, one INFO line each, one logger.

Everything the hub decides about a model (``alert``, ``fired``, ``skipped``, ``trained``,
``shadow``, ``promoted``, ``rejected``, ``rolled_back``, ``restored``, ``feedback``,
``retrain_failed``) and every batch of dead letters is logged here, on the logger
:data:`EVENTS_LOGGER` (``observml.events``), at INFO, as one line that names the experiment and
the model version::

    pump v3: promoted: gate passed: false alarms 0.4% <= 1.0%, fault_1 caught 100%
    pump v3: dead_letter: 50 messages: DataError: missing column 'feed_flow' (50 in all)

Each record also carries the event as fields (``record.event``: ``kind``, ``experiment``,
``version``, ``reason`` and more), which ``observml serve --log-format json`` prints as one
JSON object per line (see :class:`JsonFormatter`). A program can attach its own handler to
``logging.getLogger("observml.events")`` to receive them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["EVENTS_LOGGER", "EVENT_ATTRIBUTE", "JsonFormatter", "emit"]

#: The logger every event is logged on (a documented name, not this module's).
EVENTS_LOGGER: Final = "observml.events"
#: The log record attribute holding the event's fields.
EVENT_ATTRIBUTE: Final = "event"

_logger = logging.getLogger(EVENTS_LOGGER)


def emit(
    kind: str,
    experiment: str,
    version: int | None,
    reason: str,
    **fields: Any,
) -> None:
    """Log one event at INFO: ``"<experiment> v<version>: <kind>: <reason>"`` with its fields."""
    shown = f" v{version}" if version is not None else ""
    event = {"kind": kind, "experiment": experiment, "version": version, "reason": reason}
    event.update(fields)
    _logger.info("%s%s: %s: %s", experiment, shown, kind, reason, extra={EVENT_ATTRIBUTE: event})


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: ``time``, ``level``, ``logger``, ``message``, fields.

    ``time`` is ISO 8601 in UTC with milliseconds. An event's fields (``kind``,
    ``experiment``, ``version``, ``reason``, ...) are added at the top level; an exception adds
    ``exception`` (the formatted traceback). Values JSON cannot hold are written as text.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as one line of JSON."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, EVENT_ATTRIBUTE, None)
        if isinstance(event, Mapping):
            out.update({k: v for k, v in event.items() if k not in out})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)
