"""The embedded ``local`` datastream: durable queues in one SQLite file, shared by processes.

No server: every process on the machine that points at the same folder sees the same queues
(``$OBSERVML_HOME/queues``, default ``./.observml/queues``). The file runs in WAL mode with a
busy timeout, and every write is a short ``BEGIN IMMEDIATE`` transaction.

A consumer *leases* the messages it takes for ``visibility_timeout`` seconds and renews the lease
from a helper thread while its handler runs. Acking deletes the message; dead-lettering moves it
to ``<queue>.dead`` with the reason in a header, in the same transaction. When a consumer dies,
its lease expires and the message becomes ready again, marked ``redelivered``. A message
delivered more than ``max_deliveries`` times without an ack goes to the dead-letter queue.

``subscribe`` serves every subscribed queue from one thread with one connection and one lease
keeper (:mod:`observml.plugins._local_subscriber`), its handlers running on the caller's pool.

This module holds the plugin; the file's tables and transactions are in
:mod:`observml.plugins._local_store`, the consumer and its lease keeper in
:mod:`observml.plugins._local_consumer`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Final

from observml.config import HOME_ENV_VAR
from observml.errors import ConfigError, ServiceUnavailableError
from observml.plugins._local_claims import FileClaim, take_claim
from observml.plugins._local_consumer import Consumer
from observml.plugins._local_store import Leased, Outcomes, Store
from observml.plugins._local_subscriber import CANCEL_WAIT, Subscriber
from observml.plugins.base import HealthReport
from observml.plugins.datastream import (
    MAX_MESSAGE_BYTES,
    BatchHandler,
    Handler,
    Message,
    OutgoingMessage,
    as_outgoing,
    check_connect_settings,
    dead_letter_queue,
    one_at_a_time,
    pulled_text,
)
from observml.plugins.subscriptions import Handle, new_handle

__all__ = ["LocalQueuePlugin"]

FILE_NAME: Final = "queues.sqlite3"


class LocalQueuePlugin:
    """Durable queues on local disk (SQLite), usable by several processes on one machine.

    Configuration (the keys of ``plugins.datastream.config``):
        path: Folder holding ``queues.sqlite3``; default ``$OBSERVML_HOME/queues`` or
            ``./.observml/queues``.
        visibility_timeout: Seconds a taken message stays invisible to other consumers before
            it comes back, unless its consumer (alive) renews the lease.
        poll_interval: Seconds between checks of an empty queue.
        prefetch: Messages a consumer leases at once.
        max_deliveries: Deliveries without an ack after which a message is dead-lettered.
        busy_timeout: Seconds to wait for another process's write before failing.
        max_message_bytes: Bodies larger than this are dead-lettered unread (default 16 MiB).

    Usage::

        plugin = LocalQueuePlugin()  # ./.observml/queues/queues.sqlite3
        hub.register_plugin(plugin)
    """

    plugin_type = "datastream"

    def __init__(
        self,
        path: str | None = None,
        *,
        visibility_timeout: float = 30.0,
        poll_interval: float = 0.05,
        prefetch: int = 100,
        max_deliveries: int = 20,
        busy_timeout: float = 30.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.path = path
        self.visibility_timeout = visibility_timeout
        self.poll_interval = poll_interval
        self.prefetch = prefetch
        self.max_deliveries = max_deliveries
        self.busy_timeout = busy_timeout
        self.max_message_bytes = max_message_bytes
        self._lock = threading.RLock()
        self._store: Store | None = None
        self._closing = threading.Event()
        self._opened: Path | None = None  # the absolute file connect() opened
        self._claims: set[FileClaim] = set()  # given up on disconnect, as a broker would
        self._subscriber: Subscriber | None = None  # serves every subscription; made on demand

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Open (or create) the queue file."""
        self.connect()

    def shutdown(self) -> None:
        """Stop consumers and close the file; messages stay on disk."""
        self.disconnect()

    def health_check(self) -> HealthReport:
        """Report whether the queue file answers, and how many queues it holds."""
        details: dict[str, Any] = {"path": str(self._opened or self.file)}
        with self._lock:
            if self._store is None:
                return False, {**details, "status": "disconnected", "message": "call connect()"}
            try:
                queues = self._store.count_queues()
            except sqlite3.Error as exc:
                return False, {**details, "status": "error", "message": f"{exc}"}
        return True, {**details, "status": "connected", "queues": queues}

    @property
    def file(self) -> Path:
        """The SQLite file holding the queues."""
        if self.path:
            folder = Path(self.path).expanduser()
        else:
            home = os.environ.get(HOME_ENV_VAR)
            folder = (Path(home).expanduser() if home else Path(".observml")) / "queues"
        return folder / FILE_NAME

    # -- the spec's methods ---------------------------------------------------------------
    def connect(self, **kwargs: Any) -> None:
        """Open the queue file, creating it; keyword arguments override settings.

        Raises:
            ConfigError: A keyword is not a setting, or the folder cannot be created or opened.
        """
        check_connect_settings(self, kwargs)
        with self._lock:
            if kwargs:
                self._close_store()
                for key, value in kwargs.items():
                    setattr(self, key, value)
            if self._closing.is_set():
                self._closing = threading.Event()
            if self._store is None:
                self._store = self._open()

    def disconnect(self) -> None:
        """Close the file and give up every claim; every ``consume`` and subscription ends.

        Does not wait for subscriptions: each ends once its batch in hand settled.
        """
        self._closing.set()
        with self._lock:
            self._close_store()
            claims = list(self._claims)
            subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.close()
        for claim in claims:
            claim.release()

    def create_queue(self, queue_name: str) -> None:
        """Create the queue and its dead-letter queue (a name in the file). Idempotent."""
        with self._using() as store:
            store.create((queue_name, dead_letter_queue(queue_name)))

    def pull_data(self, queue: str) -> str:
        """Take one message body (``""`` when empty); delete it once decoded.

        Raises:
            DataError: The body is not UTF-8 text; it was moved to the dead-letter queue.
        """
        owner = uuid.uuid4().hex
        with self._using() as store:
            leased = store.lease(queue, owner, 1, self.visibility_timeout, self.max_deliveries)
            if not leased:
                return ""
            seq = leased[0].seq
            return pulled_text(
                queue,
                leased[0].message,
                where="local datastream",
                max_bytes=self.max_message_bytes,
                ack=lambda: store.settle(queue, owner, Outcomes(ack=[seq])),
                dead_letter=lambda why: store.settle(queue, owner, Outcomes(dead=[(seq, why)])),
            )

    def flush_queue(self, queue: str) -> int:
        """Delete the ready messages of ``queue`` and return how many were removed."""
        with self._using() as store:
            return store.purge(queue)

    def browse(self, queue: str, limit: int = 10) -> list[Message]:
        """Return up to ``limit`` ready messages of ``queue``, oldest first; they stay queued.

        A read in the file: no lease is taken, so no delivery is counted.
        """
        with self._using() as store:
            return store.peek(queue, limit)

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
        """Store one message durably and return its id."""
        out = OutgoingMessage(body, headers, message_id, content_type)
        return self.publish_batch(queue, [out])[0]

    def publish_batch(
        self, queue: str, messages: Iterable[OutgoingMessage | bytes | str]
    ) -> list[str]:
        """Store many messages in one transaction and return their ids."""
        outs = [as_outgoing(item) for item in messages]
        if outs:
            with self._using() as store:
                store.add(queue, outs)
        return [str(out.message_id) for out in outs]

    def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Call ``handler`` per message until ``disconnect()`` or ``stop`` is set."""
        lease = prefetch or self.prefetch
        self._consume(queue, one_at_a_time(handler), 1, lease, 0.0, stop)

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
        self._consume(queue, handler, batch_size, max(prefetch or 0, batch_size), max_wait, stop)

    def subscribe(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        executor: Executor,
        batch_size: int = 100,
        max_wait: float = 0.5,
        prefetch: int | None = None,
    ) -> Handle[Leased]:
        """Hand ``queue``'s micro-batches to ``handler`` on ``executor``; return at once.

        One thread, one connection and one lease keeper serve every subscription of this
        plugin (see :class:`~observml.plugins.subscriptions.SupportsSubscribe`). ``prefetch``
        (default: the plugin's) bounds the messages leased and not yet settled.

        Raises:
            ServiceUnavailableError: The plugin is not connected.
        """
        with self._lock:  # so no disconnect() comes between the check and the subscription
            self.create_queue(queue)  # raises when not connected
            while True:  # at most twice: a fresh subscriber always takes the subscription
                if self._subscriber is None:
                    self._subscriber = Subscriber(self, self._opened or self.file)
                subscriber = self._subscriber
                handle: Handle[Leased] = new_handle(
                    queue,
                    handler,
                    executor,
                    batch_size=batch_size,
                    max_wait=max_wait,
                    max_bytes=self.max_message_bytes,
                    prefetch=prefetch or self.prefetch,
                    wake=subscriber.wake,
                    shutdown_timeout=CANCEL_WAIT,
                )
                if subscriber.add(handle):
                    return handle
                self._subscriber = None  # its last subscription ended meanwhile

    def queue_depth(self, queue: str) -> int:
        """Return how many messages are ready in ``queue`` (0 if it does not exist)."""
        with self._using() as store:
            return store.depth(queue)

    def claim(self, key: str) -> FileClaim | None:
        """Take the claim ``key`` among every process using this folder; ``None`` if taken.

        The claim is a lock on ``claims/<key>.lock`` beside the queue file; the kernel drops it
        when this process exits (:mod:`observml.plugins.claims`).

        Raises:
            ServiceUnavailableError: The plugin is not connected, or the folder is not writable.
        """
        with self._using():
            folder = self.file.absolute().parent
        try:
            claim = take_claim(folder, key, on_release=self._forget_claim)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"local datastream {folder}: could not take the claim {key!r}"
                f" ({type(exc).__name__}: {exc}). Check that the folder is writable."
            ) from exc
        if claim is not None:
            with self._lock:
                self._claims.add(claim)
        return claim

    def _forget_claim(self, claim: FileClaim) -> None:
        with self._lock:
            self._claims.discard(claim)

    # -- internals ------------------------------------------------------------------------
    def _open(self) -> Store:
        file = self.file.absolute()
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            store = Store(file, self.busy_timeout)
            self._opened = file
            return store
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"local datastream: cannot open the queue file {file} ({exc}). Set path to a"
                f" writable folder, or {HOME_ENV_VAR}.",
                key="plugins.datastream.config.path",
            ) from exc

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @contextlib.contextmanager
    def _using(self) -> Iterator[Store]:
        with self._lock:
            if self._store is None:
                raise ServiceUnavailableError(
                    "local datastream: not connected. Call connect() first (the hub does it when"
                    " the plugin is registered)."
                )
            with self._translated():
                yield self._store

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise ServiceUnavailableError(
                f"local datastream {self.file}: {type(exc).__name__}: {exc}. Another process may"
                " hold a long write lock, or the disk is full; raise busy_timeout or free space."
            ) from exc

    def _consume(
        self,
        queue: str,
        handler: BatchHandler,
        batch_size: int,
        lease_size: int,
        max_wait: float,
        stop: threading.Event | None,
    ) -> None:
        with self._lock:
            if self._store is None:
                raise ServiceUnavailableError(
                    "local datastream: not connected. Call connect() before consuming."
                )
            stops = (self._closing,) if stop is None else (self._closing, stop)
            file = self._opened or self.file
        worker = Consumer(self, file, queue, handler, batch_size, lease_size, max_wait, stops)
        with self._translated():
            worker.run()
