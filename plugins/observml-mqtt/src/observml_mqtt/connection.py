"""Opening paho-mqtt clients: MQTT 5, TLS, login, bounded retries, fast failure on a refusal.

Every client of the plugin (the publisher, each queue's session, the health probe) is opened
by :func:`open_client`: it connects with bounded exponential backoff (only the network and
"server unavailable/busy" are retried), raises :class:`AuthenticationError` at once when the
broker refuses the login, and then leaves paho's network thread running, which reconnects on
its own (``reconnect_delay_set``) after the broker went away.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from observml.errors import AuthenticationError, ServiceUnavailableError
from observml.plugins.retry import retry_call

__all__ = [
    "AUTH_REFUSED",
    "BUSY",
    "Endpoint",
    "RefusedError",
    "check_connack",
    "close_client",
    "connect_properties",
    "connect_retrying",
    "new_client",
    "open_client",
    "refusal_error",
]

logger = logging.getLogger(__name__)

#: CONNACK reason codes that mean "wrong login": retrying cannot help.
AUTH_REFUSED: Final = frozenset(
    {134, 135, 138, 140}
)  # bad login, not authorized, banned, auth method
#: CONNACK reason codes worth another try.
BUSY: Final = frozenset({136, 137, 159})  # server unavailable, busy, connection rate exceeded

#: Called by paho on each (re)connection that the broker accepted: ``(client, session_present)``.
OnConnected = Callable[[mqtt.Client, bool], None]
OnMessage = Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]


class RefusedError(Exception):
    """The broker answered CONNECT with a failure reason code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"the broker refused the connection: {reason} (reason code {code})")
        self.code = code


@dataclass(frozen=True)
class Endpoint:
    """Where the broker is and how to log in and reconnect (the plugin's settings)."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_certs: str | None
    certfile: str | None
    keyfile: str | None
    tls_insecure: bool
    keepalive: int
    session_expiry: int
    connect_timeout: float
    connection_attempts: int
    retry_interval: float
    retry_interval_max: float

    @property
    def where(self) -> str:
        """Names the broker in messages (never the password)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"MQTTPlugin({scheme}://{user}{self.host}:{self.port})"

    def describe(self, exc: BaseException) -> str:
        """Return ``exc`` as text with the password masked."""
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(self.password, "****") if self.password else text


def new_client(endpoint: Endpoint, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    """A paho client with the plugin's protocol, login, TLS and timeouts; not connected."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(
            ca_certs=endpoint.ca_certs,
            certfile=endpoint.certfile,
            keyfile=endpoint.keyfile,
            cert_reqs=ssl.CERT_NONE if endpoint.tls_insecure else ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(endpoint.tls_insecure)
    client.connect_timeout = endpoint.connect_timeout
    client.reconnect_delay_set(
        min_delay=max(1, round(endpoint.retry_interval)),
        max_delay=max(1, round(endpoint.retry_interval_max)),
    )
    return client


def open_client(
    endpoint: Endpoint,
    client_id: str,
    *,
    clean_start: bool,
    receive_maximum: int | None = None,
    on_connected: OnConnected | None = None,
    on_message: OnMessage | None = None,
    on_lost: Callable[[], None] | None = None,
    configure: Callable[[mqtt.Client], None] | None = None,
) -> mqtt.Client:
    """Connect a client and start its network thread; it reconnects by itself afterwards.

    ``on_connected`` runs on every accepted (re)connection, e.g. to subscribe again;
    ``on_lost`` when a connection drops; ``configure`` sets the client up before it connects.

    Raises:
        AuthenticationError: The broker refused the login (no retry).
        ServiceUnavailableError: The broker stayed unreachable for every attempt.
    """
    client = new_client(endpoint, client_id, manual_ack=on_message is not None)
    if configure is not None:
        configure(client)
    answered = threading.Event()
    outcome: list[ReasonCode] = []

    def connected(
        c: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, code: ReasonCode, _p: Any
    ) -> None:
        if not answered.is_set():
            outcome.append(code)
            if code.is_failure:
                answered.set()
                return
        if code.is_failure:
            if code.value in AUTH_REFUSED:
                logger.error("%s: the broker refused the login (%s)", endpoint.where, code)
                c.disconnect()
            return
        if on_connected is not None:
            on_connected(c, bool(flags.session_present))
        answered.set()

    def disconnected(_c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        if on_lost is not None:
            on_lost()
        if not answered.is_set():
            outcome.append(code)
            answered.set()

    client.on_connect = connected
    client.on_disconnect = disconnected
    if on_message is not None:
        client.on_message = on_message
    props = connect_properties(endpoint, clean_start=clean_start, receive_maximum=receive_maximum)

    def attempt() -> None:
        answered.clear()
        outcome.clear()
        client.connect(
            endpoint.host,
            endpoint.port,
            keepalive=endpoint.keepalive,
            clean_start=clean_start,
            properties=props,
        )
        client.loop_start()
        if not answered.wait(endpoint.connect_timeout + 1.0):
            _stop(client)
            raise TimeoutError(f"no CONNACK within {endpoint.connect_timeout}s")
        check_connack(outcome[0] if outcome else None, lambda: _stop(client))

    connect_retrying(endpoint, attempt)
    return client


def check_connack(code: ReasonCode | None, drop: Callable[[], None]) -> None:
    """Raise for a CONNACK that refused the connection, after ``drop`` closed it.

    Raises:
        RefusedError: The broker is busy or unavailable (worth another attempt).
        _Fatal: Any other refusal (a login): :func:`connect_retrying` stops at once.
    """
    if code is not None and code.is_failure:
        drop()
        refused = RefusedError(int(code.value), str(code))
        if refused.code not in BUSY:
            raise _Fatal(refused)
        raise refused


def connect_retrying(endpoint: Endpoint, attempt: Callable[[], None]) -> None:
    """Run one connection ``attempt`` with the endpoint's bounded retries.

    Raises:
        AuthenticationError: The broker refused the login (no retry).
        ServiceUnavailableError: The broker stayed unreachable for every attempt.
    """
    try:
        retry_call(
            attempt,
            retry_on=(OSError, TimeoutError, RefusedError, ssl.SSLError),
            give_up_on=(_Fatal,),
            max_retries=max(endpoint.connection_attempts - 1, 0),
            interval_start=endpoint.retry_interval,
            interval_max=endpoint.retry_interval_max,
            on_retry=lambda exc, wait, n: logger.warning(
                "%s: connection attempt %d failed (%s); retrying in %.1fs",
                endpoint.where,
                n,
                endpoint.describe(exc),
                wait,
            ),
        )
    except _Fatal as fatal:
        raise refusal_error(endpoint, fatal.cause) from fatal.cause
    except (OSError, TimeoutError, RefusedError) as exc:
        raise ServiceUnavailableError(
            f"{endpoint.where}: could not connect after {endpoint.connection_attempts}"
            f" attempt(s) ({endpoint.describe(exc)}). Is the broker running and reachable"
            " (host, port, tls)?"
        ) from exc


class _Fatal(Exception):
    def __init__(self, cause: RefusedError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def connect_properties(
    endpoint: Endpoint, *, clean_start: bool, receive_maximum: int | None
) -> Properties:
    """CONNECT's properties: the session's expiry and how many messages may be in flight."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0 if clean_start else endpoint.session_expiry
    if receive_maximum:
        props.ReceiveMaximum = min(max(receive_maximum, 1), 65535)
    return props


def refusal_error(endpoint: Endpoint, exc: RefusedError) -> ServiceUnavailableError:
    """What a refused CONNECT raises: :class:`AuthenticationError` for a refused login."""
    if exc.code in AUTH_REFUSED:
        return AuthenticationError(
            f"{endpoint.where}: {exc}. Check plugins.datastream.config.username and password"
            " (and the broker's password_file / ACL)."
        )
    return ServiceUnavailableError(f"{endpoint.where}: {exc}. Check the broker's log.")


def _stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def close_client(client: mqtt.Client) -> None:
    """Disconnect ``client`` (its session stays on the broker) and stop its thread."""
    _stop(client)
