"""What the route modules share: the hub dependency, path parameters, documented errors, JSON.

Every error response is documented with :class:`~observml.api.schemas.ErrorOut`, so the OpenAPI
document matches what the app's error handlers send.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Final, cast

import pandas as pd
from fastapi import APIRouter, Depends, Path, Request

from observml.api.schemas import ErrorOut, Rows
from observml.hub.hub import ExperimentHub
from observml.io.rows import DataLike, to_frame

__all__ = [
    "Hub",
    "Name",
    "errors",
    "get_hub",
    "links",
    "make_router",
    "obj",
    "objs",
    "records",
    "rows_data",
]

_ERRORS: Final[Mapping[int, str]] = {
    400: "The experiment type is not registered (a module path never is); lists the types.",
    401: (
        "No or wrong bearer token, or a session cookie that expired, was signed out or was"
        " issued for another token (only when the server has api.token)."
    ),
    403: "A POST/PUT/PATCH/DELETE signed in by the session cookie came from another origin.",
    404: "No such experiment, job, run, model version or figure; the message lists what exists.",
    409: "The experiment is busy or untrained (e.g. a job is running, or no champion yet).",
    413: "The request body is larger than api.max_body_bytes.",
    422: (
        "The request, its experiment config or its rows do not fit; the message names the"
        " field, key path or column."
    ),
    500: "An unexpected server error (the server log has the details).",
    503: "A plugin is not configured or its service (broker, tracking server) is unreachable.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Return the ``responses=`` entries documenting these error statuses."""
    return {code: {"model": ErrorOut, "description": _ERRORS[code]} for code in codes}


def links(description: str, source: str, **targets: str) -> dict[str, Any]:
    """Return a response entry with OpenAPI links: ``{link name: operation id}``.

    Each link passes ``source`` (e.g. ``$response.body#/name``) as the target's one path
    parameter, so clients and stateful API fuzzers (schemathesis) can chain the calls:
    create -> train -> poll the job -> predict -> delete.
    """
    parameter = source.rsplit("/", 1)[-1]
    return {
        "description": description,
        "links": {
            name: {"operationId": operation, "parameters": {parameter: source}}
            for name, operation in targets.items()
        },
    }


def make_router() -> APIRouter:
    """Return a router whose operations document the errors any route can answer."""
    return APIRouter(
        responses={
            **errors(401, 403, 413, 422, 500, 503),
            "default": {"model": ErrorOut, "description": "Any other error, same shape."},
        }
    )


def get_hub(request: Request) -> ExperimentHub:
    """Return the app's hub."""
    return cast(ExperimentHub, request.app.state.hub)


Hub = Annotated[ExperimentHub, Depends(get_hub)]
Name = Annotated[str, Path(description="The experiment's name.", examples=["pump"])]


def rows_data(rows: Rows | None, fmt: dict[str, Any] | None) -> DataLike | None:
    """Rows of a request body as the hub takes them; a ``format`` block is applied here."""
    if rows is None:
        return None
    if fmt is not None:
        return to_frame(rows, fmt=fmt, where="request body: rows")
    return rows


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a frame as JSON-ready records (NaN -> null, timestamps -> ISO text)."""
    if frame.empty:
        return []
    text = frame.to_json(orient="records", date_format="iso", default_handler=str)
    return cast(list[dict[str, Any]], json.loads(text))


def obj(value: Mapping[str, Any]) -> dict[str, Any]:
    """Return a mapping with only JSON types (see :func:`plain`)."""
    return cast(dict[str, Any], plain(value))


def objs(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return a list of mappings with only JSON types (see :func:`plain`)."""
    return cast(list[dict[str, Any]], plain(values))


def plain(value: Any) -> Any:
    """Return ``value`` with only JSON types: numpy scalars unwrapped, NaN/inf as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalar
        return plain(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return plain(vars(value))
    return str(value)
