"""One ``consume`` / ``consume_batch`` call: take micro-batches from a session, settle each.

What happens to a message is decided by observml's :func:`~observml.plugins.datastream.settle`
(the same for every plugin); this module carries it out on MQTT: a rejected message is first
published (PUBACK received) to the dead-letter topic with the reason as a user property, then
acknowledged; an accepted one is acknowledged after the handler returned; a requeued one waits
again at the front of the session, flagged redelivered. A handler raising ``BaseException``
(not ``Exception``) gives its batch back unacknowledged and the error propagates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from observml.errors import ServiceUnavailableError
from observml.plugins.datastream import BatchHandler, Message, settle
from observml_mqtt.session import Delivery, Session

__all__ = ["Consumer"]

#: Publishes ``(message, reason)`` pairs to the queue's dead-letter topic and waits for PUBACKs.
DeadLetter = Callable[[str, Sequence[tuple[Message, str]]], None]
_POLL = 0.1  # seconds between checks of stop/closing while the session is idle
_REQUEUE_PAUSE = 0.5  # the handler's service is down: do not spin on it


@dataclass
class Consumer:
    """Runs a batch handler on one session until ``stop`` or ``closing`` is set."""

    session: Session
    handler: BatchHandler
    dead_letter: DeadLetter
    batch_size: int
    max_wait: float
    stop: threading.Event
    closing: threading.Event
    max_message_bytes: int | None
    reconnect_timeout: float
    where: str

    def done(self) -> bool:
        """True once the caller asked to stop or the plugin disconnects."""
        return self.stop.is_set() or self.closing.is_set()

    def run(self) -> None:
        """Consume until stopped.

        Raises:
            ServiceUnavailableError: The broker stayed away longer than ``reconnect_timeout``.
        """
        while not self.done():
            down = self.session.down_for()
            if down > self.reconnect_timeout:
                raise ServiceUnavailableError(
                    f"{self.where}: queue {self.session.queue!r}: the broker has been"
                    f" unreachable for {down:.0f}s (reconnect_timeout {self.reconnect_timeout}s)."
                    " Check the broker; the messages wait there for this hub's session."
                )
            batch = self._collect()
            if batch and self._handle(batch):
                self._pause(_REQUEUE_PAUSE)

    def _collect(self) -> list[Delivery]:
        first = self.session.take(_POLL)
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.batch_size and not self.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            item = self.session.take(min(remaining, _POLL))
            if item is not None:
                batch.append(item)
        return batch

    def _handle(self, batch: list[Delivery]) -> bool:
        """Handle and settle one batch; return True when some of it was requeued."""
        unmapped = {i: d.error for i, d in enumerate(batch) if d.error}
        keep = [i for i in range(len(batch)) if i not in unmapped]
        try:
            outcome = settle(
                self.handler,
                [batch[i].message for i in keep],
                max_bytes=self.max_message_bytes,
            )
        except BaseException:
            self.session.give_back(batch)
            raise
        dead = {**unmapped, **{keep[i]: reason for i, reason in outcome.dead.items()}}
        if dead:
            self.dead_letter(
                self.session.queue,
                [(batch[i].message, str(reason)) for i, reason in sorted(dead.items())],
            )
        settled = sorted({*dead, *(keep[i] for i in outcome.ack)})  # PUBACKs in arrival order
        self.session.ack([batch[i] for i in settled])
        if outcome.requeue:
            self.session.give_back([batch[keep[i]] for i in outcome.requeue])
        return bool(outcome.requeue)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.done() and time.monotonic() < deadline:
            self.stop.wait(min(_POLL, deadline - time.monotonic()))
