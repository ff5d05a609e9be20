"""The ``local`` datastream's subscriptions: one thread serves every subscribed queue.

``consume_batch`` holds a thread, a connection and a lease keeper per queue; a hub streaming
hundreds of experiments that way holds hundreds of each. A :class:`Subscriber` serves all of a
plugin's subscriptions from one thread with one connection to the queue file, and one
:class:`~observml.plugins._local_consumer.LeaseKeeper` renews every lease it holds (they share
one owner id). Handlers run on the subscriber's executor through each subscription's
:class:`~observml.plugins.subscriptions.Lane`.

Each turn the thread collects what the handlers decided, asks the file in one query which
subscribed queues hold ready messages (an index probe per queue inside SQLite, not a lease
transaction per idle queue), leases for those in one transaction, and hands due batches over.
Settlements of all queues are committed together, at most every
:data:`~observml.plugins._local_consumer.FLUSH_EVERY` seconds, or at once when a lane has
nothing left to do or a subscription ends, so a cancelled subscription leaves everything
committed. If this process dies, its leases stop being renewed and the messages come back,
marked redelivered, once they run out.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Final

from observml.plugins._local_consumer import FLUSH_EVERY, LeaseKeeper, Settings
from observml.plugins._local_store import Leased, Outcomes, Store
from observml.plugins.subscriptions import MAX_BACKOFF, Handle

__all__ = ["CANCEL_WAIT", "Subscriber"]

logger = logging.getLogger(__name__)

#: Seconds ``Subscription.cancel()`` waits for the batch in hand by default.
CANCEL_WAIT: Final = 10.0


class Subscriber:
    """One thread, one connection and one lease keeper for all of a plugin's subscriptions.

    Single use: the thread starts with the first :meth:`add` and ends when no subscription is
    left; :meth:`add` then returns ``False`` and the plugin makes a new one.

    Args:
        settings: The plugin, whose settings are read each turn.
        file: The queue file.
    """

    def __init__(self, settings: Settings, file: Path) -> None:
        self._settings = settings
        self._file = file
        self._owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._woken = threading.Event()
        self._handles: list[Handle[Leased]] = []
        self._thread: threading.Thread | None = None
        self._finished = False
        self._closed = False
        #: Settlements not committed yet, by queue, and since when the oldest waits.
        self._pending: dict[str, Outcomes] = {}
        self._pending_since: float | None = None
        #: Subscriptions whose last outcomes await their commit, with the error they end with.
        self._ending: dict[Handle[Leased], str | None] = {}
        self._backoff = 0.0
        self._troubled = False

    def wake(self) -> None:
        """Make the thread take a turn now (thread-safe)."""
        self._woken.set()

    def add(self, handle: Handle[Leased]) -> bool:
        """Serve ``handle`` from now on; ``False`` if this subscriber has ended or is closed."""
        with self._lock:
            if self._finished or self._closed:
                return False
            self._handles.append(handle)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="observml-local-subscriber", daemon=True
                )
                self._thread.start()
        self.wake()
        return True

    def close(self) -> None:
        """End every subscription (as ``disconnect()`` does); the batches in hand settle first."""
        with self._lock:
            self._closed = True
            handles = list(self._handles)
        for handle in handles:
            handle.report("disconnected")
            handle.cancelling.set()
        self.wake()

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        settings = self._settings
        keeper = LeaseKeeper(
            self._file, self._owner, settings.visibility_timeout, settings.busy_timeout
        )
        store: Store | None = None
        try:
            while True:
                with self._lock:
                    if not self._handles:
                        self._finished = True
                        return
                    handles = list(self._handles)
                try:
                    if store is None:
                        store = Store(self._file, settings.busy_timeout)
                    timeout = self._turn(store, handles)
                    self._recovered(handles)
                except sqlite3.Error as exc:
                    timeout = self._trouble(exc, handles)
                self._woken.wait(timeout)
                self._woken.clear()
        except Exception as exc:  # a bug here must not leave cancel() waiting for nothing
            logger.exception("the local datastream's subscriber failed")
            self._abandon(f"the subscriber failed: {type(exc).__name__}: {exc}")
        finally:
            keeper.stop()
            if store is not None:
                store.close()

    def _turn(self, store: Store, handles: list[Handle[Leased]]) -> float:
        """Collect, lease, hand over, commit; return the seconds until the next turn is due."""
        serving = [h for h in handles if h not in self._ending and self._collect(h)]
        self._lease(store, serving)
        timeout = self._settings.poll_interval
        for handle in serving:
            due = handle.lane.dispatch()
            if due is not None:
                timeout = min(timeout, due)
        if self._ending:
            self._flush(store)
        elif self._pending_since is not None:
            idle = any(h.queue in self._pending and not h.lane.held for h in serving)
            wait = self._pending_since + FLUSH_EVERY - time.monotonic()
            if idle or wait <= 0:
                self._flush(store)
            else:
                timeout = min(timeout, wait)
        return max(timeout, 0.0)

    def _collect(self, handle: Handle[Leased]) -> bool:
        """Take ``handle``'s settlements; ``False`` once it ends (it is then in ``_ending``)."""
        lane = handle.lane
        busy = lane.busy  # read first: a batch settled before this is in settled() below
        outcomes = Outcomes()
        for batch, settlement in lane.settled():
            outcomes.record(batch, settlement)
        error: str | None = None
        if lane.crash is not None:
            # As a consumer that died: its batch comes back redelivered, the rest unchanged.
            exc, batch = lane.crash
            outcomes.requeue += [x.seq for x in batch]
            error = f"the handler crashed: {type(exc).__name__}: {exc}"
        elif not handle.cancelling.is_set() or busy:
            self._keep(handle.queue, outcomes)
            return True
        outcomes.unhanded += [x.seq for x in lane.take_unhanded()]
        self._keep(handle.queue, outcomes)
        self._ending[handle] = error
        return False

    def _keep(self, queue: str, outcomes: Outcomes) -> None:
        if outcomes:
            self._pending.setdefault(queue, Outcomes()).merge(outcomes)
            if self._pending_since is None:
                self._pending_since = time.monotonic()

    def _lease(self, store: Store, serving: list[Handle[Leased]]) -> None:
        """Lease up to each subscription's room, only for queues that have ready messages."""
        wanting = [h for h in serving if h.room > 0]
        if not wanting:
            return
        ready = store.ready_among({h.queue for h in wanting})
        wants = [h for h in wanting if h.queue in ready]
        if not wants:
            return
        settings = self._settings
        leased = store.lease_many(
            [(h.queue, h.room) for h in wants],
            self._owner,
            settings.visibility_timeout,
            settings.max_deliveries,
        )
        for handle, got in zip(wants, leased, strict=True):
            for item in got:
                handle.lane.add(item, item.message, alone=item.message.redelivered)

    def _flush(self, store: Store) -> None:
        """Commit every pending settlement in one transaction; end the subscriptions ending."""
        if self._pending:
            store.settle_many(self._owner, self._pending)
        self._pending, self._pending_since = {}, None
        ending, self._ending = self._ending, {}
        with self._lock:
            self._handles = [h for h in self._handles if h not in ending]
        for handle, error in ending.items():
            handle.end(error)

    # -- a file that does not answer -------------------------------------------------------
    def _trouble(self, exc: sqlite3.Error, handles: list[Handle[Leased]]) -> float:
        """Report the failure on every subscription; return how long to wait before retrying.

        What is pending stays pending and is committed by a later turn. Once closed, nothing
        waits for the file to come back: the subscriptions end, and the messages they held
        come back to other consumers when their leases run out.
        """
        error = (
            f"local datastream {self._file}: {type(exc).__name__}: {exc}; retrying. Another"
            " process may hold a long write lock, or the disk is full."
        )
        logger.warning("%s", error, exc_info=True)
        self._troubled = True
        if self._closed:
            self._abandon(f"disconnected while {error}")
            return 0.0
        for handle in handles:
            handle.report(error)
        self._backoff = min(max(self._backoff * 2, 0.1), MAX_BACKOFF)
        return self._backoff

    def _abandon(self, error: str) -> None:
        """End every subscription uncommitted: its leases run out and the messages come back."""
        with self._lock:
            handles, self._handles = self._handles, []
            self._finished = True
        for handle in handles:
            handle.end(error)

    def _recovered(self, handles: list[Handle[Leased]]) -> None:
        self._backoff = 0.0
        if self._troubled and not self._closed:
            self._troubled = False
            for handle in handles:
                handle.report(None)
