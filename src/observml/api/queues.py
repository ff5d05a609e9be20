"""Routes that read queues without taking their messages: dead letters and any queue.

``GET /experiments/{name}/dead-letters`` shows what went to ``<name>.predict.dead`` and why;
``GET /queues/{queue}/messages`` shows the oldest messages waiting in any queue (results in
``<name>.predictions``, ``<name>.shadow``). Both leave the messages where they are (see
:meth:`observml.hub.hub.ExperimentHub.browse` for what each datastream does); with a
datastream plugin that cannot browse, the answer is a ``PluginError`` saying so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from observml.api.deps import Hub, Name, errors, make_router, objs
from observml.api.schemas.queues import QueuedMessageOut

__all__ = ["router"]

router = make_router()

Limit = Annotated[int, Query(ge=1, le=1000, description="The most messages to return.")]


@router.get(
    "/experiments/{name}/dead-letters",
    response_model=list[QueuedMessageOut],
    tags=["queues"],
    responses=errors(404),
)
def dead_letters(hub: Hub, name: Name, limit: Limit = 10) -> list[dict[str, Any]]:
    """The oldest dead letters of ``<name>.predict.dead`` with their reasons; they stay there."""
    return objs(hub.dead_letters(name, limit))


@router.get("/queues/{queue}/messages", response_model=list[QueuedMessageOut], tags=["queues"])
def browse(
    hub: Hub,
    queue: Annotated[str, Path(description="The queue.", examples=["pump.predictions"])],
    limit: Limit = 10,
) -> list[dict[str, Any]]:
    """The oldest messages waiting in ``queue``, oldest first; they stay there."""
    return objs(hub.browse(queue, limit))
