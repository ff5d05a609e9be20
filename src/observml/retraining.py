"""Challenger training, promotion on a holdout, and rollback.

A retrain trains a challenger on the older part of the retrain window and scores both models on
the newest part (the holdout). The challenger becomes ``champion`` only if it is not worse on
the experiment's retrain metric; otherwise it stays ``challenger`` and the champion serves on.
The version it replaced keeps the alias ``previous`` for :func:`rollback`. Every decision is
recorded on the experiment (``status()``) and in the MLOps store (run and version tags).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from observml.errors import DataError, ExperimentError
from observml.managed import Decision, ManagedExperiment
from observml.plugins.mlops import MLOpsPlugin

if TYPE_CHECKING:
    from observml.experiments.base import Experiment

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "compare_on_holdout",
    "decision_fields",
    "log_decision",
    "promote",
    "split_holdout",
]

logger = logging.getLogger(__name__)

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
PREVIOUS: Final = "previous"
_TOLERANCE: Final = 1e-9


def split_holdout(data: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``data`` into (train, holdout), the holdout being the newest ``fraction``."""
    n_holdout = max(1, int(round(len(data) * fraction)))
    if len(data) - n_holdout < 2:
        raise DataError(
            f"retrain window: {len(data)} rows are too few to hold out {fraction:.0%}."
            " Stream more data first or lower streaming.holdout_fraction."
        )
    return data.iloc[:-n_holdout].reset_index(drop=True), data.iloc[-n_holdout:].reset_index(
        drop=True
    )


def compare_on_holdout(
    managed: ManagedExperiment,
    champion: Experiment | None,
    challenger: Experiment,
    holdout: pd.DataFrame,
) -> tuple[bool, str, dict[str, float]]:
    """Decide whether ``challenger`` may replace ``champion``; returns (promote, reason, metrics).

    Both are scored on copies, so state that scoring updates (time series) is not disturbed.
    """
    metric = managed.tracker.metric
    higher = managed.tracker.policy.direction(metric)
    new = _metric(challenger, holdout, metric)
    if champion is None:
        return True, "no champion to compare with", {f"challenger_{metric}": new}
    old = _metric(champion, holdout, metric)
    metrics = {f"champion_{metric}": old, f"challenger_{metric}": new}
    if math.isnan(new):
        return False, f"challenger {metric} is undefined on the holdout", metrics
    if math.isnan(old):
        return True, f"champion {metric} is undefined on the holdout", metrics
    not_worse = new >= old - _TOLERANCE if higher else new <= old + _TOLERANCE
    sign = ">=" if higher else "<="
    verdict = "not worse" if not_worse else "worse"
    reason = (
        f"challenger {metric} {new:.4g} vs champion {old:.4g} on {len(holdout)} holdout rows:"
        f" {verdict} (promote when {sign})"
    )
    return not_worse, reason, metrics


def _metric(experiment: Experiment, holdout: pd.DataFrame, metric: str) -> float:
    scored = copy.deepcopy(experiment).score(holdout)
    if metric not in scored:
        raise ExperimentError(
            f"experiment {experiment.name!r}: retrain metric {metric!r} is not among the scores"
            f" on the holdout ({', '.join(sorted(scored))}). Set retrain.metric to one of them."
        )
    return float(scored[metric])


def promote(
    mlops: MLOpsPlugin, managed: ManagedExperiment, experiment: Experiment, version: int
) -> None:
    """Move ``champion`` to ``version`` (old champion -> ``previous``) and swap it in."""
    _, old = managed.champion()
    if old is not None and old != version:
        mlops.set_alias(managed.name, PREVIOUS, old)
    mlops.set_alias(managed.name, CHAMPION, version)
    managed.swap(experiment, version)


def log_decision(
    mlops: MLOpsPlugin,
    managed: ManagedExperiment,
    decision: Decision,
    *,
    run_id: str | None = None,
) -> None:
    """Record ``decision`` on the experiment and in the MLOps store (never raises)."""
    managed.record(decision)
    logger.info("%s: %s (%s)", managed.name, decision.kind, decision.reason)
    tags = {
        f"observml.decision.{decision.kind}": decision.reason[:4000],
    }
    try:
        if run_id is not None:
            metrics: Mapping[str, float] = {
                k: v for k, v in decision.metrics.items() if not math.isnan(v)
            }
            mlops.log_batch(run_id, tags=tags, metrics=dict(metrics))
        if decision.version is not None:
            mlops.set_version_tag(
                managed.name, decision.version, "observml.decision", decision.kind
            )
    except Exception:  # the decision is kept in status(); the store may be briefly down
        logger.warning("%s: could not log decision %s", managed.name, decision.kind, exc_info=True)


def decision_fields(promoted: bool, reason: str, metrics: Mapping[str, float]) -> dict[str, Any]:
    """Return the job result fields describing a retrain decision."""
    return {"promoted": promoted, "reason": reason, "holdout_metrics": dict(metrics)}
