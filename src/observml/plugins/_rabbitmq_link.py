"""Connections, channels and publisher confirms of the RabbitMQ plugin (pika).

A :class:`Link` is one connection with its channel and, on demand, a :class:`Confirmer` that
keeps up to ``window`` published messages in flight and raises when the broker nacks or returns
one. The helpers turn pika's frames into :class:`~observml.plugins.datastream.Message` objects
and errors into messages without secrets.

A message the broker hands back (``redelivered``: its consumer died or lost the connection
before settling it) is published again by the consumer with :data:`REDELIVERIES_HEADER` counting
such returns, so the count survives the death of any process; queues need no arguments for it.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pika

from observml.config.redact import mask_text
from observml.plugins.datastream import (
    Message,
    OutgoingMessage,
)

__all__ = [
    "PERMANENT_CODES",
    "POLL",
    "REDELIVERIES_HEADER",
    "Confirmer",
    "Link",
    "Stopped",
    "describe",
    "message_of",
    "noop",
    "properties_of",
    "returns_of",
]

logger = logging.getLogger(__name__)

#: Channel errors a reconnect cannot fix.
PERMANENT_CODES: Final = frozenset({403, 406})
POLL: Final = 0.2  # seconds a consumer's loop waits for I/O before checking stop requests
#: On a copy the consumer published again: how many earlier deliveries of the message ended
#: unsettled. Its presence marks the copy as a redelivery; handlers never see it.
REDELIVERIES_HEADER: Final = "x-observml-redeliveries"


def noop() -> None:
    """Wake a connection's loop (scheduled through ``add_callback_threadsafe``)."""


def describe(exc: BaseException, secrets: tuple[str, ...]) -> str:
    text = str(exc)  # pika's connection errors keep their detail in repr() only
    return mask_text(f"{type(exc).__name__}: {text}" if text else repr(exc), secrets)[:300]


def properties_of(out: OutgoingMessage) -> Any:
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=out.message_id,
        headers=dict(out.headers) if out.headers else None,
        content_type=out.content_type,
        timestamp=int(time.time()),
    )


def message_of(queue: str, method: Any, properties: Any, body: bytes) -> Message:
    headers = dict(properties.headers or {})
    copied = headers.pop(REDELIVERIES_HEADER, None) is not None
    return Message(
        body=bytes(body),
        headers=headers,
        message_id=properties.message_id,
        redelivered=bool(method.redelivered) or copied,
        content_type=properties.content_type,
        queue=queue,
    )


def returns_of(method: Any, properties: Any) -> int:
    """Return how many deliveries of this message ended unsettled, counting this one's past.

    That is the count a copy carries, plus one when the broker flags this delivery
    ``redelivered`` (the delivery before it was not settled).
    """
    counted = (properties.headers or {}).get(REDELIVERIES_HEADER, 0)
    earlier = counted if isinstance(counted, int) and counted > 0 else 0
    return earlier + (1 if method.redelivered else 0)


class Stopped(Exception):
    """A consumer was asked to stop while it waited to reconnect."""


class Confirmer:
    """Publish on one channel in confirm mode with up to ``window`` messages unconfirmed.

    ``BlockingChannel.confirm_delivery()`` waits for every message's confirm in turn (about
    1,000 msg/s here). pika reports confirms per delivery tag only on the asynchronous channel a
    ``BlockingChannel`` wraps (its ``_impl``), so this class publishes there and pumps the
    blocking connection until the broker has confirmed (or returned, or nacked) everything.
    A channel the broker closes meanwhile (e.g. ``406`` for a message over its
    ``max_message_size``) raises its ``ChannelClosedByBroker`` instead of waiting for confirms
    that cannot come; what it had confirmed by then is in ``confirmed``.
    """

    _FLUSH_EVERY: Final = 256  # messages between two sends of the buffered frames

    def __init__(self, connection: Any, window: int) -> None:
        self._connection = connection
        self._window = max(window, 2)
        self._channel = connection.channel()
        self._impl = self._channel._impl  # the async pika.channel.Channel
        self._next_tag = 1
        self._unconfirmed: dict[int, str] = {}  # delivery tag -> message id
        self._order: collections.deque[int] = collections.deque()
        self._confirmed: set[str] = set()
        self._failed: dict[str, str] = {}  # message id -> why the broker did not take it
        self._wake_at: int | None = None
        self._closed: BaseException | None = None  # why the broker closed the channel
        ready: list[bool] = []
        self._impl.add_on_return_callback(self._on_return)
        self._impl.add_on_close_callback(self._on_close)
        self._impl.confirm_delivery(
            ack_nack_callback=self._on_confirm, callback=lambda _frame: ready.append(True)
        )
        while not ready:
            connection.process_data_events(time_limit=0.05)

    @property
    def is_open(self) -> bool:
        return bool(self._channel.is_open)

    def publish(
        self, queue: str, messages: Sequence[OutgoingMessage], confirmed: set[str]
    ) -> dict[str, str]:
        """Publish ``messages`` and wait for all confirms; return ``{message_id: failure}``.

        Ids are added to ``confirmed`` as the broker confirms them, so after a dropped
        connection the caller knows which messages to publish again.
        """
        self._confirmed, self._failed = confirmed, {}
        for count, out in enumerate(messages, 1):
            self._impl.basic_publish("", queue, out.body, properties_of(out), mandatory=True)
            self._unconfirmed[self._next_tag] = str(out.message_id)
            self._order.append(self._next_tag)
            self._next_tag += 1
            if len(self._unconfirmed) >= self._window:
                self._wait_until(self._window // 2)
            elif count % self._FLUSH_EVERY == 0:
                self._connection.process_data_events(time_limit=0)  # send, read confirms
                self._raise_if_closed()
        self._wait_until(0)
        return self._failed

    def _wait_until(self, outstanding: int) -> None:
        self._wake_at = outstanding
        try:
            while len(self._unconfirmed) > outstanding:
                self._raise_if_closed()
                self._connection.process_data_events(time_limit=1.0)
        finally:
            self._wake_at = None

    def _raise_if_closed(self) -> None:
        if self._closed is not None:
            self._unconfirmed.clear()  # never confirmed: the caller publishes them again
            self._order.clear()
            raise self._closed

    def _on_close(self, _channel: Any, reason: BaseException) -> None:
        self._closed = reason
        self._connection.call_later(0, noop)  # ends the pending process_data_events

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        reason = f"returned by the broker ({method.reply_code} {method.reply_text})"
        self._failed[str(properties.message_id)] = reason

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        nacked = isinstance(method, pika.spec.Basic.Nack)
        if method.multiple:
            while self._order and self._order[0] <= method.delivery_tag:
                self._settle(self._order.popleft(), nacked)
        else:
            self._settle(method.delivery_tag, nacked)
            while self._order and self._order[0] not in self._unconfirmed:
                self._order.popleft()
        if self._wake_at is not None and len(self._unconfirmed) <= self._wake_at:
            self._wake_at = None
            self._connection.call_later(0, noop)  # ends the pending process_data_events

    def _settle(self, tag: int, nacked: bool) -> None:
        message_id = self._unconfirmed.pop(tag, None)
        if message_id is None:
            return
        if nacked:
            self._failed[message_id] = "nacked by the broker"
        elif message_id not in self._failed:
            self._confirmed.add(message_id)


class Link:
    """One connection with a channel for synchronous calls and one for confirmed publishing."""

    def __init__(self, connection: Any, confirm_window: int) -> None:
        self.connection = connection
        self.known_queues: set[str] = set()
        self.last_used = time.monotonic()
        self._window = confirm_window
        self._channel: Any = None
        self._confirmer: Confirmer | None = None

    @property
    def is_open(self) -> bool:
        return bool(self.connection.is_open)

    def channel(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            self._channel = self.connection.channel()
        return self._channel

    def confirmer(self) -> Confirmer:
        if self._confirmer is None or not self._confirmer.is_open:
            self._confirmer = Confirmer(self.connection, self._window)
        return self._confirmer

    def publish_copies(
        self, queue: str, items: Sequence[tuple[Message, Mapping[str, Any]]]
    ) -> dict[str, str]:
        """Publish copies of messages with new headers, confirmed; return the failures.

        A copy keeps the body, id (one is made if missing) and content type of its message.
        """
        outs = [
            OutgoingMessage(
                message.body, headers, message.message_id or uuid.uuid4().hex, message.content_type
            )
            for message, headers in items
        ]
        return self.confirmer().publish(queue, outs, set())

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:  # a connection that fails to close is closed enough
            logger.debug("closing a RabbitMQ connection failed", exc_info=True)
