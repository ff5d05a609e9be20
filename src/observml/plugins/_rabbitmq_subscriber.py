"""The RabbitMQ plugin's subscriptions: one connection and one I/O thread serve every queue.

``consume`` holds a connection and two threads per queue. A :class:`Subscriber` holds one
connection and one thread for all the plugin's subscriptions: each subscription is a channel
of its own on that connection (``basic_qos`` bounds what it holds, ``basic_consume`` feeds its
:class:`~observml.plugins.subscriptions.Lane`), its handlers run on the subscriber's executor,
and the I/O thread applies their settlements with the queue's
:class:`~observml.plugins._rabbitmq_settle.Settler`, as a ``consume`` call would. Dead letters
and copies are published on the connection's one confirm channel: the I/O thread publishes
one settlement at a time and waits for its confirms, so a confirm channel per subscription
would only spend channels (RabbitMQ allows 2047 per connection by default).

A channel is a subscription's unit of failure: a crashed handler closes its channel (the broker
redelivers the batch in hand, flagged), a channel the broker refuses for good (403, 406) ends
that subscription with the plugin's error, and the others carry on. A lost connection takes
every channel with it: each subscription reports ``reconnecting: ...`` and forgets what it
held (the broker redelivers it), and once the connection is back every live subscription
declares its queue and consumes again. A batch still in hand from the old connection is never
acked on the new one: deliveries carry the generation of the channel that delivered them.

Why this module is long: it is one state machine (open, serve, wind down, reconnect) over
every subscription's channel, and splitting its steps apart would scatter the rules that tie
them together (which generation may be acked, what is handed back, when a subscription ends).
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from pika.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    ChannelClosedByBroker,
    ConsumerCancelled,
    NoFreeChannels,
)

from observml.errors import ObservMLError
from observml.plugins._rabbitmq_link import PERMANENT_CODES, POLL, Link, Stopped, describe, noop
from observml.plugins._rabbitmq_settle import Broker, Delivery, Settler
from observml.plugins.datastream import BatchHandler
from observml.plugins.subscriptions import Handle, new_handle

__all__ = ["Subscriber"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Feed:
    """One subscription on the subscriber's connection (the I/O thread's state of it)."""

    handle: Handle[Delivery]
    settler: Settler
    channel: Any = None  # None while the connection is down
    consumer_tag: str | None = None
    generation: int = 0  # of the channel; deliveries of another one are never acked on it
    closed_by: BaseException | None = None  # the broker closed the channel (or cancelled)
    reopening: bool = False  # a failure now ends the subscription instead of reopening it
    stop_by: float | None = None  # a cancelled subscription waits for its handler until then


class Subscriber:
    """Every subscription of one plugin: one connection, one I/O thread, a channel per queue.

    The thread starts with the first subscription and ends, closing the connection, when the
    last one has ended or the plugin disconnects (``broker.closing``).

    Args:
        broker: The plugin's settings and how it talks to the broker.
        tag: The plugin's tag, naming the thread.
    """

    def __init__(self, broker: Broker, tag: str) -> None:
        self._broker = broker
        self._tag = tag
        self._lock = threading.Lock()
        self._pending: list[_Feed] = []  # subscribed, not yet seen by the I/O thread
        self._accepting = True
        self._thread: threading.Thread | None = None
        self._connection: Any = None  # what wake() schedules on; None while down
        self._wake_pending = False
        self._woken = threading.Event()  # wakes the waits between reconnection attempts
        # -- the I/O thread only ---------------------------------------------------------------
        self._feeds: list[_Feed] = []
        self._link: Link | None = None
        self._outage: str | None = None
        self._generations = itertools.count(1)

    def subscribe(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        executor: Executor,
        batch_size: int,
        max_wait: float,
        prefetch: int,
    ) -> Handle[Delivery] | None:
        """Add a subscription; ``None`` once this subscriber stopped (the plugin makes another)."""
        broker = self._broker
        handle: Handle[Delivery] = new_handle(
            queue,
            handler,
            executor,
            batch_size=batch_size,
            max_wait=max_wait,
            max_bytes=broker.max_message_bytes,
            prefetch=prefetch,
            wake=self.wake,
            shutdown_timeout=broker.shutdown_timeout,
        )
        with self._lock:
            if not self._accepting or broker.closing.is_set():
                return None
            self._pending.append(_Feed(handle, Settler(broker, queue)))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"observml-rabbitmq-subscriber[{self._tag}]", daemon=True
                )
                self._thread.start()
        self.wake()
        return handle

    def wake(self) -> None:
        """Make the I/O thread look at every subscription now (thread-safe)."""
        self._woken.set()
        with self._lock:
            connection = self._connection
            if self._wake_pending or connection is None:
                return
            self._wake_pending = True
        try:
            connection.add_callback_threadsafe(noop)
        except AMQPConnectionError:
            pass  # closed already: the loop is moving on anyway

    # -- the I/O thread --------------------------------------------------------------------
    def _run(self) -> None:
        error = "the subscriber stopped"
        try:
            self._connect_and_serve()
        except ObservMLError as exc:  # the broker stayed away past reconnect_timeout, or login
            error = str(exc)
        except Exception as exc:  # a bug: end every subscription saying so, never hang them
            logger.exception("%s: the subscriber failed", self._broker.where)
            error = f"{self._broker.where}: the subscriber failed ({describe(exc, ())})"
        finally:
            with self._lock:
                self._accepting = False
                self._connection = None
                left, self._pending = [*self._feeds, *self._pending], []
            self._feeds = []
            for feed in left:
                feed.handle.end(error)

    def _connect_and_serve(self) -> None:
        first = True
        while True:
            try:
                link = self._broker.connect("subscriber", first=first, sleep=self._sleep)
            except Stopped:
                return
            first = False
            self._link = link
            try:
                self._serve(link)
                return
            except (AMQPConnectionError, AMQPChannelError) as exc:
                if isinstance(exc, AMQPChannelError) and link.is_open:
                    raise  # a channel error _guarded let through is a bug, not a lost connection
                self._lost(exc)
            finally:
                with self._lock:
                    self._connection = None
                self._link = None
                link.close()

    def _serve(self, link: Link) -> None:
        """Consume every subscription's queue until none is left."""
        with self._lock:
            self._connection = link.connection
        self._outage = None
        for feed in list(self._feeds):  # after a reconnect: declare and consume again
            self._guarded(feed, self._open)
        while not self._idle():
            timeout = self._pump_all(online=True)
            if self._feeds:
                link.connection.process_data_events(time_limit=timeout)

    def _pump_all(self, *, online: bool) -> float:
        """Take new subscriptions in, serve each one; return seconds until one is due."""
        with self._lock:
            self._wake_pending = False
            adopted, self._pending = self._pending, []
        self._feeds.extend(adopted)
        closing = self._broker.closing.is_set()
        timeout = POLL
        for feed in list(self._feeds):
            if closing and not feed.handle.cancelling.is_set():
                feed.handle.report("disconnected")
                feed.handle.cancelling.set()
            if feed in adopted:
                if online:
                    self._guarded(feed, self._open)
                elif self._outage:
                    feed.handle.report(self._outage)
            due = self._guarded(feed, self._pump)
            if due is not None:
                timeout = min(timeout, due)
        return max(timeout, 0.0)

    def _idle(self) -> bool:
        """Stop taking subscriptions and say so when none is live or waiting."""
        with self._lock:
            if self._feeds or self._pending:
                return False
            self._accepting = False
            return True

    def _sleep(self, seconds: float) -> None:
        """Wait between connection attempts, ending the subscriptions that may end meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            self._woken.clear()
            self._pump_all(online=False)
            if self._idle():
                raise Stopped
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._woken.wait(min(remaining, POLL))

    def _lost(self, exc: BaseException) -> None:
        """The connection is gone with every channel: forget what they held, report it."""
        reason = describe(exc, self._broker.secrets)
        logger.warning(
            "%s: the subscriber lost its connection (%s); reconnecting %d subscription(s)",
            self._broker.where,
            reason,
            len(self._feeds),
        )
        self._outage = f"reconnecting: {reason}"
        for feed in self._feeds:
            feed.channel, feed.consumer_tag, feed.generation = None, None, 0
            feed.closed_by = None  # the channel went with the connection, for that reason
            feed.handle.lane.forget()
            feed.settler.forget()
            feed.handle.report(self._outage)

    # -- one subscription ------------------------------------------------------------------
    def _guarded(self, feed: _Feed, step: Callable[[_Feed], float | None]) -> float | None:
        """Run ``step`` for ``feed``; what fails on its channel ends or reopens it alone."""
        queue = feed.handle.queue
        try:
            return step(feed)
        except ObservMLError as exc:  # a refused confirm, a queue that cannot be used
            self._end(feed, str(exc), hand_back=False)
        except NoFreeChannels:
            self._end(
                feed,
                f"{self._broker.where}: no free channel on the subscriber connection for"
                f" {queue!r}: the broker's channel_max is reached. Subscribe fewer queues"
                " through one plugin, or raise channel_max in rabbitmq.conf.",
                hand_back=False,
            )
        except AMQPChannelError as exc:
            if self._link is None or not self._link.is_open:
                raise  # the connection went with it: reconnect
            permanent = isinstance(exc, ChannelClosedByBroker) and exc.reply_code in PERMANENT_CODES
            if permanent or feed.reopening:
                error = self._broker.channel_error(exc, f"consuming {queue!r}")
                self._end(feed, str(error), hand_back=False)
            else:  # e.g. the queue was deleted: declare it again on a new channel
                logger.warning(
                    "%s: the channel of the subscription to %r closed (%s); reopening it",
                    self._broker.where,
                    queue,
                    describe(exc, self._broker.secrets),
                )
                self._close(feed, hand_back=False)
                feed.handle.lane.forget()
                feed.settler.forget()
                feed.reopening = True
                self._guarded(feed, self._open)
        return None

    def _open(self, feed: _Feed) -> None:
        """Declare the queue and consume it on a channel of its own."""
        if feed.handle.cancelling.is_set() or self._link is None:
            return
        link, queue = self._link, feed.handle.queue
        self._broker.declare(link, queue)
        channel = link.connection.channel()
        generation = next(self._generations)
        feed.channel, feed.generation, feed.closed_by = channel, generation, None
        # pika reports a broker's Channel.Close only to the channel's own callbacks
        channel._impl.add_on_close_callback(functools.partial(self._on_close, feed, generation))
        channel.add_on_cancel_callback(functools.partial(self._on_cancel, feed, generation))
        channel.basic_qos(prefetch_count=feed.handle.prefetch)
        feed.consumer_tag = channel.basic_consume(queue, functools.partial(self._on_message, feed))
        feed.reopening = False
        feed.handle.report(None)

    def _on_message(
        self, feed: _Feed, _channel: Any, method: Any, properties: Any, body: bytes
    ) -> None:
        delivery = feed.settler.receive(feed.generation, method, properties, body)
        if delivery is not None:  # else redelivered: counted by the next apply
            feed.handle.lane.add(delivery, delivery.message, alone=delivery.returns > 0)

    def _on_close(self, feed: _Feed, generation: int, _channel: Any, reason: Exception) -> None:
        if generation == feed.generation and isinstance(reason, ChannelClosedByBroker):
            feed.closed_by = reason

    def _on_cancel(self, feed: _Feed, generation: int, _frame: Any) -> None:
        if generation == feed.generation:  # queue deleted, node failed over
            queue = feed.handle.queue
            feed.closed_by = ConsumerCancelled(f"the broker cancelled the consumer of {queue!r}")

    def _pump(self, feed: _Feed) -> float | None:
        """Serve one subscription; return seconds until it is due again (``None``: on a wake)."""
        if feed.closed_by is not None:
            closed, feed.closed_by = feed.closed_by, None
            raise closed  # _guarded ends the subscription or reopens its channel
        handle, lane = feed.handle, feed.handle.lane
        busy = lane.busy  # read first: a batch settled before this is in settled() below
        entries = lane.settled()
        if feed.channel is not None and self._link is not None:
            current = [
                (batch, out) for batch, out in entries if batch[0].generation == feed.generation
            ]
            feed.settler.apply(self._link, feed.channel, current)
        if lane.crash is not None:  # its batch comes back redelivered once the channel closes
            exc, _ = lane.crash
            self._end(feed, f"the handler crashed: {type(exc).__name__}: {exc}", hand_back=True)
            return None
        if handle.cancelling.is_set():
            return self._wind_down(feed, busy=busy)
        try:
            return lane.dispatch()
        except RuntimeError as exc:  # the executor was shut down
            self._end(
                feed,
                f"the executor refused the batch ({exc}); subscribe again with a running executor",
                hand_back=True,
            )
            return None

    def _wind_down(self, feed: _Feed, *, busy: bool) -> float | None:
        """Stop consuming; once the batch in hand settled, hand back the rest and end.

        ``busy``: a batch was in hand before this turn took the settlements in.
        """
        now = time.monotonic()
        if feed.stop_by is None:
            feed.stop_by = now + self._broker.shutdown_timeout
            if feed.channel is not None and feed.consumer_tag is not None:
                feed.channel.basic_cancel(feed.consumer_tag)  # nothing more arrives
                feed.consumer_tag = None
        if not busy:
            self._end(feed, None, hand_back=True)
        elif now >= feed.stop_by:
            self._end(
                feed,
                f"the handler was still running {self._broker.shutdown_timeout:g}s after the"
                " subscription was cancelled; its batch went back to the queue (redelivered)",
                hand_back=True,
            )
        else:
            return feed.stop_by - now
        return None

    def _end(self, feed: _Feed, error: str | None, *, hand_back: bool) -> None:
        """Close the subscription's channel (what it held goes back) and end it."""
        if error is not None and not error.startswith("the handler crashed"):
            logger.warning(
                "%s: the subscription to %r ended: %s", self._broker.where, feed.handle.queue, error
            )
        self._close(feed, hand_back=hand_back)
        if feed in self._feeds:
            self._feeds.remove(feed)
        feed.handle.end(error)

    def _close(self, feed: _Feed, *, hand_back: bool) -> None:
        """Close the feed's channel; ``hand_back`` returns what no handler took, uncounted.

        Anything else it holds unacked (the batch in hand of a crashed handler) the broker
        puts back flagged ``redelivered``.
        """
        channel, feed.channel, feed.consumer_tag = feed.channel, None, None
        left = [d for d in feed.handle.lane.take_unhanded() if d.generation == feed.generation]
        if channel is None or not channel.is_open or self._link is None:
            return
        try:
            if hand_back:
                feed.settler.hand_back(self._link, channel, left)
        finally:  # even if handing back failed: what the channel holds goes back with it
            try:
                channel.close()
            except AMQPChannelError:  # closed meanwhile: the broker has put everything back
                logger.debug("closing the channel of %r failed", feed.handle.queue, exc_info=True)
