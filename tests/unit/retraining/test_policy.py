"""The retrain policy: signals, limits, the type's defaults, and every config error."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from observml.errors import ConfigError
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.experiments.fault_isolation import FaultIsolationExperiment
from observml.experiments.time_series import TimeSeriesExperiment
from observml.retraining.policy import AlarmEpisode, GateSettings, RetrainPolicy
from observml.retraining.tracker import RetrainTracker


def tracker(watched: str = "mae", **retrain: Any) -> RetrainTracker:
    policy = FaultDetectionExperiment("pump", {"retrain": retrain}).retrain_policy
    return RetrainTracker(policy, watched)


def test_fires_past_threshold_lower_is_better() -> None:
    policy = tracker(threshold=1.0)
    assert not policy.decide({"mae": 0.5}, n_samples=10)
    decision = policy.decide({"mae": 1.5}, n_samples=10)
    assert decision.fire
    assert decision.retrain
    assert "mae value 1.5 > threshold 1.0" in decision.reason


def test_higher_better_and_window() -> None:
    policy = tracker("accuracy", metric="accuracy", threshold=0.8, window=3)
    assert policy.decide({"accuracy": 0.9}, n_samples=1).fire is False
    assert policy.decide({"accuracy": 0.85}, n_samples=1).fire is False
    decision = policy.decide({"accuracy": 0.6}, n_samples=1)  # mean 0.783
    assert decision.fire
    assert "mean of last 3" in decision.reason


def test_min_samples_and_cooldown() -> None:
    policy = tracker(threshold=1.0, min_samples=100, cooldown=60)
    assert "min_samples" in policy.decide({"mae": 5}, n_samples=50).reason
    assert policy.decide({"mae": 5}, n_samples=50, now=1000.0).fire
    assert policy.mark_started()
    policy.mark_finished(now=1000.0)
    assert "cooling down" in policy.decide({"mae": 5}, n_samples=500, now=1030.0).reason
    assert policy.decide({"mae": 5}, n_samples=1, now=1061.0).fire


def test_failed_retrains_back_off_exponentially_up_to_the_cap() -> None:
    policy = tracker(threshold=1.0, cooldown=0, failure_backoff=10, failure_backoff_max=35)
    waits = []
    now = 1000.0
    for _ in range(4):
        assert policy.decide({"mae": 5}, n_samples=1, now=now).retrain
        assert policy.mark_started()
        waits.append(policy.mark_failed("DataError: no numeric feature columns", now=now))
        policy.mark_finished(now=now)
        held = policy.decide({"mae": 5}, n_samples=1, now=now + waits[-1] - 1)
        assert not held.fire  # cooldown 0, yet no retrain after every batch
        assert "backing off after" in held.reason
        assert "last error: DataError: no numeric feature columns" in held.reason
        now += waits[-1]
    assert waits == [10, 20, 35, 35]  # doubled per failure in a row, capped
    status = policy.failure_status()
    assert status is not None
    assert status["failures"] == 4
    assert status["retry_at"] == status["failed_at"] + 35
    policy.mark_succeeded()
    assert policy.failure_status() is None
    assert policy.decide({"mae": 5}, n_samples=1, now=now).retrain


def test_the_backoff_is_never_shorter_than_the_cooldown() -> None:
    policy = tracker(threshold=1.0, cooldown=600, failure_backoff=10)
    assert policy.mark_failed("boom", now=0.0) == 600


def test_reasons_when_not_firing() -> None:
    assert "no retrain.threshold" in tracker().decide({"mae": 9}, n_samples=1).reason
    missing = tracker(threshold=1.0).decide({"other": 9}, n_samples=1)
    assert "metric 'mae' not in the scores (have: other)" in missing.reason


def test_disabled_retraining_still_raises_the_alert_but_starts_nothing() -> None:
    policy = tracker(enabled=False, threshold=0)
    decision = policy.decide({"mae": 9}, n_samples=1)
    assert decision.fire
    assert not decision.retrain
    assert decision.held == "retrain.enabled: false: alert only"


def test_a_signal_during_a_retrain_is_an_alert_only() -> None:
    policy = tracker(threshold=1.0)
    assert policy.mark_started()
    decision = policy.decide({"mae": 2}, n_samples=1)
    assert decision.fire
    assert not decision.retrain
    assert decision.held == "a retrain is already in flight"


def test_never_two_at_once() -> None:
    policy = tracker(threshold=1.0)
    assert policy.decide({"mae": 2}, n_samples=1).retrain
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        results.append(policy.mark_started())

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    policy.mark_finished()
    assert policy.policy.threshold == 1.0


# -- defaults per type ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("experiment", "promotion", "window_rows"),
    [
        pytest.param(FaultDetectionExperiment("x", {}), "approve", "in_control", id="fd"),
        pytest.param(
            FaultIsolationExperiment("x", {"setup": {"target": "y"}}), "auto", "all", id="fi"
        ),
        pytest.param(
            TimeSeriesExperiment("x", {"setup": {"target": "y", "datetime_column": "ds"}}),
            "auto",
            "all",
            id="ts",
        ),
    ],
)
def test_defaults_follow_whether_the_stream_carries_ground_truth(
    experiment: Any, promotion: str, window_rows: str
) -> None:
    policy = experiment.validate_config().retrain
    assert policy.promotion == promotion
    assert policy.window_rows == window_rows
    assert policy.gate == GateSettings()
    assert policy.alarm_episode == AlarmEpisode()


def test_every_key_is_read() -> None:
    policy = FaultDetectionExperiment(
        "pump",
        {
            "retrain": {
                "promotion": "auto",
                "window_rows": "all",
                "min_rows": 50,
                "alarm_episode": {"rows": 10, "share": 0.3},
                "gate": {
                    "max_false_alarm": 0.05,
                    "false_alarm_margin": 0.01,
                    "detection_tolerance": 0.0,
                },
            }
        },
    ).retrain_policy
    assert policy == RetrainPolicy(
        promotion="auto",
        window_rows="all",
        min_rows=50,
        alarm_episode=AlarmEpisode(rows=10, share=0.3),
        gate=GateSettings(max_false_alarm=0.05, false_alarm_margin=0.01, detection_tolerance=0.0),
    )


@pytest.mark.parametrize(
    ("retrain", "message"),
    [
        pytest.param({"promotion": "sometimes"}, r"retrain.promotion: .*approve", id="promotion"),
        pytest.param({"window_rows": "most"}, r"retrain.window_rows: .*in_control", id="rows"),
        pytest.param({"min_rows": 1}, r"retrain.min_rows: expected at least 2 rows", id="min"),
        pytest.param(
            {"gate": {"max_false_alarm": 2}},
            r"retrain.gate.max_false_alarm: expected a share",
            id="far",
        ),
        pytest.param(
            {"gate": {"tolerance": 0.1}}, r"retrain.gate.tolerance: unknown", id="gate-key"
        ),
        pytest.param({"gate": [1]}, r"retrain.gate: expected a mapping", id="gate-type"),
        pytest.param(
            {"alarm_episode": {"share": 0}},
            r"retrain.alarm_episode.share: expected a share above 0",
            id="share",
        ),
        pytest.param({"window": -1}, r"retrain.window: expected a value >= 0", id="window"),
        pytest.param(
            {"failure_backoff": 100, "failure_backoff_max": 10},
            r"retrain.failure_backoff_max: expected a value >= retrain.failure_backoff",
            id="backoff-max",
        ),
        pytest.param(
            {"gate": {"min_holdout_rows": 0}},
            r"retrain.gate.min_holdout_rows: expected at least 1 row",
            id="min-holdout",
        ),
    ],
)
def test_config_errors_name_the_key(retrain: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FaultDetectionExperiment("pump", {"retrain": retrain}).validate_config()
