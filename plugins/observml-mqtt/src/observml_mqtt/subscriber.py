"""The plugin's subscriptions: every queue's session served by the one driver thread.

Each subscription is a queue's :class:`~observml_mqtt.session.Session` (its own MQTT connection
and durable session) with a :class:`~observml.plugins.subscriptions.Lane`. The plugin's shared
driver thread reads every session; once per turn it calls :meth:`Subscriber.pump`, which, for
each subscription: applies the settlements of finished batches (dead letters published with
their PUBACKs, then the acks, in the order the messages arrived, as MQTT wants them per
connection), moves received messages from the session into the lane while the subscription
has room (``prefetch``), and hands a due batch to the caller's executor. No subscription has a
thread of its own.

What MQTT decides here:

- A message a handler never saw goes back to the front of its session unchanged when the
  subscription is cancelled (:meth:`Session.put_back`): it is still this hub's, delivered on the
  session's connection and not acknowledged; the next ``consume`` or subscription of the queue
  gets it first, not flagged redelivered. (Only if that connection drops does the broker send
  it again, then flagged ``dup``, as for any unacknowledged message.)
- A requeued batch, and the batch of a crashed handler, go back flagged redelivered
  (:meth:`Session.give_back`), in front of what was waiting.
- A lost connection forgets what the lane held (the broker sends it again); the settlement of a
  batch from the lost connection is dropped, not applied to the new one. Meanwhile
  :attr:`Subscription.error` says ``reconnecting: ...``; a broker away longer than
  ``reconnect_timeout`` ends the subscription.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from observml.errors import ServiceUnavailableError
from observml.plugins.datastream import Message, Settlement
from observml.plugins.subscriptions import Handle
from observml_mqtt.session import Delivery, Session

__all__ = ["Subscriber"]

logger = logging.getLogger(__name__)

#: Publishes ``(message, reason)`` pairs to the queue's dead-letter topic and waits for PUBACKs.
DeadLetter = Callable[[str, Sequence[tuple[Message, str]]], None]


@dataclass(eq=False)
class _Feed:
    """One subscription as the driver thread sees it."""

    handle: Handle[Delivery]
    session: Session
    generation: int
    ended: bool = False  # ended, kept only until its batch in hand settles
    stop_by: float | None = None  # a cancelled subscription waits for its handler until then


class Subscriber:
    """Every subscription of one plugin connection (see the module docstring).

    Args:
        dead_letter: The plugin's dead-lettering.
        closing: Set when the plugin disconnects: every subscription then winds down.
        shutdown_timeout: How long a cancelled subscription waits for its handler.
        reconnect_timeout: How long a subscription waits for a lost broker.
        where: Names the broker in messages.
    """

    def __init__(
        self,
        *,
        dead_letter: DeadLetter,
        closing: threading.Event,
        shutdown_timeout: float,
        reconnect_timeout: float,
        where: str,
    ) -> None:
        self._dead_letter = dead_letter
        self._closing = closing
        self._shutdown_timeout = shutdown_timeout
        self._reconnect_timeout = reconnect_timeout
        self._where = where
        self._lock = threading.Lock()
        self._pending: list[_Feed] = []
        self._feeds: list[_Feed] = []  # changed by the driver thread (and end_all)

    def add(self, handle: Handle[Delivery], session: Session) -> None:
        """Serve ``handle`` from ``session`` from the next turn on (thread-safe)."""
        with self._lock:
            self._pending.append(_Feed(handle, session, session.generation))

    @property
    def live(self) -> int:
        """How many subscriptions have not ended."""
        with self._lock:
            return sum(not f.ended for f in [*self._feeds, *self._pending])

    def serves(self, session: Session) -> bool:
        """Whether a live subscription takes ``session``'s messages."""
        with self._lock:
            feeds = [*self._feeds, *self._pending]
        return any(f.session is session and not f.ended for f in feeds)

    def end_all(self, error: str) -> None:
        """End every subscription now (the plugin closed its sessions)."""
        with self._lock:
            feeds, self._pending = [*self._feeds, *self._pending], []
            self._feeds = []
        for feed in feeds:
            if not feed.ended:
                feed.ended = True
                feed.handle.end(error)

    # -- the driver thread -----------------------------------------------------------------
    def pump(self) -> float | None:
        """Serve every subscription once; return seconds until one is due (``None``: on wake)."""
        with self._lock:
            adopted, self._pending = self._pending, []
            self._feeds.extend(adopted)
        closing = self._closing.is_set()
        due: float | None = None
        for feed in list(self._feeds):
            if closing and not feed.handle.cancelling.is_set():
                feed.handle.report("disconnected")
                feed.handle.cancelling.set()
            try:
                wait = self._pump(feed)
            except Exception as exc:  # a bug: end this subscription saying so, never hang it
                logger.exception("%s: serving the subscription to %r", self._where, feed)
                self._end(feed, f"{self._where}: the subscription failed ({exc!r})")
                wait = None
            if wait is not None:
                due = wait if due is None else min(due, wait)
        return due

    def _pump(self, feed: _Feed) -> float | None:
        handle, lane, session = feed.handle, feed.handle.lane, feed.session
        busy = lane.busy  # read first: a batch settled before this is in settled() below
        generation = session.generation
        for tokens, outcome in lane.settled():
            if tokens[0].generation == generation:  # else the broker sends them again
                self._apply(feed, tokens, outcome)
        if feed.ended:
            if not busy:
                self._drop(feed)
            return None
        if lane.crash is not None:
            exc, tokens = lane.crash
            session.put_back(lane.take_unhanded())
            session.give_back(tokens)  # before the rest, flagged redelivered
            self._end(feed, f"the handler crashed: {type(exc).__name__}: {exc}")
            return None
        if feed.generation != generation:  # the connection dropped: the broker resends
            feed.generation = generation
            lane.forget()
        if handle.cancelling.is_set():
            return self._wind_down(feed, busy=busy)
        down = session.down
        if down is not None:
            handle.report(f"reconnecting: {down}")
            if session.down_for() > self._reconnect_timeout:
                self._end(
                    feed,
                    f"{self._where}: queue {handle.queue!r}: the broker has been unreachable for"
                    f" {session.down_for():.0f}s (reconnect_timeout {self._reconnect_timeout}s);"
                    " subscribe again once it is back (the messages wait there)",
                )
            return 0.5
        if handle.error is not None:
            handle.report(None)
        self._fill(feed)
        try:
            return lane.dispatch()
        except RuntimeError as exc:  # the executor was shut down
            session.put_back(lane.take_unhanded())
            self._end(
                feed,
                f"the executor refused the batch ({exc}); subscribe again with a running executor",
            )
            return None

    def _fill(self, feed: _Feed) -> None:
        """Move received messages into the lane while the subscription has room."""
        handle, lane, session = feed.handle, feed.handle.lane, feed.session
        room = handle.room
        while room > 0:
            delivery = session.take(0.0)
            if delivery is None:
                return
            if delivery.error is not None:  # a mapped topic with a bad value: no handler sees it
                if lane.busy or lane.held:  # settle it in arrival order, after those before it
                    session.put_back([delivery])
                    return
                self._settle(feed, [delivery], dead={0: delivery.error}, acked=[])
                continue
            lane.add(delivery, delivery.message)
            room -= 1

    def _apply(self, feed: _Feed, tokens: list[Delivery], outcome: Settlement) -> None:
        """Carry out a finished batch's settlement."""
        session, lane = feed.session, feed.handle.lane
        dead = {i: str(reason) for i, reason in outcome.dead.items()}
        self._settle(feed, tokens, dead=dead, acked=list(outcome.ack))
        if outcome.requeue:  # in front of what waits, flagged redelivered; the lane backs off
            session.put_back(lane.take_unhanded())
            session.give_back([tokens[i] for i in outcome.requeue])

    def _settle(
        self, feed: _Feed, tokens: list[Delivery], *, dead: dict[int, str], acked: list[int]
    ) -> None:
        """Dead-letter ``dead`` (PUBACKs received), then ack it and ``acked`` in arrival order."""
        session = feed.session
        if dead:
            try:
                self._dead_letter(
                    session.queue,
                    [(tokens[i].message, reason) for i, reason in sorted(dead.items())],
                )
            except ServiceUnavailableError as exc:  # they come back, to be dead-lettered again
                logger.warning("%s", exc)
                session.put_back(feed.handle.lane.take_unhanded())
                session.give_back([tokens[i] for i in sorted(dead)])
                dead = {}
        session.ack([tokens[i] for i in sorted({*dead, *acked})])

    def _wind_down(self, feed: _Feed, *, busy: bool) -> float | None:
        """Once the batch in hand settled, put back what no handler saw and end."""
        now = time.monotonic()
        if feed.stop_by is None:
            feed.stop_by = now + self._shutdown_timeout
        if not busy:
            feed.session.put_back(feed.handle.lane.take_unhanded())
            self._end(feed, None)
        elif now >= feed.stop_by:
            feed.session.put_back(feed.handle.lane.take_unhanded())
            self._end(
                feed,
                f"the handler was still running {self._shutdown_timeout:g}s after the"
                " subscription was cancelled; its batch is settled when it returns",
            )
        else:
            return feed.stop_by - now
        return None

    def _end(self, feed: _Feed, error: str | None) -> None:
        """End the subscription; a batch still in hand is settled when it returns."""
        if error is not None and not error.startswith("the handler crashed"):
            logger.warning(
                "%s: the subscription to %r ended: %s", self._where, feed.handle.queue, error
            )
        feed.ended = True
        if not feed.handle.lane.busy:
            self._drop(feed)
        feed.handle.end(error)

    def _drop(self, feed: _Feed) -> None:
        with self._lock:
            if feed in self._feeds:
                self._feeds.remove(feed)
