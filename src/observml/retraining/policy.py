"""The retrain policy: when a signal fires, and what a retrain may then do.

The ``retrain:`` block of an experiment config maps onto :class:`RetrainPolicy`:

* **signals** — the watched metric's windowed mean past ``threshold``, or a drift test on the
  scores (``drift:``, see :mod:`observml.retraining.drift`). A signal that fires raises an alert
  first; a retrain follows when retraining is enabled and the limits allow it.
* **limits** — ``min_samples`` rows scored since the last retrain, ``cooldown`` seconds after
  it, one retrain at a time, and after failed retrains a wait doubling per failure in a row.
* **promotion** — ``approve`` (a person promotes or rejects the challenger, which runs in shadow
  until then) or ``auto`` (promoted when it passes the gate, :mod:`observml.retraining.gate`).
* **the training window** — ``window_rows: in_control`` trains only on rows the serving model
  judged in control (:mod:`observml.retraining.window`), ``all`` on every streamed row.

The defaults depend on the experiment type: types whose stream carries no ground truth
(fault detection, process mining) default to ``approve`` and ``in_control``; types whose stream
carries it (fault isolation's label, time series' actuals) to ``auto`` and ``all``.

:class:`~observml.retraining.tracker.RetrainTracker` applies the policy to the stream over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias

from observml.errors import ConfigProblem
from observml.retraining.drift import DriftTest, check_drift_test

__all__ = [
    "HIGHER_IS_BETTER",
    "AlarmEpisode",
    "GateSettings",
    "Promotion",
    "RetrainPolicy",
    "WindowRows",
    "check_policy",
]

Promotion: TypeAlias = Literal["approve", "auto"]
WindowRows: TypeAlias = Literal["in_control", "all"]

#: Direction of the metrics the experiments report (used when ``higher_better`` is not set).
HIGHER_IS_BETTER: Final[Mapping[str, bool]] = {
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "fitness": True,
    "conformance_rate": True,
    "r2": True,
    "coverage": True,
    "mae": False,
    "rmse": False,
    "mape": False,
    "anomaly_rate": False,
    "mean_score": False,
}


@dataclass(frozen=True)
class GateSettings:
    """What a challenger of an unsupervised type must pass to be promoted (``retrain.gate``).

    Attributes:
        max_false_alarm: Highest share of the normal reference the challenger may flag;
            ``None`` = the champion's own share plus ``false_alarm_margin``.
        false_alarm_margin: Margin over the champion's share when ``max_false_alarm`` is unset.
        detection_tolerance: How much less often than the champion the challenger may flag the
            rows of each known fault episode (0.02 = two percentage points).
        min_holdout_rows: Fewest rows neither model trained on that a comparison needs; with
            fewer the challenger is not compared and a person decides.
    """

    max_false_alarm: float | None = None
    false_alarm_margin: float = 0.02
    detection_tolerance: float = 0.02
    min_holdout_rows: int = 20


@dataclass(frozen=True)
class AlarmEpisode:
    """When flagged rows form an alarm episode (``retrain.alarm_episode``).

    A row is inside an episode when at least ``share`` of the ``rows`` rows centred on it were
    flagged. Rows inside an episode are never trained on as in control, and an episode nobody has
    confirmed as normal is one the challenger must still flag (the gate's provisional faults).

    Attributes:
        rows: Width of the centred window, in rows.
        share: Share of flagged rows in that window that makes an episode.
    """

    rows: int = 25
    share: float = 0.2


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain and what to do with the challenger (the ``retrain:`` config block).

    Attributes:
        metric: Metric watched (a key of ``score()``'s result); ``None`` = the experiment's
            default.
        threshold: Fire when the metric's windowed mean crosses it; ``None`` never fires.
        higher_better: Direction; ``None`` looks the metric up in :data:`HIGHER_IS_BETTER`.
        window: How many recent metric values are averaged (1 = only the latest).
        min_samples: Rows that must have been scored since the last retrain before one fires.
        cooldown: Seconds after a retrain (or a failed one) during which no new one fires.
        failure_backoff: Seconds after a failed retrain before the next may fire; doubled for
            each further failure in a row (and never less than ``cooldown``).
        failure_backoff_max: The longest wait after failures in a row.
        enabled: ``False`` switches retraining off; signals still raise alerts.
        drift: The drift test on the scores; ``None`` tests no drift.
        promotion: ``approve`` or ``auto``; ``None`` = the experiment type's default.
        window_rows: ``in_control`` or ``all``; ``None`` = the experiment type's default.
        min_rows: Fewest new rows (not learnt by the champion) a challenger needs.
        alarm_episode: When flagged rows form an alarm episode.
        gate: The gate for ``auto`` promotion of unsupervised types.
    """

    metric: str | None = None
    threshold: float | None = None
    higher_better: bool | None = None
    window: int = 1
    min_samples: int = 0
    cooldown: float = 0.0
    failure_backoff: float = 60.0
    failure_backoff_max: float = 3600.0
    enabled: bool = True
    drift: DriftTest | None = None
    promotion: Promotion | None = None
    window_rows: WindowRows | None = None
    min_rows: int = 100
    alarm_episode: AlarmEpisode = field(default_factory=AlarmEpisode)
    gate: GateSettings = field(default_factory=GateSettings)

    def direction(self, metric: str) -> bool:
        """Return True when higher values of ``metric`` are better."""
        if self.higher_better is not None:
            return self.higher_better
        return HIGHER_IS_BETTER.get(metric, True)

    def resolved(self, *, ground_truth: bool) -> RetrainPolicy:
        """Fill ``promotion`` and ``window_rows`` with the defaults of the experiment type."""
        return replace(
            self,
            promotion=self.promotion or ("auto" if ground_truth else "approve"),
            window_rows=self.window_rows or ("all" if ground_truth else "in_control"),
        )


def check_policy(
    raw: Mapping[str, Any], problems: list[ConfigProblem], *, ground_truth: bool
) -> RetrainPolicy:
    """Validate the ``retrain:`` block and return it with the type's defaults filled in.

    Args:
        raw: The block as written (``{}`` when absent).
        problems: Where each problem is appended, with its key.
        ground_truth: Whether the experiment type's stream carries ground truth.
    """
    from observml.config.validation import check_arguments

    before = len(problems)
    drift = check_drift_test(raw.get("drift"), problems)
    nested: dict[str, Any] = {}
    for key, cls in (("gate", GateSettings), ("alarm_episode", AlarmEpisode)):
        block = raw.get(key)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            problems.append(ConfigProblem(f"retrain.{key}", f"expected a mapping, got {block!r}."))
            continue
        nested[key] = cls(**check_arguments(cls, dict(block), f"retrain.{key}", problems))
    rest = {k: v for k, v in raw.items() if k not in ("drift", "gate", "alarm_episode")}
    kwargs = check_arguments(RetrainPolicy, rest, "retrain", problems)
    if len(problems) > before:
        return RetrainPolicy().resolved(ground_truth=ground_truth)
    policy = RetrainPolicy(**kwargs, **nested, drift=drift)
    _check_ranges(policy, problems)
    return policy.resolved(ground_truth=ground_truth)


_MAX: Final = "expected a value >= retrain.failure_backoff."


def _check_ranges(policy: RetrainPolicy, problems: list[ConfigProblem]) -> None:
    gate, episode = policy.gate, policy.alarm_episode
    checks = [
        ("window", policy.window >= 0, "expected a value >= 0."),
        ("min_samples", policy.min_samples >= 0, "expected a value >= 0."),
        ("cooldown", policy.cooldown >= 0, "expected a value >= 0."),
        ("failure_backoff", policy.failure_backoff >= 0, "expected a value >= 0."),
        ("failure_backoff_max", policy.failure_backoff_max >= policy.failure_backoff, _MAX),
        ("min_rows", policy.min_rows >= 2, "expected at least 2 rows."),
        (
            "gate.max_false_alarm",
            gate.max_false_alarm is None or 0 <= gate.max_false_alarm <= 1,
            "expected a share from 0 to 1 (or null for the champion's own plus the margin).",
        ),
        ("gate.false_alarm_margin", 0 <= gate.false_alarm_margin <= 1, "expected 0 to 1."),
        ("gate.detection_tolerance", 0 <= gate.detection_tolerance <= 1, "expected 0 to 1."),
        ("gate.min_holdout_rows", gate.min_holdout_rows >= 1, "expected at least 1 row."),
        ("alarm_episode.rows", episode.rows >= 1, "expected at least 1 row."),
        ("alarm_episode.share", 0 < episode.share <= 1, "expected a share above 0, up to 1."),
    ]
    for key, ok, message in checks:
        if not ok:
            problems.append(ConfigProblem(f"retrain.{key}", message))
