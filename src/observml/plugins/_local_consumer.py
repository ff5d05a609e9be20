"""The consuming side of the ``local`` datastream: one :class:`Consumer` per ``consume`` call.

A consumer leases up to ``prefetch`` messages, hands them to the handler in batches and settles
each batch's outcome (committed together at most every :data:`FLUSH_EVERY` seconds). A
:class:`LeaseKeeper` thread renews its leases meanwhile, so a slow handler keeps its messages;
a consumer that dies stops renewing, and its messages come back to others once the lease ends.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Final, Protocol

from observml.plugins._local_store import Leased, Outcomes, Store
from observml.plugins.datastream import BatchHandler, settle

__all__ = ["Consumer", "LeaseKeeper", "Settings"]

logger = logging.getLogger(__name__)

FLUSH_EVERY: Final = 0.2  # seconds between settlement commits while a lease is worked off


class Settings(Protocol):
    """The settings a consumer reads from its plugin, each time it needs one."""

    visibility_timeout: float
    poll_interval: float
    max_deliveries: int
    busy_timeout: float
    max_message_bytes: int


class LeaseKeeper:
    """Renew a consumer's leases while its handler runs, from a thread of its own."""

    def __init__(self, file: Path, owner: str, seconds: float, busy_timeout: float) -> None:
        self._args = (file, owner, seconds, busy_timeout)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observml-lease-keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        file, owner, seconds, busy_timeout = self._args
        store = Store(file, busy_timeout)
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


class Consumer:
    """One ``consume`` call: lease, hand over, settle; a keeper thread renews the leases."""

    def __init__(
        self,
        settings: Settings,
        file: Path,
        queue: str,
        handler: BatchHandler,
        batch_size: int,
        lease_size: int,
        max_wait: float,
        stops: tuple[threading.Event, ...],
    ) -> None:
        self._settings = settings
        self._file = file
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
        settings, file = self._settings, self._file
        store = Store(file, settings.busy_timeout)
        keeper = LeaseKeeper(file, self._owner, settings.visibility_timeout, settings.busy_timeout)
        try:
            while not self._stopping():
                leased = self._gather(store)
                if leased:
                    self._work_off(store, leased)
        finally:
            keeper.stop()
            store.close()

    def _gather(self, store: Store) -> list[Leased]:
        settings = self._settings
        leased: list[Leased] = []
        deadline: float | None = None
        while not self._stopping():
            leased += store.lease(
                self._queue,
                self._owner,
                self._lease_size - len(leased),
                settings.visibility_timeout,
                settings.max_deliveries,
            )
            now = time.monotonic()
            if leased and deadline is None:
                deadline = now + self._max_wait
            if len(leased) >= self._lease_size or (deadline is not None and now >= deadline):
                return leased
            self._wait(settings.poll_interval if deadline is None else min(deadline - now, 0.05))
        if leased:  # stopping: give them back untouched
            store.settle(self._queue, self._owner, Outcomes(unhanded=[x.seq for x in leased]))
        return []

    def _work_off(self, store: Store, leased: list[Leased]) -> None:
        outcomes, flushed = Outcomes(), time.monotonic()
        position = 0
        in_hand: list[Leased] = []  # the batch the handler is working on
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
                    max_bytes=self._settings.max_message_bytes,
                )
                outcomes.record(in_hand, outcome)
                in_hand = []
                if outcome.requeue:  # the handler's service is down: do not spin on it
                    self._backoff = min(max(self._backoff * 2, 0.1), 5.0)
                    self._wait(self._backoff)
                else:
                    self._backoff = 0.0
                if time.monotonic() - flushed >= FLUSH_EVERY:
                    store.settle(self._queue, self._owner, outcomes)
                    outcomes, flushed = Outcomes(), time.monotonic()
        except BaseException:
            # A crash: the batch in hand stays delivered (it comes back redelivered); the
            # messages the handler never saw go back as they were.
            outcomes.requeue += [x.seq for x in in_hand]
            outcomes.unhanded += [x.seq for x in leased[position:]]
            store.settle(self._queue, self._owner, outcomes)
            raise
        if outcomes:
            store.settle(self._queue, self._owner, outcomes)
