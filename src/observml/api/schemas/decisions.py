"""Pydantic models of what people decide: promote, reject, feedback, and the fault library.

The request bodies of ``POST /experiments/{name}/promote``, ``/reject`` and ``/feedback`` and
their answers. Request models forbid unknown keys; response models allow extra ones (see
:mod:`observml.api.schemas`, which also describes the alerts, shadow and gate in the status).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Self

from pydantic import Field, field_validator, model_validator

from observml.api.schemas.base import RequestModel, ResponseModel, Rows
from observml.api.schemas.status import DecisionOut

__all__ = [
    "DecisionsPage",
    "EvidenceOut",
    "FeedbackOut",
    "FeedbackRequest",
    "LibraryOut",
    "PromoteRequest",
    "PromotedOut",
    "RejectRequest",
    "RejectedOut",
]

#: What the MLOps store keeps of a reason (longer text is refused, not cut).
MAX_REASON: Final = 4000
#: Times pandas can represent (``pandas.Timestamp.min`` / ``max`` fall inside these years).
_FIRST_YEAR: Final = 1678
_LAST_YEAR: Final = 2261

_REASON = Field(
    default="",
    max_length=MAX_REASON,
    description="Why, in a person's words; kept with the decision in status() and the store.",
    examples=["maintenance replaced the impeller; the new flow is normal"],
)


# -- requests ------------------------------------------------------------------------------
class PromoteRequest(RequestModel):
    """Promote the challenger in shadow, or a model version named by ``version``."""

    version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="A registered model version; empty: the challenger in shadow.",
    )
    reason: str = _REASON


class RejectRequest(RequestModel):
    """Reject the challenger in shadow; the champion serves on."""

    reason: str = _REASON
    as_fault: bool = Field(
        default=False,
        description=(
            "Keep the rows the champion flagged in the window's alarm episodes as a known"
            " fault: every later challenger must still flag them."
        ),
    )


class FeedbackRequest(RequestModel):
    """Say what rows are: the rows themselves, or a time range of the streamed window."""

    label: str = Field(
        min_length=1,
        max_length=200,
        description="'fault' or 'normal'; for fault_isolation, the class of the rows.",
        examples=["fault"],
    )
    rows: Rows | None = Field(
        default=None,
        description="The rows (JSON records or a pandas 'split' object); else start/end.",
    )
    format: dict[str, Any] | None = Field(
        default=None, description="How to read 'rows' when they are not wide records."
    )
    start: datetime | None = Field(
        default=None,
        description=(
            "First time of the range (ISO 8601, UTC when no zone is given): compared with"
            " setup.datetime_column where the rows carry it, else with their arrival time."
            " Empty: from the oldest row of the window."
        ),
        examples=["2026-05-04T06:00:00Z"],
    )
    end: datetime | None = Field(
        default=None, description="Last time of the range (inclusive). Empty: up to now."
    )
    reason: str = _REASON

    @field_validator("start", "end")
    @classmethod
    def _representable(cls, value: datetime | None) -> datetime | None:
        if value is not None and not _FIRST_YEAR <= value.year <= _LAST_YEAR:
            raise ValueError(f"give a time between the years {_FIRST_YEAR} and {_LAST_YEAR}")
        return value

    @model_validator(mode="after")
    def _rows_or_range(self) -> Self:
        if self.rows is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either rows or a time range (start/end), not both")
        return self


# -- answers -------------------------------------------------------------------------------
class PromotedOut(ResponseModel):
    """The model version that serves now."""

    name: str
    version: int


class RejectedOut(ResponseModel):
    """The rejected challenger, and what was kept as a known fault."""

    name: str
    version: int
    as_fault: bool
    fault_rows: int = Field(description="Rows kept in the fault library (0 without as_fault).")
    feedback_run: str | None = Field(
        default=None, description="The MLOps run holding those rows (with as_fault)."
    )


class EvidenceOut(ResponseModel):
    """One piece of feedback kept in the store (its rows stay in the run's artifact)."""

    label: str
    rows: int
    reason: str
    source: str = Field(description="Who gave it: 'api', 'cli', a Python caller's label.")
    run_id: str
    at: float = Field(description="When it was given (epoch seconds).")


class FeedbackOut(EvidenceOut):
    """The feedback just stored."""

    name: str


class LibraryOut(ResponseModel):
    """The fault library and the normal reference people built for an experiment."""

    faults: int = Field(description="Pieces of feedback labelled 'fault'.")
    fault_rows: int
    normal: int = Field(description="Pieces of feedback labelled 'normal'.")
    normal_rows: int
    labelled: int = Field(description="Pieces with another label (a class, fault isolation).")
    recent: list[EvidenceOut] = Field(description="The newest ten, newest first.")


class DecisionsPage(ResponseModel):
    """A page of the experiment's decisions, newest first."""

    name: str
    offset: int
    limit: int
    source: str = Field(
        description="store: read from the MLOps store (every process, every restart); hub:"
        " this process's own (no MLOps plugin).",
        examples=["store"],
    )
    decisions: list[DecisionOut] = Field(default_factory=list)
