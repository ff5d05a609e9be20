"""Pydantic model of a message read from a queue without taking it (``GET .../dead-letters``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from observml.api.schemas.base import ResponseModel

__all__ = ["QueuedMessageOut"]


class QueuedMessageOut(ResponseModel):
    """A message waiting in a queue; it stays there."""

    queue: str = Field(examples=["pump.predict.dead"])
    message_id: str | None = None
    reason: str | None = Field(
        default=None, description="Why it was dead-lettered (header x-observml-reason)."
    )
    redelivered: bool = False
    content_type: str | None = None
    headers: dict[str, Any] = Field(default_factory=dict)
    body: str = Field(description="The body: text, or base64 when it is not UTF-8.")
    encoding: Literal["utf-8", "base64"] = "utf-8"
