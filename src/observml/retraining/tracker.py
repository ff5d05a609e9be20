"""The retrain policy applied to a stream over time: when a signal fires, when a retrain may start.

A :class:`RetrainTracker` holds what the decision needs over time (recent metric values, the last
retrain, failed retrains in a row, whether one is running) behind a lock, so stream workers may
call it from any thread. After a failed retrain the next may fire only after
``retrain.failure_backoff`` seconds, doubled for each further failure in a row, at most
``retrain.failure_backoff_max`` and never less than ``retrain.cooldown``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from observml.retraining.drift import DriftMonitor, ScoreSample
from observml.retraining.policy import RetrainPolicy

__all__ = ["RetrainDecision", "RetrainTracker"]


@dataclass(frozen=True)
class RetrainDecision:
    """What one scored batch means: did a signal fire, and may a retrain start now?

    Attributes:
        fire: A signal fired (an alert is raised).
        reason: Why, for logs, ``status()`` and the alert.
        retrain: A retrain may start now (retraining enabled, none in flight).
        held: Why a fired signal starts no retrain (empty when it does).
    """

    fire: bool
    reason: str
    retrain: bool = False
    held: str = ""

    def __bool__(self) -> bool:
        return self.fire


class RetrainTracker:
    """Thread-safe state behind the policy's decisions.

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
        self._failures, self._failed_at = 0, 0.0
        self._last_error: str | None = None

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
        """Record one scored batch (and its scores) and say whether a signal fired."""
        now = time.time() if now is None else now
        policy = self.policy
        with self._lock:
            self._samples += max(0, int(n_samples))
            value = metrics.get(self.metric)
            if value is not None:
                self._values.append(float(value))
            drift = self._drift.add(scores) if self._drift and scores is not None else None
            if policy.threshold is None and policy.drift is None:
                return RetrainDecision(False, "no retrain.threshold or retrain.drift set")
            if self._samples < policy.min_samples:
                return RetrainDecision(
                    False,
                    f"{self._samples} samples since last retrain < min_samples"
                    f" {policy.min_samples}",
                )
            if self._failures and now - self._failed_at < self._backoff():
                left = self._backoff() - (now - self._failed_at)
                return RetrainDecision(
                    False,
                    f"backing off after {self._failures} failed retrain(s) in a row"
                    f" ({left:.0f} s left; last error: {self._last_error})",
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
            reason = "; ".join(v.reason for v in (fired or verdicts))
            if not fired:
                return RetrainDecision(False, reason)
            if not policy.enabled or self._in_flight:  # an alert only: collect new evidence
                self._samples = 0
                self._values.clear()
            if not policy.enabled:
                return RetrainDecision(True, reason, held="retrain.enabled: false: alert only")
            if self._in_flight:
                return RetrainDecision(True, reason, held="a retrain is already in flight")
            return RetrainDecision(True, reason, retrain=True)

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

    def _backoff(self) -> float:
        """Seconds to wait after the current run of failures (called under the lock)."""
        policy, failures = self.policy, self._failures
        doubled = policy.failure_backoff * 2.0 ** min(max(failures - 1, 0), 32)
        return max(policy.cooldown, min(policy.failure_backoff_max, doubled)) if failures else 0.0

    def mark_failed(self, error: str, *, now: float | None = None) -> float:
        """Record a failed retrain; return the seconds until the next one may fire."""
        with self._lock:
            self._failures += 1
            self._last_error = error
            self._failed_at = time.time() if now is None else now
            return self._backoff()

    def mark_succeeded(self) -> None:
        """A retrain trained a challenger: the failures in a row are over."""
        with self._lock:
            self._failures, self._last_error = 0, None

    def failure_status(self) -> dict[str, Any] | None:
        """Failed retrains in a row, the last error and when the next may fire (or ``None``)."""
        with self._lock:
            if not self._failures:
                return None
            return {
                "failures": self._failures,
                "last_error": self._last_error,
                "failed_at": self._failed_at,
                "retry_at": self._failed_at + self._backoff(),
            }

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

    def forget(self) -> None:
        """Drop the evidence collected so far (a new champion serves: judge it afresh)."""
        with self._lock:
            self._samples = 0
            self._values.clear()
            if self._drift is not None:
                self._drift.reset()

    def abandon(self) -> None:
        """Release the slot without a cooldown: nothing was trained (the request was refused)."""
        with self._lock:
            self._in_flight = False

    def mark_finished(self, *, now: float | None = None) -> None:
        """Release the slot, start the cooldown and reset the sample count and window."""
        with self._lock:
            self._in_flight = False
            self._last_retrain = time.time() if now is None else now
            self._samples = 0
            self._values.clear()
            if self._drift is not None:
                self._drift.reset()
