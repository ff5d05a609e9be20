"""Subscriptions: many queues consumed through one plugin, their handlers run on a shared pool.

``consume_batch`` holds its caller's thread (on RabbitMQ also a connection, on the local queue
a lease-keeping thread) for as long as it consumes, so a hub streaming N experiments that way
holds N of each. A datastream plugin that also implements :class:`SupportsSubscribe` serves
every subscription from one I/O side of its own (one connection with a channel per queue, or
one poller) and runs the handlers on an :class:`~concurrent.futures.Executor` the caller owns,
so threads and connections stay flat however many queues are consumed.

A subscription keeps ``consume_batch``'s promises: messages are acked only after the handler
returned, the handler's ``{index: reason}`` dead-letters those, ``ServiceUnavailableError``
requeues the batch (and the subscription waits before the next one, backing off up to 5 s),
any other exception dead-letters the batch, a body over ``max_message_bytes`` is dead-lettered
unread. At most one batch of a subscription is in hand at a time, in queue order. A handler
that raises ``BaseException`` (not ``Exception``) ends its subscription as a crash ends a
consumer: its batch comes back redelivered, :attr:`Subscription.error` says why.

:class:`Lane` is the part every implementation shares: one subscription's buffer of received
messages, when its micro-batch is due, the hand-off of the batch to the executor and of its
:class:`~observml.plugins.datastream.Settlement` back to the I/O side, which applies it in the
plugin's own terms (acks on a channel, a commit of leases, ...).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Final, Generic, Protocol, TypeVar, runtime_checkable

from observml.plugins.datastream import BatchHandler, Message, Settlement, settle

__all__ = ["MAX_BACKOFF", "Handle", "Lane", "Subscription", "SupportsSubscribe", "new_handle"]

#: Longest pause of a subscription whose handler keeps finding its service down.
MAX_BACKOFF: Final = 5.0

T = TypeVar("T")


class Subscription(Protocol):
    """A queue being consumed on the subscriber's behalf until :meth:`cancel`."""

    @property
    def queue(self) -> str:
        """The queue consumed."""
        ...

    @property
    def active(self) -> bool:
        """``False`` once cancelled, ended by a crashing handler or by ``disconnect()``."""
        ...

    @property
    def error(self) -> str | None:
        """Why the subscription is not receiving right now (e.g. reconnecting), else ``None``."""
        ...

    def cancel(self, timeout: float | None = None) -> None:
        """Stop receiving; wait up to ``timeout`` s for the batch in hand to be settled.

        Messages received but never handed to the handler go back to the queue unchanged
        (not counted as redeliveries). Idempotent; safe from the handler's own thread (it then
        does not wait for itself). ``None`` waits the plugin's ``shutdown_timeout``.
        """
        ...


@runtime_checkable
class SupportsSubscribe(Protocol):
    """A datastream plugin that consumes many queues without a thread per queue."""

    def subscribe(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        executor: Executor,
        batch_size: int = 100,
        max_wait: float = 0.5,
        prefetch: int | None = None,
    ) -> Subscription:
        """Start handing ``queue``'s messages to ``handler`` in micro-batches; return at once.

        Declares the queue (as ``create_queue``). Handlers run on ``executor``, one batch of
        this subscription at a time; a batch is handed over when it holds ``batch_size``
        messages or ``max_wait`` s passed since its first one. ``prefetch`` bounds the
        messages held (``None``: the plugin's setting). Connection losses are the plugin's
        to ride out (:attr:`Subscription.error` says so meanwhile); ``disconnect()`` ends
        every subscription.

        Raises:
            ServiceUnavailableError: The plugin is not connected.
        """
        ...


class Lane(Generic[T]):
    """One subscription's batches: buffered on the I/O side, handled on the executor.

    The I/O side :meth:`add`-s each received message with its plugin token (a delivery tag, a
    lease), calls :meth:`dispatch` to hand a due batch to the executor, and applies what
    :meth:`settled` returns. ``wake`` is called from the executor's thread when a settlement
    is ready, so the I/O side need not poll for it.

    Args:
        handler: The subscriber's batch handler.
        executor: Where handlers run.
        batch_size: Most messages per batch.
        max_wait: Seconds a batch waits for more after its first message.
        max_bytes: Bodies larger than this are dead-lettered unread (``settle``'s rule).
        wake: Called (from the executor's thread) when a settlement is ready.
    """

    def __init__(
        self,
        handler: BatchHandler,
        executor: Executor,
        *,
        batch_size: int,
        max_wait: float,
        max_bytes: int | None,
        wake: Callable[[], None],
    ) -> None:
        self._handler = handler
        self._executor = executor
        self.batch_size = max(1, batch_size)
        self._max_wait = max_wait
        self._max_bytes = max_bytes
        self._wake = wake
        self._lock = threading.Lock()
        #: ``(token, message, alone, arrived)`` of each message received, not yet handed over.
        self._buffer: collections.deque[tuple[T, Message, bool, float]] = collections.deque()
        self._in_hand: list[T] | None = None
        self._done: list[tuple[list[T], Settlement]] = []
        self._paused_until = 0.0
        self._backoff = 0.0
        self._handling: threading.Thread | None = None
        #: The ``BaseException`` a handler raised, with the tokens of its batch; set once.
        self.crash: tuple[BaseException, list[T]] | None = None

    # -- the I/O side ----------------------------------------------------------------------
    def add(self, token: T, message: Message, *, alone: bool = False) -> None:
        """Buffer a received message; ``alone`` hands it over in a batch of its own.

        ``alone`` is for a message whose earlier consumers died holding it: if it kills this
        handler too, it takes no neighbours along.
        """
        with self._lock:
            self._buffer.append((token, message, alone, time.monotonic()))

    @property
    def held(self) -> int:
        """Messages buffered or in hand (what counts against ``prefetch``)."""
        with self._lock:
            return len(self._buffer) + (len(self._in_hand) if self._in_hand else 0)

    @property
    def busy(self) -> bool:
        """Whether a batch is in hand (handed to the executor, not yet settled and taken)."""
        with self._lock:
            return self._in_hand is not None

    def dispatch(self, now: float | None = None) -> float | None:
        """Hand the due batch to the executor, if any and none is in hand.

        Returns:
            Seconds until a batch may next be due (``None``: nothing buffered or one in hand;
            the I/O side is woken when that changes).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._in_hand is not None or not self._buffer or self.crash is not None:
                return None
            if now < self._paused_until:
                return self._paused_until - now
            _, _, head_alone, arrived = self._buffer[0]
            due_at = arrived + self._max_wait
            if not head_alone and len(self._buffer) < self.batch_size and now < due_at:
                return due_at - now
            batch = [self._buffer.popleft()]
            while not head_alone and self._buffer and len(batch) < self.batch_size:
                if self._buffer[0][2]:
                    break
                batch.append(self._buffer.popleft())
            tokens = [item[0] for item in batch]
            self._in_hand = tokens
        self._executor.submit(self._run, tokens, [item[1] for item in batch])
        return None

    def settled(self) -> list[tuple[list[T], Settlement]]:
        """Take the settlements of finished batches: ``[(tokens, settlement), ...]``."""
        with self._lock:
            done, self._done = self._done, []
            return done

    def take_unhanded(self) -> list[T]:
        """Empty the buffer; return the tokens no handler saw (in arrival order)."""
        with self._lock:
            tokens = [item[0] for item in self._buffer]
            self._buffer.clear()
            return tokens

    def forget(self) -> None:
        """Drop everything received (the connection that delivered it is gone)."""
        with self._lock:
            self._buffer.clear()
            self._done.clear()

    def handling_here(self) -> bool:
        """Whether the calling thread is running this lane's handler right now."""
        with self._lock:
            return self._handling is threading.current_thread()

    # -- the executor's side ---------------------------------------------------------------
    def _run(self, tokens: list[T], messages: list[Message]) -> None:
        with self._lock:
            self._handling = threading.current_thread()
        try:
            outcome = settle(self._handler, messages, max_bytes=self._max_bytes)
        except BaseException as exc:  # a crash: it ends the subscription (the I/O side sees it)
            with self._lock:
                self.crash = (exc, tokens)
                self._in_hand = None
                self._handling = None
            self._wake()
            return
        with self._lock:
            self._done.append((tokens, outcome))
            self._in_hand = None
            self._handling = None
            if outcome.requeue:  # the handler's service is down: do not spin on it
                self._backoff = min(max(self._backoff * 2, 0.1), MAX_BACKOFF)
                self._paused_until = time.monotonic() + self._backoff
            else:
                self._backoff = 0.0
        self._wake()


class Handle(Generic[T]):
    """A plugin's :class:`Subscription`: what the subscriber holds, and the I/O side's flags.

    The subscriber calls :meth:`cancel`; the plugin's I/O side sees :attr:`cancelling`,
    settles what is in hand, gives back the rest and calls :meth:`end`.

    Args:
        queue: The queue consumed.
        lane: The subscription's batches.
        prefetch: Most messages held (buffered or in hand).
        wake: Wakes the plugin's I/O side (thread-safe).
        shutdown_timeout: What :meth:`cancel` waits by default.
    """

    def __init__(
        self,
        queue: str,
        lane: Lane[T],
        *,
        prefetch: int,
        wake: Callable[[], None],
        shutdown_timeout: float,
    ) -> None:
        self._queue = queue
        self.lane = lane
        self.prefetch = max(prefetch, lane.batch_size)
        self._wake = wake
        self._shutdown_timeout = shutdown_timeout
        self.cancelling = threading.Event()
        self._ended = threading.Event()
        self._error: str | None = None

    def __repr__(self) -> str:
        state = "active" if self.active else "ended"
        return f"<Subscription {self._queue!r} {state}{f': {self._error}' if self._error else ''}>"

    @property
    def queue(self) -> str:
        """The queue consumed."""
        return self._queue

    @property
    def active(self) -> bool:
        """``False`` once ended (cancelled, crashed or disconnected)."""
        return not self._ended.is_set()

    @property
    def error(self) -> str | None:
        """Why it is not receiving, or ended other than by :meth:`cancel`; else ``None``."""
        return self._error

    @property
    def room(self) -> int:
        """How many more messages the I/O side may receive for this subscription."""
        return max(0, self.prefetch - self.lane.held)

    def cancel(self, timeout: float | None = None) -> None:
        """Stop receiving and wait for the batch in hand (see :class:`Subscription`)."""
        self.cancelling.set()
        self._wake()
        if not self.lane.handling_here():
            self._ended.wait(self._shutdown_timeout if timeout is None else timeout)

    # -- the I/O side ----------------------------------------------------------------------
    def report(self, error: str | None) -> None:
        """Say why the subscription is not receiving (``None``: it is again)."""
        self._error = error

    def end(self, error: str | None = None) -> None:
        """Mark the subscription ended (``error``: why, when it was not cancelled)."""
        if error is not None:
            self._error = error
        self._ended.set()


def new_handle(
    queue: str,
    handler: BatchHandler,
    executor: Executor,
    *,
    batch_size: int,
    max_wait: float,
    max_bytes: int | None,
    prefetch: int,
    wake: Callable[[], None],
    shutdown_timeout: float,
) -> Handle[T]:
    """Make a subscription's :class:`Lane` and its :class:`Handle`, both waking the I/O side.

    What every plugin's ``subscribe`` does before it hands the handle to its I/O side (the
    arguments are those of :class:`Lane` and :class:`Handle`).
    """
    lane: Lane[T] = Lane(
        handler, executor, batch_size=batch_size, max_wait=max_wait, max_bytes=max_bytes, wake=wake
    )
    return Handle(queue, lane, prefetch=prefetch, wake=wake, shutdown_timeout=shutdown_timeout)
