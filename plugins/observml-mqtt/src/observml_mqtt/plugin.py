"""MQTT 5 implementation of observml's :class:`~observml.plugins.datastream.DataStreamPlugin`.

What the plugin guarantees, and how it maps the hub's queues onto MQTT:

- A queue ``pump.predict`` is the topic ``<topic_prefix>/pump/predict``. The hub reads it
  through an MQTT session of its own (client id ``<client_id>/<queue>``, clean start off,
  ``session_expiry`` seconds), so the broker keeps the hub's messages while it is down. With a
  ``share_group`` the session is one member of the shared subscription
  ``$share/<share_group>/<topic>``, so several hubs in one group compete for the messages.
  ``create_queue`` (and the first publish to a queue nobody subscribes to) creates the session.
- Everything travels at QoS 1: ``publish`` returns once the broker acknowledged (PUBACK); a
  consumer acknowledges a message (paho's manual ack) only after its handler returned. A rejected
  message is first published to ``<topic>/dead`` with the reason in the user property
  ``x-observml-reason``, then acknowledged. The message id rides in a user property.
- Connecting retries with bounded backoff; a refused login fails at once. The sessions have
  no thread each: one driver thread of the plugin reads and reconnects them all (a ``consume``
  call lends its session a driver of its own while it runs); what a consumer had not
  acknowledged comes back flagged ``redelivered``.
- ``subscribe`` (:class:`~observml.plugins.subscriptions.SupportsSubscribe`) serves many queues
  from that one driver thread and runs the handlers on the caller's executor: still a
  connection per queue (MQTT's flow control and PUBACK order are per connection), no thread per
  queue. See :mod:`observml_mqtt.subscriber`.

MQTT has no queue to count or purge: ``queue_depth``, ``pull_data`` and ``flush_queue`` see the
messages the broker has sent to this hub's session, at most ``prefetch`` of them (and at most the
broker's ``max_inflight_messages``); the rest wait on the broker. See the README.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from observml.errors import AuthenticationError, NotFoundError, ServiceUnavailableError
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
from observml.plugins.subscriptions import Handle, Subscription, new_handle
from observml_mqtt.connection import Endpoint
from observml_mqtt.consumer import Consumer
from observml_mqtt.driver import Driver
from observml_mqtt.health import round_trip
from observml_mqtt.publisher import NO_SUBSCRIBERS_REASON, Publisher
from observml_mqtt.session import Delivery, Session
from observml_mqtt.subscriber import Subscriber
from observml_mqtt.topics import queue_topic, topic_mappings

__all__ = ["MQTTPlugin"]

_FIRST_ARRIVALS = 0.1  # seconds pull_data / queue_depth give the broker to send what it holds


class MQTTPlugin:
    """MQTT 5 implementation of DataStreamPlugin (paho-mqtt 2).

    Configuration (the keys of ``plugins.datastream.config``):
        host, port: Where the broker is (1883; 8883 is the usual TLS port).
        username, password: The login (``None``: anonymous).
        topic_prefix: Queue ``a.b`` is topic ``<topic_prefix>/a/b``.
        share_group: Hubs in the same group compete for a queue's messages (MQTT 5 shared
            subscriptions). ``None`` (default): each hub subscribes to its queues itself, the
            subscription Mosquitto 2.0 keeps across its restarts (it forgets shared ones).
        client_id: This hub's stable name on the broker; each queue's session is
            ``<client_id>/<queue>``. Default ``observml-<hostname>``; give each hub its own.
        tls, ca_certs, certfile, keyfile, tls_insecure: TLS (``tls_insecure`` skips checking
            the broker's certificate and name: for tests only).
        keepalive: Seconds between MQTT pings.
        session_expiry: Seconds the broker keeps a session (and its messages) while the hub is
            away.
        prefetch: Most unacknowledged messages the broker sends one session (receive maximum).
        confirm_window: Most published messages awaiting a PUBACK at once.
        topic_columns: Plant topics mapped onto queues, e.g.
            ``[{"topic": "plant/{unit}/{column}", "queue": "pump.predict"}]``.
        connection_attempts, retry_interval, retry_interval_max, connect_timeout: Connecting.
        reconnect_timeout: How long a consumer waits for a lost broker before raising.
        publish_timeout: How long a publish waits without any PUBACK before failing.
        settle_timeout: How long ``pull_data`` / ``queue_depth`` wait for messages this plugin
            just published to arrive.
        health_timeout: ``health_check`` answers within about twice this.
        shutdown_timeout: How long ``disconnect`` waits for running handlers.
        max_message_bytes: Bodies larger than this are dead-lettered unread (default 16 MiB).
    """

    plugin_type = "datastream"

    def __init__(
        self,
        host: str = "localhost",
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        *,
        topic_prefix: str = "observml",
        share_group: str | None = None,
        client_id: str | None = None,
        tls: bool = False,
        ca_certs: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        tls_insecure: bool = False,
        keepalive: int = 30,
        session_expiry: int = 7 * 24 * 3600,
        prefetch: int = 100,
        confirm_window: int = 1000,
        topic_columns: Sequence[Mapping[str, Any]] | None = None,
        connection_attempts: int = 5,
        retry_interval: float = 0.5,
        retry_interval_max: float = 5.0,
        connect_timeout: float = 5.0,
        reconnect_timeout: float = 120.0,
        publish_timeout: float = 30.0,
        settle_timeout: float = 2.0,
        health_timeout: float = 3.0,
        shutdown_timeout: float = 30.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.topic_prefix = topic_prefix.strip("/")
        self.share_group = share_group
        self.client_id = client_id or f"observml-{socket.gethostname()}"
        self.tls = tls
        self.ca_certs = ca_certs
        self.certfile = certfile
        self.keyfile = keyfile
        self.tls_insecure = tls_insecure
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.prefetch = prefetch
        self.confirm_window = confirm_window
        self.topic_columns = topic_mappings(topic_columns)
        self.connection_attempts = connection_attempts
        self.retry_interval = retry_interval
        self.retry_interval_max = retry_interval_max
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.publish_timeout = publish_timeout
        self.settle_timeout = settle_timeout
        self.health_timeout = health_timeout
        self.shutdown_timeout = shutdown_timeout
        self.max_message_bytes = max_message_bytes
        self._lock = threading.RLock()
        self._publisher: Publisher | None = None
        self._sessions: dict[str, Session] = {}
        self._closing = threading.Event()
        self._running = threading.Condition()
        self._consumers = 0
        self._driver: Driver | None = None  # drives every session not lent to a consume
        self._subscriber: Subscriber | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Connect to the broker."""
        self.connect()

    def shutdown(self) -> None:
        """Stop consumers and close every client. Safe to call twice."""
        self.disconnect()

    def health_check(self) -> HealthReport:
        """Round-trip a message through the broker on a short-lived client; never raises."""
        details: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "topic_prefix": self.topic_prefix,
            "share_group": self.share_group,
            "client_id": self.client_id,
            "sessions": len(self._sessions),
            "consumers": self._consumers,
            "subscriptions": self._subscriber.live if self._subscriber is not None else 0,
        }
        endpoint = self._endpoint()
        try:
            latency = round_trip(endpoint, self.topic_prefix, self.client_id, self.health_timeout)
        except Exception as exc:  # a health check reports, it never raises
            hint = "login refused" if isinstance(exc, AuthenticationError) else "broker down?"
            message = f"{endpoint.where}: {endpoint.describe(exc)} ({hint})"
            return False, {**details, "status": "error", "message": message}
        publisher = self._publisher
        status = "connected" if publisher is not None and publisher.connected else "reachable"
        return True, {**details, "status": status, "latency_ms": latency}

    # -- the spec's methods ---------------------------------------------------------------
    def connect(self, **kwargs: Any) -> None:
        """Connect the publishing client; keyword arguments override settings.

        Raises:
            ConfigError: A keyword is not a setting of this plugin.
            AuthenticationError: The broker refused the login.
            ServiceUnavailableError: The broker stayed unreachable for every attempt.
        """
        check_connect_settings(self, kwargs)
        with self._lock:
            if kwargs:
                self._close_clients()
                for key, value in kwargs.items():
                    setattr(self, key, value)
                if "topic_columns" in kwargs:
                    self.topic_columns = topic_mappings(kwargs["topic_columns"])
            if self._closing.is_set():
                self._closing = threading.Event()
            if self._publisher is None:
                self._publisher = Publisher(self._endpoint(), self.client_id, self.confirm_window)

    def disconnect(self) -> None:
        """Stop every running ``consume`` (after its current batch), then close all clients.

        The sessions stay on the broker, which keeps their messages until ``session_expiry``.
        """
        self._closing.set()
        for session in list(self._sessions.values()):
            session.wake()
        subscriber, driver = self._subscriber, self._driver
        if driver is not None:
            driver.wake()  # the subscriptions wind down on its thread
        deadline = time.monotonic() + self.shutdown_timeout
        with self._running:  # consumers notify; subscriptions end on the driver thread: poll
            while self._consumers or (subscriber is not None and subscriber.live):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._running.wait(min(remaining, 0.05))
        with self._lock:
            self._close_clients()

    def create_queue(self, queue_name: str) -> None:
        """Create this hub's durable subscriptions to ``queue_name`` and its dead letters."""
        self._session(queue_name)
        self._session(dead_letter_queue(queue_name))

    def pull_data(self, queue: str) -> str:
        """Take one message body from ``queue`` (``""`` when none is ready); ack it once decoded.

        Raises:
            DataError: The body is not UTF-8 text or too large; it was dead-lettered.
        """
        session = self._session(queue)
        session.settle(self.settle_timeout)
        delivery = session.take(_FIRST_ARRIVALS)
        if delivery is None:
            return ""

        def dead_letter(reason: str) -> None:
            self._dead_letter(queue, [(delivery.message, reason)])
            session.ack([delivery])

        return pulled_text(
            queue,
            delivery.message,
            where=self._where,
            max_bytes=self.max_message_bytes,
            ack=lambda: session.ack([delivery]),
            dead_letter=dead_letter,
        )

    def flush_queue(self, queue: str) -> int:
        """Acknowledge (drop) every message the broker holds for this hub's session of ``queue``."""
        session = self._session(queue)
        session.settle(self.settle_timeout)
        removed = 0
        while (delivery := session.take(_FIRST_ARRIVALS)) is not None:
            session.ack([delivery])
            removed += 1
        return removed

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
        """Publish one message at QoS 1; return its id once the broker acknowledged it."""
        out = OutgoingMessage(body, headers, message_id, content_type)
        return self.publish_batch(queue, [out])[0]

    def publish_batch(
        self, queue: str, messages: Iterable[OutgoingMessage | bytes | str]
    ) -> list[str]:
        """Publish many messages with up to ``confirm_window`` in flight; return their ids.

        A queue nobody subscribes to yet (the broker answers "no matching subscribers") is
        created, as ``create_queue`` does, and the messages are published again. A queue some
        hub subscribes to is not subscribed to by a publisher, which would take its share of
        the messages from the consumers of its share group.

        Raises:
            NotFoundError: The broker had no subscriber for some messages (nobody holds them).
            ServiceUnavailableError: The broker refused some, or did not acknowledge them.
        """
        outs = [as_outgoing(item) for item in messages]
        if not outs:
            return []
        failed = self._send(queue, outs)
        unheld = {i for i, reason in failed.items() if reason.startswith(NO_SUBSCRIBERS_REASON)}
        if unheld and queue not in self._sessions:  # nobody subscribes yet: hold it ourselves
            self.create_queue(queue)
            failed = {
                **{i: r for i, r in failed.items() if i not in unheld},
                **self._send(queue, [out for out in outs if out.message_id in unheld]),
            }
        if failed:
            reason = next(iter(failed.values()))
            error = (
                NotFoundError
                if reason.startswith(NO_SUBSCRIBERS_REASON)
                else ServiceUnavailableError
            )
            raise error(
                f"{self._where}: {len(failed)} of {len(outs)} message(s) to queue {queue!r} were"
                f" not accepted ({reason}). Check that the queue exists (create_queue), the"
                " broker's ACL and log, then publish them again."
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

        ``prefetch`` is accepted for the protocol; the session's receive maximum is the
        plugin's ``prefetch`` setting.

        Raises:
            ServiceUnavailableError: The broker stayed away longer than ``reconnect_timeout``.
        """
        self._run(queue, one_at_a_time(handler), 1, 0.0, stop, inline=True)

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
        self._run(queue, handler, batch_size, max_wait, stop)

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
        """Hand ``queue``'s messages to ``handler`` on ``executor`` in micro-batches.

        Returns at once. Creates the queue (as ``create_queue``). The queue's session is served
        by the plugin's one driver thread, as every other subscribed queue's is (see
        :mod:`observml_mqtt.subscriber`).
        ``prefetch`` bounds the messages the subscription holds (at most the plugin's
        ``prefetch``, the session's receive maximum).

        Raises:
            ServiceUnavailableError: The plugin is not connected, or a ``consume`` or another
                subscription is taking this queue's messages already.
        """
        self.create_queue(queue)
        session = self._session(queue)
        with self._lock:
            subscriber, driver = self._shared()
            if session.consumed or subscriber.serves(session):
                raise ServiceUnavailableError(
                    f"{self._where}: queue {queue!r} is being consumed by this plugin already;"
                    " cancel that subscription (or stop that consume) first."
                )
            handle: Handle[Delivery] = new_handle(
                queue,
                handler,
                executor,
                batch_size=batch_size,
                max_wait=max_wait,
                max_bytes=self.max_message_bytes,
                prefetch=min(prefetch or self.prefetch, self.prefetch),
                wake=driver.wake,
                shutdown_timeout=self.shutdown_timeout,
            )
            subscriber.add(handle, session)
        driver.wake()
        return handle

    def queue_depth(self, queue: str) -> int:
        """Return how many messages the broker has sent this hub's session and wait here.

        MQTT brokers do not count a session's messages; this sees at most ``prefetch`` of them.
        """
        session = self._session(queue)
        session.settle(self.settle_timeout)
        if session.ready() == 0:  # give what the broker holds a moment to arrive
            threading.Event().wait(_FIRST_ARRIVALS)
        return session.ready()

    # -- internals ------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return self._endpoint().where

    def _endpoint(self) -> Endpoint:
        return Endpoint(
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            tls=self.tls,
            ca_certs=self.ca_certs,
            certfile=self.certfile,
            keyfile=self.keyfile,
            tls_insecure=self.tls_insecure,
            keepalive=self.keepalive,
            session_expiry=self.session_expiry,
            connect_timeout=self.connect_timeout,
            connection_attempts=self.connection_attempts,
            retry_interval=self.retry_interval,
            retry_interval_max=self.retry_interval_max,
        )

    def _connected(self) -> Publisher:
        publisher = self._publisher
        if publisher is None or self._closing.is_set():
            raise ServiceUnavailableError(
                f"{self._where}: not connected. Call connect() first (the hub does it when the"
                " plugin is registered)."
            )
        return publisher

    def _shared(self) -> tuple[Subscriber, Driver]:
        """The subscriptions and the driver thread of this connection (``_lock`` held)."""
        if self._driver is None or self._subscriber is None:
            subscriber = Subscriber(
                dead_letter=self._dead_letter,
                closing=self._closing,
                shutdown_timeout=self.shutdown_timeout,
                reconnect_timeout=self.reconnect_timeout,
                where=self._where,
            )
            self._driver = Driver(f"observml-mqtt-driver[{self.client_id}]", subscriber.pump)
            self._subscriber = subscriber
        return self._subscriber, self._driver

    def _session(self, queue: str) -> Session:
        """Return this plugin's session of ``queue``, opening it on first use."""
        self._connected()
        with self._lock:
            session = self._sessions.get(queue)
            if session is None:
                session = Session(
                    self._endpoint(),
                    f"{self.client_id}/{queue}",
                    queue,
                    queue_topic(self.topic_prefix, queue),
                    self.share_group,
                    [m for m in self.topic_columns if m.queue == queue],
                    self.prefetch,
                    self._shared()[1],
                )
                session.open(self.connect_timeout + self.settle_timeout)
                self._sessions[queue] = session
            return session

    def _send(self, queue: str, outs: Sequence[OutgoingMessage]) -> dict[str, str]:
        """Publish ``outs`` and return the failures (see :meth:`Publisher.publish`)."""
        publisher = self._connected()
        session = self._sessions.get(queue)
        if session is not None:
            session.expect(str(out.message_id) for out in outs)
        topic = queue_topic(self.topic_prefix, queue)
        return publisher.publish(topic, outs, timeout=self.publish_timeout)

    def _dead_letter(self, queue: str, items: Sequence[tuple[Message, str]]) -> None:
        """Publish ``items`` to ``queue``'s dead letters (PUBACKs received), reason included."""
        dead = dead_letter_queue(queue)
        copies = [
            OutgoingMessage(
                message.body,
                dead_letter_headers(message.headers, reason),
                message.message_id or None,
                message.content_type,
            )
            for message, reason in items
        ]
        try:
            self.publish_batch(dead, copies)
        except (NotFoundError, ServiceUnavailableError) as exc:
            raise ServiceUnavailableError(
                f"{self._where}: could not dead-letter {len(items)} message(s) to {dead!r}"
                f" ({exc}); they stay unacknowledged in {queue!r}. Check the broker."
            ) from exc

    def _run(
        self,
        queue: str,
        handler: BatchHandler,
        batch_size: int,
        max_wait: float,
        stop: threading.Event | None,
        *,
        inline: bool = False,
    ) -> None:
        """Consume ``queue``; ``inline``: settle each message on paho's network thread."""
        session = self._session(queue)
        consumer = Consumer(
            session=session,
            handler=handler,
            dead_letter=self._dead_letter,
            batch_size=max(batch_size, 1),
            max_wait=max_wait,
            stop=stop or threading.Event(),
            closing=self._closing,
            max_message_bytes=self.max_message_bytes,
            reconnect_timeout=self.reconnect_timeout,
            where=self._where,
        )
        with self._lock:
            subscriber, shared = self._shared()
            if session.consumed or subscriber.serves(session):
                raise ServiceUnavailableError(
                    f"{self._where}: queue {queue!r} is being consumed by this plugin already"
                    " (a subscription or another consume); stop that first."
                )
            session.consumed = True
        own = Driver(f"observml-mqtt-consume[{queue}]")  # the handler runs on its thread
        with self._running:
            self._consumers += 1
        try:
            session.move_to(own)
            if inline:
                consumer.run_inline()
            else:
                consumer.run()
        finally:
            session.move_to(shared)  # a no-op once disconnect() closed it
            own.stop()
            session.consumed = False
            with self._running:
                self._consumers -= 1
                self._running.notify_all()

    def _close_clients(self) -> None:
        if self._subscriber is not None:
            self._subscriber.end_all("disconnected")
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        if self._driver is not None:
            self._driver.stop()
        self._driver, self._subscriber = None, None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
