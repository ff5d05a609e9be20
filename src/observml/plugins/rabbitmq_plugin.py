"""RabbitMQ implementation of :class:`~observml.plugins.datastream.DataStreamPlugin`.

The plugin itself (with its connection in :mod:`._rabbitmq_link` and its consumer in
:mod:`._rabbitmq_consumer`, the three modules that import pika). What it guarantees:

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
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar

import pika
from pika.exceptions import (
    AMQPConnectionError,
    ChannelClosedByBroker,
    ChannelWrongStateError,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)
from pika.exceptions import AuthenticationError as PikaAuthenticationError

from observml.errors import (
    AuthenticationError,
    ConfigError,
    NotFoundError,
    ServiceUnavailableError,
)
from observml.plugins._rabbitmq_consumer import Broker, Consumer
from observml.plugins._rabbitmq_link import (
    PERMANENT_CODES,
    REDELIVERIES_HEADER,
    Link,
    describe,
    message_of,
)
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
from observml.plugins.retry import retry_call

__all__ = ["RabbitMQPlugin"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Refused credentials or vhost: retrying cannot help (they subclass AMQPConnectionError).
_AUTH_ERRORS: Final = (
    ProbableAuthenticationError,
    ProbableAccessDeniedError,
    PikaAuthenticationError,
)
#: The connection or channel is gone: open a new one and carry on.
_LINK_ERRORS: Final = (AMQPConnectionError, ChannelWrongStateError)
_IDLE: Final = 10.0  # seconds after which the main link is checked before it is used again
#: The setting a 406 on ``queue.declare`` names: "inequivalent arg 'x-queue-type' for queue ...".
_INEQUIVALENT: Final = re.compile(r"inequivalent arg '([^']+)'")
#: Differences a queue cannot be used with: it would lose messages or is not the type asked for.
_FATAL_DIFFERENCES: Final = frozenset({"durable", "exclusive", "auto_delete", "x-queue-type"})


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
        self._lock = threading.RLock()  # guards the main link (pika is not thread-safe)
        self._link: Link | None = None
        self._connected = False
        self._closing = threading.Event()
        self._consumers: set[Consumer] = set()
        self._consumers_lock = threading.Lock()
        self._tag = uuid.uuid4().hex[:8]  # names this plugin's connections on the broker
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
            link = Link(pika.BlockingConnection(self._parameters("health", short=True)), 1)
            try:
                channel = link.connection.channel()
                declared = channel.queue_declare("", exclusive=True, auto_delete=True)
                channel.queue_delete(declared.method.queue)
            finally:
                link.close()
        except Exception as exc:  # a health check reports, it never raises
            hint = "login refused" if isinstance(exc, _AUTH_ERRORS) else "is the broker running?"
            message = f"{self._where}: {describe(exc, self._secrets)} ({hint})"
            return False, {**details, "status": "error", "message": message}
        latency = round((time.monotonic() - started) * 1000, 1)
        status = "connected" if self._connected else "reachable"
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
        with self._lock:
            if kwargs:
                self._drop_link()
                for key, value in kwargs.items():
                    setattr(self, key, value)
            if self._closing.is_set():
                self._closing = threading.Event()
            if self._link is None or not self._link.is_open:
                self._link = self._open_link("main", attempts=self.connection_attempts)
            self._connected = True

    def disconnect(self) -> None:
        """Close the main connection; every running ``consume`` stops and returns."""
        self._closing.set()
        with self._consumers_lock:
            consumers = list(self._consumers)
        for consumer in consumers:
            consumer.wake()
        with self._lock:
            self._connected = False
            self._drop_link()

    def create_queue(self, queue_name: str) -> None:
        """Declare the durable queue ``queue_name`` and its dead-letter queue. Idempotent.

        A queue that exists with arguments this plugin does not set (dead-letter settings left by
        an older observml, a length limit) is used as it is, and logged once.

        Raises:
            ConfigError: The queue exists as another type, or not durable.
        """

        def declare(link: Link) -> None:
            self._declare(link, queue_name)

        self._call(declare, f"declaring queue {queue_name!r}")

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

        return self._call(get, f"pulling from {queue!r}")

    def flush_queue(self, queue: str) -> int:
        """Purge the ready messages of ``queue`` and return how many were removed."""

        def purge(link: Link) -> int:
            try:
                return int(link.channel().queue_purge(queue).method.message_count)
            except ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return 0
                raise

        return self._call(purge, f"purging {queue!r}")

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
            self._ensure_queue(link, queue)
            pending = [out for out in outs if out.message_id not in confirmed]
            failed.update(link.confirmer().publish(queue, pending, confirmed))

        if outs:
            self._call(send, f"publishing to {queue!r}")
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

    def _broker(self) -> Broker:
        """What a consumer of this plugin needs of it (see :class:`Broker`)."""
        return Broker(
            closing=self._closing,
            open_link=self._open_link,
            declare=self._declare,
            publish_again=self._publish_again,
            dead_letter=self._dead_letter,
            channel_error=self._channel_error,
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

        return self._call(depth, f"reading the depth of {queue!r}")

    # -- internals ------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        vhost = "" if self.virtual_host == "/" else f" (virtual host {self.virtual_host!r})"
        return f"RabbitMQ at {self.host}:{self.port}{vhost}"

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()

    def _parameters(self, purpose: str, *, short: bool = False) -> Any:
        timeout = self.health_timeout if short else self.socket_timeout
        return pika.ConnectionParameters(
            host=self.host,
            port=int(self.port),
            virtual_host=self.virtual_host,
            credentials=pika.PlainCredentials(self.username, self.password),
            heartbeat=self.heartbeat,
            connection_attempts=1,
            socket_timeout=timeout * (2 / 3 if short else 1),
            stack_timeout=timeout if short else timeout * 3,
            blocked_connection_timeout=timeout if short else self.blocked_connection_timeout,
            client_properties={"connection_name": f"observml {purpose} [{self._tag}]"},
        )

    def _open_link(
        self,
        purpose: str,
        *,
        attempts: int | None = None,
        timeout: float | None = None,
        sleep: Callable[[float], object] = time.sleep,
        retry_auth: bool = False,
    ) -> Link:
        """Connect with bounded retries; translate pika's errors into observml's.

        Login errors end the retries at once, unless ``retry_auth``: a consumer that was logged
        in before retries them too, since a broker that is starting or stopping can drop a
        connection mid-handshake, which pika reports as a probable login error.
        """
        parameters = self._parameters(purpose)
        tries = 0

        def attempt() -> Link:
            nonlocal tries
            tries += 1
            return Link(pika.BlockingConnection(parameters), self.confirm_window)

        def log_retry(exc: BaseException, wait: float, retry: int) -> None:
            logger.warning(
                "%s unreachable (%s); retry %d in %.1fs",
                self._where,
                describe(exc, self._secrets),
                retry,
                wait,
            )

        try:
            return retry_call(
                attempt,
                retry_on=(AMQPConnectionError, OSError),
                give_up_on=() if retry_auth else _AUTH_ERRORS,
                max_retries=None if attempts is None else max(attempts - 1, 0),
                timeout=timeout,
                interval_start=self.retry_interval,
                interval_max=self.retry_interval_max,
                on_retry=log_retry,
                sleep=sleep,
            )
        except ProbableAccessDeniedError as exc:
            raise AuthenticationError(
                f"{self._where}: user {self.username!r} may not use virtual host"
                f" {self.virtual_host!r}. Check virtual_host, or grant access with"
                f" 'rabbitmqctl set_permissions -p {self.virtual_host} {self.username}"
                ' ".*" ".*" ".*"\'.'
            ) from exc
        except _AUTH_ERRORS as exc:
            raise AuthenticationError(
                f"{self._where}: the broker refused the login of user {self.username!r}. Check"
                " username and password under plugins.datastream.config."
            ) from exc
        except (AMQPConnectionError, OSError) as exc:
            raise ServiceUnavailableError(
                f"{self._where} is unreachable after {tries} attempt(s)"
                f" ({describe(exc, self._secrets)}). Is the broker running? Check host and port"
                " under plugins.datastream.config."
            ) from exc

    def _drop_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def _call(self, op: Callable[[Link], T], action: str) -> T:
        """Run ``op`` on the main link; after a dropped connection, reconnect and run it again."""
        with self._lock:
            if not self._connected:
                raise ServiceUnavailableError(
                    f"{self._where}: not connected while {action}. Call connect() first (the hub"
                    " does it when the plugin is registered)."
                )
            error: Exception | None = None
            for _ in range(2):
                link = self._main_link()
                try:
                    return op(link)
                except ChannelClosedByBroker as exc:
                    if exc.reply_code in PERMANENT_CODES:
                        raise self._channel_error(exc, action) from exc
                    error = exc  # the channel is reopened on the next try
                except _LINK_ERRORS as exc:
                    error = exc
                    self._drop_link()
                logger.warning("%s: %s failed (%s); retrying", self._where, action, error)
            raise ServiceUnavailableError(
                f"{self._where}: {action} failed twice; the connection keeps dropping"
                f" ({describe(error, self._secrets) if error else 'unknown'}). Check the"
                " broker's logs."
            ) from error

    def _main_link(self) -> Link:
        """Return the open main link, reconnecting if the broker closed it while idle."""
        link = self._link
        if link is not None and link.is_open and time.monotonic() - link.last_used > _IDLE:
            try:  # answers heartbeats, and notices a connection the broker dropped meanwhile
                link.connection.process_data_events(time_limit=0)
            except _LINK_ERRORS:
                logger.info("%s: the idle connection was closed; reconnecting", self._where)
                self._drop_link()
        if self._link is None or not self._link.is_open:
            self._link = self._open_link("main", attempts=self.connection_attempts)
        self._link.last_used = time.monotonic()
        return self._link

    def _channel_error(self, exc: ChannelClosedByBroker, action: str) -> Exception:
        if exc.reply_code == 403:
            return AuthenticationError(
                f"{self._where}: user {self.username!r} is not allowed to do this while {action}"
                f" ({exc.reply_text}). Grant the permission with 'rabbitmqctl set_permissions'."
            )
        return ServiceUnavailableError(
            f"{self._where}: the broker refused {action} ({exc.reply_code} {exc.reply_text})."
        )

    def _declare(self, link: Link, queue: str) -> None:
        """Declare ``queue`` and its dead-letter queue: durable, no arguments but the type.

        These are the arguments a producer declares too (none for classic queues), so neither
        side gets ``406 PRECONDITION_FAILED`` whoever comes first.
        """
        arguments = {"x-queue-type": "quorum"} if self.queue_type == "quorum" else None
        for name in (dead_letter_queue(queue), queue):
            try:
                link.channel().queue_declare(name, durable=True, arguments=arguments)
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 406:
                    raise
                self._use_as_is(link, name, exc)
            link.known_queues.add(name)

    def _use_as_is(self, link: Link, queue: str, refused: ChannelClosedByBroker) -> None:
        """Use a queue that exists with other arguments, unless it could lose messages."""
        found = _INEQUIVALENT.search(str(refused.reply_text))
        setting = found.group(1) if found else None
        if setting == "x-queue-type":
            raise ConfigError(
                f"{self._where}: queue {queue!r} already exists as another type"
                f" ({refused.reply_text}). Set queue_type to the queue's type, or move its"
                f" messages elsewhere and delete it (rabbitmqctl delete_queue {queue}). Producers"
                " of a quorum hub declare arguments={'x-queue-type': 'quorum'}.",
                key="plugins.datastream.config.queue_type",
            ) from refused
        if setting is None or setting in _FATAL_DIFFERENCES:
            raise ConfigError(
                f"{self._where}: queue {queue!r} already exists with settings the hub cannot use"
                f" ({refused.reply_text}). Have its producers declare it with durable=True and"
                f" no other flags, and delete this one (rabbitmqctl delete_queue {queue}) once it"
                " is empty."
            ) from refused
        link.channel().queue_declare(queue, passive=True)
        if queue not in self._reported:
            self._reported.add(queue)
            logger.warning(
                "%s: queue %r exists with arguments observml no longer sets (%s); using it as it"
                " is. Producers that declare it with durable=True alone get the same error:"
                " once it is empty, delete it (rabbitmqctl delete_queue %s) and let either side"
                " declare it again.",
                self._where,
                queue,
                refused.reply_text,
                queue,
            )

    def _ensure_queue(self, link: Link, queue: str) -> None:
        if queue in link.known_queues:
            return
        try:
            link.channel().queue_declare(queue, passive=True)
        except ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            self._declare(link, queue)
        link.known_queues.add(queue)

    def _dead_letter(self, link: Link, queue: str, items: Sequence[tuple[Message, str]]) -> None:
        """Publish ``items`` to ``queue``'s dead-letter queue and wait for the confirms."""
        dead = dead_letter_queue(queue)
        self._ensure_queue(link, dead)
        copies = [
            (message, dead_letter_headers(message.headers, reason)) for message, reason in items
        ]
        failed = self._publish_copies(link, dead, copies)
        if failed:
            raise ServiceUnavailableError(
                f"{self._where}: could not dead-letter {len(failed)} message(s) to {dead!r}"
                f" ({next(iter(failed.values()))}); they stay in {queue!r}. Check the broker."
            )

    def _publish_again(self, link: Link, queue: str, items: Sequence[tuple[Message, int]]) -> None:
        """Publish copies of ``items`` to the tail of ``queue``, each with its count of returns."""
        copies = [
            (message, {**message.headers, REDELIVERIES_HEADER: returns})
            for message, returns in items
        ]
        failed = self._publish_copies(link, queue, copies)
        if failed:
            raise ServiceUnavailableError(
                f"{self._where}: could not publish {len(failed)} returned message(s) again to"
                f" {queue!r} ({next(iter(failed.values()))}); the broker keeps them unacked."
                " Check the broker."
            )

    def _publish_copies(
        self, link: Link, queue: str, items: Sequence[tuple[Message, Mapping[str, Any]]]
    ) -> dict[str, str]:
        """Publish copies of messages with new headers; return the failures after confirms."""
        outs = [
            OutgoingMessage(
                message.body, headers, message.message_id or uuid.uuid4().hex, message.content_type
            )
            for message, headers in items
        ]
        return link.confirmer().publish(queue, outs, set())

    def _run(self, consumer: Consumer) -> None:
        if not self._connected:
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
