"""Where a queue lives on the broker, and how plain plant topics become rows.

A queue ``pump.predict`` is the topic ``<topic_prefix>/pump/predict``; its dead letters
(``pump.predict.dead``) are ``<topic_prefix>/pump/predict/dead``. With a ``share_group`` the
hub reads it through the shared subscription ``$share/<share_group>/<topic>``, so hubs in one group
compete for its messages. Without a share group each hub's session subscribes to the topic
itself (and gets every message).

A :class:`TopicMapping` feeds a queue from plant topics that carry one plain value each
(``plant/pump1/temperature`` -> ``21.5``): the levels of the topic named in the template
become columns, so that message becomes the row ``{"unit": "pump1", "temperature": 21.5}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from observml.errors import ConfigError

__all__ = [
    "COLUMN_LEVEL",
    "TopicMapping",
    "queue_topic",
    "shared_filter",
    "topic_mappings",
]

#: The template level whose topic level names the value's column.
COLUMN_LEVEL: Final = "{column}"
_WILDCARDS: Final = frozenset("+#")


def queue_topic(prefix: str, queue: str) -> str:
    """Return the topic of ``queue``: its dots become levels under ``prefix``.

    Raises:
        ConfigError: The queue name holds an MQTT wildcard, a slash or an empty level.
    """
    levels = queue.split(".")
    if not queue or any(not level or _WILDCARDS & set(level) or "/" in level for level in levels):
        raise ConfigError(
            f"MQTTPlugin: queue {queue!r} cannot be an MQTT topic: use dot-separated names"
            " without '/', '+', '#' or empty parts (e.g. 'pump.predict').",
            key="queue",
        )
    return "/".join([prefix, *levels]) if prefix else "/".join(levels)


def shared_filter(group: str | None, topic_filter: str) -> str:
    """Return the shared subscription of ``group`` to ``topic_filter`` (itself without one)."""
    return f"$share/{group}/{topic_filter}" if group else topic_filter


@dataclass(frozen=True)
class TopicMapping:
    """Feeds ``queue`` from topics matching ``template``, one plain value per message.

    ``template`` is a topic whose levels are literal, ``{name}`` (the level's text becomes
    column ``name``) or :data:`COLUMN_LEVEL` (the level's text names the column of the value).
    A payload that is a JSON object is merged into the row instead of being one value.
    ``timestamp``, when set, names a column that receives the time the hub received the value.
    """

    template: str
    queue: str
    timestamp: str | None = None

    @property
    def levels(self) -> tuple[str, ...]:
        """The template's levels."""
        return tuple(self.template.split("/"))

    @property
    def topic_filter(self) -> str:
        """The MQTT filter matching the template (named levels become ``+``)."""
        return "/".join("+" if _named(level) else level for level in self.levels)

    def matches(self, topic: str) -> bool:
        """Return True when ``topic`` has the template's shape."""
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            return False
        return all(_named(t) or t == p for t, p in zip(self.levels, parts, strict=True))

    def row(self, topic: str, payload: bytes, received: datetime | None = None) -> dict[str, Any]:
        """Return the row one message on ``topic`` stands for.

        Raises:
            ValueError: The payload is neither a finite number nor a JSON object.
        """
        row: dict[str, Any] = {}
        column: str | None = None
        for level, part in zip(self.levels, topic.split("/"), strict=True):
            if level == COLUMN_LEVEL:
                column = part
            elif _named(level):
                row[level[1:-1]] = part
        value = _value(topic, payload)
        if isinstance(value, dict):
            row.update(value)
        else:
            row[column or "value"] = value
        if self.timestamp:
            row[self.timestamp] = (received or datetime.now(UTC)).isoformat()
        return row


def _named(level: str) -> bool:
    return level.startswith("{") and level.endswith("}") and len(level) > 2


def _value(topic: str, payload: bytes) -> float | dict[str, Any]:
    text = payload.decode("utf-8", errors="replace").strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(
        f"topic {topic!r}: payload {text[:60]!r} is neither a number nor a JSON object; a"
        " mapped plant topic carries one plain value (e.g. 21.5) or an object of columns."
    )


def topic_mappings(raw: Sequence[Mapping[str, Any]] | None) -> tuple[TopicMapping, ...]:
    """Check the ``topic_columns`` setting and return its mappings.

    Raises:
        ConfigError: An entry lacks ``topic`` or ``queue``, has unknown keys, or its template
            has a wildcard or no level naming a column.
    """
    mappings: list[TopicMapping] = []
    for i, entry in enumerate(raw or ()):
        where = f"plugins.datastream.config.topic_columns[{i}]"
        if not isinstance(entry, Mapping) or not {"topic", "queue"} <= set(entry):
            raise ConfigError(
                f"{where}: expected a mapping with 'topic' (e.g. 'plant/{{unit}}/{{column}}')"
                " and 'queue' (e.g. 'pump.predict'), and optionally 'timestamp'.",
                key=where,
            )
        unknown = set(entry) - {"topic", "queue", "timestamp"}
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {sorted(unknown)}; accepted: topic, queue, timestamp.",
                key=where,
            )
        template = str(entry["topic"])
        levels = template.split("/")
        if any(_WILDCARDS & set(level) for level in levels) or not any(map(_named, levels)):
            raise ConfigError(
                f"{where}.topic: {template!r} must be a topic without '+' or '#' in which"
                " levels in braces name columns, e.g. 'plant/{unit}/{column}'.",
                key=f"{where}.topic",
            )
        queue_topic("", str(entry["queue"]))  # checks the queue name
        stamp = entry.get("timestamp")
        mappings.append(TopicMapping(template, str(entry["queue"]), str(stamp) if stamp else None))
    return tuple(mappings)
