"""InMemoryDataStreamPlugin: queues held in one process's memory, with a broker's semantics.

Acks after the handler returned, dead letters with the reason, redelivery after a crash, the
``max_message_bytes`` limit. For unit tests and notebooks; all state lives on the instance, so
two plugins share nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, cast

from observml.errors import ServiceUnavailableError
from observml.plugins.base import HealthReport
from observml.plugins.claims import check_claim_key
from observml.plugins.datastream import (
    MAX_MESSAGE_BYTES,
    BatchHandler,
    Handler,
    Message,
    OutgoingMessage,
    Settlement,
    as_outgoing,
    dead_letter_headers,
    dead_letter_queue,
    one_at_a_time,
    pulled_text,
    settle,
)
from observml.plugins.subscriptions import Handle, new_handle

__all__ = ["InMemoryDataStreamPlugin"]


@dataclass
class _MemoryClaim:
    """A claim held on an :class:`InMemoryDataStreamPlugin` until released."""

    key: str
    _plugin: InMemoryDataStreamPlugin = field(repr=False)
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._plugin._release(self.key)


@dataclass
class _Queue:
    ready: deque[Message] = field(default_factory=deque)


class InMemoryDataStreamPlugin:
    """Queues held in memory with the broker's semantics: ack after handling, dead letters.

    Configuration: ``max_message_bytes`` (default 16 MiB): a larger body is dead-lettered
    unread. ``publish`` creates the queue if needed, as a default exchange would drop the
    message otherwise; here nothing is ever dropped.
    """

    plugin_type = "datastream"

    def __init__(self, name: str = "memory", *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.name = name
        self.max_message_bytes = max_message_bytes
        self._queues: dict[str, _Queue] = {}
        self._cond = threading.Condition()
        self._connected = False
        self._generation = 0
        self._claims: set[str] = set()
        self._subscriptions: list[Handle[Message]] = []
        self._subscriber: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Connect."""
        self.connect()

    def shutdown(self) -> None:
        """Disconnect; queued messages stay."""
        self.disconnect()

    def health_check(self) -> HealthReport:
        """Report connection state and queue count."""
        with self._cond:
            if not self._connected:
                return False, {"status": "disconnected", "message": "call connect() first"}
            return True, {"status": "connected", "queues": len(self._queues)}

    # -- the spec's methods ---------------------------------------------------------------
    def connect(self, **kwargs: Any) -> None:
        """Mark the plugin connected."""
        with self._cond:
            self._connected = True

    def disconnect(self) -> None:
        """Stop every consumer and give up every claim (as a closed connection would)."""
        with self._cond:
            self._connected = False
            self._generation += 1
            self._claims.clear()
            for handle in self._subscriptions:
                handle.report("disconnected")
                handle.cancelling.set()
            self._cond.notify_all()

    def create_queue(self, queue_name: str) -> None:
        """Create the queue and its dead-letter queue."""
        with self._cond:
            self._queue(queue_name)
            self._queue(dead_letter_queue(queue_name))

    def pull_data(self, queue: str) -> str:
        """Take one message body, or ``""`` when the queue is empty."""
        with self._cond:
            self._require_connected()
            ready = self._queue(queue).ready
            if not ready:
                return ""
            message = ready.popleft()
            return pulled_text(
                queue,
                message,
                where="memory datastream",
                max_bytes=self.max_message_bytes,
                ack=lambda: None,  # taken off the queue already
                dead_letter=lambda reason: self._dead_letter(queue, [(message, reason)]),
            )

    def flush_queue(self, queue: str) -> int:
        """Drop the queue's ready messages and return how many."""
        with self._cond:
            ready = self._queue(queue).ready
            count = len(ready)
            ready.clear()
            return count

    def browse(self, queue: str, limit: int = 10) -> list[Message]:
        """Return up to ``limit`` ready messages of ``queue``, oldest first; they stay queued."""
        with self._cond:
            found = self._queues.get(queue)
            return list(itertools.islice(found.ready, limit)) if found is not None else []

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
        """Append a message to the queue and return its id."""
        return self.publish_batch(
            queue, [OutgoingMessage(body, headers, message_id, content_type)]
        )[0]

    def publish_batch(
        self, queue: str, messages: Iterable[OutgoingMessage | bytes | str]
    ) -> list[str]:
        """Append many messages and return their ids."""
        ids: list[str] = []
        with self._cond:
            self._require_connected()
            ready = self._queue(queue).ready
            for out in map(as_outgoing, messages):
                message_id = str(out.message_id)
                body = cast(bytes, out.body)  # as_outgoing encodes a str body
                headers = dict(out.headers or {})
                ready.append(Message(body, headers, message_id, False, out.content_type, queue))
                ids.append(message_id)
            self._cond.notify_all()
        return ids

    def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Call ``handler`` per message until ``disconnect()`` or ``stop``."""
        self.consume_batch(queue, one_at_a_time(handler), batch_size=1, stop=stop)

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
        """Hand micro-batches to ``handler`` until ``disconnect()`` or ``stop``."""
        with self._cond:
            self._require_connected()
            generation = self._generation
        while True:
            batch = self._take(queue, batch_size, max_wait, generation, stop)
            if batch is None:
                return
            if not batch:
                continue
            try:
                outcome = settle(handler, batch, max_bytes=self.max_message_bytes)
            except BaseException:  # the consumer "died": the batch comes back redelivered
                crashed = Settlement(requeue=tuple(range(len(batch))))
                self._settle(queue, batch, crashed, pause=False)
                raise
            self._settle(queue, batch, outcome)

    def subscribe(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        executor: Executor,
        batch_size: int = 100,
        max_wait: float = 0.5,
        prefetch: int | None = None,
    ) -> Handle[Message]:
        """Hand ``queue``'s micro-batches to ``handler`` on ``executor``; one thread serves all."""
        handle: Handle[Message] = new_handle(
            queue,
            handler,
            executor,
            batch_size=batch_size,
            max_wait=max_wait,
            max_bytes=self.max_message_bytes,
            prefetch=prefetch or 2 * batch_size,
            wake=self._wake,
            shutdown_timeout=10.0,
        )
        with self._cond:
            self._require_connected()
            self.create_queue(queue)
            self._subscriptions.append(handle)
            if self._subscriber is None:
                self._subscriber = threading.Thread(
                    target=self._serve, name="observml-memory-subscriber", daemon=True
                )
                self._subscriber.start()
            self._cond.notify_all()
        return handle

    def queue_depth(self, queue: str) -> int:
        """Return the number of ready messages."""
        with self._cond:
            found = self._queues.get(queue)
            return len(found.ready) if found else 0

    def claim(self, key: str) -> _MemoryClaim | None:
        """Take the claim ``key`` among the users of this instance; ``None`` if one holds it."""
        check_claim_key(key)
        with self._cond:
            self._require_connected()
            if key in self._claims:
                return None
            self._claims.add(key)
        return _MemoryClaim(key, self)

    def _release(self, key: str) -> None:
        with self._cond:
            self._claims.discard(key)

    # -- the subscriber thread -------------------------------------------------------------
    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _serve(self) -> None:
        """Move messages into every subscription's lane and settle what the handlers did."""
        with self._cond:
            while self._subscriptions:
                timeout = 0.5
                for handle in list(self._subscriptions):
                    due = self._pump(handle)
                    if due is not None:
                        timeout = min(timeout, due)
                if self._subscriptions:
                    self._cond.wait(timeout)
            self._subscriber = None

    def _pump(self, handle: Handle[Message]) -> float | None:
        """Serve one subscription (holding ``_cond``); return seconds until it is due again."""
        lane, queue = handle.lane, handle.queue
        busy = lane.busy  # read first: a batch settled before this is in settled() below
        for batch, outcome in lane.settled():
            self._settle(queue, batch, outcome, pause=False)
        error: str | None = None
        if lane.crash is not None:  # as a consumer that died: its batch comes back redelivered
            exc, batch = lane.crash
            self._settle(queue, batch, Settlement(requeue=tuple(range(len(batch)))), pause=False)
            error = f"the handler crashed: {type(exc).__name__}: {exc}"
        elif handle.cancelling.is_set() and busy:
            return None  # the batch in hand settles first
        if error is not None or handle.cancelling.is_set():
            self._queue(queue).ready.extendleft(reversed(lane.take_unhanded()))
            self._subscriptions.remove(handle)
            handle.end(error)
            return None
        ready = self._queue(queue).ready
        for _ in range(min(handle.room, len(ready))):
            message = ready.popleft()
            lane.add(message, message, alone=message.redelivered)
        return lane.dispatch()

    # -- internals ------------------------------------------------------------------------
    def _queue(self, name: str) -> _Queue:
        return self._queues.setdefault(name, _Queue())

    def _require_connected(self) -> None:
        if not self._connected:
            raise ServiceUnavailableError(
                f"memory datastream {self.name!r}: not connected. Call connect() or register"
                " the plugin with a hub first."
            )

    def _take(
        self,
        queue: str,
        batch_size: int,
        max_wait: float,
        generation: int,
        stop: threading.Event | None,
    ) -> list[Message] | None:
        """Take up to ``batch_size`` messages; ``None`` once consumption must stop."""
        batch: list[Message] = []
        deadline: float | None = None
        with self._cond:
            while True:
                if self._generation != generation or (stop is not None and stop.is_set()):
                    self._queue(queue).ready.extendleft(reversed(batch))
                    return None
                ready = self._queue(queue).ready
                while ready and len(batch) < batch_size:
                    batch.append(ready.popleft())
                if len(batch) >= batch_size:
                    return batch
                if batch and deadline is None:
                    deadline = time.monotonic() + max_wait
                remaining = 0.05 if deadline is None else deadline - time.monotonic()
                if batch and remaining <= 0:
                    return batch
                self._cond.wait(timeout=min(max(remaining, 0.0), 0.05))

    def _settle(
        self, queue: str, batch: Sequence[Message], outcome: Settlement, *, pause: bool = True
    ) -> None:
        with self._cond:
            ready = self._queue(queue).ready
            for index in reversed(outcome.requeue):
                ready.appendleft(replace(batch[index], redelivered=True))
            self._dead_letter(queue, [(batch[i], reason) for i, reason in outcome.dead.items()])
            self._cond.notify_all()
        if outcome.requeue and pause:
            time.sleep(0.1)  # the service was down: give it a moment before the redelivery

    def _dead_letter(self, queue: str, items: Sequence[tuple[Message, str]]) -> None:
        """Append copies of ``items`` to ``queue``'s dead-letter queue, each with its reason."""
        dead = dead_letter_queue(queue)
        with self._cond:
            ready = self._queue(dead).ready
            for message, reason in items:
                headers = dead_letter_headers(message.headers, reason)
                ready.append(replace(message, headers=headers, queue=dead))
