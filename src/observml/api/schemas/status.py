"""What ``GET /experiments/{name}`` answers: the experiment's state, jobs, alerts and retraining.

The retraining part: the open alert, the challenger in shadow beside the champion, the gate's
verdict, the rows the last challenger learned from, the drift test and the decision history.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from observml.api.schemas.base import ResponseModel

__all__ = [
    "AlertOut",
    "AlertsOut",
    "DeadLetterOut",
    "DeadLettersOut",
    "DecisionOut",
    "DriftOut",
    "ExperimentStatus",
    "ExperimentSummary",
    "GateCheckOut",
    "GateOut",
    "JobOut",
    "RetrainFailureOut",
    "ShadowOut",
    "ShadowPointOut",
    "WindowOut",
]


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
    queue_position: int | None = Field(
        default=None,
        description="While queued: 1 for the next job to start (global.max_jobs run at once).",
    )


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
    compared: bool = Field(
        default=True,
        description="False when too few rows neither model trained on were left to compare"
        " (retrain.gate.min_holdout_rows): a person decides.",
    )
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


class DeadLetterOut(ResponseModel):
    """One dead letter as the hub sent it to ``<name>.predict.dead``."""

    at: float = Field(description="When (epoch seconds).")
    message_id: str | None = None
    queue: str = Field(description="The queue it came from.", examples=["pump.predict"])
    reason: str = Field(examples=["DataError: row 1: missing column 'feed_flow'"])


class DeadLettersOut(ResponseModel):
    """The experiment's dead letters since this hub process started, counted by reason."""

    total: int = 0
    by_reason: dict[str, int] = Field(
        default_factory=dict,
        description="Count per reason, most frequent first; numbers read '#', ids '<id>'.",
    )
    recent: list[DeadLetterOut] = Field(
        default_factory=list, description="The newest ten, newest first."
    )
    summary: str | None = Field(
        default=None,
        description="One line, e.g. \"50 dead letters: DataError: missing column 'x'\".",
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
    queue_position: int | None = Field(
        default=None,
        description="While its job is queued: 1 for the next job to start (global.max_jobs"
        " jobs run at once); null otherwise.",
    )


class RetrainFailureOut(ResponseModel):
    """Retrains that failed in a row: why the last failed and when the next may fire."""

    failures: int = Field(description="Failed retrains in a row.")
    last_error: str | None = Field(default=None, description="Why the last one failed.")
    failed_at: float = Field(description="When the last one failed (epoch seconds).")
    retry_at: float = Field(
        description="The earliest a retrain may fire again (epoch seconds): retrain."
        "failure_backoff doubled per failure in a row, at most retrain.failure_backoff_max."
    )


class ExperimentStatus(ExperimentSummary):
    """Everything the hub knows about one experiment right now."""

    job: JobOut | None = None
    jobs: list[JobOut] = Field(default_factory=list)
    retrain_window_rows: int = 0
    retrain_in_flight: bool = False
    retrain_failure: RetrainFailureOut | None = Field(
        default=None, description="Failed retrains in a row; null after a retrain trained."
    )
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
    decisions: list[DecisionOut] = Field(
        default_factory=list,
        description="This process's decisions, oldest first, after those it restarted with"
        " from the MLOps store (GET .../decisions pages through all of them).",
    )
    dead_letters: DeadLettersOut = Field(default_factory=DeadLettersOut)
    stream_error: str | None = None
    last_predictions: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The newest streamed predictions (up to 500), each with 'at' (epoch s).",
    )
