"""The RabbitMQ plugin's claims: exclusive queues on one connection of their own.

Taking the claim ``key`` declares the queue ``observml.claim.<key>`` with ``exclusive=True``.
RabbitMQ lets one connection at a time hold an exclusive queue; another connection declaring it
gets ``405 RESOURCE_LOCKED``, which here means "taken". Releasing deletes the queue. The broker
deletes it too when the connection ends: the plugin disconnects, the process is killed, or the
connection misses its heartbeats (a frozen or cut-off host). So a dead hub's claims free
themselves.

All the claims of one plugin share one connection (a hub that queues 500 trainings holds 500
claims, not 500 connections). pika's ``BlockingConnection`` answers heartbeats only while it is
called, so a keeper thread calls it every few seconds while claims are held. When that
connection drops, every claim on it is lost: that is logged, the jobs that held them go on (see
:mod:`observml.plugins.claims`), and the next claim opens a new connection.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from pika.exceptions import AMQPError, ChannelClosedByBroker

from observml.errors import ServiceUnavailableError
from observml.plugins._rabbitmq_connect import Settings, channel_error, open_link, secrets, where
from observml.plugins._rabbitmq_link import Link, describe
from observml.plugins.claims import check_claim_key

__all__ = ["CLAIM_PREFIX", "ClaimKeeper", "RabbitClaim"]

logger = logging.getLogger(__name__)

#: The exclusive queue standing for claim ``key`` is ``CLAIM_PREFIX + key``.
CLAIM_PREFIX: Final = "observml.claim."
_RESOURCE_LOCKED: Final = 405
_KEEP_EVERY: Final = 5.0  # seconds between heartbeat answers at most (a third of the heartbeat)


class RabbitClaim:
    """A claim held as an exclusive queue, until :meth:`release` or its connection's end."""

    def __init__(self, key: str, keeper: ClaimKeeper) -> None:
        self.key = key
        self._keeper = keeper

    @property
    def held(self) -> bool:
        """Whether this claim is still held (released or connection lost: no)."""
        return self._keeper.holds(self)

    def release(self) -> None:
        """Delete the claim's queue. Safe to call twice, and after the connection was lost."""
        self._keeper.release(self)

    def __repr__(self) -> str:
        return f"RabbitClaim({self.key!r}, held={self.held})"


class ClaimKeeper:
    """Takes, keeps and releases one plugin's claims on one connection."""

    def __init__(self, settings: Settings, tag: str) -> None:
        self._settings = settings
        self._tag = tag
        self._lock = threading.Lock()  # held around every use of the connection
        self._link: Link | None = None
        self._held: dict[str, RabbitClaim] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def take(self, key: str) -> RabbitClaim | None:
        """Declare ``observml.claim.<key>`` exclusively; ``None`` when someone holds it.

        Raises:
            AuthenticationError: The broker refused the login.
            ServiceUnavailableError: The broker could not be reached or refused the declaration.
        """
        check_claim_key(key)
        with self._lock:
            if key in self._held:  # this plugin holds it: the broker would say yes again
                return None
            link = self._connection()
            try:
                link.channel().queue_declare(CLAIM_PREFIX + key, exclusive=True, auto_delete=True)
            except ChannelClosedByBroker as exc:  # the channel is closed; the next use reopens it
                if exc.reply_code == _RESOURCE_LOCKED:
                    return None
                raise channel_error(self._settings, exc, f"taking the claim {key!r}") from exc
            except AMQPError as exc:
                self._lose(f"{type(exc).__name__}")
                raise ServiceUnavailableError(
                    f"{where(self._settings)}: the connection dropped while taking the claim"
                    f" {key!r} ({describe(exc, secrets(self._settings))}). Try again."
                ) from exc
            claim = self._held[key] = RabbitClaim(key, self)
            self._start_keeper()
        return claim

    def holds(self, claim: RabbitClaim) -> bool:
        """Whether ``claim`` is still held."""
        with self._lock:
            return self._held.get(claim.key) is claim

    def release(self, claim: RabbitClaim) -> None:
        """Delete ``claim``'s queue if it is still held; never raises."""
        with self._lock:
            if self._held.get(claim.key) is not claim:
                return
            del self._held[claim.key]
            link = self._link
            if link is None or not link.is_open:
                return  # the broker deleted it with the connection
            try:
                link.channel().queue_delete(CLAIM_PREFIX + claim.key)
            except AMQPError as exc:  # the queue goes with the connection, as do the others
                self._lose(f"releasing {claim.key!r}: {type(exc).__name__}")

    def close(self) -> None:
        """Give every claim up (close the connection) and stop the keeper thread."""
        self._stop.set()
        with self._lock:
            self._held.clear()
            self._drop()

    # -- internals ------------------------------------------------------------------------
    def _connection(self) -> Link:
        if self._link is None or not self._link.is_open:
            self._link = open_link(self._settings, "claims", tag=self._tag, attempts=2)
        return self._link

    def _start_keeper(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._keep, args=(self._stop,), name=f"observml-claims-{self._tag}"
            )
            self._thread.daemon = True
            self._thread.start()

    def _keep(self, stop: threading.Event) -> None:
        heartbeat = float(self._settings.heartbeat or 0)
        every = min(_KEEP_EVERY, heartbeat / 3) if heartbeat > 0 else _KEEP_EVERY
        while not stop.wait(every):
            with self._lock:
                if not self._held:
                    self._thread = None
                    self._drop()  # nothing to hold: no idle connection either
                    return
                link = self._link
                try:
                    if link is None:
                        raise ConnectionError("no connection")
                    link.connection.process_data_events(time_limit=0)
                except (AMQPError, ConnectionError) as exc:
                    self._lose(type(exc).__name__)

    def _lose(self, why: str) -> None:
        """The connection is gone, and with it every claim on it (lock held)."""
        if self._held:
            logger.warning(
                "claims %s lost: their RabbitMQ connection dropped (%s); the jobs that held them"
                " go on, and another hub may take the claims meanwhile",
                ", ".join(sorted(self._held)),
                why,
            )
        self._held.clear()
        self._drop()

    def _drop(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
