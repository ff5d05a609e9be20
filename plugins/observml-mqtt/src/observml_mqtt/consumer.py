"""One ``consume`` / ``consume_batch`` call: take micro-batches from a session, settle each.

What happens to a message is decided by observml's :func:`~observml.plugins.datastream.settle`
(the same for every plugin); this module carries it out on MQTT: a rejected message is first
published (PUBACK received) to the dead-letter topic with the reason as a user property, then
acknowledged; an accepted one is acknowledged after the handler returned; a requeued one waits
again at the front of the session, flagged redelivered. A handler raising ``BaseException``
(not ``Exception``) gives its batch back unacknowledged and the error propagates.

``consume`` (one message per handler call) settles the messages on paho's network thread as
they arrive (:meth:`Consumer.run_inline`), as a plain paho consumer does: handing every message
to the caller's thread cost a third of the rate. An arrival with nothing waiting before it (the
usual case) is settled at once, under the one lock that keeps handler calls one at a time and in
order; one with messages waiting before it queues behind them, and they are settled oldest first.
The caller's thread watches: after a requeue it takes over, one message at a time and paced,
until nothing waits; it settles what waits when no arrival will (all in flight already); and a
handler's ``BaseException`` is raised there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from observml.errors import ServiceUnavailableError
from observml.plugins.datastream import BatchHandler, Message, Settlement, settle
from observml_mqtt.session import Delivery, Session

__all__ = ["Consumer"]

#: Publishes ``(message, reason)`` pairs to the queue's dead-letter topic and waits for PUBACKs.
DeadLetter = Callable[[str, Sequence[tuple[Message, str]]], None]
#: Acknowledges packet ``mid`` of connection ``generation`` (see :class:`Session`).
Ack = Callable[[int, int], None]
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
    #: What an inline delivery raised, for the caller's thread to raise.
    _failure: BaseException | None = field(default=None, init=False, repr=False)
    #: Held while an inline delivery is handled, so the caller returns only after it.
    _busy: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    #: Whether arrivals are settled on the network thread now (changed with ``_busy`` held).
    _inline: bool = field(default=False, init=False, repr=False)

    def done(self) -> bool:
        """True once the caller asked to stop or the plugin disconnects."""
        return self.stop.is_set() or self.closing.is_set()

    def run(self) -> None:
        """Consume until stopped.

        Raises:
            ServiceUnavailableError: The broker stayed away longer than ``reconnect_timeout``.
        """
        while not self.done():
            self._check_connection()
            batch = self._collect()
            if batch and self._handle(batch):
                self._pause(_REQUEUE_PAUSE)

    def run_inline(self) -> None:
        """Consume until stopped, settling the messages on the network thread as they arrive.

        Raises:
            ServiceUnavailableError: The broker stayed away longer than ``reconnect_timeout``.
            BaseException: What the handler raised (its message was given back).
        """
        self._go_inline()
        try:
            while not self.done():
                self._raise_failure()
                self._check_connection()
                if self._inline:
                    if self.session.waiting():  # waiting, with no arrival to settle them
                        self._drain()
                    self._pause(_POLL)
                    continue
                batch = self._collect()  # after a requeue: one at a time, paced, in order
                if not batch:
                    self._go_inline()
                elif self._handle(batch):
                    self._pause(_REQUEUE_PAUSE)
        finally:
            with self._busy:  # a delivery under way is settled before the caller goes on
                self._leave_inline()
        self._raise_failure()

    def _go_inline(self) -> None:
        with self._busy:
            self._inline = True
            self.session.deliver_inline(self._arrived)

    def _leave_inline(self) -> None:
        """Send arrivals to the session's queue again (called with ``_busy`` held)."""
        self._inline = False
        self.session.deliver_inline(None)

    def _arrived(self, message: Message, mid: int, generation: int, error: str | None) -> None:
        """Settle an arrival on the network thread, after the messages waiting before it."""
        with self._busy:
            if self._inline and not self.done() and not self.session.waiting():
                self._settle_inline(message, mid, generation, error, self.session.ack_arrival)
            else:
                self.session.push(Delivery(message, mid, generation, error))
                self._drain_held(self.session.ack_arrival)

    def _drain(self) -> None:
        """Settle what waits in the session (on the caller's thread: no arrival will)."""
        with self._busy:
            self._drain_held(self.session.ack_one)

    def _drain_held(self, ack: Ack) -> None:
        """Settle what waits, oldest first, while inline delivery is on (``_busy`` held)."""
        while self._inline and not self.done():
            delivery = self.session.take(0.0)
            if delivery is None:
                return
            self._settle_inline(*delivery, ack)

    def _settle_inline(
        self, message: Message, mid: int, generation: int, error: str | None, ack: Ack
    ) -> None:
        """Handle and settle one delivery, given by its fields (``_busy`` held).

        The usual message is handled, acked with ``ack(mid, generation)`` and forgotten without
        a :class:`Delivery` ever being built. A requeue or an error turns inline delivery off;
        the caller's thread takes over (and raises the error, within ``_POLL``).
        """
        try:
            if error is not None:
                requeued = self._handle([Delivery(message, mid, generation, error)])
            else:
                try:
                    outcome = settle(self.handler, (message,), max_bytes=self.max_message_bytes)
                except BaseException:
                    self.session.give_back([Delivery(message, mid, generation)])
                    raise
                if outcome.ack:  # one message: acked means neither dead nor requeued
                    ack(mid, generation)
                    return
                delivery = Delivery(message, mid, generation)
                requeued = self._carry_out([delivery], [0], {}, outcome)
        except BaseException as exc:
            self._leave_inline()
            self._failure = exc
            return
        if requeued:
            self._leave_inline()  # the caller's thread retries it, paced

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _check_connection(self) -> None:
        down = self.session.down_for()
        if down > self.reconnect_timeout:
            raise ServiceUnavailableError(
                f"{self.where}: queue {self.session.queue!r}: the broker has been"
                f" unreachable for {down:.0f}s (reconnect_timeout {self.reconnect_timeout}s)."
                " Check the broker; the messages wait there for this hub's session."
            )

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
        return self._carry_out(batch, keep, unmapped, outcome)

    def _carry_out(
        self,
        batch: list[Delivery],
        keep: list[int],
        unmapped: dict[int, str],
        outcome: Settlement,
    ) -> bool:
        """Dead-letter, acknowledge and give back as ``outcome`` says; True on a requeue."""
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
