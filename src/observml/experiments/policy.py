"""The retrain policy: when a model has degraded enough to train a challenger.

The ``retrain:`` block of an experiment config maps onto :class:`RetrainPolicy`. A
:class:`RetrainTracker` holds what the decision needs over time (recent metric values, the last
retrain, whether one is running) behind a lock, so stream workers may call it from any thread.

The policy fires on either of two signals: the watched metric's windowed mean past
``threshold``, or a drift test on the scores (``drift:``, see :mod:`observml.experiments.drift`).

Typical use by the hub::

    decision = experiment.should_retrain(metrics, n_samples=len(batch), scores=sample)
    if decision.fire and experiment.mark_retrain_started():
        try:
            ...  # train a challenger
        finally:
            experiment.mark_retrain_finished()
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from observml.experiments.drift import DriftMonitor, DriftTest, ScoreSample

__all__ = ["HIGHER_IS_BETTER", "RetrainDecision", "RetrainPolicy", "RetrainTracker"]

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
class RetrainPolicy:
    """When to retrain (the ``retrain:`` config block).

    Attributes:
        metric: Metric watched (a key of ``score()``'s result); ``None`` = the experiment's
            default.
        threshold: Fire when the metric's windowed mean crosses it; ``None`` never fires.
        higher_better: Direction; ``None`` looks the metric up in :data:`HIGHER_IS_BETTER`.
        window: How many recent metric values are averaged (1 = only the latest).
        min_samples: Rows that must have been scored since the last retrain before one fires.
        cooldown: Seconds after a retrain during which no new one fires.
        enabled: ``False`` switches retraining off.
        drift: The drift test on the scores; ``None`` tests no drift.
    """

    metric: str | None = None
    threshold: float | None = None
    higher_better: bool | None = None
    window: int = 1
    min_samples: int = 0
    cooldown: float = 0.0
    enabled: bool = True
    drift: DriftTest | None = None

    def direction(self, metric: str) -> bool:
        """Return True when higher values of ``metric`` are better."""
        if self.higher_better is not None:
            return self.higher_better
        return HIGHER_IS_BETTER.get(metric, True)


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain now, and why (the reason is meant for logs and the API)."""

    fire: bool
    reason: str

    def __bool__(self) -> bool:
        return self.fire


class RetrainTracker:
    """Thread-safe state behind :meth:`Experiment.should_retrain`.

    Args:
        policy: The policy the decisions follow.
        metric: The metric watched (the policy's or the experiment's default).
    """

    def __init__(self, policy: RetrainPolicy, metric: str) -> None:
        self.policy = policy
        self.metric = metric
        self._lock = threading.Lock()
        self._values: deque[float] = deque(maxlen=max(1, policy.window))
        self._samples = 0
        self._last_retrain: float | None = None
        self._in_flight = False
        self._drift = DriftMonitor(policy.drift) if policy.drift is not None else None

    @property
    def in_flight(self) -> bool:
        """Whether a retrain is running."""
        with self._lock:
            return self._in_flight

    def decide(
        self,
        metrics: Mapping[str, float],
        *,
        n_samples: int,
        scores: ScoreSample | None = None,
        now: float | None = None,
    ) -> RetrainDecision:
        """Record one scoring result (and its scores) and decide whether a retrain should start."""
        now = time.time() if now is None else now
        policy = self.policy
        with self._lock:
            self._samples += max(0, int(n_samples))
            value = metrics.get(self.metric)
            if value is not None:
                self._values.append(float(value))
            drift = self._drift.add(scores) if self._drift and scores is not None else None
            if not policy.enabled:
                return RetrainDecision(False, "retraining is disabled (retrain.enabled: false)")
            if self._in_flight:
                return RetrainDecision(False, "a retrain is already in flight")
            if policy.threshold is None and policy.drift is None:
                return RetrainDecision(False, "no retrain.threshold or retrain.drift set")
            if self._samples < policy.min_samples:
                return RetrainDecision(
                    False,
                    f"{self._samples} samples since last retrain < min_samples"
                    f" {policy.min_samples}",
                )
            if self._last_retrain is not None and now - self._last_retrain < policy.cooldown:
                left = policy.cooldown - (now - self._last_retrain)
                return RetrainDecision(False, f"cooling down ({left:.0f} s left)")
            verdicts = []
            if policy.threshold is not None:
                verdicts.append(self._metric_verdict(value, metrics))
            if drift is not None:
                verdicts.append(RetrainDecision(drift.drifted, drift.reason))
            elif self._drift is not None:
                verdicts.append(RetrainDecision(False, self._drift.progress()))
            fired = [v for v in verdicts if v.fire]
            return RetrainDecision(bool(fired), "; ".join(v.reason for v in (fired or verdicts)))

    def _metric_verdict(self, value: float | None, metrics: Mapping[str, float]) -> RetrainDecision:
        """The threshold's verdict on the windowed mean (called under the lock)."""
        threshold = self.policy.threshold
        assert threshold is not None
        if value is None:
            known = ", ".join(sorted(metrics)) or "none"
            return RetrainDecision(
                False, f"metric {self.metric!r} not in the scores (have: {known})"
            )
        mean = sum(self._values) / len(self._values)
        higher = self.policy.direction(self.metric)
        worse = mean < threshold if higher else mean > threshold
        sign = "<" if higher else ">"
        label = f"mean of last {len(self._values)}" if self.policy.window > 1 else "value"
        if worse:
            return RetrainDecision(
                True, f"{self.metric} {label} {mean:.4g} {sign} threshold {threshold}"
            )
        return RetrainDecision(
            False, f"{self.metric} {label} {mean:.4g} within threshold {threshold}"
        )

    def drift_status(self) -> dict[str, Any] | None:
        """The last drift test's result (``None`` before the first full window or without one)."""
        with self._lock:
            last = self._drift.last if self._drift else None
            return last.to_dict() if last else None

    def mark_started(self) -> bool:
        """Claim the single retrain slot; return False when one is already running."""
        with self._lock:
            if self._in_flight:
                return False
            self._in_flight = True
            return True

    def mark_finished(self, *, now: float | None = None) -> None:
        """Release the slot, start the cooldown and reset the sample count and window."""
        with self._lock:
            self._in_flight = False
            self._last_retrain = time.time() if now is None else now
            self._samples = 0
            self._values.clear()
            if self._drift is not None:
                self._drift.reset()
