"""The other answers: liveness, plugins, counts, predictions, versions, runs, rows, figures.

What ``GET /experiments/{name}`` answers is in :mod:`observml.api.schemas.status`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from observml.api.schemas.base import ResponseModel

__all__ = [
    "DeletedOut",
    "ExperimentsOverview",
    "FlushOut",
    "HealthEntry",
    "Livez",
    "PlotList",
    "PluginOut",
    "PredictOut",
    "RunOut",
    "StoppedOut",
    "StreamOut",
    "TrainDataOut",
    "VersionInfo",
    "VersionOut",
]


class Livez(ResponseModel):
    """The process answers."""

    status: Literal["ok"]


class HealthEntry(ResponseModel):
    """One plugin's health, as ``ExperimentHub.check_plugin_health`` reports it."""

    healthy: bool
    details: dict[str, Any]


class PluginOut(ResponseModel):
    """A registered plugin."""

    plugin_type: str
    name: str
    target: str = Field(description="module:Class of the implementation.")
    available: list[str] = Field(description="Every name the registry knows for this type.")


class ExperimentsOverview(ResponseModel):
    """Every experiment counted, for a one-line summary (``GET /experiments/summary``)."""

    total: int = Field(description="How many experiments the hub serves.", examples=[500])
    by_state: dict[str, int] = Field(
        description="How many are in each state (as the status names it), most first.",
        examples=[{"ready": 480, "running": 12, "queued": 8}],
    )
    by_type: dict[str, int] = Field(
        description="How many are of each experiment type, most first.",
        examples=[{"fault_detection": 450, "time_series": 50}],
    )
    streaming: int = Field(description="How many stream.", examples=[430])
    open_alerts: int = Field(description="How many have an open alert.", examples=[3])
    in_shadow: int = Field(
        description="How many have a challenger in shadow awaiting a decision.", examples=[2]
    )


class DeletedOut(ResponseModel):
    """The experiment is gone from the hub (the MLOps store keeps its history)."""

    name: str
    deleted: bool


class PredictOut(ResponseModel):
    """Predictions, one row per input row (with ``message_id`` when read from the queue)."""

    experiment: str
    count: int
    rows: list[dict[str, Any]]


class VersionOut(ResponseModel):
    """The model version now served (``None`` when loaded from a bare run id)."""

    name: str
    version: int | None


class StoppedOut(ResponseModel):
    """Whether a training job was running and has been stopped."""

    name: str
    stopped: bool


class StreamOut(ResponseModel):
    """Whether the experiment streams predictions now."""

    name: str
    streaming: bool


class RunOut(ResponseModel):
    """An MLOps run; times are epoch milliseconds."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None = None
    run_name: str = ""
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    artifact_uri: str = ""


class VersionInfo(ResponseModel):
    """A registered model version."""

    name: str
    version: int
    run_id: str
    source: str = ""
    aliases: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    creation_time: int = 0


class TrainDataOut(ResponseModel):
    """A page of the champion's kept training rows."""

    total: int
    offset: int
    limit: int
    columns: list[str]
    rows: list[dict[str, Any]]


class PlotList(ResponseModel):
    """The figure names of an experiment's champion."""

    reports: list[str] = Field(description="GET /experiments/{name}/plots/{plot}")
    eda: list[str] = Field(description="GET /experiments/{name}/eda/{plot}")


class FlushOut(ResponseModel):
    """How many ready messages were removed from the queue."""

    queue: str
    removed: int
