"""Routes of people's decisions: promote or reject the challenger in shadow, label rows.

A retrain under ``promotion: approve`` leaves a challenger in shadow; nothing changes for the
plant until a person promotes or rejects it here (or with ``observml promote|reject``, or the
dashboard). Feedback says what streamed rows are (a fault, normal operation, a class) and builds
the fault library every later challenger must pass. Each route is one hub call; the decisions
are recorded in the status and tagged in the MLOps store, with ``api`` as who acted (the API has
one shared token, no user accounts). The overlay figure of the shadow is in
:mod:`observml.api.artifacts`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Body, Query

from observml.api.deps import Hub, Name, errors, make_router, obj, rows_data
from observml.api.schemas.decisions import (
    DecisionsPage,
    FeedbackOut,
    FeedbackRequest,
    LibraryOut,
    PromotedOut,
    PromoteRequest,
    RejectedOut,
    RejectRequest,
)
from observml.errors import ServiceUnavailableError

__all__ = ["BY", "router"]

#: Who acted, as recorded with every decision taken through the API.
BY: Final = "api"

router = make_router()


@router.post(
    "/experiments/{name}/promote",
    response_model=PromotedOut,
    tags=["decisions"],
    responses=errors(404, 409),
)
def promote(
    hub: Hub, name: Name, body: Annotated[PromoteRequest | None, Body()] = None
) -> dict[str, Any]:
    """Make the challenger in shadow (or ``version``) the champion; the old one is ``previous``.

    The open alert is acknowledged; the decision is recorded in the status and as the model
    version tag ``observml.decision=promoted``. ``POST .../rollback`` undoes it.
    """
    request = body or PromoteRequest()
    version = hub.promote(name, request.version, reason=request.reason, by=BY)
    return {"name": name, "version": version}


@router.post(
    "/experiments/{name}/reject",
    response_model=RejectedOut,
    tags=["decisions"],
    responses=errors(404),
)
def reject(
    hub: Hub, name: Name, body: Annotated[RejectRequest | None, Body()] = None
) -> dict[str, Any]:
    """Reject the challenger in shadow; the champion serves on, unchanged.

    With ``as_fault`` the rows the champion flagged in the window's alarm episodes join the
    fault library: every later challenger must still flag them.
    """
    request = body or RejectRequest()
    result = hub.reject(name, reason=request.reason, as_fault=request.as_fault, by=BY)
    return obj({"name": name, **result})


@router.post(
    "/experiments/{name}/feedback",
    status_code=201,
    response_model=FeedbackOut,
    tags=["decisions"],
    responses=errors(404),
)
def feedback(hub: Hub, name: Name, body: FeedbackRequest) -> dict[str, Any]:
    """Label rows: given inline, or the streamed rows between ``start`` and ``end``.

    ``fault`` rows join the fault library, ``normal`` rows the normal reference (a challenger
    may learn from them); for fault isolation any other label is a class and the rows become
    labelled training data. Kept as a run in the MLOps store. Acknowledges the open alert.
    """
    evidence = hub.feedback(
        name,
        label=body.label,
        data=rows_data(body.rows, body.format),
        start=body.start,
        end=body.end,
        reason=body.reason,
        by=BY,
    )
    return obj({"name": name, **evidence})


@router.get(
    "/experiments/{name}/feedback",
    response_model=LibraryOut,
    tags=["decisions"],
    responses=errors(404),
)
def library(hub: Hub, name: Name) -> dict[str, Any]:
    """Return the fault library and the normal reference: counts and the newest feedback."""
    found = hub.library(name)
    if "error" in found:  # the hub's status-friendly answer when the store cannot be read
        raise ServiceUnavailableError(
            f"experiment {name!r}: the feedback in the MLOps store cannot be read:"
            f" {found['error']}. Check GET /health and try again."
        )
    return obj(found)


@router.get(
    "/experiments/{name}/decisions",
    response_model=DecisionsPage,
    tags=["decisions"],
    responses=errors(404),
)
def decisions(
    hub: Hub,
    name: Name,
    offset: Annotated[int, Query(ge=0, description="Decisions to skip, newest first.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Decisions to return.")] = 20,
) -> dict[str, Any]:
    """The experiment's decisions, newest first, from the MLOps store (paged).

    Every hub process and every restart writes to the same history, so this is what was
    decided about the experiment, also before this server started.
    """
    return obj(hub.decisions(name, offset=offset, limit=limit))
