"""The RabbitMQ plugin's claims: an exclusive queue on a connection of its own.

Taking the claim ``key`` declares the queue ``observml.claim.<key>`` with ``exclusive=True`` on
a new connection. RabbitMQ lets one connection at a time hold an exclusive queue; another one
declaring it gets ``405 RESOURCE_LOCKED``, which here means "taken". The broker deletes the
queue when its connection closes: on :meth:`RabbitClaim.release`, when the process is killed,
or when the connection misses its heartbeats (a frozen or cut-off host). So a dead hub's claim
frees itself.

pika's ``BlockingConnection`` answers heartbeats only while it is called, so one keeper thread
per plugin calls each held connection every few seconds; it ends when no claim is held. A
connection found dead there means the claim is lost: that is logged, and the job that held it
goes on (see :mod:`observml.plugins.claims`).
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
    """A claim held as an exclusive queue, until :meth:`release` or the connection's end."""

    def __init__(self, key: str, link: Link, keeper: ClaimKeeper) -> None:
        self.key = key
        self._link: Link | None = link
        self._keeper = keeper
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        """Whether the connection carrying the claim is still open."""
        with self._lock:
            return self._link is not None and self._link.is_open

    def release(self) -> None:
        """Close the claim's connection (the broker deletes the queue). Safe to call twice."""
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()
        self._keeper.forget(self)

    def keep(self) -> bool:
        """Answer the broker's heartbeats; return False once the claim is lost or released."""
        with self._lock:
            if self._link is None:
                return False
            try:
                self._link.connection.process_data_events(time_limit=0)
                return True
            except AMQPError as exc:
                logger.warning(
                    "claim %r lost: its RabbitMQ connection dropped (%s); the job that held it"
                    " goes on, and another hub may take the claim meanwhile",
                    self.key,
                    type(exc).__name__,
                )
                self._link.close()
                self._link = None
                return False

    def __repr__(self) -> str:
        return f"RabbitClaim({self.key!r}, held={self.held})"


class ClaimKeeper:
    """Takes claims for one plugin and keeps their connections alive from one thread."""

    def __init__(self, settings: Settings, tag: str) -> None:
        self._settings = settings
        self._tag = tag
        self._held: set[RabbitClaim] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def take(self, key: str) -> RabbitClaim | None:
        """Declare ``observml.claim.<key>`` exclusively; ``None`` when another connection has it.

        Raises:
            AuthenticationError: The broker refused the login.
            ServiceUnavailableError: The broker could not be reached or refused the declaration.
        """
        check_claim_key(key)
        link = open_link(self._settings, f"claim {key}", tag=self._tag, attempts=2)
        try:
            link.connection.channel().queue_declare(
                CLAIM_PREFIX + key, exclusive=True, auto_delete=True
            )
        except ChannelClosedByBroker as exc:
            link.close()
            if exc.reply_code == _RESOURCE_LOCKED:
                return None
            raise channel_error(self._settings, exc, f"taking the claim {key!r}") from exc
        except AMQPError as exc:
            link.close()
            raise ServiceUnavailableError(
                f"{where(self._settings)}: the connection dropped while taking the claim"
                f" {key!r} ({describe(exc, secrets(self._settings))}). Try again."
            ) from exc
        claim = RabbitClaim(key, link, self)
        with self._lock:
            self._held.add(claim)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._keep, name=f"observml-claims-{self._tag}", daemon=True
                )
                self._thread.start()
        return claim

    def forget(self, claim: RabbitClaim) -> None:
        """Stop keeping ``claim`` (it was released)."""
        with self._lock:
            self._held.discard(claim)

    def close(self) -> None:
        """Release every held claim and stop the keeper thread."""
        with self._lock:
            held = list(self._held)
        for claim in held:
            claim.release()
        self._stop.set()

    def _keep(self) -> None:
        heartbeat = float(self._settings.heartbeat or 0)
        every = min(_KEEP_EVERY, heartbeat / 3) if heartbeat > 0 else _KEEP_EVERY
        while not self._stop.wait(every):
            with self._lock:
                held = list(self._held)
                if not held:
                    self._thread = None
                    return
            for claim in held:
                if not claim.keep():
                    self.forget(claim)
