"""The decision history in the MLOps store: written as each decision is taken, read back after.

Each decision is one small run of the store experiment ``<name>/decisions`` (the ``/`` keeps it
apart from every experiment name, which cannot hold one), tagged ``observml.kind: decision``
with its kind, reason, version, time and details, and its metrics as the run's metrics. Runs
are only ever added, so several hub processes can write at once, and a restarted hub, the CLI
or another process reads the same history, newest first.

Two kinds stay out: ``restored`` (what one process did at start-up; the decision it restored
was stored by whoever took it) and ``skipped`` (an automatic retrain refused for too few new
rows repeats while the window fills; it stays in ``status()`` and the log).
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any, Final

from observml.errors import DataError
from observml.plugins.mlops import tracked_run
from observml.retraining.decisions import Decision

if TYPE_CHECKING:
    from observml.plugins.mlops import MLOpsPlugin, RunRecord

__all__ = [
    "DECISION_RUN_KIND",
    "MAX_READ",
    "check_page",
    "decisions_experiment",
    "read_decisions",
    "recent_decisions",
    "store_decision",
]

logger = logging.getLogger(__name__)

#: ``observml.kind`` tag of a decision run.
DECISION_RUN_KIND: Final = "decision"
#: Decisions not kept in the store (see the module docstring).
_NOT_STORED: Final = frozenset({"restored", "skipped"})
#: The most decisions one read returns.
MAX_READ: Final = 1000
_KIND: Final = "observml.decision.kind"
_REASON: Final = "observml.decision.reason"
_VERSION: Final = "observml.decision.version"
_AT: Final = "observml.decision.at"
_DETAILS: Final = "observml.decision.details"
_TAG_CHARS: Final = 4000


def decisions_experiment(name: str) -> str:
    """The store experiment holding experiment ``name``'s decisions."""
    return f"{name}/decisions"


def store_decision(mlops: MLOpsPlugin, name: str, decision: Decision) -> None:
    """Keep ``decision`` of experiment ``name`` as a decision run (never raises)."""
    if decision.kind in _NOT_STORED:
        return
    tags = {
        "observml.kind": DECISION_RUN_KIND,
        _KIND: decision.kind,
        _REASON: decision.reason[:_TAG_CHARS],
        _AT: repr(decision.at),
    }
    if decision.version is not None:
        tags[_VERSION] = str(decision.version)
    if decision.details:
        tags[_DETAILS] = json.dumps(dict(decision.details), default=str)[:_TAG_CHARS]
    metrics = {k: float(v) for k, v in decision.metrics.items() if not math.isnan(float(v))}
    try:
        experiment_id = mlops.create_experiment(decisions_experiment(name))
        with tracked_run(
            mlops, experiment_id, run_name=f"decision-{decision.kind}", tags=tags
        ) as run_id:
            if metrics:
                mlops.log_batch(run_id, metrics=metrics)
    except Exception:  # the decision is kept in status() and the log; the store may be down
        logger.warning("%s: could not store decision %s", name, decision.kind, exc_info=True)


def read_decisions(
    mlops: MLOpsPlugin, name: str, *, offset: int = 0, limit: int = 20
) -> list[Decision]:
    """Return experiment ``name``'s stored decisions, newest first, ``limit`` from ``offset``.

    Raises:
        DataError: ``offset`` is negative, or ``limit`` is not 1 to :data:`MAX_READ`.
    """
    check_page(offset, limit)
    record = mlops.get_experiment_by_name(decisions_experiment(name))
    if record is None:
        return []
    runs = mlops.search_runs(
        record.experiment_id,
        max_results=offset + limit,
        tags={"observml.kind": DECISION_RUN_KIND},
    )
    decisions = [_decision(run) for run in runs]
    decisions.sort(key=lambda d: d.at, reverse=True)  # runs started within a millisecond
    return decisions[offset : offset + limit]


def recent_decisions(mlops: MLOpsPlugin, name: str, limit: int) -> list[Decision]:
    """The newest ``limit`` stored decisions, oldest first; ``[]`` if the store cannot say.

    For a hub restoring an experiment: an unreadable history must not stop it serving.
    """
    try:
        return read_decisions(mlops, name, limit=limit)[::-1]
    except Exception:
        logger.warning("%s: could not read the decision history", name, exc_info=True)
        return []


def check_page(offset: int, limit: int) -> None:
    """Raise unless ``offset``/``limit`` select a page of decisions.

    Raises:
        DataError: ``offset`` is negative, or ``limit`` is not 1 to :data:`MAX_READ`.
    """
    if offset < 0 or not 1 <= limit <= MAX_READ:
        raise DataError(
            f"decisions: offset {offset}, limit {limit}: use an offset of 0 or more and a"
            f" limit of 1 to {MAX_READ}."
        )


def _decision(run: RunRecord) -> Decision:
    tags = run.tags
    version = tags.get(_VERSION)
    details: dict[str, Any] = {}
    if _DETAILS in tags:
        try:
            details = dict(json.loads(tags[_DETAILS]))
        except (ValueError, TypeError):  # cut at the tag's length limit
            details = {"text": tags[_DETAILS]}
    try:
        at = float(tags.get(_AT, ""))
    except ValueError:
        at = run.start_time / 1000
    return Decision(
        kind=tags.get(_KIND, ""),
        reason=tags.get(_REASON, ""),
        version=int(version) if version and version.isdigit() else None,
        metrics=dict(run.metrics),
        at=at,
        details={**details, "run_id": run.run_id},
    )
