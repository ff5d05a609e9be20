"""The consuming side of the RabbitMQ plugin: one :class:`Consumer` per ``consume`` call.

How deliveries are settled (returns counted, dead letters, requeued copies, the hand-back) is
:class:`~observml.plugins._rabbitmq_settle.Settler`'s, shared with ``subscribe``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from pika.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    ChannelClosedByBroker,
)

from observml.plugins._rabbitmq_link import (
    PERMANENT_CODES,
    POLL,
    Link,
    Stopped,
    describe,
    noop,
)
from observml.plugins._rabbitmq_settle import Broker, Delivery, Settler
from observml.plugins.datastream import BatchHandler, Settlement, settle

__all__ = ["Consumer"]

logger = logging.getLogger(__name__)


class Consumer:
    """One ``consume`` call: the calling thread drives the connection, a worker runs handlers.

    The worker posts each batch's :class:`Settlement`; the connection's thread applies it with
    the queue's :class:`Settler` (returns counted, dead letters and requeued copies confirmed,
    then one ``multiple`` ack for the run), woken through ``add_callback_threadsafe``.

    A message with returns is handed to the handler alone, so a message that crashes the
    handler takes no batch neighbours with it; on a clean stop or a crash the deliveries no
    handler took are handed back uncounted. A process that dies still charges every message it
    held (up to ``prefetch``), as RabbitMQ's own delivery limit does.
    """

    def __init__(
        self,
        broker: Broker,
        queue: str,
        handler: BatchHandler,
        *,
        batch_size: int,
        max_wait: float,
        prefetch: int,
        stop: threading.Event | None,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handler = handler
        self._batch_size = max(batch_size, 1)
        self._max_wait = max_wait
        self._prefetch = max(prefetch, self._batch_size)
        self._stops = (broker.closing,) if stop is None else (broker.closing, stop)
        self._cond = threading.Condition()
        self._buffer: collections.deque[Delivery] = collections.deque()
        self._settler = Settler(broker, queue)  # the connection's thread only
        self._wanted = 1  # deliveries the waiting worker needs before it is worth waking
        self._settled: list[tuple[list[Delivery], Settlement]] = []
        self._generation = 0
        self._halt = False
        self._wake_pending = False
        self._crash: BaseException | None = None
        self._connection: Any = None
        self._backoff = 0.0

    # -- the calling thread: the connection ---------------------------------------------------
    def run(self) -> None:
        worker = threading.Thread(
            target=self._work, name=f"observml-consumer[{self._queue}]", daemon=True
        )
        worker.start()
        try:
            self._connect_and_serve(worker)
        finally:
            with self._cond:
                self._halt = True
                self._cond.notify_all()
            worker.join(timeout=self._broker.shutdown_timeout)
        if self._crash is not None:
            raise self._crash

    def wake(self) -> None:
        """Make the connection's loop check for stop requests now (thread-safe)."""
        connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(noop)
            except AMQPConnectionError:
                pass  # closed already: the loop is ending anyway

    def _stopping(self) -> bool:
        return self._crash is not None or any(event.is_set() for event in self._stops)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.1))
        raise Stopped

    def _connect_and_serve(self, worker: threading.Thread) -> None:
        broker, first = self._broker, True
        while not self._stopping():
            try:
                link = broker.connect(f"consumer {self._queue}", first=first, sleep=self._sleep)
            except Stopped:
                return
            first = False
            try:
                self._serve(link, worker)
                return
            except (AMQPConnectionError, AMQPChannelError) as exc:
                if isinstance(exc, ChannelClosedByBroker) and exc.reply_code in PERMANENT_CODES:
                    raise broker.channel_error(exc, f"consuming {self._queue!r}") from exc
                logger.warning(
                    "%s: consumer of %r lost its connection (%s); reconnecting",
                    broker.where,
                    self._queue,
                    describe(exc, broker.secrets),
                )
                with self._cond:  # unacked deliveries come back from the broker
                    self._generation += 1
                    self._buffer.clear()
                self._settler.forget()
            finally:
                self._connection = None
                link.close()

    def _serve(self, link: Link, worker: threading.Thread) -> None:
        connection = link.connection
        self._broker.declare(link, self._queue)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self._prefetch)
        cancelled: list[object] = []
        channel.add_on_cancel_callback(cancelled.append)  # queue deleted, node failed over
        consumer_tag = channel.basic_consume(self._queue, self._on_message)
        self._connection = connection
        while not self._stopping():
            connection.process_data_events(time_limit=POLL)
            self._apply(link, channel)
            if cancelled:
                raise AMQPChannelError(f"the broker cancelled the consumer of {self._queue!r}")
        channel.basic_cancel(consumer_tag)
        if self._crash is None:  # stop cleanly: let the running handler finish and ack it
            with self._cond:
                self._halt = True
                self._cond.notify_all()
            deadline = time.monotonic() + self._broker.shutdown_timeout
            while worker.is_alive() and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.05)
                self._apply(link, channel)
        self._apply(link, channel)
        self._hand_back(link, channel)  # after a crash too: only the batch in hand died with it

    def _hand_back(self, link: Link, channel: Any) -> None:
        """Return the deliveries no handler took, as they were (see :meth:`Settler.hand_back`)."""
        with self._cond:
            left = [d for d in self._buffer if d.generation == self._generation]
            self._buffer.clear()
        self._settler.hand_back(link, channel, left)

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        delivery = self._settler.receive(self._generation, method, properties, body)
        if delivery is None:  # redelivered: counted by the next ``_apply``
            return
        with self._cond:
            self._buffer.append(delivery)
            if len(self._buffer) >= self._wanted:  # not once per message: a batch at a time
                self._cond.notify()

    def _apply(self, link: Link, channel: Any) -> None:
        with self._cond:
            entries, self._settled = self._settled, []
            self._wake_pending = False
            generation = self._generation
        current = [(batch, out) for batch, out in entries if batch[0].generation == generation]
        self._settler.apply(link, channel, current)

    # -- the worker thread: the handler ---------------------------------------------------
    def _work(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                outcome = settle(
                    self._handler,
                    [delivery.message for delivery in batch],
                    max_bytes=self._broker.max_message_bytes,
                )
                self._post(batch, outcome)
                if outcome.requeue:  # the handler's service is down: do not spin on it
                    self._backoff = min(max(self._backoff * 2, 0.1), 5.0)
                    with self._cond:
                        self._cond.wait_for(lambda: self._halt, timeout=self._backoff)
                else:
                    self._backoff = 0.0
        except BaseException as exc:  # a crash: nothing is acked, it propagates
            self._crash = exc
            self.wake()

    def _next_batch(self) -> list[Delivery] | None:
        with self._cond:
            while True:
                while not self._buffer:
                    if self._halt or self._stopping():
                        return None
                    self._wanted = 1
                    self._cond.wait(0.5)
                if self._halt or self._stopping():
                    return None
                batch = [self._buffer.popleft()]
                deadline = time.monotonic() + self._max_wait
                # A message whose consumer died while holding it is handled in a batch of its
                # own: if it kills this consumer too, it does not take its neighbours along.
                while len(batch) < self._batch_size and not self._halt and not batch[0].returns:
                    if self._buffer:
                        if self._buffer[0].returns:
                            break
                        batch.append(self._buffer.popleft())
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wanted = self._batch_size - len(batch)
                    self._cond.wait(remaining)
                self._wanted = 1
                current = [d for d in batch if d.generation == self._generation]
                if current:
                    return current

    def _post(self, batch: list[Delivery], outcome: Settlement) -> None:
        with self._cond:
            self._settled.append((batch, outcome))
            if self._wake_pending:
                return
            self._wake_pending = True
        self.wake()
