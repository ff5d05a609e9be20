"""One session's MQTT connection, driven by a :class:`~observml_mqtt.driver.Driver`, not a thread.

paho's ``loop_start`` gives every client a network thread of its own; a hub with a session per
queue would hold a thread per queue. A :class:`Link` uses paho's external-loop API instead
(``socket()``, ``loop_read()``, ``loop_write()``, ``want_write()``, ``loop_misc()``): whichever
driver holds it reads and writes its socket, and :meth:`Link.tend` reconnects it, so one thread
can drive every session of the plugin. Reconnecting is therefore done here, as paho's thread
would: with backoff from ``retry_interval`` doubling to ``retry_interval_max``, each accepted
connection calling ``on_connected`` (the session subscribes again), each lost one ``on_lost``.

The first connection is made by :meth:`Link.open` on the caller's thread, with the bounded
retries of :func:`~observml_mqtt.connection.open_client`: a refused login raises
:class:`~observml.errors.AuthenticationError` at once. A refusal later, while reconnecting, is
reported in :attr:`Link.error` and retried at the longest interval (the broker's password file
may be fixed meanwhile).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from observml_mqtt.connection import (
    AUTH_REFUSED,
    Endpoint,
    OnConnected,
    OnMessage,
    check_connack,
    connect_properties,
    connect_retrying,
    new_client,
)

__all__ = ["Link"]

logger = logging.getLogger(__name__)

_STEP = 0.05  # seconds per paho loop() call while the caller's thread connects
_BURST = 64  # most packets read per turn of the driver


class Link:
    """A paho client that a driver reads, writes and reconnects (see the module docstring).

    Args:
        endpoint: The broker and the retry settings.
        client_id: The session's stable client id.
        receive_maximum: Most unacknowledged messages the broker may send at once.
        on_connected: Called on each accepted connection (on the driving thread).
        on_message: paho's ``on_message`` (manual ack).
        on_lost: Called when a connection drops (on the driving thread).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        client_id: str,
        *,
        receive_maximum: int,
        on_connected: OnConnected,
        on_message: OnMessage,
        on_lost: Callable[[], None],
    ) -> None:
        self._endpoint = endpoint
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._props = connect_properties(
            endpoint, clean_start=False, receive_maximum=receive_maximum
        )
        self._wake: Callable[[], None] = _noop
        client = new_client(endpoint, client_id, manual_ack=True)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = on_message
        # A packet queued from another thread (an ack) wakes the driver to write it.
        client.on_socket_register_write = lambda _c, _u, _s: self._wake()
        self.client = client
        self._answered: ReasonCode | None = None
        self._closed = False
        self._delay = 0.0
        self._retry_at: float | None = None  # when to reconnect next; None while connected
        self._connecting_since: float | None = None
        #: Why the link is down (``None`` while connected); never holds the password.
        self.error: str | None = None

    # -- the caller's thread ---------------------------------------------------------------
    def open(self) -> None:
        """Connect on the calling thread, retrying as ``open_client`` does.

        Raises:
            AuthenticationError: The broker refused the login (no retry).
            ServiceUnavailableError: The broker stayed unreachable for every attempt.
        """
        endpoint = self._endpoint

        def attempt() -> None:
            self._answered = None
            self.client.connect(
                endpoint.host,
                endpoint.port,
                keepalive=endpoint.keepalive,
                clean_start=False,
                properties=self._props,
            )
            if not self.drive(lambda: self._answered is not None, endpoint.connect_timeout + 1.0):
                self._drop()
                raise TimeoutError(f"no CONNACK within {endpoint.connect_timeout}s")
            check_connack(self._answered, self._drop)

        connect_retrying(endpoint, attempt)

    def drive(self, done: Callable[[], bool], timeout: float) -> bool:
        """Run the client on the calling thread until ``done()`` or ``timeout``; return ``done()``.

        Only while no driver holds the link (before :meth:`Driver.adopt`).
        """
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline or self.client.socket() is None:
                return done()
            self._step(_STEP)
        return True

    def _step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the socket, then read, write and tend it once.

        Not paho's ``loop()``: that opens a socket pair per client for good (two more file
        descriptors per session, and a byte written to it for every packet).
        """
        client = self.client
        sock = client.socket()
        if sock is None:
            return
        poller = select.poll()
        poller.register(sock, select.POLLIN | (select.POLLOUT if client.want_write() else 0))
        for _, event in poller.poll(timeout * 1000):
            if event & select.POLLOUT:
                client.loop_write()
            if event & ~select.POLLOUT and client.socket() is not None:
                client.loop_read()
        if client.socket() is not None:
            client.loop_misc()

    def close(self) -> None:
        """Disconnect (the session stays on the broker); only while no driver holds the link."""
        self._closed = True
        self._drop()

    # -- the driving thread ----------------------------------------------------------------
    def attach(self, wake: Callable[[], None]) -> None:
        """Wake ``wake`` (the holding driver) when a packet waits to be written."""
        self._wake = wake

    def socket(self) -> Any:
        """The socket to watch, or ``None`` while down."""
        return self.client.socket()

    def want_write(self) -> bool:
        """Whether packets wait to be written."""
        return bool(self.client.want_write())

    def pending(self) -> bool:
        """Whether TLS holds decrypted bytes the socket will not signal again."""
        sock = self.client.socket()
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def read(self) -> None:
        """Read what arrived (paho calls ``on_message``, ``on_connect``, ... here).

        paho reads one packet per ``loop_read``; while more bytes wait on the socket (a peek,
        one system call) this reads on, up to ``_BURST`` packets, instead of polling again.
        """
        client = self.client
        for _ in range(_BURST):
            client.loop_read()
            sock = client.socket()
            if sock is None:
                return
            if isinstance(sock, ssl.SSLSocket):
                if not sock.pending():
                    return
                continue
            try:
                if not cast(socket.socket, sock).recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    continue  # end of stream: the next loop_read sees the connection lost
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # the next loop_read reports it

    def write(self) -> None:
        """Write what waits."""
        self.client.loop_write()

    def tend(self, now: float) -> float:
        """Keep the connection alive or reconnect it; return seconds until it needs tending."""
        if self._closed:
            return 1.0
        client = self.client
        if client.socket() is not None:
            client.loop_misc()  # keepalive pings; a silent broker drops the connection here
        if client.is_connected():
            return 1.0
        if self._connecting_since is not None:
            if now - self._connecting_since < self._endpoint.connect_timeout + 1.0:
                return 0.1  # waiting for CONNACK
            self.error = self.error or f"no CONNACK within {self._endpoint.connect_timeout}s"
            self._connecting_since = None
            self._schedule(now)
        if self._retry_at is None:
            self._schedule(now)
        assert self._retry_at is not None
        if now < self._retry_at:
            return self._retry_at - now
        try:
            # Blocks this thread for the TCP (and TLS) handshake: at most connect_timeout.
            client.reconnect()
        except (OSError, ssl.SSLError) as exc:
            self.error = self._endpoint.describe(exc)
            self._schedule(now)
            return self._retry_at - now
        self._retry_at = None
        self._connecting_since = now
        return 0.1

    def _schedule(self, now: float) -> None:
        endpoint = self._endpoint
        self._delay = min(
            max(self._delay * 2, endpoint.retry_interval), endpoint.retry_interval_max
        )
        self._retry_at = now + self._delay

    # -- paho's callbacks (on whichever thread drives the client) ---------------------------
    def _connected(
        self, client: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, code: ReasonCode, _p: Any
    ) -> None:
        self._answered = code
        self._connecting_since = None
        if code.is_failure:
            hint = " (login refused)" if code.value in AUTH_REFUSED else ""
            self.error = f"the broker refused the connection: {code}{hint}"
            if code.value in AUTH_REFUSED:
                self._delay = self._endpoint.retry_interval_max  # retry, but not eagerly
            return
        self.error = None
        self._delay = 0.0
        self._retry_at = None
        self._on_connected(client, bool(flags.session_present))

    def _disconnected(self, _c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        if not self._closed and self.error is None:
            self.error = f"the connection dropped ({code})"
        self._connecting_since = None
        self._on_lost()

    def _drop(self) -> None:
        """Give up the connection (a failed attempt, or closing): DISCONNECT, then the socket."""
        client = self.client
        if client.socket() is None:
            return
        client.disconnect()
        client.loop_write()  # paho closes the socket once DISCONNECT is written
        if client.socket() is not None:  # the write would block: close it anyway
            client._sock_close()


def _noop() -> None:
    pass
