"""The embedded ``local`` datastream: durable queues in one SQLite file, shared by processes.

No server: every process on the machine that points at the same folder sees the same queues
(``$OBSERVML_HOME/queues``, default ``./.observml/queues``). The file runs in WAL mode with a
busy timeout, and every write is a short ``BEGIN IMMEDIATE`` transaction.

A consumer *leases* the messages it takes for ``visibility_timeout`` seconds and renews the lease
from a helper thread while its handler runs. Acking deletes the message; dead-lettering moves it
to ``<queue>.dead`` with the reason in a header, in the same transaction. When a consumer dies,
its lease expires and the message becomes ready again, marked ``redelivered``. A message
delivered more than ``max_deliveries`` times without an ack goes to the dead-letter queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from observml.config import HOME_ENV_VAR
from observml.errors import ConfigError, ServiceUnavailableError
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
    settle,
    unacked_reason,
)

__all__ = ["LocalQueuePlugin"]

logger = logging.getLogger(__name__)

FILE_NAME: Final = "queues.sqlite3"
_UNACKED: Final = "its consumers died or timed out"  # why a message kept coming back
_FLUSH_EVERY: Final = 0.2  # seconds between settlement commits while a lease is worked off

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL DEFAULT '{}',
    content_type TEXT,
    published REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, seq);
CREATE INDEX IF NOT EXISTS messages_by_owner ON messages (lease_owner)
    WHERE lease_owner IS NOT NULL;
"""


def _dump(headers: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(headers or {}), default=str, sort_keys=True)


@dataclass(frozen=True)
class _Leased:
    seq: int
    message: Message


@dataclass
class _Outcomes:
    """Settlements gathered while a lease is worked off, committed together."""

    ack: list[int] = field(default_factory=list)
    dead: list[tuple[int, str]] = field(default_factory=list)
    requeue: list[int] = field(default_factory=list)
    unhanded: list[int] = field(default_factory=list)  # never reached the handler

    def __bool__(self) -> bool:
        return bool(self.ack or self.dead or self.requeue or self.unhanded)


class _Store:
    """One SQLite connection to the queue file (one per thread that uses it)."""

    def __init__(self, file: Path, busy_timeout: float) -> None:
        self.file = file
        self.conn = sqlite3.connect(
            file, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        with self.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def create(self, names: Iterable[str]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO queues (name) VALUES (?)", [(n,) for n in names]
            )

    def add(self, queue: str, outs: Sequence[OutgoingMessage]) -> None:
        now = time.time()
        rows = [
            (queue, out.message_id, out.body, _dump(out.headers), out.content_type, now)
            for out in outs
        ]
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
            conn.executemany(
                "INSERT INTO messages (queue, message_id, body, headers, content_type, published)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def lease(
        self, queue: str, owner: str, limit: int, seconds: float, max_deliveries: int
    ) -> list[_Leased]:
        now = time.time()
        with self.transaction() as conn:
            rows = conn.execute(
                "UPDATE messages SET lease_until = ?, lease_owner = ?, deliveries = deliveries + 1"
                " WHERE seq IN (SELECT seq FROM messages WHERE queue = ? AND lease_until < ?"
                " ORDER BY seq LIMIT ?)"
                " RETURNING seq, message_id, body, headers, content_type, deliveries",
                (now + seconds, owner, queue, now, limit),
            ).fetchall()
            over = [
                (r[0], unacked_reason(r[5] - 1, _UNACKED)) for r in rows if r[5] > max_deliveries
            ]
            if over:
                self._move_dead(conn, queue, owner, over)
        return [
            _Leased(seq, Message(bytes(body), json.loads(headers), mid, n > 1, ctype, queue))
            for seq, mid, body, headers, ctype, n in sorted(rows)
            if n <= max_deliveries
        ]

    def settle(self, queue: str, owner: str, outcomes: _Outcomes) -> None:
        with self.transaction() as conn:
            if outcomes.dead:
                self._move_dead(conn, queue, owner, outcomes.dead)
            conn.executemany(
                "DELETE FROM messages WHERE seq = ? AND lease_owner = ?",
                [(seq, owner) for seq in outcomes.ack],
            )
            conn.executemany(
                "UPDATE messages SET lease_until = 0, lease_owner = NULL"
                " WHERE seq = ? AND lease_owner = ?",
                [(seq, owner) for seq in outcomes.requeue],
            )
            conn.executemany(
                "UPDATE messages SET lease_until = 0, lease_owner = NULL,"
                " deliveries = deliveries - 1 WHERE seq = ? AND lease_owner = ?",
                [(seq, owner) for seq in outcomes.unhanded],
            )

    @staticmethod
    def _move_dead(
        conn: sqlite3.Connection, queue: str, owner: str, items: Sequence[tuple[int, str]]
    ) -> None:
        dead, now = dead_letter_queue(queue), time.time()
        conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (dead,))
        for seq, reason in items:
            rows = conn.execute(
                "DELETE FROM messages WHERE seq = ? AND lease_owner = ?"
                " RETURNING message_id, body, headers, content_type",
                (seq, owner),
            ).fetchall()
            if not rows:
                continue  # the lease expired and another consumer has it now
            row = rows[0]
            headers = dead_letter_headers(json.loads(row[2]), reason)
            conn.execute(
                "INSERT INTO messages (queue, message_id, body, headers, content_type, published)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (dead, row[0], row[1], _dump(headers), row[3], now),
            )

    def renew(self, owner: str, seconds: float) -> None:
        self.conn.execute(
            "UPDATE messages SET lease_until = ? WHERE lease_owner = ?",
            (time.time() + seconds, owner),
        )

    def depth(self, queue: str) -> int:
        row = self.conn.execute(
            "SELECT COUNT(*) FROM messages WHERE queue = ? AND lease_until < ?",
            (queue, time.time()),
        ).fetchone()
        return int(row[0])

    def purge(self, queue: str) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM messages WHERE queue = ? AND lease_until < ?", (queue, time.time())
            )
            return int(cursor.rowcount)

    def count_queues(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM queues").fetchone()[0])


class _LeaseKeeper:
    """Renew a consumer's leases while its handler runs, from a thread of its own."""

    def __init__(self, file: Path, owner: str, seconds: float, busy_timeout: float) -> None:
        self._args = (file, owner, seconds, busy_timeout)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observml-lease-keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        file, owner, seconds, busy_timeout = self._args
        store = _Store(file, busy_timeout)
        try:
            while not self._done.wait(seconds / 3):
                try:
                    store.renew(owner, seconds)
                except sqlite3.Error:
                    logger.warning("renewing leases in %s failed; retrying", file, exc_info=True)
        finally:
            store.close()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


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
        self._store: _Store | None = None
        self._closing = threading.Event()
        self._opened: Path | None = None  # the absolute file connect() opened

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
        """Close the file; every running ``consume`` returns."""
        self._closing.set()
        with self._lock:
            self._close_store()

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
                ack=lambda: store.settle(queue, owner, _Outcomes(ack=[seq])),
                dead_letter=lambda why: store.settle(queue, owner, _Outcomes(dead=[(seq, why)])),
            )

    def flush_queue(self, queue: str) -> int:
        """Delete the ready messages of ``queue`` and return how many were removed."""
        with self._using() as store:
            return store.purge(queue)

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

    def queue_depth(self, queue: str) -> int:
        """Return how many messages are ready in ``queue`` (0 if it does not exist)."""
        with self._using() as store:
            return store.depth(queue)

    # -- internals ------------------------------------------------------------------------
    def _open(self) -> _Store:
        file = self.file.absolute()
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            store = _Store(file, self.busy_timeout)
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
    def _using(self) -> Iterator[_Store]:
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
        worker = _LocalConsumer(self, queue, handler, batch_size, lease_size, max_wait, stops)
        with self._translated():
            worker.run()


class _LocalConsumer:
    """One ``consume`` call: lease, hand over, settle; a keeper thread renews the leases."""

    def __init__(
        self,
        plugin: LocalQueuePlugin,
        queue: str,
        handler: BatchHandler,
        batch_size: int,
        lease_size: int,
        max_wait: float,
        stops: tuple[threading.Event, ...],
    ) -> None:
        self._plugin = plugin
        self._queue = queue
        self._handler = handler
        self._batch_size = max(batch_size, 1)
        self._lease_size = max(lease_size, self._batch_size)
        self._max_wait = max_wait
        self._stops = stops
        self._owner = uuid.uuid4().hex
        self._backoff = 0.0

    def _stopping(self) -> bool:
        return any(event.is_set() for event in self._stops)

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping() and (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(remaining, 0.05))

    def run(self) -> None:
        plugin = self._plugin
        file = plugin._opened or plugin.file
        store = _Store(file, plugin.busy_timeout)
        keeper = _LeaseKeeper(file, self._owner, plugin.visibility_timeout, plugin.busy_timeout)
        try:
            while not self._stopping():
                leased = self._gather(store)
                if leased:
                    self._work_off(store, leased)
        finally:
            keeper.stop()
            store.close()

    def _gather(self, store: _Store) -> list[_Leased]:
        plugin = self._plugin
        leased: list[_Leased] = []
        deadline: float | None = None
        while not self._stopping():
            leased += store.lease(
                self._queue,
                self._owner,
                self._lease_size - len(leased),
                plugin.visibility_timeout,
                plugin.max_deliveries,
            )
            now = time.monotonic()
            if leased and deadline is None:
                deadline = now + self._max_wait
            if len(leased) >= self._lease_size or (deadline is not None and now >= deadline):
                return leased
            self._wait(plugin.poll_interval if deadline is None else min(deadline - now, 0.05))
        if leased:  # stopping: give them back untouched
            store.settle(self._queue, self._owner, _Outcomes(unhanded=[x.seq for x in leased]))
        return []

    def _work_off(self, store: _Store, leased: list[_Leased]) -> None:
        outcomes, flushed = _Outcomes(), time.monotonic()
        position = 0
        in_hand: list[_Leased] = []  # the batch the handler is working on
        try:
            while position < len(leased):
                if self._stopping():
                    outcomes.unhanded += [x.seq for x in leased[position:]]
                    break
                in_hand = leased[position : position + self._batch_size]
                position += len(in_hand)
                outcome = settle(
                    self._handler,
                    [x.message for x in in_hand],
                    max_bytes=self._plugin.max_message_bytes,
                )
                batch, in_hand = in_hand, []
                outcomes.ack += [batch[i].seq for i in outcome.ack]
                outcomes.dead += [(batch[i].seq, why) for i, why in outcome.dead.items()]
                outcomes.requeue += [batch[i].seq for i in outcome.requeue]
                if outcome.requeue:  # the handler's service is down: do not spin on it
                    self._backoff = min(max(self._backoff * 2, 0.1), 5.0)
                    self._wait(self._backoff)
                else:
                    self._backoff = 0.0
                if time.monotonic() - flushed >= _FLUSH_EVERY:
                    store.settle(self._queue, self._owner, outcomes)
                    outcomes, flushed = _Outcomes(), time.monotonic()
        except BaseException:
            # A crash: the batch in hand stays delivered (it comes back redelivered); the
            # messages the handler never saw go back as they were.
            outcomes.requeue += [x.seq for x in in_hand]
            outcomes.unhanded += [x.seq for x in leased[position:]]
            store.settle(self._queue, self._owner, outcomes)
            raise
        if outcomes:
            store.settle(self._queue, self._owner, outcomes)
