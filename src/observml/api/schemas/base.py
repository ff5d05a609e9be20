"""What every request and response body of the REST API builds on, and the one error shape.

Request models forbid unknown keys, so a typo (``row`` for ``rows``) is a 422 that names it,
and refuse values nested deeper than :data:`MAX_NESTING` levels (no config or row needs that; a
hostile one would only exhaust the recursion of whatever reads it next). Response models allow
extra keys, so the hub can add fields without breaking clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_NESTING",
    "NAME_PATTERN",
    "ErrorOut",
    "RequestModel",
    "ResponseModel",
    "Rows",
]

#: Deepest nesting of mappings and lists a request body may hold.
MAX_NESTING = 32

#: Experiment names: what ``ExperimentHub.create_experiment`` accepts.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"

#: Rows as JSON records (``[{"col": value}, ...]``) or a pandas ``split`` / ``columns`` object.
Rows: TypeAlias = list[dict[str, Any]] | dict[str, Any]


class RequestModel(BaseModel):
    """A request body: unknown keys are a 422 that names them."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _not_too_deep(self) -> Self:
        for name in type(self).model_fields:
            if _deeper_than(getattr(self, name), MAX_NESTING):
                raise ValueError(
                    f"{name} is nested deeper than {MAX_NESTING} levels; no experiment config,"
                    " format or row needs that"
                )
        return self


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether mappings/lists in ``value`` nest deeper than ``limit`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class ResponseModel(BaseModel):
    """An answer: extra keys are allowed, so the hub can add fields without breaking clients."""

    model_config = ConfigDict(extra="allow")


class ErrorOut(BaseModel):
    """Every error: the exception type and a message saying what to do."""

    error: str = Field(examples=["ExperimentNotFoundError"])
    message: str = Field(
        examples=["experiment 'valve' does not exist. Known: pump. Create it with ..."]
    )
