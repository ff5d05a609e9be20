"""Reading a queue without taking its messages: ``observml tail`` and ``GET .../dead-letters``.

:class:`QueueBrowser` is a protocol of its own, not part of
:class:`~observml.plugins.datastream.DataStreamPlugin`, so a third-party datastream written
before it keeps working; :func:`browse_queue` says plainly when a plugin cannot browse. The
built-in plugins can: ``memory`` and ``local`` read their store, ``rabbitmq`` takes messages
unacked on a channel of its own and puts them back (see its ``browse``).
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from observml.errors import DataError, PluginError
from observml.plugins.datastream import Message

__all__ = ["MAX_BROWSE", "QueueBrowser", "browse_queue"]

#: The most messages one :func:`browse_queue` call returns.
MAX_BROWSE: Final = 1000


@runtime_checkable
class QueueBrowser(Protocol):
    """A datastream that can show waiting messages without taking them."""

    def browse(self, queue: str, limit: int = 10) -> list[Message]:
        """Return up to ``limit`` ready messages of ``queue``, oldest first, leaving them there.

        An unknown queue gives ``[]``. No message is acked, dead-lettered or lost.
        """
        ...


def browse_queue(stream: object, queue: str, limit: int = 10) -> list[Message]:
    """Return up to ``limit`` ready messages of ``queue`` (oldest first), leaving them there.

    Raises:
        PluginError: The datastream plugin cannot browse queues; says what to use instead.
        DataError: ``limit`` is not 1 to :data:`MAX_BROWSE`.
    """
    if not 1 <= limit <= MAX_BROWSE:
        raise DataError(f"queue {queue!r}: browse limit {limit}: use 1 to {MAX_BROWSE}.")
    if not isinstance(stream, QueueBrowser):
        raise PluginError(
            f"plugins.datastream: {type(stream).__name__} cannot browse queues (it has no"
            f" browse() method), so {queue!r} cannot be read without taking its messages. Use"
            " the broker's own tools, or a datastream plugin that can (memory, local, rabbitmq)."
        )
    return stream.browse(queue, limit)
