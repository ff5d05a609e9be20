"""Alerts: a signal (drift, a metric past its threshold, a failed retrain) is told to people first.

An experiment has at most one open alert. Further signals while it is open update it (its count,
newest reason) instead of opening new ones, so an operator sees one line, not a flood. An alert
stays open until a person answers it: feedback on the rows, or promoting or rejecting the
challenger. Opening and acknowledging are both published as JSON on ``<name>.alerts``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Final

__all__ = ["Alert", "Alerts"]

_HISTORY: Final = 50


@dataclass(frozen=True)
class Alert:
    """One alert: what fired, why, since when, how often, and who answered it."""

    experiment: str
    kind: str
    reason: str
    opened_at: float
    last_at: float
    count: int = 1
    version: int | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None

    @property
    def open(self) -> bool:
        """Whether nobody answered it yet."""
        return self.acknowledged_at is None

    def to_dict(self) -> dict[str, Any]:
        """Return the alert as a JSON-ready dict (also the body published on the queue)."""
        return {
            "experiment": self.experiment,
            "kind": self.kind,
            "reason": self.reason,
            "opened_at": self.opened_at,
            "last_at": self.last_at,
            "count": self.count,
            "version": self.version,
            "state": "open" if self.open else "acknowledged",
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
        }


class Alerts:
    """The open alert of one experiment and the recent ones (thread-safe).

    Args:
        experiment: The experiment's name.
    """

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self._lock = threading.Lock()
        self._open: Alert | None = None
        self._history: deque[Alert] = deque(maxlen=_HISTORY)
        self.raised = 0

    @property
    def current(self) -> Alert | None:
        """The open alert, if any."""
        with self._lock:
            return self._open

    def raise_(
        self, kind: str, reason: str, *, version: int | None, now: float | None = None
    ) -> tuple[Alert, bool]:
        """Raise an alert; return it and whether it opened (False: the open one was updated)."""
        now = time.time() if now is None else now
        with self._lock:
            self.raised += 1
            if self._open is not None:
                kinds = self._open.kind.split("+")
                kind_now = "+".join(kinds if kind in kinds else [*kinds, kind])
                self._open = replace(
                    self._open,
                    kind=kind_now,
                    reason=reason,
                    last_at=now,
                    count=self._open.count + 1,
                    version=version,
                )
                return self._open, False
            self._open = Alert(self.experiment, kind, reason, now, now, 1, version)
            return self._open, True

    def acknowledge(self, by: str, *, now: float | None = None) -> Alert | None:
        """Close the open alert, saying who or what answered it; return it (None if none)."""
        now = time.time() if now is None else now
        with self._lock:
            if self._open is None:
                return None
            closed = replace(self._open, acknowledged_at=now, acknowledged_by=by)
            self._history.append(closed)
            self._open = None
            return closed

    def status(self) -> dict[str, Any]:
        """Return the open alert and the newest answered ones, JSON-ready."""
        with self._lock:
            return {
                "open": self._open.to_dict() if self._open else None,
                "recent": [a.to_dict() for a in reversed(self._history)],
                "raised": self.raised,
            }
