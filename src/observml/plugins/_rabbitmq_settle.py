"""Settling one queue's deliveries on one channel: what ``consume`` and ``subscribe`` share.

Both the :class:`~observml.plugins._rabbitmq_consumer.Consumer` of a ``consume`` call and the
:class:`~observml.plugins._rabbitmq_subscriber.Subscriber` of ``subscribe`` receive a queue's
messages on a channel and must settle them the same way, or a message would be lost, counted
twice or never dead-lettered depending on which call consumed it. A :class:`Settler` is that
part: it turns ``basic.deliver`` frames into :class:`Delivery` objects, counts the returns of
redelivered ones (:meth:`Settler.receive`, :meth:`Settler.apply`), applies handlers'
:class:`~observml.plugins.datastream.Settlement` objects (dead letters and requeued copies
confirmed first, then one ``multiple`` ack) and hands back what no handler took. It runs on the
thread that owns the connection; who runs the handlers, and when, is the caller's business.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from observml.plugins._rabbitmq_link import Link, message_of, returns_of
from observml.plugins.datastream import Message, Settlement, unacked_reason

__all__ = ["Broker", "Delivery", "Settler", "too_many_returns"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Broker:
    """What a consumer needs of its plugin: its settings and how it talks to the broker.

    Attributes:
        closing: Set when the plugin disconnects; every consumer returns.
        open_link: ``open_link(purpose, attempts=..., timeout=..., sleep=..., retry_auth=...)``
            opens a connection.
        declare: ``declare(link, queue)`` declares the queue and its dead-letter queue.
        publish_again: ``publish_again(link, queue, [(message, returns), ...])`` publishes
            copies at the back of the queue, confirmed; ``returns`` of ``None`` publishes the
            copy without the count, so it does not read as a redelivery.
        dead_letter: ``dead_letter(link, queue, [(message, reason), ...])``, confirmed.
        channel_error: Turns a channel error into the plugin's error, saying what was done.
        where: The broker's address, for messages.
        secrets: Values masked in messages.
        shutdown_timeout: Seconds a stop waits for the handler's batch in hand.
        connection_attempts: Attempts of the first connection.
        reconnect_timeout: Seconds a lost connection may take to come back.
        delivery_limit: Returns after which a message is dead-lettered.
        max_message_bytes: Larger bodies are dead-lettered unread.
    """

    closing: threading.Event
    open_link: Callable[..., Link]
    declare: Callable[[Link, str], None]
    publish_again: Callable[[Link, str, Sequence[tuple[Message, int | None]]], None]
    dead_letter: Callable[[Link, str, Any], None]
    channel_error: Callable[[BaseException, str], Exception]
    where: str
    secrets: tuple[str, ...]
    shutdown_timeout: float
    connection_attempts: int
    reconnect_timeout: float
    delivery_limit: int
    max_message_bytes: int

    def connect(self, purpose: str, *, first: bool, sleep: Callable[[float], None]) -> Link:
        """Open a consumer's connection: its first, or one replacing a connection it lost.

        The first gets ``connection_attempts`` tries and fails at once on a refused login; a
        replacement keeps trying for ``reconnect_timeout`` s, logins too, since a broker that
        is starting or stopping can drop a connection mid-handshake, which pika reports as a
        probable login error. ``sleep`` waits between tries (and may raise ``Stopped``).
        """
        return self.open_link(
            purpose,
            attempts=self.connection_attempts if first else None,
            timeout=None if first else self.reconnect_timeout,
            sleep=sleep,
            retry_auth=not first,
        )


@dataclass(frozen=True)
class Delivery:
    """One message as a channel delivered it."""

    generation: int  # which channel delivered it; its tag is meaningless on another
    tag: int
    message: Message
    returns: int  # earlier deliveries of the message that ended unsettled


def too_many_returns(returns: int) -> str:
    """The dead-letter reason of a message whose consumers kept dying while holding it."""
    return unacked_reason(returns, "its consumers died or lost their connection while holding it")


class Settler:
    """One queue's deliveries on one channel: receive, recount, settle and hand back.

    A delivery the broker flags ``redelivered`` never reaches a handler: :meth:`receive` keeps
    it, and the next :meth:`apply` publishes a copy counting the return (or dead-letters it once
    the count reaches ``delivery_limit``) and acks it, before any ``multiple`` ack that could
    cover it. This bounds a message that kills every consumer on queues declared without
    arguments. Every method but :meth:`receive` (which only appends) talks to the broker, so it
    runs on the connection's own thread.

    Args:
        broker: The plugin's settings and publishing.
        queue: The queue consumed.
    """

    def __init__(self, broker: Broker, queue: str) -> None:
        self._broker = broker
        self._queue = queue
        self._returned: list[Delivery] = []

    def receive(
        self, generation: int, method: Any, properties: Any, body: bytes
    ) -> Delivery | None:
        """Turn a ``basic.deliver`` into a :class:`Delivery` for a handler.

        Returns:
            The delivery, or ``None`` for one flagged ``redelivered``: its last delivery ended
            unsettled, so :meth:`apply` counts that first and puts a copy in the queue.
        """
        delivery = Delivery(
            generation,
            method.delivery_tag,
            message_of(self._queue, method, properties, body),
            returns_of(method, properties),
        )
        if method.redelivered:
            self._returned.append(delivery)
            return None
        return delivery

    def forget(self) -> None:
        """Drop the returns not yet counted (the channel that delivered them is gone)."""
        self._returned.clear()

    def apply(
        self,
        link: Link,
        channel: Any,
        entries: Sequence[tuple[Sequence[Delivery], Settlement]],
    ) -> None:
        """Count the returns received, then apply handlers' settlements of this channel.

        Dead letters and requeued copies are confirmed before the ack, so a crash in between
        leaves a duplicate (flagged as a redelivery), never a loss. Deliveries are handled in
        order, so every tag up to the highest settled one is settled: one ``multiple`` ack.

        Args:
            link: The connection, for confirmed publishing.
            channel: The channel that delivered every delivery in ``entries``.
            entries: ``[(batch, settlement), ...]`` in the order the batches were handled.
        """
        self._recount(link, channel)  # first: the ``multiple`` ack below may cover their tags
        if not entries:
            return
        dead = [(batch[i].message, why) for batch, out in entries for i, why in out.dead.items()]
        if dead:
            self._broker.dead_letter(link, self._queue, dead)
        # A requeue is a confirmed copy at the tail, not a nack: the broker flags a nacked
        # message redelivered, which would count as a consumer's death.
        again: list[tuple[Message, int | None]] = [
            (batch[i].message, batch[i].returns) for batch, out in entries for i in out.requeue
        ]
        if again:
            self._broker.publish_again(link, self._queue, again)
        done = [batch[i].tag for batch, out in entries for i in (*out.ack, *out.dead, *out.requeue)]
        if done:
            channel.basic_ack(max(done), multiple=True)

    def hand_back(self, link: Link, channel: Any, left: Sequence[Delivery]) -> None:
        """Return deliveries no handler took as confirmed copies, as they were; ack them.

        Left unacked, the broker would flag them ``redelivered`` and a clean stop would count as
        a consumer's death towards ``delivery_limit``. A copy carries the count of returns only
        if its message had one, so a message that was never handled does not come back flagged
        as a redelivery.
        """
        if not left:
            return
        self._broker.publish_again(
            link,
            self._queue,
            [(d.message, d.returns if d.message.redelivered else None) for d in left],
        )
        for delivery in left:
            channel.basic_ack(delivery.tag)

    def _recount(self, link: Link, channel: Any) -> None:
        """Publish returned deliveries again with their count, or dead-letter them; ack them."""
        limit = self._broker.delivery_limit
        while self._returned:  # publishing reads frames: more returns may arrive meanwhile
            returned, self._returned = self._returned, []
            over = [
                (d.message, too_many_returns(d.returns)) for d in returned if d.returns >= limit
            ]
            again: list[tuple[Message, int | None]] = [
                (d.message, d.returns) for d in returned if d.returns < limit
            ]
            if over:
                logger.warning(
                    "%s: %d message(s) of %r reached delivery_limit=%d without an ack; moved to"
                    " the dead-letter queue",
                    self._broker.where,
                    len(over),
                    self._queue,
                    limit,
                )
                self._broker.dead_letter(link, self._queue, over)
            if again:
                self._broker.publish_again(link, self._queue, again)
            for delivery in returned:
                channel.basic_ack(delivery.tag)
