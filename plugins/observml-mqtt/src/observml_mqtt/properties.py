"""A message's id, content type and headers in MQTT 5 properties, both ways.

- The message id travels as the user property :data:`MESSAGE_ID_PROPERTY`; a message from a
  producer that set only MQTT's *correlation data* takes that as its id.
- The content type is MQTT 5's own *content type* property.
- A header whose value is a string is a user property of the same name, so MQTT tools show it
  (the dead-letter reason ``x-observml-reason`` among them). Headers of other JSON types (numbers,
  lists) travel together, JSON-encoded, in the user property :data:`TYPED_HEADERS_PROPERTY`, so
  they come back with their types.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from observml.plugins.datastream import Message, OutgoingMessage

__all__ = ["MESSAGE_ID_PROPERTY", "TYPED_HEADERS_PROPERTY", "message_of", "properties_of"]

MESSAGE_ID_PROPERTY: Final = "x-observml-message-id"
TYPED_HEADERS_PROPERTY: Final = "x-observml-headers"
#: Copied for each message: building paho's ``Properties`` anew costs more than publishing.
_EMPTY: Final = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def properties_of(out: OutgoingMessage) -> Properties:
    """Return the PUBLISH properties carrying ``out``'s id, content type and headers."""
    props = copy.copy(_EMPTY)
    user: list[tuple[str, str]] = [(MESSAGE_ID_PROPERTY, str(out.message_id))]
    typed: dict[str, Any] = {}
    for key, value in (out.headers or {}).items():
        if isinstance(value, str):
            user.append((str(key), value))
        else:
            typed[str(key)] = value
    if typed:
        user.append((TYPED_HEADERS_PROPERTY, json.dumps(typed, default=str)))
    props.UserProperty = user
    if out.content_type:
        props.ContentType = out.content_type
    return props


def message_of(
    queue: str, payload: bytes | bytearray, props: Properties | None, *, redelivered: bool
) -> Message:
    """Return the :class:`Message` a received PUBLISH stands for."""
    user: Sequence[tuple[str, str]] = getattr(props, "UserProperty", None) or ()
    headers: dict[str, Any] = {}
    message_id: str | None = None
    for key, value in user:
        if key == MESSAGE_ID_PROPERTY:
            message_id = value
        elif key == TYPED_HEADERS_PROPERTY:
            headers.update(_typed(value))
        else:
            headers[key] = value
    if message_id is None:
        correlation = getattr(props, "CorrelationData", None)
        if correlation:
            message_id = bytes(correlation).decode("utf-8", errors="replace")
    content_type = getattr(props, "ContentType", None)
    # Positional: keywords cost a third more, and consume() builds one Message per message.
    return Message(
        bytes(payload),
        headers,
        message_id,
        redelivered,
        str(content_type) if content_type else None,
        queue,
    )


def _typed(value: str) -> Mapping[str, Any]:
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        return {TYPED_HEADERS_PROPERTY: value}  # a foreign producer's property, kept as text
    return decoded if isinstance(decoded, dict) else {TYPED_HEADERS_PROPERTY: value}
