"""The hub at work on the in-memory plugins: train, predict, stream, retrain, roll back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.config import HubConfig, StreamingSection
from observml.errors import (
    DataError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    ModelNotTrainedError,
    NotFoundError,
    TrainingInProgressError,
)
from observml.plugins.datastream import REASON_HEADER, Message

FD_CONFIG: dict[str, Any] = {
    "create_model": {"model": "iforest", "params": {"n_estimators": 50}},
    "retrain": {
        "metric": "anomaly_rate",
        "threshold": 0.3,
        "higher_better": False,
        "min_samples": 200,
        "cooldown": 0,
    },
}


def sensors(n: int, *, shift: float = 0.0, seed: int = 0, spread: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.normal(shift, spread, size=(n, 3)), columns=["temp", "pressure", "flow"]
    )


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def mlops_of(hub: ExperimentHub) -> InMemoryMLOpsPlugin:
    plugin = hub.get_plugin("mlops")
    assert isinstance(plugin, InMemoryMLOpsPlugin)
    return plugin


def stream_of(hub: ExperimentHub) -> InMemoryDataStreamPlugin:
    plugin = hub.get_plugin("datastream")
    assert isinstance(plugin, InMemoryDataStreamPlugin)
    return plugin


def rows_json(frame: pd.DataFrame) -> str:
    return frame.to_json(orient="records")


def drain(stream: InMemoryDataStreamPlugin, queue: str) -> list[dict[str, Any]]:
    out = []
    while body := stream.pull_data(queue):
        out.append(json.loads(body))
    return out


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_train_with_data_registers_champion_and_ends_run(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    job = hub.train("pump", data=sensors(300), wait=True)
    status = job.status
    assert status.state == "succeeded", status.error
    assert status.version == 1
    mlops = mlops_of(hub)
    assert mlops.get_version_by_alias("pump", "champion").version == 1  # type: ignore[union-attr]
    run = mlops.get_run(status.run_id or "")
    assert run.status == "FINISHED"
    assert run.params["create_model.model"] == "iforest"
    assert run.params["param.n_estimators"] == "50"  # the model's params beside the config's
    assert run.tags["observml.kind"] == "train"
    assert run.tags["observml.train_rows"] == "300"
    assert "train_rows" in run.metrics
    assert hub.status("pump")["champion_version"] == 1


def test_train_drains_the_train_queue(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    stream = stream_of(hub)
    data = sensors(200)
    for start in range(0, 200, 50):
        stream.publish("pump.train", rows_json(data.iloc[start : start + 50]))
    stream.publish("pump.train", b"{not json")
    job = hub.train("pump", wait=True)
    assert job.status.state == "succeeded", job.status.error
    assert hub.get_train_data("pump").shape == (200, 3)
    assert stream.queue_depth("pump.train") == 0
    dead = stream.pull_data("pump.train.dead")
    assert dead == "{not json"


def test_train_without_data_says_where_to_put_it(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    with pytest.raises(DataError, match=r"publish rows to the queue 'pump.train'"):
        hub.train("pump")


def test_failed_training_is_reported_and_run_failed(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    job = hub.train("pump", data=pd.DataFrame({"temp": ["a", "b", "c"]}), wait=True)
    assert job.status.state == "failed"
    assert job.status.error_type == "DataError"
    assert "temp" in (job.status.error or "")
    run = mlops_of(hub).get_run(job.status.run_id or "")
    assert run.status == "FAILED"
    assert run.params["create_model.model"] == "iforest"  # a failed run keeps its config
    assert run.tags["observml.train_rows"] == "3"


def test_predict_before_train_says_call_train(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    with pytest.raises(ModelNotTrainedError, match=r"Call train\(\) first"):
        hub.predict("pump", data=sensors(5))


def test_predict_with_data_and_from_queue(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    hub.train("pump", data=sensors(300), wait=True)
    direct = hub.predict("pump", data=sensors(10, seed=1))
    assert list(direct.columns[:2]) == ["score", "anomaly"]
    assert len(direct) == 10
    stream = stream_of(hub)
    ids = [stream.publish("pump.predict", rows_json(sensors(4, seed=i))) for i in range(3)]
    stream.publish("pump.predict", b'[{"temp": "hot"}]', message_id="bad-1")
    result = hub.predict("pump")
    assert len(result) == 12
    published = drain(stream, "pump.predictions")
    assert [m["message_id"] for m in published] == ids
    assert all(len(m["rows"]) == 4 for m in published)
    assert stream.queue_depth("pump.predict.dead") == 1


def test_unknown_experiment_lists_known(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    with pytest.raises(ExperimentNotFoundError, match=r"'valve' does not exist. Known: pump"):
        hub.status("valve")
    with pytest.raises(ExperimentExistsError, match="already exists"):
        hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    with pytest.raises(NotFoundError, match=r"'valve' does not exist"):  # one except for 404s
        hub.predict("valve", data=sensors(3))


def test_streaming_one_result_per_message_and_dead_letters(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    hub.train("pump", data=sensors(300), wait=True)
    stream = stream_of(hub)
    hub.start_streaming("pump")
    sent = []
    for i in range(40):
        row = sensors(1, seed=100 + i).iloc[0].to_dict()
        sent.append(stream.publish("pump.predict", json.dumps(row)))
    stream.publish("pump.predict", b'{"temp": 1.0}', message_id="missing-columns")
    wait_for(
        lambda: (
            stream.queue_depth("pump.predictions") >= 40
            and stream.queue_depth("pump.predict.dead") >= 1
        )
    )
    hub.stop_streaming("pump")
    results = drain(stream, "pump.predictions")
    assert sorted(m["message_id"] for m in results) == sorted(sent)
    assert all(len(m["rows"]) == 1 and m["version"] == 1 for m in results)
    dead: list[Message] = []
    stop = threading.Event()

    def take(message: Message) -> None:
        dead.append(message)
        stop.set()

    stream.consume("pump.predict.dead", take, stop=stop)
    assert dead[0].message_id == "missing-columns"
    assert "flow" in dead[0].headers[REASON_HEADER]
    assert hub.status("pump")["counters"]["predicted_messages"] == 40


def test_new_operating_point_waits_for_a_person_then_follows_the_approval(
    hub: ExperimentHub,
) -> None:
    """A regime the champion flags throughout is not learnt until a person says it is normal."""
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    hub.train("pump", data=sensors(400), wait=True)
    stream = stream_of(hub)
    hub.start_streaming("pump")
    moved = sensors(600, shift=4.0, seed=7)
    for start in range(0, 600, 20):
        stream.publish("pump.predict", rows_json(moved.iloc[start : start + 20]))
    kinds = lambda: [d["kind"] for d in hub.status("pump")["decisions"]]  # noqa: E731
    wait_for(lambda: "skipped" in kinds(), timeout=60)
    wait_for(lambda: hub.status("pump")["counters"]["predicted_rows"] == 600)
    status = hub.status("pump")
    assert status["champion_version"] == 1
    assert status["alerts"]["open"]["reason"].startswith("anomaly_rate")
    skipped = next(d for d in status["decisions"] if d["kind"] == "skipped")
    assert "nothing in control to learn from" in skipped["reason"]
    assert "label its rows normal" in skipped["reason"]
    # a person confirms the new operating point and asks for a challenger
    labelled = hub.feedback("pump", label="normal", reason="new duty point after maintenance")
    assert labelled["rows"] == 600
    assert hub.status("pump")["alerts"]["open"] is None
    job = hub.retrain("pump", wait=True)
    assert job.status.state == "succeeded", job.status.error
    assert job.status.result["shadow"] is True
    assert hub.status("pump")["shadow"]["version"] == 2
    assert hub.status("pump")["champion_version"] == 1  # nothing changed for the plant yet
    assert hub.promote("pump") == 2
    hub.stop_streaming("pump")
    status = hub.status("pump")
    assert status["shadow"] is None
    assert status["decisions"][-1]["kind"] == "promoted"
    mlops = mlops_of(hub)
    assert mlops.get_version_by_alias("pump", "champion").version == 2  # type: ignore[union-attr]
    assert mlops.get_version_by_alias("pump", "previous").version == 1  # type: ignore[union-attr]
    assert mlops.get_version_by_alias("pump", "challenger") is None
    newest = mlops.list_versions("pump")[0]
    assert newest.tags["observml.decision"] == "promoted"
    assert newest.tags["observml.shadow"] == "promoted"
    # the approved champion sees the new operating point as normal
    assert hub.predict("pump", data=sensors(50, shift=4.0, seed=8))["anomaly"].mean() < 0.3
    assert hub.rollback("pump") == 1
    assert hub.status("pump")["champion_version"] == 1
    assert hub.status("pump")["decisions"][-1]["kind"] == "rolled_back"


def test_drift_test_on_the_scores_puts_a_challenger_in_shadow(hub: ExperimentHub) -> None:
    config = {
        "create_model": {"model": "iforest", "params": {"n_estimators": 50}},
        "retrain": {"drift": {"window": 200}, "min_samples": 200},
    }
    hub.create_experiment("pump", "fault_detection", config)
    hub.train("pump", data=sensors(1000), wait=True)
    stream = stream_of(hub)
    hub.start_streaming("pump")
    moved = sensors(600, shift=0.5, seed=7)  # a slow drift: scores move, rows stay in control
    for start in range(0, 600, 20):
        stream.publish("pump.predict", rows_json(moved.iloc[start : start + 20]))
    wait_for(lambda: hub.status("pump")["shadow"] is not None, timeout=60)
    hub.stop_streaming("pump")
    status = hub.status("pump")
    assert status["champion_version"] == 1
    assert status["alerts"]["open"]["kind"] == "drift"
    fired = [d for d in status["decisions"] if d["kind"] == "fired"]
    assert len(fired) == 1
    assert fired[0]["reason"].startswith("drift in the scores: KS statistic")
    assert status["decisions"][-1]["kind"] == "shadow"
    assert mlops_of(hub).list_versions("pump")[0].tags["observml.shadow"] == "pending"


def test_a_challenger_that_learnt_the_alarm_is_rejected_by_the_gate() -> None:
    """Auto promotion trained on every row: the window's alarm episode is what blinds it.

    The window's older rows are another regime the champion flags throughout; a challenger
    trained on all of them (``window_rows: all``) stops flagging them, and the gate, which asks
    every automatic challenger to keep flagging unconfirmed alarm episodes, rejects it.
    """
    streaming = StreamingSection(retrain_rows=800, holdout_fraction=0.25, max_wait=0.2)
    with ExperimentHub(config=HubConfig(plugins={}, streaming=streaming)) as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        retrain = {
            **FD_CONFIG["retrain"],
            "min_samples": 800,
            "window": 10,
            "promotion": "auto",
            "window_rows": "all",
        }
        hub.create_experiment("pump", "fault_detection", {**FD_CONFIG, "retrain": retrain})
        hub.train("pump", data=sensors(1000), wait=True)
        stream = stream_of(hub)
        rows = pd.concat([sensors(600, shift=4.0, seed=5), sensors(200, seed=6)])
        for start in range(0, 800, 20):
            stream.publish("pump.predict", rows_json(rows.iloc[start : start + 20]))
        hub.start_streaming("pump")
        kinds = lambda: [d["kind"] for d in hub.status("pump")["decisions"]]  # noqa: E731
        wait_for(lambda: "rejected" in kinds() or "promoted" in kinds(), timeout=60)
        hub.stop_streaming("pump")
        status = hub.status("pump")
        assert kinds() == ["trained", "alert", "fired", "trained", "rejected"]
        assert status["decisions"][1]["reason"].startswith("anomaly_rate mean of last")
        rejected = status["decisions"][-1]
        assert rejected["reason"].startswith("gate failed: ")
        assert "fault alarm episode in the window, not confirmed by a person" in rejected["reason"]
        checks = {c["name"]: c for c in status["last_gate"]["checks"]}
        assert checks["fault_1"]["champion"] > 0.9
        assert checks["fault_1"]["challenger"] < 0.5
        assert status["champion_version"] == 1
        assert status["shadow"] is None
        mlops = mlops_of(hub)
        assert mlops.get_version_by_alias("pump", "champion").version == 1  # type: ignore[union-attr]
        assert mlops.get_version_by_alias("pump", "challenger") is None
        assert mlops.list_versions("pump")[0].tags["observml.decision"] == "rejected"
        assert len(drain(stream, "pump.predictions")) == 40  # every message still answered


def test_a_challenger_with_more_false_alarms_is_rejected(hub: ExperimentHub) -> None:
    retrain = {**FD_CONFIG["retrain"], "promotion": "auto"}
    hub.create_experiment("pump", "fault_detection", {**FD_CONFIG, "retrain": retrain})
    hub.train("pump", data=sensors(400), wait=True)
    # trained on a narrow band, the challenger flags more of the held-out new rows than the
    # champion, which knows a wider normal
    narrow = sensors(400, seed=3, spread=0.05)
    job = hub.retrain("pump", data=narrow, wait=True)
    assert job.status.state == "succeeded", job.status.error
    assert job.status.result["promoted"] is False
    status = hub.status("pump")
    assert status["champion_version"] == 1
    assert status["shadow"] is None
    assert status["decisions"][-1]["kind"] == "rejected"
    reason = status["decisions"][-1]["reason"]
    assert reason.startswith(
        "gate failed: false alarms on 80 normal reference rows neither model trained on:"
    )
    assert "(the champion's 0.0% + margin 2.0%)" in reason


def test_one_job_at_a_time(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", FD_CONFIG)
    gate = threading.Event()
    hub.train("pump", data=sensors(300), wait=True)
    experiment = hub._get("pump")  # hold the job open deterministically
    from observml.runtime.jobs import Job

    blocker = Job("pump", "train", lambda job: (gate.wait(10), {})[1])
    experiment.add_job(blocker.start())
    try:
        with pytest.raises(TrainingInProgressError, match="Wait for it or call stop_training"):
            hub.train("pump", data=sensors(300))
        other = {**FD_CONFIG, "create_model": {"model": "pca"}}
        with pytest.raises(TrainingInProgressError, match="Wait for it or call stop_training"):
            hub.train("pump", other, data=sensors(300))
        assert hub.get_cfg("pump") == FD_CONFIG  # a refused train changes nothing
        assert hub.predict("pump", data=sensors(3)).shape[0] == 3  # predict never waits
    finally:
        gate.set()


def test_restart_restores_champion_from_the_store() -> None:
    mlops = InMemoryMLOpsPlugin()
    with ExperimentHub(job_isolation="thread") as first:
        first.register_plugin(mlops)
        first.register_plugin(InMemoryDataStreamPlugin())
        first.create_experiment("pump", "fault_detection", FD_CONFIG)
        first.train("pump", data=sensors(300), wait=True)
        expected = first.predict("pump", data=sensors(20, seed=5))
    with ExperimentHub(job_isolation="thread") as second:
        second.register_plugin(mlops)
        assert second.load("pump") == 1
        pd.testing.assert_frame_equal(second.predict("pump", data=sensors(20, seed=5)), expected)
        assert second.get_cfg("pump")["create_model"]["model"] == "iforest"


def test_load_unknown_champion_is_not_found(hub: ExperimentHub) -> None:
    with pytest.raises(NotFoundError, match="no champion in the MLOps store"):
        hub.load("ghost")


def test_stop_training_kills_the_fit_and_the_run() -> None:
    with ExperimentHub(job_isolation="process") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment(
            "slow",
            "fault_detection",
            {"create_model": {"model": "one_class_svm", "params": {"nu": 0.5}}},
        )
        job = hub.train("slow", data=sensors(60_000, seed=2))
        wait_for(lambda: job.status.stage == "fitting", timeout=30)
        assert hub.stop_training("slow") is True
        assert job.status.state == "stopped"
        run = mlops_of(hub).get_run(job.status.run_id or "")
        assert run.status == "KILLED"
        assert hub.status("slow")["trained"] is False


def test_plots_and_config(hub: ExperimentHub) -> None:
    hub.create_experiment("pump", "fault_detection", {**FD_CONFIG, "eda": True})
    hub.train("pump", data=sensors(300), wait=True)
    names = hub.plot_names("pump")
    assert "scores" in names
    assert "histogram_temp" in names
    assert hub.plot("pump", "scores").to_dict()["data"]
    assert hub.plot_eda("pump", "correlation").to_dict()["data"]
    with pytest.raises(NotFoundError, match="no report 'nope'. Reports:"):
        hub.plot("pump", "nope")
    assert hub.experiments() == ["pump"]
    hub.delete_experiment("pump")
    assert hub.experiments() == []


def test_a_custom_experiment_type_from_the_config_trains_in_a_child_process(
    tmp_path: Any,
) -> None:
    """docs/models.md: register the type under experiments:, train (process isolation), stream."""
    path = tmp_path / "hub_config.yaml"
    path.write_text(
        """
plugins:
  mlops: {type: memory}
  datastream: {type: memory}
global: {job_isolation: process}
experiments:
  - {name: zscore, module: tests.unit.experiment_types_for_tests, class: ZScoreDetector}
  - name: pump
    type: zscore
    config: {create_model: {params: {limit: 3.5}}, retrain: {drift: {window: 50}}}
""",
        encoding="utf-8",
    )
    with ExperimentHub.from_config(path) as hub:
        assert "zscore" in hub.experiment_types()
        job = hub.train("pump", data=sensors(300), wait=True)
        assert job.status.state == "succeeded", job.status.error
        result = hub.predict("pump", data=sensors(40, shift=6.0, seed=2))
        assert result["anomaly"].all()
        assert hub.status("pump")["model"] == "scaler"
        stream = stream_of(hub)
        stream.publish("pump.predict", rows_json(sensors(60, seed=3)))
        hub.start_streaming("pump")
        wait_for(lambda: hub.status("pump")["drift"] is not None)
        assert hub.status("pump")["drift"]["reference"] == "training"
