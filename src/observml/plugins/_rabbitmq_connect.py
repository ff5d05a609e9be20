"""The RabbitMQ plugin's connections: opening them, and the main one its calls share.

:func:`open_link` connects with bounded exponential backoff and jitter
(:func:`~observml.plugins.retry.retry_call`) and turns pika's failures into observml's: refused
credentials or virtual host fail at once as ``AuthenticationError``, a broker that stays away
is a ``ServiceUnavailableError`` after the last attempt. :func:`probe` is the health check's
short-lived connection. :class:`MainLink` is the one connection the plugin's synchronous calls
share: it reconnects after a drop and runs the call once more. The settings are read from the
plugin (:class:`Settings`) each time a connection opens, so ``connect(**overrides)`` applies to
the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

import pika
from pika.exceptions import (
    AMQPConnectionError,
    ChannelClosedByBroker,
    ChannelWrongStateError,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)
from pika.exceptions import AuthenticationError as PikaAuthenticationError

from observml.errors import AuthenticationError, DataError, ServiceUnavailableError
from observml.plugins._rabbitmq_link import PERMANENT_CODES, Link, describe
from observml.plugins.retry import retry_call

__all__ = [
    "AUTH_ERRORS",
    "MainLink",
    "Settings",
    "channel_error",
    "open_link",
    "parameters",
    "probe",
    "secrets",
    "where",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Refused credentials or vhost: retrying cannot help (they subclass AMQPConnectionError).
AUTH_ERRORS: Final = (
    ProbableAuthenticationError,
    ProbableAccessDeniedError,
    PikaAuthenticationError,
)
#: The connection or channel is gone: open a new one and carry on.
_LINK_ERRORS: Final = (AMQPConnectionError, ChannelWrongStateError)
_IDLE: Final = 10.0  # seconds after which the main link is checked before it is used again


class Settings(Protocol):
    """The plugin's settings a connection is opened with."""

    host: str
    port: int
    username: str
    password: str
    virtual_host: str
    heartbeat: int
    retry_interval: float
    retry_interval_max: float
    socket_timeout: float
    blocked_connection_timeout: float
    confirm_window: int
    health_timeout: float
    connection_attempts: int


def where(settings: Settings) -> str:
    """Name the broker for messages: ``RabbitMQ at host:port`` (and a virtual host not ``/``)."""
    vhost = "" if settings.virtual_host == "/" else f" (virtual host {settings.virtual_host!r})"
    return f"RabbitMQ at {settings.host}:{settings.port}{vhost}"


def secrets(settings: Settings) -> tuple[str, ...]:
    """Return the values to mask in messages (the password)."""
    return (settings.password,) if settings.password else ()


def parameters(settings: Settings, purpose: str, tag: str, *, short: bool = False) -> Any:
    """Return pika's parameters of one connection, named for ``purpose`` and the plugin's tag.

    ``short`` bounds the whole connection by ``health_timeout`` (for the health probe).
    """
    timeout = settings.health_timeout if short else settings.socket_timeout
    return pika.ConnectionParameters(
        host=settings.host,
        port=int(settings.port),
        virtual_host=settings.virtual_host,
        credentials=pika.PlainCredentials(settings.username, settings.password),
        heartbeat=settings.heartbeat,
        connection_attempts=1,
        socket_timeout=timeout * (2 / 3 if short else 1),
        stack_timeout=timeout if short else timeout * 3,
        blocked_connection_timeout=timeout if short else settings.blocked_connection_timeout,
        client_properties={"connection_name": f"observml {purpose} [{tag}]"},
    )


def open_link(
    settings: Settings,
    purpose: str,
    *,
    tag: str,
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
    params = parameters(settings, purpose, tag)
    place, masked = where(settings), secrets(settings)
    tries = 0

    def attempt() -> Link:
        nonlocal tries
        tries += 1
        return Link(pika.BlockingConnection(params), settings.confirm_window)

    def log_retry(exc: BaseException, wait: float, retry: int) -> None:
        logger.warning(
            "%s unreachable (%s); retry %d in %.1fs", place, describe(exc, masked), retry, wait
        )

    try:
        return retry_call(
            attempt,
            retry_on=(AMQPConnectionError, OSError),
            give_up_on=() if retry_auth else AUTH_ERRORS,
            max_retries=None if attempts is None else max(attempts - 1, 0),
            timeout=timeout,
            interval_start=settings.retry_interval,
            interval_max=settings.retry_interval_max,
            on_retry=log_retry,
            sleep=sleep,
        )
    except ProbableAccessDeniedError as exc:
        raise AuthenticationError(
            f"{place}: user {settings.username!r} may not use virtual host"
            f" {settings.virtual_host!r}. Check virtual_host, or grant access with"
            f" 'rabbitmqctl set_permissions -p {settings.virtual_host} {settings.username}"
            ' ".*" ".*" ".*"\'.'
        ) from exc
    except AUTH_ERRORS as exc:
        raise AuthenticationError(
            f"{place}: the broker refused the login of user {settings.username!r}. Check"
            " plugins.datastream.config.username and plugins.datastream.config.password."
        ) from exc
    except (AMQPConnectionError, OSError) as exc:
        raise ServiceUnavailableError(
            f"{place} is unreachable after {tries} attempt(s)"
            f" ({describe(exc, masked)}). Is the broker running? Check host and port"
            " under plugins.datastream.config."
        ) from exc


def probe(settings: Settings, tag: str) -> None:
    """Open a short-lived connection, declare an exclusive server-named queue and delete it.

    RabbitMQ 4 refuses transient non-exclusive queues, hence the exclusive one. Raises what
    pika raises; the health check reports it.
    """
    link = Link(pika.BlockingConnection(parameters(settings, "health", tag, short=True)), 1)
    try:
        channel = link.connection.channel()
        declared = channel.queue_declare("", exclusive=True, auto_delete=True)
        channel.queue_delete(declared.method.queue)
    finally:
        link.close()


def channel_error(settings: Settings, exc: ChannelClosedByBroker, action: str) -> Exception:
    """Return the observml error for a channel the broker closed while doing ``action``."""
    if exc.reply_code == 403 and "exclusive use" in str(exc.reply_text):
        return ServiceUnavailableError(
            f"{where(settings)}: another consumer holds the queue exclusively, so the broker"
            f" refused {action} ({exc.reply_text}). Stop that consumer ('rabbitmqctl"
            " list_consumers' names its channel), or consume another queue."
        )
    if exc.reply_code == 406 and "message size" in str(exc.reply_text):
        return DataError(
            f"{where(settings)}: the broker refused {action}: {exc.reply_text}. Send smaller"
            " messages (fewer rows per message), or raise max_message_size in rabbitmq.conf."
        )
    if exc.reply_code == 403:
        return AuthenticationError(
            f"{where(settings)}: user {settings.username!r} is not allowed to do this while"
            f" {action} ({exc.reply_text}). Grant the permission with 'rabbitmqctl"
            " set_permissions'."
        )
    return ServiceUnavailableError(
        f"{where(settings)}: the broker refused {action} ({exc.reply_code} {exc.reply_text})."
    )


class MainLink:
    """The plugin's connection for synchronous calls, one at a time (pika is not thread-safe).

    Attributes:
        lock: Held around every use of the connection, and by the plugin while it changes
            settings.
        connected: Whether the plugin is connected (``open`` ran, ``close`` did not since).
    """

    def __init__(self, settings: Settings, tag: str) -> None:
        self._settings = settings
        self._tag = tag
        self.lock = threading.RLock()
        self.connected = False
        self._link: Link | None = None

    def open(self) -> None:
        """Open the connection unless it is open, retrying ``connection_attempts`` times."""
        with self.lock:
            if self._link is None or not self._link.is_open:
                self._link = self._open()
            self.connected = True

    def close(self) -> None:
        """Close the connection; calls fail until ``open``."""
        with self.lock:
            self.connected = False
            self.drop()

    def drop(self) -> None:
        """Close the connection; the next call opens a new one."""
        if self._link is not None:
            self._link.close()
            self._link = None

    def call(self, op: Callable[[Link], T], action: str) -> T:
        """Run ``op`` on the link; after a dropped connection, reconnect and run it again."""
        place = where(self._settings)
        with self.lock:
            if not self.connected:
                raise ServiceUnavailableError(
                    f"{place}: not connected while {action}. Call connect() first (the hub"
                    " does it when the plugin is registered)."
                )
            error: Exception | None = None
            for _ in range(2):
                link = self._current()
                try:
                    return op(link)
                except ChannelClosedByBroker as exc:
                    if exc.reply_code in PERMANENT_CODES:
                        raise channel_error(self._settings, exc, action) from exc
                    error = exc  # the channel is reopened on the next try
                except _LINK_ERRORS as exc:
                    error = exc
                    self.drop()
                logger.warning("%s: %s failed (%s); retrying", place, action, error)
            raise ServiceUnavailableError(
                f"{place}: {action} failed twice; the connection keeps dropping"
                f" ({describe(error, secrets(self._settings)) if error else 'unknown'}). Check"
                " the broker's logs."
            ) from error

    def _open(self) -> Link:
        return open_link(
            self._settings, "main", tag=self._tag, attempts=self._settings.connection_attempts
        )

    def _current(self) -> Link:
        """Return the open link, reconnecting if the broker closed it while idle."""
        link = self._link
        if link is not None and link.is_open and time.monotonic() - link.last_used > _IDLE:
            try:  # answers heartbeats, and notices a connection the broker dropped meanwhile
                link.connection.process_data_events(time_limit=0)
            except _LINK_ERRORS:
                logger.info(
                    "%s: the idle connection was closed; reconnecting", where(self._settings)
                )
                self.drop()
        if self._link is None or not self._link.is_open:
            self._link = self._open()
        self._link.last_used = time.monotonic()
        return self._link
