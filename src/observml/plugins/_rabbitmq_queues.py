"""Declaring the RabbitMQ plugin's queues: durable, and no arguments but the queue type.

These are the arguments a producer declares too (none for classic queues), so neither side
gets ``406 PRECONDITION_FAILED`` whoever comes first. A queue that exists with other arguments
is used as it is when that loses nothing (dead-letter settings left by an older observml, a
length limit); a queue of another type, or one that is not durable, is a ``ConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from pika.exceptions import ChannelClosedByBroker

from observml.errors import ConfigError
from observml.plugins._rabbitmq_link import Link
from observml.plugins.datastream import dead_letter_queue

__all__ = ["declare_queue", "ensure_queue"]

#: The setting a 406 on ``queue.declare`` names: "inequivalent arg 'x-queue-type' for queue ...".
_INEQUIVALENT: Final = re.compile(r"inequivalent arg '([^']+)'")
#: Differences a queue cannot be used with: it would lose messages or is not the type asked for.
_FATAL_DIFFERENCES: Final = frozenset({"durable", "exclusive", "auto_delete", "x-queue-type"})


def declare_queue(
    link: Link,
    queue: str,
    *,
    quorum: bool,
    where: str,
    used_as_is: Callable[[str, str], None],
) -> None:
    """Declare ``queue`` and its dead-letter queue: durable, no arguments but the type.

    A queue that exists with other arguments it can be used with is declared passively and
    reported to ``used_as_is(queue, broker's reply)``.

    Raises:
        ConfigError: The queue exists as another type, or with settings that could lose
            messages (not durable, exclusive, auto-delete).
    """
    arguments = {"x-queue-type": "quorum"} if quorum else None
    for name in (dead_letter_queue(queue), queue):
        try:
            link.channel().queue_declare(name, durable=True, arguments=arguments)
        except ChannelClosedByBroker as exc:
            if exc.reply_code != 406:
                raise
            _check_usable(name, exc, where)
            link.channel().queue_declare(name, passive=True)
            used_as_is(name, str(exc.reply_text))
        link.known_queues.add(name)


def ensure_queue(link: Link, queue: str, declare: Callable[[Link, str], None]) -> None:
    """Make sure ``queue`` exists: ``declare(link, queue)`` it when the broker does not know it."""
    if queue in link.known_queues:
        return
    try:
        link.channel().queue_declare(queue, passive=True)
    except ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        declare(link, queue)
    link.known_queues.add(queue)


def _check_usable(queue: str, refused: ChannelClosedByBroker, where: str) -> None:
    """Raise unless the queue the broker refused to redeclare can be used as it is."""
    found = _INEQUIVALENT.search(str(refused.reply_text))
    setting = found.group(1) if found else None
    if setting == "x-queue-type":
        raise ConfigError(
            f"{where}: queue {queue!r} already exists as another type"
            f" ({refused.reply_text}). Set queue_type to the queue's type, or move its"
            f" messages elsewhere and delete it (rabbitmqctl delete_queue {queue}). Producers"
            " of a quorum hub declare arguments={'x-queue-type': 'quorum'}.",
            key="plugins.datastream.config.queue_type",
        ) from refused
    if setting is None or setting in _FATAL_DIFFERENCES:
        raise ConfigError(
            f"{where}: queue {queue!r} already exists with settings the hub cannot use"
            f" ({refused.reply_text}). Have its producers declare it with durable=True and"
            f" no other flags, and delete this one (rabbitmqctl delete_queue {queue}) once it"
            " is empty."
        ) from refused
