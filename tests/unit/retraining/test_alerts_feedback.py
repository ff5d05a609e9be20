"""Alerts open once and close when a person answers; feedback is kept in the MLOps store."""

from __future__ import annotations

import pandas as pd
import pytest

from observml.errors import DataError
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.retraining.alerts import Alerts
from observml.retraining.feedback import MAX_FEEDBACK_ROWS, FeedbackStore


def test_one_open_alert_is_updated_not_repeated() -> None:
    alerts = Alerts("pump")
    first, opened = alerts.raise_("drift", "drift in the scores", version=1, now=10.0)
    assert opened
    assert first.open
    assert first.count == 1
    again, opened = alerts.raise_("threshold", "anomaly_rate 0.4 > 0.3", version=1, now=20.0)
    assert not opened
    assert again.count == 2
    assert again.kind == "drift+threshold"
    assert again.reason == "anomaly_rate 0.4 > 0.3"
    assert again.opened_at == 10.0
    assert again.last_at == 20.0
    closed = alerts.acknowledge("ops: rejected v2", now=30.0)
    assert closed is not None
    assert not closed.open
    assert closed.to_dict()["state"] == "acknowledged"
    assert alerts.current is None
    assert alerts.acknowledge("nobody") is None
    status = alerts.status()
    assert status["open"] is None
    assert status["recent"][0]["acknowledged_by"] == "ops: rejected v2"
    assert status["raised"] == 2
    _, opened = alerts.raise_("drift", "again", version=2)
    assert opened


@pytest.fixture
def mlops() -> InMemoryMLOpsPlugin:
    plugin = InMemoryMLOpsPlugin()
    plugin.initialize()
    return plugin


def test_feedback_is_a_run_of_its_own_read_back_by_another_store(
    mlops: InMemoryMLOpsPlugin,
) -> None:
    rows = pd.DataFrame(
        {"ds": pd.date_range("2026-11-30", periods=3, freq="h"), "temp": [1.5, 2.5, 3.5]}
    )
    added = FeedbackStore(mlops, "pump").add("fault", rows, reason="bearing", source="ops")
    run = mlops.get_run(added.run_id)
    assert run.tags["observml.kind"] == "feedback"
    assert run.tags["observml.feedback.label"] == "fault"
    assert run.status == "FINISHED"
    other = FeedbackStore(mlops, "pump")  # a second hub process, or after a restart
    (found,) = other.load()
    assert found.label == "fault"
    assert found.reason == "bearing"
    assert found.source == "ops"
    pd.testing.assert_frame_equal(found.rows, rows, check_freq=False, check_dtype=False)


def test_feedback_keeps_the_newest_rows_and_refuses_none(mlops: InMemoryMLOpsPlugin) -> None:
    store = FeedbackStore(mlops, "pump")
    assert store.load() == []
    big = pd.DataFrame({"x": range(MAX_FEEDBACK_ROWS + 5)})
    kept = store.add("normal", big, reason="", source="ops").rows
    assert len(kept) == MAX_FEEDBACK_ROWS
    assert kept["x"].iloc[0] == 5
    with pytest.raises(DataError, match="no rows to label 'fault'. Give rows, or a time range"):
        store.add("fault", pd.DataFrame(), reason="", source="ops")
