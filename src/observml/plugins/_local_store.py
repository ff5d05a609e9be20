"""The SQLite file behind the ``local`` datastream: queues, messages, leases, dead letters.

One :class:`Store` is one connection to the file (one per thread that uses it). The file runs in
WAL mode with a busy timeout, and every write is a short ``BEGIN IMMEDIATE`` transaction, so
several processes can share it. A message taken by a consumer is *leased* to it (``lease_owner``,
``lease_until``); settling deletes it (ack), moves it to ``<queue>.dead`` with the reason in a
header (dead letter), or releases the lease (requeue), in one transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from observml.plugins.datastream import (
    Message,
    OutgoingMessage,
    Settlement,
    dead_letter_headers,
    dead_letter_queue,
    unacked_reason,
)

__all__ = ["Leased", "Outcomes", "Store"]

_UNACKED: Final = "its consumers died or timed out"  # why a message kept coming back

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
class Leased:
    """A message leased to a consumer, with the row it settles by."""

    seq: int
    message: Message


@dataclass
class Outcomes:
    """Settlements gathered while a lease is worked off, committed together."""

    ack: list[int] = field(default_factory=list)
    dead: list[tuple[int, str]] = field(default_factory=list)
    requeue: list[int] = field(default_factory=list)
    unhanded: list[int] = field(default_factory=list)  # never reached the handler

    def __bool__(self) -> bool:
        return bool(self.ack or self.dead or self.requeue or self.unhanded)

    def record(self, batch: Sequence[Leased], settlement: Settlement) -> None:
        """Add what the handler decided for ``batch`` (by index) to these outcomes."""
        self.ack += [batch[i].seq for i in settlement.ack]
        self.dead += [(batch[i].seq, why) for i, why in settlement.dead.items()]
        self.requeue += [batch[i].seq for i in settlement.requeue]

    def merge(self, other: Outcomes) -> None:
        """Add ``other``'s outcomes to these."""
        self.ack += other.ack
        self.dead += other.dead
        self.requeue += other.requeue
        self.unhanded += other.unhanded


class Store:
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
    ) -> list[Leased]:
        with self.transaction() as conn:
            return self._lease(conn, queue, owner, limit, seconds, max_deliveries)

    def lease_many(
        self, wants: Sequence[tuple[str, int]], owner: str, seconds: float, max_deliveries: int
    ) -> list[list[Leased]]:
        """Lease up to ``limit`` messages per ``(queue, limit)`` of ``wants``, in one transaction.

        Returns:
            What each entry of ``wants`` got, in its order.
        """
        with self.transaction() as conn:
            return [
                self._lease(conn, queue, owner, limit, seconds, max_deliveries)
                for queue, limit in wants
            ]

    def ready_among(self, queues: Iterable[str]) -> set[str]:
        """Return which of ``queues`` hold a ready message: one query however many are asked.

        One index probe per queue inside SQLite, instead of a lease transaction per queue per
        poll, so hundreds of idle subscriptions cost one read.
        """
        rows = self.conn.execute(
            "SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM messages"
            " WHERE queue = value AND lease_until < ?)",
            (json.dumps(list(queues)), time.time()),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def settle(self, queue: str, owner: str, outcomes: Outcomes) -> None:
        with self.transaction() as conn:
            self._settle(conn, queue, owner, outcomes)

    def settle_many(self, owner: str, outcomes: Mapping[str, Outcomes]) -> None:
        """Settle the outcomes of many queues (``{queue: outcomes}``) in one transaction."""
        with self.transaction() as conn:
            for queue, settled in outcomes.items():
                self._settle(conn, queue, owner, settled)

    def _lease(
        self,
        conn: sqlite3.Connection,
        queue: str,
        owner: str,
        limit: int,
        seconds: float,
        max_deliveries: int,
    ) -> list[Leased]:
        now = time.time()
        rows = conn.execute(
            "UPDATE messages SET lease_until = ?, lease_owner = ?, deliveries = deliveries + 1"
            " WHERE seq IN (SELECT seq FROM messages WHERE queue = ? AND lease_until < ?"
            " ORDER BY seq LIMIT ?)"
            " RETURNING seq, message_id, body, headers, content_type, deliveries",
            (now + seconds, owner, queue, now, limit),
        ).fetchall()
        over = [(r[0], unacked_reason(r[5] - 1, _UNACKED)) for r in rows if r[5] > max_deliveries]
        if over:
            self._move_dead(conn, queue, owner, over)
        return [
            Leased(seq, Message(bytes(body), json.loads(headers), mid, n > 1, ctype, queue))
            for seq, mid, body, headers, ctype, n in sorted(rows)
            if n <= max_deliveries
        ]

    def _settle(self, conn: sqlite3.Connection, queue: str, owner: str, outcomes: Outcomes) -> None:
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

    def peek(self, queue: str, limit: int) -> list[Message]:
        rows = self.conn.execute(
            "SELECT message_id, body, headers, content_type, deliveries FROM messages"
            " WHERE queue = ? AND lease_until < ? ORDER BY seq LIMIT ?",
            (queue, time.time(), limit),
        ).fetchall()
        return [
            Message(bytes(body), json.loads(headers), mid, n > 0, ctype, queue)
            for mid, body, headers, ctype, n in rows
        ]

    def purge(self, queue: str) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM messages WHERE queue = ? AND lease_until < ?", (queue, time.time())
            )
            return int(cursor.rowcount)

    def count_queues(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM queues").fetchone()[0])
