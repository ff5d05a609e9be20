"""Publishing at QoS 1 and waiting for every PUBACK, many messages in flight.

One client per plugin, with a random id and a clean start (a publisher needs no session). paho
keeps up to ``window`` messages in flight and queues the rest; after a dropped connection it
sends the unacknowledged ones again (at-least-once), so :meth:`Publisher.publish` only waits.
"""

from __future__ import annotations

import queue as queues
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from observml.plugins.datastream import OutgoingMessage
from observml_mqtt.connection import Endpoint, close_client, open_client
from observml_mqtt.properties import properties_of

__all__ = ["NO_SUBSCRIBERS", "NO_SUBSCRIBERS_REASON", "Publisher"]

#: PUBACK reason "no matching subscribers": the broker accepted but nobody holds the message.
NO_SUBSCRIBERS: Final = 16
#: How a failure for lack of subscribers starts.
NO_SUBSCRIBERS_REASON: Final = "no subscriber"


class Publisher:
    """The plugin's publishing client."""

    def __init__(self, endpoint: Endpoint, client_prefix: str, window: int) -> None:
        # Each publish() waits on a queue of its own: PUBACKs are routed to it by packet id, so
        # concurrent callers (handlers on a pool, dead letters) never take each other's.
        self._lock = threading.Lock()
        self._waiting: dict[int, queues.SimpleQueue[tuple[int, int, str]]] = {}
        self._early: dict[int, tuple[int, int, str]] = {}  # acked before its caller registered
        self._abandoned: set[int] = set()  # timed out: their late PUBACKs are dropped

        def configure(client: mqtt.Client) -> None:
            client.max_inflight_messages_set(max(window, 1))
            client.max_queued_messages_set(0)
            client.on_publish = self._acked

        self._client = open_client(
            endpoint,
            f"{client_prefix}-pub-{uuid.uuid4().hex[:8]}",
            clean_start=True,
            configure=configure,
        )

    def _acked(self, _c: mqtt.Client, _u: Any, mid: int, code: ReasonCode, _p: Any) -> None:
        ack = (mid, int(code.value), str(code))
        with self._lock:
            waiter = self._waiting.pop(mid, None)
            if waiter is None and mid in self._abandoned:
                self._abandoned.discard(mid)
            elif waiter is None:
                self._early[mid] = ack
        if waiter is not None:
            waiter.put(ack)

    @property
    def connected(self) -> bool:
        """True while the client is connected."""
        return bool(self._client.is_connected())

    def publish(
        self, topic: str, outs: Sequence[OutgoingMessage], *, timeout: float
    ) -> dict[str, str]:
        """Publish ``outs`` to ``topic`` and wait for their PUBACKs.

        Returns:
            ``{message_id: reason}`` of the messages the broker refused, did not route, or did
            not acknowledge while it made no progress for ``timeout`` seconds.
        """
        pending: dict[int, str] = {}
        acks: queues.SimpleQueue[tuple[int, int, str]] = queues.SimpleQueue()
        for out in outs:
            info = self._client.publish(topic, out.body, qos=1, properties=properties_of(out))
            pending[info.mid] = str(out.message_id)
            with self._lock:
                early = self._early.pop(info.mid, None)
                if early is None:
                    self._waiting[info.mid] = acks
            if early is not None:
                acks.put(early)
        failed: dict[str, str] = {}
        last_progress = time.monotonic()
        while pending:
            try:
                mid, code, reason = acks.get(timeout=0.5)
            except queues.Empty:
                if time.monotonic() - last_progress > timeout:
                    break
                continue
            message_id = pending.pop(mid, None)
            if message_id is None:
                continue
            last_progress = time.monotonic()
            if code == NO_SUBSCRIBERS:
                failed[message_id] = f"{NO_SUBSCRIBERS_REASON} holds it (no queue)"
            elif code >= 0x80:
                failed[message_id] = f"refused: {reason} (reason code {code})"
        with self._lock:  # a PUBACK coming after this is dropped
            for mid in pending:
                if self._waiting.pop(mid, None) is not None:
                    self._abandoned.add(mid)
        for message_id in pending.values():
            failed[message_id] = f"no PUBACK within {timeout}s (broker down?)"
        return failed

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        close_client(self._client)
