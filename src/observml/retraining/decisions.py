"""Decisions about the serving model: recorded, logged, tagged in the store; and the aliases.

Every step of retraining is a :class:`Decision` — ``alert``, ``fired``, ``skipped``,
``trained``, ``shadow``, ``promoted``, ``rejected``, ``rolled_back``, ``restored``,
``feedback`` — kept in ``status()``, logged at INFO, and written to the MLOps store: as a run
tag ``observml.decision.<kind>`` on the retrain run, and, for the decisions about a version's
standing (trained, shadow, promoted, rejected, rolled back), as its tag ``observml.decision``.

Aliases in the store are the truth every hub process reads: ``champion`` serves,
``challenger`` runs in shadow awaiting a person's decision, ``previous`` is where a rollback goes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from observml.plugins.mlops import MLOpsPlugin

__all__ = ["CHALLENGER", "CHAMPION", "PREVIOUS", "SHADOW_TAG", "Decision", "tag_in_store"]

logger = logging.getLogger(__name__)

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
PREVIOUS: Final = "previous"
#: Model version tag: ``pending`` while a challenger waits in shadow for a person's decision.
SHADOW_TAG: Final = "observml.shadow"
#: Decisions about a version's standing, kept as its ``observml.decision`` tag (an alert or
#: feedback about the rows it served does not change what the version is).
_STANDING: Final = frozenset({"trained", "shadow", "promoted", "rejected", "rolled_back"})


@dataclass(frozen=True)
class Decision:
    """One decision about an experiment's models, with its reason and evidence."""

    kind: str
    reason: str
    version: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-ready dict."""
        return {
            "kind": self.kind,
            "reason": self.reason,
            "version": self.version,
            "metrics": dict(self.metrics),
            "at": self.at,
            "details": dict(self.details),
        }


def tag_in_store(
    mlops: MLOpsPlugin, model_name: str, decision: Decision, *, run_id: str | None = None
) -> None:
    """Write ``decision`` to the store: a run tag, and the version's standing (never raises)."""
    try:
        if run_id is not None:
            metrics = {k: v for k, v in decision.metrics.items() if not math.isnan(v)}
            tags = {f"observml.decision.{decision.kind}": decision.reason[:4000]}
            mlops.log_batch(run_id, tags=tags, metrics=metrics)
        if decision.version is not None and decision.kind in _STANDING:
            mlops.set_version_tag(model_name, decision.version, "observml.decision", decision.kind)
    except Exception:  # the decision is kept in status(); the store may be briefly down
        logger.warning("%s: could not tag decision %s", model_name, decision.kind, exc_info=True)
