"""Pydantic models of the REST API's request and response bodies.

Request models forbid unknown keys, so a typo (``row`` for ``rows``) is a 422 that names it,
and refuse values nested deeper than :data:`MAX_NESTING` levels (no config or row needs that; a
hostile one would only exhaust the recursion of whatever reads it next).
Response models allow extra keys, so the hub can add fields without breaking clients. The bodies
of the decision routes (promote, reject, feedback) are in :mod:`observml.api.decision_schemas`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_NESTING",
    "NAME_PATTERN",
    "AlertOut",
    "AlertsOut",
    "CreateExperiment",
    "DecisionOut",
    "DeletedOut",
    "ErrorOut",
    "ExperimentStatus",
    "ExperimentSummary",
    "FlushOut",
    "GateCheckOut",
    "GateOut",
    "HealthEntry",
    "JobOut",
    "Livez",
    "LoadRequest",
    "PlotList",
    "PluginOut",
    "PredictOut",
    "PredictRequest",
    "RequestModel",
    "ResponseModel",
    "RetrainRequest",
    "Rows",
    "RunOut",
    "ShadowOut",
    "ShadowPointOut",
    "StoppedOut",
    "StreamOut",
    "TrainDataOut",
    "TrainRequest",
    "VersionInfo",
    "VersionOut",
    "WindowOut",
]

#: Deepest nesting of mappings and lists a request body may hold.
MAX_NESTING = 32

#: Experiment names: what ``ExperimentHub.create_experiment`` accepts.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"

#: Rows as JSON records (``[{"col": value}, ...]``) or a pandas ``split`` / ``columns`` object.
Rows: TypeAlias = list[dict[str, Any]] | dict[str, Any]

_RECORDS_EXAMPLE = [
    {"temp": 20.1, "pressure": 1.02, "flow": 3.3},
    {"temp": 20.4, "pressure": 1.01, "flow": 3.1},
]


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


# -- requests ------------------------------------------------------------------------------
class CreateExperiment(RequestModel):
    """Create an experiment of a registered type."""

    name: str = Field(pattern=NAME_PATTERN, examples=["pump"])
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


# -- responses -----------------------------------------------------------------------------
class ErrorOut(BaseModel):
    """Every error: the exception type and a message saying what to do."""

    error: str = Field(examples=["ExperimentNotFoundError"])
    message: str = Field(
        examples=["experiment 'valve' does not exist. Known: pump. Create it with ..."]
    )


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


class JobOut(ResponseModel):
    """A training or retraining job."""

    job_id: str
    experiment: str
    kind: str
    state: Literal["queued", "running", "succeeded", "failed", "stopped"]
    progress: float
    stage: str
    error: str | None = None
    error_type: str | None = None
    run_id: str | None = None
    version: int | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] = Field(default_factory=dict)


class AlertOut(ResponseModel):
    """An alert: a drift test or threshold fired (or a retrain failed), told to people first."""

    experiment: str
    kind: str = Field(examples=["drift", "threshold", "drift+threshold", "retrain_failed"])
    reason: str
    opened_at: float = Field(description="Epoch seconds.")
    last_at: float = Field(description="When it last fired again (epoch seconds).")
    count: int = Field(description="How often it fired while open.")
    version: int | None = Field(default=None, description="The champion when it last fired.")
    state: Literal["open", "acknowledged"]
    acknowledged_at: float | None = None
    acknowledged_by: str | None = Field(
        default=None, description="Who or what answered it, e.g. 'api: promoted v2'."
    )


class AlertsOut(ResponseModel):
    """The open alert (at most one per experiment) and the recently answered ones."""

    open: AlertOut | None = None
    recent: list[AlertOut] = Field(default_factory=list, description="Newest first.")
    raised: int = Field(default=0, description="Signals raised since the hub started.")


class GateCheckOut(ResponseModel):
    """One check of the gate: the same measure on both models and the limit applied."""

    name: str = Field(examples=["false_alarms", "fault_1", "accuracy"])
    passed: bool
    champion: float | None
    challenger: float | None
    limit: float | None
    rows: int
    detail: str


class GateOut(ResponseModel):
    """The gate's verdict on a challenger (advice for a person under ``promotion: approve``)."""

    passed: bool
    reason: str
    checks: list[GateCheckOut] = Field(default_factory=list)


class ShadowPointOut(ResponseModel):
    """Both models' scores of one streamed row."""

    x: int | float | str | None = Field(description="The row: its time, or its number.")
    champion: float | None
    challenger: float | None


class ShadowOut(ResponseModel):
    """The challenger in shadow: it scores every streamed batch beside the champion."""

    version: int
    since: float = Field(description="When it went into shadow (epoch seconds).")
    reason: str = Field(description="What it was trained on, or 'resumed from the store'.")
    rows: int = Field(description="Rows both models scored since then (this process).")
    champion_flagged: int
    challenger_flagged: int
    champion_flag_rate: float | None = None
    challenger_flag_rate: float | None = None
    agreement: float | None = Field(
        default=None, description="Share of rows both models judged alike."
    )
    errors: int = Field(default=0, description="Batches the challenger could not score.")
    last_error: str | None = None
    gate: GateOut | None = Field(
        default=None, description="The gate's advice; null when resumed from the store."
    )
    recent: list[ShadowPointOut] = Field(
        default_factory=list, description="The newest score pairs (GET .../shadow/figure)."
    )


class WindowOut(ResponseModel):
    """The rows the last challenger was trained on, chosen from the retrain window."""

    mode: str = Field(examples=["in_control", "all", "given"])
    rows: int = Field(description="Rows in the window.")
    train_rows: int
    carried_rows: int = Field(description="Rows of the champion's training data kept.")
    excluded: dict[str, int] = Field(
        default_factory=dict, description="Rows left out, by reason (flagged, alarm_episode, ...)."
    )
    confirmed_normal: int
    alarm_episodes: int
    alarm_now: bool
    summary: str


class DecisionOut(ResponseModel):
    """One decision: alert, fired, skipped, trained, shadow, promoted, rejected, feedback, ..."""

    kind: str = Field(examples=["shadow", "promoted", "rejected", "feedback"])
    reason: str
    version: int | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)
    at: float
    details: dict[str, Any] = Field(
        default_factory=dict, description="What else it recorded, e.g. a feedback run id."
    )


class DriftOut(ResponseModel):
    """The last drift test on the scores (``retrain.drift``): KS test of streamed vs reference."""

    drifted: bool
    statistic: float
    p_value: float
    n_reference: int
    n_recent: int
    reference: str = Field(description="Where the reference came from: training or stream.")


class ExperimentSummary(ResponseModel):
    """An experiment in the list: state, champion and last metrics."""

    name: str
    type: str
    model: str | None = None
    state: str
    trained: bool
    champion_version: int | None = None
    previous_version: int | None = None
    challenger_version: int | None = Field(
        default=None, description="The challenger in shadow, awaiting a person's decision."
    )
    alert: AlertOut | None = Field(default=None, description="The open alert, if any.")
    streaming: bool = False
    metrics: dict[str, float | None] = Field(default_factory=dict)
    train_metrics: dict[str, Any] = Field(default_factory=dict)
    counters: dict[str, float] = Field(default_factory=dict)


class ExperimentStatus(ExperimentSummary):
    """Everything the hub knows about one experiment right now."""

    job: JobOut | None = None
    jobs: list[JobOut] = Field(default_factory=list)
    retrain_window_rows: int = 0
    retrain_in_flight: bool = False
    promotion: Literal["approve", "auto"] | None = Field(
        default=None,
        description="approve: a challenger waits in shadow for a person; auto: the gate decides.",
    )
    window_rows: Literal["in_control", "all"] | None = Field(
        default=None, description="Which streamed rows a challenger may learn from."
    )
    alerts: AlertsOut = Field(default_factory=AlertsOut)
    shadow: ShadowOut | None = Field(
        default=None, description="The challenger in shadow; null when none waits."
    )
    last_window: WindowOut | None = Field(
        default=None, description="The rows the last challenger was trained on."
    )
    last_gate: GateOut | None = Field(
        default=None, description="The gate's verdict on the last challenger."
    )
    drift: DriftOut | None = Field(
        default=None, description="The last drift test; null before one ran or without one."
    )
    decisions: list[DecisionOut] = Field(default_factory=list)
    stream_error: str | None = None
    last_predictions: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The newest streamed predictions (up to 500), each with 'at' (epoch s).",
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
