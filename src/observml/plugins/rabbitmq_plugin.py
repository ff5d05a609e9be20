"""RabbitMQ implementation of :class:`~observml.plugins.datastream.DataStreamPlugin`.

This module holds the plugin; its parts are private modules beside it, which with this one are
the only modules of observml that import pika: :mod:`._rabbitmq_connect` (opening connections,
the main connection the calls share), :mod:`._rabbitmq_link` (a connection's channels and
publisher confirms), :mod:`._rabbitmq_queues` (declaring queues), :mod:`._rabbitmq_consumer`
(one consumer per ``consume`` call), :mod:`._rabbitmq_subscriber` (every ``subscribe`` on one
connection), :mod:`._rabbitmq_settle` (settling deliveries, which both share) and
:mod:`._rabbitmq_claims` (claims as exclusive queues).
What the plugin guarantees:

- Queues are durable and carry no arguments (quorum queues: only ``x-queue-type``), so a
  producer that declares ``queue_declare(q, durable=True)``, before or after the hub, declares
  the same queue. ``create_queue(q)`` also declares ``q.dead``. Messages are persistent and
  published with ``mandatory`` and publisher confirms: ``publish`` returns once the broker holds
  the message; ``publish_batch`` keeps up to ``confirm_window`` messages in flight.
- A consumer acks a message only after its handler returned. A rejected message is first
  published (confirmed) to ``q.dead`` with the reason in a header, then acked, so nothing is lost
  between the two. Handlers run off the connection's thread, which keeps heartbeats going; acks
  travel back through ``add_callback_threadsafe``.
- A message whose consumers keep dying while holding it goes to ``q.dead`` after
  ``delivery_limit`` such deliveries: the consumer counts them in a header of a confirmed copy
  (see :mod:`observml.plugins._rabbitmq_link`), so no broker argument or policy is needed.
- Connecting retries with bounded exponential backoff and jitter; wrong credentials fail at
  once. A consumer whose connection drops reconnects, re-declares its queue and resumes;
  messages it had not acked come back with ``redelivered=True``.
- ``subscribe`` serves any number of queues from one connection and one thread, a channel per
  queue, with the handlers on the caller's executor; it settles messages as ``consume`` does.

Why this module is long: it is one class implementing the whole DataStream protocol (the spec's
five methods, the hub's five, the health check and the lifecycle) against one broker, and its
docstrings say what each method guarantees, which is the point of reading it. Each method is a
short operation run on the main connection; what is not the protocol (connections, queue
declaration, confirms, the consumer) lives in the modules named above.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Literal

from pika.exceptions import ChannelClosedByBroker

from observml.errors import NotFoundError, ServiceUnavailableError
from observml.plugins._rabbitmq_claims import ClaimKeeper, RabbitClaim
from observml.plugins._rabbitmq_connect import (
    AUTH_ERRORS,
    MainLink,
    channel_error,
    open_link,
    probe,
    secrets,
    where,
)
from observml.plugins._rabbitmq_consumer import Consumer
from observml.plugins._rabbitmq_link import (
    REDELIVERIES_HEADER,
    Link,
    describe,
    message_of,
)
from observml.plugins._rabbitmq_queues import declare_queue, ensure_queue
from observml.plugins._rabbitmq_settle import Broker
from observml.plugins._rabbitmq_subscriber import Subscriber
from observml.plugins.base import HealthReport
from observml.plugins.datastream import (
    MAX_MESSAGE_BYTES,
    BatchHandler,
    Handler,
    Message,
    OutgoingMessage,
    as_outgoing,
    check_connect_settings,
    dead_letter_headers,
    dead_letter_queue,
    one_at_a_time,
    pulled_text,
)
from observml.plugins.subscriptions import Subscription

__all__ = ["RabbitMQPlugin"]

logger = logging.getLogger(__name__)


class RabbitMQPlugin:
    """RabbitMQ implementation of DataStreamPlugin.

    Configuration (the keys of ``plugins.datastream.config``):
        host, port, username, password: Where the broker is and how to log in.
        virtual_host: The RabbitMQ virtual host.
        heartbeat: Seconds between AMQP heartbeats (0 disables them).
        prefetch: Default number of unacked messages a consumer holds.
        queue_type: ``"classic"`` or ``"quorum"`` (replicated; needs a RabbitMQ cluster to pay).
            Producers of a quorum hub declare ``arguments={"x-queue-type": "quorum"}``.
        delivery_limit: Deliveries that end without an ack (the consumer died or lost its
            connection) after which a message goes to the dead-letter queue.
        connection_attempts: Tries when connecting before giving up.
        retry_interval, retry_interval_max: First and longest wait between tries.
        reconnect_timeout: How long a consumer keeps trying to reconnect after losing the broker.
        socket_timeout: Seconds to wait for the broker's socket when connecting.
        blocked_connection_timeout: Close a connection the broker blocked (alarm) this long.
        confirm_window: Most published messages awaiting a confirm at once.
        health_timeout: ``health_check`` answers within about this many seconds.
        shutdown_timeout: How long a stopping consumer waits for its running handler.
        max_message_bytes: Bodies larger than this are dead-lettered unread (default 16 MiB).

    Usage::

        plugin = RabbitMQPlugin(host="localhost", port=5672, username="guest", password="guest")
        hub.register_plugin(plugin)  # connects
    """

    plugin_type = "datastream"

    def __init__(
        self,
        host: str = "localhost",
        port: int = 5672,
        username: str = "guest",
        password: str = "guest",
        *,
        virtual_host: str = "/",
        heartbeat: int = 60,
        prefetch: int = 100,
        queue_type: Literal["classic", "quorum"] = "classic",
        delivery_limit: int = 20,
        connection_attempts: int = 5,
        retry_interval: float = 0.5,
        retry_interval_max: float = 5.0,
        reconnect_timeout: float = 120.0,
        socket_timeout: float = 5.0,
        blocked_connection_timeout: float = 60.0,
        confirm_window: int = 2000,
        health_timeout: float = 3.0,
        shutdown_timeout: float = 30.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.virtual_host = virtual_host
        self.heartbeat = heartbeat
        self.prefetch = prefetch
        self.queue_type = queue_type
        self.delivery_limit = delivery_limit
        self.connection_attempts = connection_attempts
        self.retry_interval = retry_interval
        self.retry_interval_max = retry_interval_max
        self.reconnect_timeout = reconnect_timeout
        self.socket_timeout = socket_timeout
        self.blocked_connection_timeout = blocked_connection_timeout
        self.confirm_window = confirm_window
        self.health_timeout = health_timeout
        self.shutdown_timeout = shutdown_timeout
        self.max_message_bytes = max_message_bytes
        self._tag = uuid.uuid4().hex[:8]  # names this plugin's connections on the broker
        self._main = MainLink(self, self._tag)
        self._claims = ClaimKeeper(self, self._tag)
        self._closing = threading.Event()
        self._consumers: set[Consumer] = set()
        self._consumers_lock = threading.Lock()
        self._subscriber: Subscriber | None = None  # serves every subscribe(), while any lives
        self._subscriber_lock = threading.Lock()
        self._reported: set[str] = set()  # queues in use whose unexpected arguments were logged

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Connect to the broker."""
        self.connect()

    def shutdown(self) -> None:
        """Stop consumers and close the connection. Safe to call twice."""
        self.disconnect()

    def health_check(self) -> HealthReport:
        """Probe the broker on a short-lived connection; answers within ``health_timeout``.

        The probe declares an exclusive, server-named queue and deletes it (RabbitMQ 4 refuses
        transient non-exclusive queues). It never raises.
        """
        details: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "virtual_host": self.virtual_host,
            "queue_type": self.queue_type,
            "consumers": len(self._consumers),
        }
        started = time.monotonic()
        try:
            probe(self, self._tag)
        except Exception as exc:  # a health check reports, it never raises
            hint = "login refused" if isinstance(exc, AUTH_ERRORS) else "is the broker running?"
            message = f"{self._where}: {describe(exc, self._secrets)} ({hint})"
            return False, {**details, "status": "error", "message": message}
        latency = round((time.monotonic() - started) * 1000, 1)
        status = "connected" if self._main.connected else "reachable"
        return True, {**details, "status": status, "latency_ms": latency}

    # -- the spec's methods ---------------------------------------------------------------
    def connect(self, **kwargs: Any) -> None:
        """Open the main connection, retrying with backoff; keyword arguments override settings.

        Raises:
            ConfigError: A keyword is not a setting of this plugin.
            AuthenticationError: The broker refused the username, password or virtual host.
            ServiceUnavailableError: The broker stayed unreachable for every attempt.
        """
        check_connect_settings(self, kwargs)
        with self._main.lock:
            if kwargs:
                self._main.drop()
                for key, value in kwargs.items():
                    setattr(self, key, value)
            if self._closing.is_set():
                self._closing = threading.Event()
            self._main.open()

    def disconnect(self) -> None:
        """Close the main connection; every ``consume`` returns, every subscription ends."""
        self._closing.set()
        with self._consumers_lock:
            consumers = list(self._consumers)
        for consumer in consumers:
            consumer.wake()
        with self._subscriber_lock:
            subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.wake()
        self._claims.close()
        self._main.close()

    def create_queue(self, queue_name: str) -> None:
        """Declare the durable queue ``queue_name`` and its dead-letter queue. Idempotent.

        A queue that exists with arguments this plugin does not set (dead-letter settings left by
        an older observml, a length limit) is used as it is, and logged once.

        Raises:
            ConfigError: The queue exists as another type, or not durable.
        """

        def declare(link: Link) -> None:
            self._declare(link, queue_name)

        self._main.call(declare, f"declaring queue {queue_name!r}")

    def pull_data(self, queue: str) -> str:
        """Take one message body from ``queue`` (``""`` when empty); ack it once decoded.

        Raises:
            DataError: The body is not UTF-8 text; it was moved to the dead-letter queue.
        """

        def get(link: Link) -> str:
            channel = link.channel()
            try:
                method, properties, body = channel.basic_get(queue, auto_ack=False)
            except ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return ""
                raise
            if method is None:
                return ""
            message = message_of(queue, method, properties, body)

            def dead_letter(reason: str) -> None:
                self._dead_letter(link, queue, [(message, reason)])
                channel.basic_ack(method.delivery_tag)

            return pulled_text(
                queue,
                message,
                where=self._where,
                max_bytes=self.max_message_bytes,
                ack=lambda: channel.basic_ack(method.delivery_tag),
                dead_letter=dead_letter,
            )

        return self._main.call(get, f"pulling from {queue!r}")

    def flush_queue(self, queue: str) -> int:
        """Purge the ready messages of ``queue`` and return how many were removed."""

        def purge(link: Link) -> int:
            try:
                return int(link.channel().queue_purge(queue).method.message_count)
            except ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return 0
                raise

        return self._main.call(purge, f"purging {queue!r}")

    def browse(self, queue: str, limit: int = 10) -> list[Message]:
        """Return up to ``limit`` ready messages of ``queue``, oldest first, and put them back.

        On a channel of its own: ``basic_get`` without ack, then one ``basic_nack`` with
        ``requeue=True``. RabbitMQ puts them back where they were when it can (not always: a
        consumer may have taken later messages meanwhile) and flags them ``redelivered``; a
        hub consuming ``queue`` counts that as a delivery towards ``delivery_limit``, so browse
        results and dead letters, not ``<name>.predict``.
        """

        def peek(link: Link) -> list[Message]:
            channel = link.connection.channel()
            found: list[Message] = []
            last = None
            try:
                while len(found) < limit:
                    method, properties, body = channel.basic_get(queue, auto_ack=False)
                    if method is None:
                        break
                    last = method.delivery_tag
                    found.append(message_of(queue, method, properties, body))
                if last is not None:
                    channel.basic_nack(last, multiple=True, requeue=True)
            except ChannelClosedByBroker as exc:  # the channel's deliveries went back with it
                if exc.reply_code == 404:
                    return []
                raise
            finally:
                if channel.is_open:
                    channel.close()  # returns anything still unsettled
            return found

        return self._main.call(peek, f"browsing {queue!r}")

    # -- what the hub needs ---------------------------------------------------------------
    def publish(
        self,
        queue: str,
        body: bytes | str,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Publish one persistent message; return its id once the broker confirmed it."""
        out = OutgoingMessage(body, headers, message_id, content_type)
        return self.publish_batch(queue, [out])[0]

    def publish_batch(
        self, queue: str, messages: Iterable[OutgoingMessage | bytes | str]
    ) -> list[str]:
        """Publish many messages with up to ``confirm_window`` in flight; return their ids.

        The queue is declared first if it does not exist. After a dropped connection the
        unconfirmed messages are published again (at-least-once).

        Raises:
            NotFoundError: The broker could not route some messages (the queue was deleted).
            ServiceUnavailableError: The broker refused (nacked) some, or stayed unreachable.
        """
        outs = [as_outgoing(item) for item in messages]
        confirmed: set[str] = set()
        failed: dict[str, str] = {}

        def send(link: Link) -> None:
            ensure_queue(link, queue, self._declare)
            pending = [out for out in outs if out.message_id not in confirmed]
            failed.update(link.confirmer().publish(queue, pending, confirmed))

        if outs:
            self._main.call(send, f"publishing to {queue!r}")
        if failed:
            reason = next(iter(failed.values()))
            error = NotFoundError if reason.startswith("returned") else ServiceUnavailableError
            raise error(
                f"{self._where}: {len(failed)} of {len(outs)} message(s) to queue {queue!r} were"
                f" not accepted ({reason}). Check that the queue exists (create_queue) and the"
                " broker's alarms, then publish them again."
            )
        return [str(out.message_id) for out in outs]

    def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Call ``handler`` per message until ``disconnect()`` or ``stop`` is set.

        Raises:
            ServiceUnavailableError: The broker stayed away longer than ``reconnect_timeout``.
        """
        consumer = Consumer(
            self._broker(),
            queue,
            one_at_a_time(handler),
            batch_size=1,
            max_wait=0.0,
            prefetch=prefetch or self.prefetch,
            stop=stop,
        )
        self._run(consumer)

    def consume_batch(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        batch_size: int = 100,
        max_wait: float = 0.5,
        prefetch: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Call ``handler`` with micro-batches until ``disconnect()`` or ``stop`` is set."""
        consumer = Consumer(
            self._broker(),
            queue,
            handler,
            batch_size=batch_size,
            max_wait=max_wait,
            prefetch=prefetch or max(self.prefetch, batch_size),
            stop=stop,
        )
        self._run(consumer)

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
        """Hand ``queue``'s micro-batches to ``handler`` on ``executor``; return at once.

        Every subscription of this plugin is a channel on one subscriber connection, served by
        one thread (both open with the first subscription and close after the last), so N
        queues cost N channels, not N connections and 2N threads as ``consume`` would. Messages
        are settled as ``consume_batch`` settles them. A lost connection is ridden out for up
        to ``reconnect_timeout`` (:attr:`Subscription.error` says ``reconnecting: ...``
        meanwhile); a channel the broker refuses for good ends only its own subscription.

        Raises:
            ServiceUnavailableError: Not connected.
            ConfigError: The queue exists as another type, or not durable.
        """
        self.create_queue(queue)  # a queue that cannot be used fails here, not later

        def add(subscriber: Subscriber) -> Subscription | None:
            return subscriber.subscribe(
                queue,
                handler,
                executor=executor,
                batch_size=batch_size,
                max_wait=max_wait,
                prefetch=prefetch or max(self.prefetch, batch_size),
            )

        with self._subscriber_lock:
            handle = add(self._subscriber) if self._subscriber is not None else None
            if handle is None:  # the first subscription, or the last one just ended
                self._subscriber = Subscriber(self._broker(), self._tag)
                handle = add(self._subscriber)
        if handle is None:
            raise ServiceUnavailableError(
                f"{self._where}: disconnected while subscribing to {queue!r}. Call connect()"
                " and subscribe again."
            )
        return handle

    def claim(self, key: str) -> RabbitClaim | None:
        """Take the claim ``key`` among every process using this broker; ``None`` if taken.

        The claim is the exclusive queue ``observml.claim.<key>`` on the claims connection,
        which the broker deletes when that connection ends (:mod:`observml.plugins.claims`).

        Raises:
            ServiceUnavailableError: Not connected, or the broker could not be asked.
        """
        if not self._main.connected:
            raise ServiceUnavailableError(
                f"{self._where}: not connected while taking the claim {key!r}. Call connect()"
                " first (the hub does it when the plugin is registered)."
            )
        return self._claims.take(key)

    def _broker(self) -> Broker:
        """What a consumer of this plugin needs of it (see :class:`Broker`)."""
        return Broker(
            closing=self._closing,
            open_link=functools.partial(open_link, self, tag=self._tag),
            declare=self._declare,
            publish_again=self._publish_again,
            dead_letter=self._dead_letter,
            channel_error=functools.partial(channel_error, self),
            where=self._where,
            secrets=self._secrets,
            shutdown_timeout=self.shutdown_timeout,
            connection_attempts=self.connection_attempts,
            reconnect_timeout=self.reconnect_timeout,
            delivery_limit=self.delivery_limit,
            max_message_bytes=self.max_message_bytes,
        )

    def queue_depth(self, queue: str) -> int:
        """Return how many messages are ready in ``queue`` (0 if it does not exist)."""

        def depth(link: Link) -> int:
            try:
                declared = link.channel().queue_declare(queue, passive=True)
            except ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return 0
                raise
            return int(declared.method.message_count)

        return self._main.call(depth, f"reading the depth of {queue!r}")

    # -- internals ------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return where(self)

    @property
    def _secrets(self) -> tuple[str, ...]:
        return secrets(self)

    def _declare(self, link: Link, queue: str) -> None:
        """Declare ``queue`` and its dead-letter queue (see :func:`.declare_queue`)."""
        quorum = self.queue_type == "quorum"
        declare_queue(link, queue, quorum=quorum, where=self._where, used_as_is=self._report_as_is)

    def _report_as_is(self, queue: str, reply: str) -> None:
        """Log, once per queue, that a queue with arguments of its own is used as it is."""
        if queue not in self._reported:
            self._reported.add(queue)
            logger.warning(
                "%s: queue %r exists with arguments observml no longer sets (%s); using it as it"
                " is. Producers that declare it with durable=True alone get the same error:"
                " once it is empty, delete it (rabbitmqctl delete_queue %s) and let either side"
                " declare it again.",
                self._where,
                queue,
                reply,
                queue,
            )

    def _dead_letter(self, link: Link, queue: str, items: Sequence[tuple[Message, str]]) -> None:
        """Publish ``items`` to ``queue``'s dead-letter queue and wait for the confirms."""
        dead = dead_letter_queue(queue)
        ensure_queue(link, dead, self._declare)
        copies = [
            (message, dead_letter_headers(message.headers, reason)) for message, reason in items
        ]
        failed = link.publish_copies(dead, copies)
        if failed:
            raise ServiceUnavailableError(
                f"{self._where}: could not dead-letter {len(failed)} message(s) to {dead!r}"
                f" ({next(iter(failed.values()))}); they stay in {queue!r}. Check the broker."
            )

    def _publish_again(
        self, link: Link, queue: str, items: Sequence[tuple[Message, int | None]]
    ) -> None:
        """Publish copies of ``items`` to the tail of ``queue``, each with its count of returns.

        A count of ``None`` leaves the header out: the copy is not read as a redelivery.
        """
        copies = [
            (
                message,
                {**message.headers, REDELIVERIES_HEADER: returns}
                if returns is not None
                else dict(message.headers),
            )
            for message, returns in items
        ]
        failed = link.publish_copies(queue, copies)
        if failed:
            raise ServiceUnavailableError(
                f"{self._where}: could not publish {len(failed)} returned message(s) again to"
                f" {queue!r} ({next(iter(failed.values()))}); the broker keeps them unacked."
                " Check the broker."
            )

    def _run(self, consumer: Consumer) -> None:
        if not self._main.connected:
            raise ServiceUnavailableError(
                f"{self._where}: not connected. Call connect() before consuming (the hub does it"
                " when the plugin is registered)."
            )
        with self._consumers_lock:
            self._consumers.add(consumer)
        try:
            consumer.run()
        finally:
            with self._consumers_lock:
                self._consumers.discard(consumer)
