"""One queue's durable subscription: this hub's share of the queue, buffered as it arrives.

A :class:`Session` is an MQTT session with a stable client id (``<client_id>/<queue>``), a clean
start of ``False`` and a session expiry, subscribed at QoS 1 to the queue's topic, through
``$share/<group>/`` when a share group is set (and to the plant topics mapped onto the queue).
While nobody is connected the broker keeps the session's messages; while connected, the broker
sends up to ``receive_maximum`` messages that wait here, unacknowledged, until a consumer
settles them (paho's manual ack). A message taken and then given back (a crash, a requeue)
waits again at the front, flagged redelivered.

When the connection drops, the messages received on it are forgotten here: the broker sends
each unacknowledged one again on the next connection, flagged ``dup`` (``redelivered``).

The session's connection (a :class:`~observml_mqtt.link.Link`) has no thread of its own: the
plugin's shared :class:`~observml_mqtt.driver.Driver` reads it, reconnects it and runs paho's
callbacks, unless a ``consume`` call has moved it to a driver of its own (:meth:`move_to`).

A consumer may instead settle the messages on paho's network thread as they arrive
(:meth:`Session.deliver_inline`), as a plain paho program does in ``on_message``: each arrival
is handed to its callback at once, with no hand-over to another thread and no lock taken here.
The callback settles it, or queues it here behind the messages that wait (:meth:`Session.push`),
so order is kept.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from observml.errors import ServiceUnavailableError
from observml.plugins.datastream import Message
from observml_mqtt.connection import Endpoint
from observml_mqtt.driver import Driver
from observml_mqtt.link import Link
from observml_mqtt.properties import message_of
from observml_mqtt.topics import TopicMapping, shared_filter

__all__ = ["Delivery", "Session"]


#: Called on paho's network thread with each arrival while inline delivery is on, with the
#: fields of its :class:`Delivery` (message, packet id, generation, error): the usual arrival is
#: settled at once, so building a ``Delivery`` for it would be wasted work.
Arrived = Callable[["Message", int, int, "str | None"], None]


class Delivery(NamedTuple):
    """A received message and how to settle it (a tuple: one is built per message)."""

    message: Message
    mid: int
    generation: int
    #: Why the message cannot be handed to a handler (a mapped topic with a bad value).
    error: str | None = None


class Session:
    """The durable subscription of one queue (see the module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        client_id: str,
        queue: str,
        topic: str,
        group: str | None,
        mappings: Sequence[TopicMapping],
        receive_maximum: int,
        driver: Driver,
    ) -> None:
        self.queue = queue
        self.topic = topic
        self._endpoint = endpoint
        self._client_id = client_id
        self._filters = [shared_filter(group, topic)] + [
            shared_filter(group, m.topic_filter) for m in mappings
        ]
        self._mappings = tuple(mappings)
        self._receive_maximum = receive_maximum
        self._cond = threading.Condition()
        self._ready: collections.deque[Delivery] = collections.deque()
        self._expected: set[str] = set()
        self._generation = 0
        self._lost_at: float | None = None
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._client: mqtt.Client | None = None
        self._inline: Arrived | None = None
        self._driver = driver
        #: A ``consume`` call is taking this session's messages (set by the plugin).
        self.consumed = False
        self._moving = threading.Lock()  # one move or close at a time
        self._link = Link(
            endpoint,
            client_id,
            receive_maximum=receive_maximum,
            on_connected=self._connected,
            on_message=self._received,
            on_lost=self._lost,
        )

    # -- connection -----------------------------------------------------------------------
    def open(self, timeout: float) -> None:
        """Connect, subscribe, and return once the broker confirmed the subscription.

        Raises:
            AuthenticationError: The broker refused the login.
            ServiceUnavailableError: The broker is unreachable or did not confirm in time.
        """
        link = self._link
        link.open()
        self._client = link.client
        if not link.drive(self._subscribed.is_set, timeout):
            self.close()
            raise ServiceUnavailableError(
                f"{self._endpoint.where}: the broker did not confirm the subscription of queue"
                f" {self.queue!r} ({self.topic!r}) within {timeout}s. Check the broker's log."
            )
        if self._refused:
            self.close()
            raise ServiceUnavailableError(
                f"{self._endpoint.where}: the broker refused the subscription of queue"
                f" {self.queue!r} ({', '.join(self._filters)}): {self._refused}. Check the"
                " broker's ACL and that it supports shared subscriptions (MQTT 5)."
            )
        self._driver.adopt(link)

    def move_to(self, driver: Driver) -> None:
        """Have ``driver`` drive this session's connection from now on (no-op once closed)."""
        with self._moving:
            if self._client is None or driver is self._driver:
                return
            self._driver.release(self._link)
            self._driver = driver
            driver.adopt(self._link)

    def close(self) -> None:
        """Disconnect; the broker keeps the session and its messages until it expires."""
        with self._moving:
            if self._client is not None:
                self._driver.release(self._link)
                self._client = None
                self._link.close()
        self._lost()

    def _connected(self, client: mqtt.Client, _session_present: bool) -> None:
        with self._cond:
            self._lost_at = None
        options = SubscribeOptions(qos=1)
        client.on_subscribe = self._suback
        client.subscribe([(f, options) for f in self._filters])

    def _suback(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        refused = [str(code) for code in codes if code.is_failure]
        self._refused = ", ".join(refused) or None
        self._subscribed.set()

    def _lost(self) -> None:
        with self._cond:
            self._generation += 1
            self._ready.clear()
            if self._lost_at is None:
                self._lost_at = time.monotonic()
            self._cond.notify_all()

    @property
    def generation(self) -> int:
        """Counts the connections lost: deliveries of an earlier one are never acked."""
        return self._generation

    @property
    def down(self) -> str | None:
        """Why the connection is down (``None`` while it is up)."""
        if self._lost_at is None:
            return None
        return self._link.error or "the connection dropped"

    def down_for(self) -> float:
        """Seconds since the connection dropped (0 while connected)."""
        with self._cond:
            return 0.0 if self._lost_at is None else time.monotonic() - self._lost_at

    # -- receiving ------------------------------------------------------------------------
    def _received(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        error: str | None = None
        message = message_of(self.queue, msg.payload, msg.properties, redelivered=bool(msg.dup))
        if self._mappings:  # else every message is on the queue's own topic
            topic = msg.topic  # paho decodes it on every read
            if topic != self.topic:
                message, error = self._mapped(topic, message)
        if self._expected and message.message_id is not None:  # settle() waits for some
            with self._cond:
                self._expected.discard(message.message_id)
                self._cond.notify_all()
        # The generation changes on this thread (on_disconnect) or once the client is closed.
        inline = self._inline
        if inline is not None:  # settled on paho's network thread, like a plain on_message
            inline(message, msg.mid, self._generation, error)
        else:
            self.push(Delivery(message, msg.mid, self._generation, error))

    def _mapped(self, topic: str, message: Message) -> tuple[Message, str | None]:
        mapping = next((m for m in self._mappings if m.matches(topic)), None)
        if mapping is None:
            return message, None
        try:
            row = mapping.row(topic, message.body)
        except ValueError as exc:
            return message, f"TopicMappingError: {exc}"
        headers = {**message.headers, "mqtt-topic": topic}
        body = json.dumps([row]).encode("utf-8")
        return dataclasses.replace(
            message, body=body, headers=headers, content_type="application/json"
        ), None

    def deliver_inline(self, arrived: Arrived | None) -> None:
        """Hand each arriving message to ``arrived`` on the network thread (``None``: stop).

        ``arrived`` settles the message, as a plain paho consumer does in ``on_message``, or
        queues it behind those that wait here (:meth:`push`), to take them in order.
        """
        self._inline = arrived

    def push(self, delivery: Delivery) -> None:
        """Queue ``delivery`` behind those that wait here."""
        with self._cond:
            self._ready.append(delivery)
            self._cond.notify_all()

    def waiting(self) -> bool:
        """Whether messages wait here (lock-free: for the inline callback's quick check)."""
        return bool(self._ready)

    def expect(self, message_ids: Iterable[str]) -> None:
        """Note ids this plugin just published here; :meth:`settle` waits for them."""
        with self._cond:
            self._expected.update(message_ids)

    def settle(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until the messages this plugin published here arrived.

        With other hubs in the share group some go to them: the wait then ends at ``timeout``
        and forgets them.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._expected and self._lost_at is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._expected.clear()

    # -- taking and settling --------------------------------------------------------------
    def take(self, timeout: float) -> Delivery | None:
        """Return the next ready message, waiting up to ``timeout``; ``None`` if none came."""
        with self._cond:
            if self._ready:
                return self._ready.popleft()
            deadline = time.monotonic() + timeout
            while not self._ready:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._ready.popleft()

    def wake(self) -> None:
        """Wake every thread waiting in :meth:`take`."""
        with self._cond:
            self._cond.notify_all()

    def ready(self) -> int:
        """How many received messages wait here."""
        with self._cond:
            return len(self._ready)

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge ``deliveries`` (those of an earlier connection come back anyway)."""
        client = self._client
        with self._cond:
            current = self._generation
        if client is None:
            return
        for delivery in deliveries:
            if delivery.generation == current:
                client.ack(delivery.mid, 1)

    def ack_one(self, mid: int, generation: int) -> None:
        """Acknowledge packet ``mid`` if it came on the current connection, from any thread."""
        with self._cond:  # the connection does not change meanwhile (see _lost)
            client = self._client
            if client is not None and generation == self._generation:
                client.ack(mid, 1)

    def ack_arrival(self, mid: int, generation: int) -> None:
        """Acknowledge packet ``mid`` if it came on the current connection, on paho's thread.

        No lock: the connection (and its generation) changes on this thread only, or once the
        client is closed, when an ack does not matter.
        """
        client = self._client
        if client is not None and generation == self._generation:
            client.ack(mid, 1)

    def put_back(self, deliveries: Sequence[Delivery]) -> None:
        """Put ``deliveries`` back at the front, in order, unchanged (no handler saw them)."""
        with self._cond:
            current = self._generation
            self._ready.extendleft(d for d in reversed(deliveries) if d.generation == current)
            self._cond.notify_all()

    def give_back(self, deliveries: Sequence[Delivery]) -> None:
        """Put ``deliveries`` back at the front, in order, flagged redelivered."""
        with self._cond:
            current = self._generation
            for delivery in reversed(deliveries):
                if delivery.generation == current:
                    message = dataclasses.replace(delivery.message, redelivered=True)
                    self._ready.appendleft(delivery._replace(message=message))
            self._cond.notify_all()
