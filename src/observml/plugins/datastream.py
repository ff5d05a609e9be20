"""The DataStream plugin protocol: durable queues, confirmed publishing, acked consumption.

The spec's five methods keep their meaning (``pull_data`` returns one message body, ``""`` when
the queue is empty). Added for the hub: ``publish`` / ``publish_batch`` that return only once the
service holds the messages, ``consume`` / ``consume_batch`` that ack a message only after its
handler returned, and ``queue_depth``.

Every queue ``q`` has a dead-letter queue ``q.dead``; a rejected message lands there with the
reason in the header :data:`REASON_HEADER` (see :func:`dead_letter_headers`).

Every plugin takes ``max_message_bytes`` (default :data:`MAX_MESSAGE_BYTES`, 16 MiB): a body
larger than that is dead-lettered by :func:`settle` before any handler sees it, so nothing
parses it.

What every plugin decides alike lives here, so each keeps only its transport (how to take, ack
and dead-letter a message): :func:`settle` decides the fate of a consumed batch,
:func:`pulled_text` that of a message ``pull_data`` took, and :func:`unacked_reason` the reason
of a message whose consumers kept dying.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

from observml.config.validation import accepted_parameters
from observml.errors import ConfigError, DataError, ServiceUnavailableError
from observml.plugins.base import HealthReport, Plugin

__all__ = [
    "DEAD_SUFFIX",
    "MAX_MESSAGE_BYTES",
    "MAX_REASON_CHARS",
    "REASON_HEADER",
    "BatchHandler",
    "DataStreamPlugin",
    "Handler",
    "Message",
    "OutgoingMessage",
    "Settlement",
    "as_outgoing",
    "check_connect_settings",
    "dead_letter_headers",
    "dead_letter_queue",
    "one_at_a_time",
    "oversize_reason",
    "pulled_text",
    "settle",
    "unacked_reason",
]

DEAD_SUFFIX: Final = ".dead"
#: Header carrying why a message was dead-lettered.
REASON_HEADER: Final = "x-observml-reason"
#: Default ``max_message_bytes`` of every datastream plugin: larger bodies are dead-lettered.
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
#: Longest reason a dead letter's :data:`REASON_HEADER` keeps; longer ones are cut.
MAX_REASON_CHARS: Final = 2000


def dead_letter_queue(queue: str) -> str:
    """Return the name of ``queue``'s dead-letter queue."""
    return queue + DEAD_SUFFIX


def dead_letter_headers(headers: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """Return the headers of a dead-lettered copy: the message's own plus the (cut) reason."""
    return {**headers, REASON_HEADER: reason[:MAX_REASON_CHARS]}


@dataclass(frozen=True, init=False)
class Message:
    """A message received from a queue."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    redelivered: bool = False
    content_type: str | None = None
    queue: str = ""

    def __init__(
        self,
        body: bytes,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
        redelivered: bool = False,
        content_type: str | None = None,
        queue: str = "",
    ) -> None:
        """Set the fields in one pass (a frozen dataclass's own ``__init__`` is 3x slower)."""
        fields = self.__dict__
        fields["body"] = body
        fields["headers"] = {} if headers is None else headers
        fields["message_id"] = message_id
        fields["redelivered"] = redelivered
        fields["content_type"] = content_type
        fields["queue"] = queue

    def text(self) -> str:
        """Return the body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        """Return the message JSON-ready; ``reason`` is its dead-letter reason, if any.

        The body is text when it is UTF-8 (``encoding: "utf-8"``), else base64
        (``encoding: "base64"``).
        """
        try:
            body, encoding = self.text(), "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        reason = self.headers.get(REASON_HEADER)
        return {
            "queue": self.queue,
            "message_id": self.message_id,
            "reason": str(reason) if reason is not None else None,
            "redelivered": self.redelivered,
            "content_type": self.content_type,
            "headers": {str(k): _plain(v) for k, v in self.headers.items()},
            "body": body,
            "encoding": encoding,
        }


def _plain(value: Any) -> Any:
    """A header value as JSON holds it (bytes as text, anything else unknown as its str)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to publish; ``message_id`` is generated when ``None``."""

    body: bytes | str
    headers: Mapping[str, Any] | None = None
    message_id: str | None = None
    content_type: str | None = None


def as_outgoing(item: OutgoingMessage | bytes | str) -> OutgoingMessage:
    """Return ``item`` as an :class:`OutgoingMessage` with a ``bytes`` body and a message id."""
    out = item if isinstance(item, OutgoingMessage) else OutgoingMessage(item)
    if type(out.body) is bytes and out.message_id:  # already in shape: no copy
        return out
    body = out.body.encode("utf-8") if isinstance(out.body, str) else bytes(out.body)
    return OutgoingMessage(
        body, dict(out.headers or {}), out.message_id or uuid.uuid4().hex, out.content_type
    )


#: Called once per message; returning acks it, raising dead-letters it with the error as reason.
Handler: TypeAlias = Callable[[Message], None]
#: Called with up to ``batch_size`` messages; returns ``{index: reason}`` for messages to
#: dead-letter (the rest are acked), or ``None`` to ack all. Raising ``ServiceUnavailableError``
#: requeues the whole batch; raising anything else dead-letters it with the error as reason.
BatchHandler: TypeAlias = Callable[[Sequence[Message]], Mapping[int, str] | None]


@runtime_checkable
class DataStreamPlugin(Plugin, Protocol):
    """Interface for data stream plugins."""

    plugin_type: str  # "datastream"

    # -- the spec's methods ---------------------------------------------------------------
    def connect(self, **kwargs: Any) -> None:
        """Connect to the service (``initialize()`` calls it); kwargs override settings."""
        ...

    def disconnect(self) -> None:
        """Close connections; every running ``consume`` returns."""
        ...

    def create_queue(self, queue_name: str) -> None:
        """Declare a durable queue and its dead-letter queue. Idempotent."""
        ...

    def pull_data(self, queue: str) -> str:
        """Take one message body from ``queue``; ``""`` when it is empty.

        The message is acked only after it has been read and handed over. A body that is not
        UTF-8 text goes to the dead-letter queue and ``DataError`` is raised (``consume``
        hands over bytes).
        """
        ...

    def flush_queue(self, queue: str) -> int:
        """Remove every ready message from ``queue`` and return how many were removed."""
        ...

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
        """Publish one persistent message; return its id once the service confirmed it."""
        ...

    def publish_batch(
        self, queue: str, messages: Iterable[OutgoingMessage | bytes | str]
    ) -> list[str]:
        """Publish many messages with many in flight; return their ids once all are confirmed."""
        ...

    def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Call ``handler`` for each message until ``disconnect()`` or ``stop`` is set.

        ``prefetch`` bounds the messages held unacked (``None``: the plugin's setting). A
        handler that raises ``BaseException`` (not ``Exception``) ends the consumer as a crash
        would: its message is not acked, comes back with ``redelivered=True``, and the error
        propagates.
        """
        ...

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
        """Call ``handler`` with micro-batches until ``disconnect()`` or ``stop`` is set.

        A batch is handed over when it holds ``batch_size`` messages or ``max_wait`` seconds
        passed since its first message.
        """
        ...

    def queue_depth(self, queue: str) -> int:
        """Return how many messages are ready in ``queue`` (0 if it does not exist)."""
        ...

    def health_check(self) -> HealthReport:
        """Answer within a few seconds, also when the service is down; never raises."""
        ...


@dataclass(frozen=True)
class Settlement:
    """What to do with each message of a handled batch, by index."""

    ack: tuple[int, ...] = ()
    dead: Mapping[int, str] = field(default_factory=dict)
    requeue: tuple[int, ...] = ()


#: A batch of one that is acked, shared (``dead`` read-only): ``consume()`` needs it per message.
_ACK_ONE: Final = Settlement(ack=(0,), dead=MappingProxyType({}))


def oversize_reason(message: Message, max_bytes: int | None) -> str | None:
    """Return why ``message`` is dead-lettered for its size, or ``None`` when it fits.

    ``max_bytes`` of ``None`` or ``0`` means no limit.
    """
    size = len(message.body)
    if not max_bytes or size <= max_bytes:
        return None
    return (
        f"PayloadTooLargeError: message {message.message_id or '(no id)'}: the body has"
        f" {size} bytes, over max_message_bytes ({max_bytes}) of the datastream plugin; it was"
        " not read. Send smaller messages, or raise plugins.datastream.config.max_message_bytes."
    )


def settle(
    handler: BatchHandler, batch: Sequence[Message], *, max_bytes: int | None = None
) -> Settlement:
    """Run ``handler`` on ``batch`` and decide each message's fate (shared by all plugins).

    A message whose body is over ``max_bytes`` is dead-lettered with the reason and never
    handed to ``handler``. ``ServiceUnavailableError`` requeues the batch (the message is not
    at fault); any other exception dead-letters it with ``"<ErrorType>: <message>"`` as the
    reason.
    """
    if max_bytes:
        for message in batch:  # a loop, not a comprehension: consume() settles one at a time
            if len(message.body) > max_bytes:
                return _settle_fitting(handler, batch, max_bytes)
    return _settle(handler, batch)


def _settle_fitting(handler: BatchHandler, batch: Sequence[Message], max_bytes: int) -> Settlement:
    """Dead-letter the messages over ``max_bytes`` and settle the rest with ``handler``."""
    too_big = {i: r for i, m in enumerate(batch) if (r := oversize_reason(m, max_bytes))}
    keep = [i for i in range(len(batch)) if i not in too_big]
    inner = _settle(handler, [batch[i] for i in keep]) if keep else Settlement()
    return Settlement(
        ack=tuple(keep[i] for i in inner.ack),
        dead={**too_big, **{keep[i]: r for i, r in inner.dead.items()}},
        requeue=tuple(keep[i] for i in inner.requeue),
    )


def _settle(handler: BatchHandler, batch: Sequence[Message]) -> Settlement:
    indices = range(len(batch))
    try:
        rejected = handler(batch)
    except ServiceUnavailableError:
        return Settlement(requeue=tuple(indices))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return Settlement(dead={i: reason for i in indices})
    if not rejected:  # the usual case, kept short: it runs once per message in consume()
        return _ACK_ONE if len(batch) == 1 else Settlement(ack=tuple(indices))
    dead = {i: str(r) for i, r in rejected.items() if 0 <= i < len(batch)}
    return Settlement(ack=tuple(i for i in indices if i not in dead), dead=dead)


def one_at_a_time(handler: Handler) -> BatchHandler:
    """Adapt a per-message handler to a batch handler of batch size 1."""

    def handle(batch: Sequence[Message]) -> None:
        for message in batch:
            handler(message)

    return handle


def pulled_text(
    queue: str,
    message: Message,
    *,
    where: str,
    max_bytes: int | None,
    ack: Callable[[], object],
    dead_letter: Callable[[str], object],
) -> str:
    """Return the body of a message ``pull_data`` took, as text (the one path of all plugins).

    The plugin took ``message`` from ``queue`` and holds it unsettled; this decides its fate and
    the plugin's callbacks carry it out. A body over ``max_bytes``, or not UTF-8 text, goes to
    ``dead_letter(reason)`` (which moves it to the dead-letter queue, settled); any other is
    settled with ``ack()`` and its text returned. ``where`` names the plugin in errors.

    Raises:
        DataError: The body was too large or not UTF-8 text; it was dead-lettered.
    """
    too_big = oversize_reason(message, max_bytes)
    if too_big:
        dead_letter(too_big)
        raise DataError(f"{where}: queue {queue!r}: {too_big}")
    try:
        text = message.text()
    except UnicodeDecodeError as exc:
        dead_letter(f"UnicodeDecodeError: {exc}")
        raise DataError(
            f"{where}: queue {queue!r}: message {message.message_id} is not UTF-8 text; it was"
            f" moved to {dead_letter_queue(queue)!r}. Use consume() to receive bytes."
        ) from exc
    ack()
    return text


def unacked_reason(deliveries: int, cause: str) -> str:
    """Return the dead-letter reason of a message delivered this often without an ack."""
    return f"delivered {deliveries} times without an ack ({cause})"


def check_connect_settings(plugin: object, settings: Mapping[str, Any]) -> None:
    """Check the keywords of ``plugin.connect(**settings)`` name settings of its constructor.

    Raises:
        ConfigError: A keyword is not a setting; the message lists the accepted ones.
    """
    known = accepted_parameters(type(plugin))
    for key in settings:
        if key not in known:
            raise ConfigError(
                f"{type(plugin).__name__}.connect(): unknown setting {key!r}. Accepted:"
                f" {', '.join(known)}.",
                key=key,
            )
