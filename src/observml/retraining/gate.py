"""The gate a challenger must pass to replace the champion without a person.

A monitor cannot tell a new operating point from a fault on its own, and a lower anomaly rate on
recent data is exactly what a blind model achieves. So for types whose stream carries no ground
truth the gate never asks "does it flag fewer rows?"; it asks two questions a blind model fails:

1. **False alarms on the normal reference** (new rows held out of the challenger's training
   plus rows a person confirmed as normal, none of them learnt by either model): the challenger
   may flag at most ``gate.max_false_alarm`` of them, by default the champion's own share plus
   ``gate.false_alarm_margin``.
2. **Detection of known faults** (every episode in the fault library, and every alarm episode of
   the retrain window nobody confirmed as normal): the challenger must flag each at least as
   often as the champion, less ``gate.detection_tolerance``.

Types whose stream carries ground truth (fault isolation's label, time series' actuals) are
compared on the retrain metric over rows neither model trained on (:func:`compare_on_holdout`),
and known fault episodes are checked as above when there are any.

Every comparison is on rows neither model trained on (:mod:`observml.retraining.holdout`): the
normal reference is a holdout of the new rows plus confirmed-normal rows neither model learnt;
with too few of them the gate does not compare (``compared`` is false) and a person decides.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from observml.errors import ExperimentError
from observml.retraining.policy import GateSettings

if TYPE_CHECKING:
    from observml.experiments.base import Experiment

__all__ = [
    "Episode",
    "GateCheck",
    "GateResult",
    "check_episodes",
    "compare_on_holdout",
    "gate_unsupervised",
]

_TOLERANCE: Final = 1e-9


@dataclass(frozen=True)
class Episode:
    """Rows that show a fault: from the library (``source`` names the run) or provisional."""

    rows: pd.DataFrame
    source: str


@dataclass(frozen=True)
class GateCheck:
    """One comparison of the gate: what was measured on both models and the limit applied."""

    name: str
    passed: bool
    champion: float
    challenger: float
    limit: float
    rows: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Return the check as a JSON-ready dict."""
        return {
            "name": self.name,
            "passed": self.passed,
            "champion": _finite(self.champion),
            "challenger": _finite(self.challenger),
            "limit": _finite(self.limit),
            "rows": self.rows,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict with every check behind it."""

    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    note: str = ""
    #: False when there was nothing fair to compare on: a person must decide.
    compared: bool = True

    @property
    def reason(self) -> str:
        """One line: the failed checks, or that every check passed."""
        failed = [c.detail for c in self.checks if not c.passed]
        if failed:
            return "gate failed: " + "; ".join(failed)
        if not self.checks:
            return self.note or "gate passed (nothing to compare)"
        passed = "; ".join(c.detail for c in self.checks[:3])
        more = f" (+{len(self.checks) - 3} more)" if len(self.checks) > 3 else ""
        return f"gate passed: {passed}{more}"

    def metrics(self) -> dict[str, float]:
        """Flat metrics for the MLOps store (finite values only)."""
        out: dict[str, float] = {}
        for check in self.checks:
            key = check.name.replace(" ", "_")
            for who in ("champion", "challenger"):
                value = getattr(check, who)
                if math.isfinite(value):
                    out[f"gate_{key}_{who}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as a JSON-ready dict."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "compared": self.compared,
            "checks": [c.to_dict() for c in self.checks],
        }


def flag_rate(experiment: Experiment, rows: pd.DataFrame) -> float:
    """Share of ``rows`` the experiment flags, scored on a copy (scoring may update state)."""
    if rows.empty:
        return math.nan
    scorer = copy.deepcopy(experiment)
    result = scorer.predict(rows)
    return float(np.mean(scorer.alarms(rows, result)))


def gate_unsupervised(
    champion: Experiment,
    challenger: Experiment,
    *,
    normal: pd.DataFrame,
    faults: Sequence[Episode],
    settings: GateSettings,
) -> GateResult:
    """Check false alarms on the normal reference and detection of every fault episode."""
    checks = [_false_alarm_check(champion, challenger, normal, settings)]
    checks.extend(check_episodes(champion, challenger, faults, settings))
    return GateResult(all(c.passed for c in checks), checks)


def _false_alarm_check(
    champion: Experiment, challenger: Experiment, normal: pd.DataFrame, settings: GateSettings
) -> GateCheck:
    old = flag_rate(champion, normal)
    new = flag_rate(challenger, normal)
    if settings.max_false_alarm is not None:
        limit, how = settings.max_false_alarm, "retrain.gate.max_false_alarm"
    else:
        limit = (0.0 if math.isnan(old) else old) + settings.false_alarm_margin
        how = f"the champion's {old:.1%} + margin {settings.false_alarm_margin:.1%}"
    passed = not math.isnan(new) and new <= limit + _TOLERANCE
    verdict = "within" if passed else "above"
    detail = (
        f"false alarms on {len(normal)} normal reference rows neither model trained on:"
        f" challenger {new:.1%} {verdict} {limit:.1%} ({how})"
    )
    return GateCheck("false_alarms", passed, old, new, limit, len(normal), detail)


def check_episodes(
    champion: Experiment,
    challenger: Experiment,
    faults: Sequence[Episode],
    settings: GateSettings,
) -> list[GateCheck]:
    """One check per fault episode: the challenger flags it nearly as often as the champion."""
    checks = []
    for index, episode in enumerate(faults, start=1):
        old = flag_rate(champion, episode.rows)
        new = flag_rate(challenger, episode.rows)
        limit = (0.0 if math.isnan(old) else old) - settings.detection_tolerance
        passed = not math.isnan(new) and new >= limit - _TOLERANCE
        verdict = "keeps" if passed else "misses"
        detail = (
            f"fault {episode.source} ({len(episode.rows)} rows): challenger flags {new:.1%}"
            f" vs champion {old:.1%}, {verdict} detection (tolerance"
            f" {settings.detection_tolerance:.1%})"
        )
        checks.append(
            GateCheck(f"fault_{index}", passed, old, new, limit, len(episode.rows), detail)
        )
    return checks


def compare_on_holdout(
    champion: Experiment | None,
    challenger: Experiment,
    holdout: pd.DataFrame,
    *,
    metric: str,
    higher_better: bool,
) -> GateResult:
    """Compare the retrain metric of both models on rows neither trained on."""
    new = _metric(challenger, holdout, metric)
    if champion is None:
        return GateResult(True, note="gate passed: no champion to compare with")
    old = _metric(champion, holdout, metric)
    if math.isnan(new):
        passed = False
    elif math.isnan(old):
        passed = True
    else:
        passed = new >= old - _TOLERANCE if higher_better else new <= old + _TOLERANCE
    sign = ">=" if higher_better else "<="
    verdict = "not worse" if passed else "worse"
    detail = (
        f"challenger {metric} {new:.4g} vs champion {old:.4g} on {len(holdout)} holdout rows"
        f" neither trained on: {verdict} (promote when {sign})"
    )
    check = GateCheck(metric, passed, old, new, old, len(holdout), detail)
    return GateResult(passed, [check])


def _metric(experiment: Experiment, holdout: pd.DataFrame, metric: str) -> float:
    scored = copy.deepcopy(experiment).score(holdout)
    if metric not in scored:
        raise ExperimentError(
            f"experiment {experiment.name!r}: retrain metric {metric!r} is not among the scores"
            f" on the holdout ({', '.join(sorted(scored))}). Set retrain.metric to one of them."
        )
    return float(scored[metric])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
