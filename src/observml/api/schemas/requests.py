"""The bodies clients send: create, train, retrain, predict and load an experiment.

The bodies of the decision routes (promote, reject, feedback) are in
:mod:`observml.api.schemas.decisions`.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field, field_validator

from observml.api.schemas.base import NAME_PATTERN, RequestModel, Rows

__all__ = [
    "RESERVED_NAMES",
    "CreateExperiment",
    "LoadRequest",
    "PredictRequest",
    "RetrainRequest",
    "TrainRequest",
]

#: Names the API does not give experiments: ``GET /experiments/summary`` is the counts of all.
RESERVED_NAMES: Final = frozenset({"summary"})

_RECORDS_EXAMPLE = [
    {"temp": 20.1, "pressure": 1.02, "flow": 3.3},
    {"temp": 20.4, "pressure": 1.01, "flow": 3.1},
]


class CreateExperiment(RequestModel):
    """Create an experiment of a registered type."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="The name; not `summary` (GET /experiments/summary counts them all).",
        examples=["pump"],
    )
    type: str = Field(
        min_length=1,
        description="An experiment type (GET /experiment-types).",
        examples=["fault_detection"],
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="The experiment config (setup, create_model, retrain, eda, ...).",
        examples=[{"create_model": {"model": "iforest"}}],
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_NAMES:
            raise ValueError(
                f"{name!r} is taken by GET /experiments/{name} (the counts of all experiments);"
                " choose another name"
            )
        return name


class TrainRequest(RequestModel):
    """Start training; without ``rows`` the rows are drained from ``<name>.train``."""

    config: dict[str, Any] | None = Field(
        default=None, description="A new config for the experiment (validated first)."
    )
    rows: Rows | None = Field(
        default=None,
        description="Training rows: JSON records, or a pandas 'split'/'columns' object.",
        examples=[_RECORDS_EXAMPLE],
    )
    format: dict[str, Any] | None = Field(
        default=None,
        description=(
            "How to read 'rows' when they are not wide records: a setup.format block such as"
            ' {"type": "long", "records_key": "tsdata"}.'
        ),
    )


class RetrainRequest(RequestModel):
    """Retrain now; without ``rows`` the streamed retrain window (or the queue) is used."""

    rows: Rows | None = Field(default=None, examples=[_RECORDS_EXAMPLE])
    format: dict[str, Any] | None = None
    reason: str = Field(
        default="retrain requested",
        min_length=1,
        max_length=4000,
        description="Why: the first words of the 'fired' decision in the history.",
    )


class PredictRequest(RequestModel):
    """Predict ``rows``; without them the hub drains ``<name>.predict`` and publishes results."""

    rows: Rows | None = Field(default=None, examples=[_RECORDS_EXAMPLE])
    format: dict[str, Any] | None = None


class LoadRequest(RequestModel):
    """Serve a stored model: the champion (empty body), a model version or a run's model."""

    version: int | None = Field(default=None, ge=1)
    run_id: str | None = Field(default=None, min_length=1)
