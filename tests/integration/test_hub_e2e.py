"""The hub's loop end to end on a real RabbitMQ broker and a real MLflow server.

Figures seen on this machine (2 cores), pump data shipped in ``tests/data`` (every 4th hour of
``pump_test_0..3.csv``), ``fault_detection``/``pca`` trained on ``pump_test_0_4h.csv`` (560
rows published as one-row messages):

* streaming ``pump_test_1..3_4h.csv`` (1,681 one-row messages): exactly one result per message,
  0 duplicates; anomaly rates 0.74 / 0.81 / 1.00 (the later windows hold the pump failure and a
  changed operating point, far outside the training window);
* a hub killed with SIGKILL mid-stream (the same 1,681 messages) and started again restores
  champion version 1 and finishes the stream: 0 messages without a result, duplicates only
  redeliveries;
* two hub processes on the same queues: every message predicted once after deduplication.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from observml import ExperimentHub
from observml.plugins.datastream import Message, OutgoingMessage
from tests.services import read_dataset

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.mlflow, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PCA = {"setup": {"datetime_column": "ds"}, "create_model": {"model": "pca"}}


@pytest.fixture
def name(rabbitmq_drop_queues: Callable[[list[str]], None]) -> Iterator[str]:
    value = f"pump{uuid.uuid4().hex[:8]}"
    yield value
    rabbitmq_drop_queues(
        [f"{value}.{q}" for q in ("train", "predict", "predictions")]
        + [f"{value}.{q}.dead" for q in ("train", "predict", "predictions")]
    )


@pytest.fixture
def hub_config(
    tmp_path: Path, rabbitmq_config: dict[str, Any], mlflow_server_uri: str
) -> Callable[..., Path]:
    def write(
        experiments: list[dict[str, Any]] | None = None,
        file: str = "hub.yaml",
        **streaming: Any,
    ) -> Path:
        document = {
            "global": {"job_isolation": "thread"},
            "plugins": {
                "mlops": {"type": "mlflow", "config": {"mlflow_uri": mlflow_server_uri}},
                "datastream": {"type": "rabbitmq", "config": dict(rabbitmq_config)},
            },
            "streaming": {
                "batch_size": 200,
                "max_wait": 0.2,
                "champion_refresh": 2.0,
                **streaming,
            },
            "experiments": experiments or [],
        }
        path = tmp_path / file
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path

    return write


def pump(i: int) -> pd.DataFrame:
    return read_dataset(f"pump_test_{i}_4h.csv")


def one_row_messages(frame: pd.DataFrame, prefix: str) -> list[OutgoingMessage]:
    bodies = frame.to_json(orient="records", lines=True).splitlines()
    return [OutgoingMessage(b, message_id=f"{prefix}-{i}") for i, b in enumerate(bodies)]


def publish(hub: ExperimentHub, queue: str, messages: list[OutgoingMessage]) -> None:
    stream = hub.require_plugin("datastream")
    for start in range(0, len(messages), 1000):
        stream.publish_batch(queue, messages[start : start + 1000])  # type: ignore[attr-defined]


class ResultCollector:
    """Consumes ``<name>.predictions`` on its own plugin and counts results by message id."""

    def __init__(self, rabbitmq_config: dict[str, Any], queue: str) -> None:
        from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

        self.plugin = RabbitMQPlugin(**rabbitmq_config)
        self.plugin.initialize()
        self.plugin.create_queue(queue)
        self.counts: Counter[str] = Counter()
        self.rows: list[dict[str, Any]] = []
        self.by_id: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(queue,), daemon=True)
        self._thread.start()

    def _run(self, queue: str) -> None:
        def take(message: Message) -> None:
            result = json.loads(message.body)
            with self._lock:
                self.counts[result["message_id"]] += 1
                self.rows.extend(result["rows"])
                self.by_id[result["message_id"]] = result["rows"]

        self.plugin.consume(queue, take, prefetch=500, stop=self._stop)

    def wait_for(self, ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if ids <= set(self.counts):
                    return
            time.sleep(0.2)
        with self._lock:
            missing = len(ids - set(self.counts))
        raise AssertionError(f"{missing} of {len(ids)} messages have no result after {timeout} s")

    def close(self) -> None:
        self._stop.set()
        self.plugin.disconnect()
        self._thread.join(10)
        self.plugin.shutdown()


def train_pump(hub: ExperimentHub, name: str) -> int:
    hub.create_experiment(name, "fault_detection", PCA)
    publish(hub, f"{name}.train", one_row_messages(pump(0), "train"))
    job = hub.train(name, wait=True)
    assert job.status.state == "succeeded", job.status.error
    assert job.status.version is not None
    return job.status.version


def test_pump_train_stream_one_result_per_message(
    name: str, hub_config: Callable[..., Path], rabbitmq_config: dict[str, Any]
) -> None:
    with ExperimentHub.from_config(hub_config()) as hub:
        version = train_pump(hub, name)
        assert hub.get_train_data(name).shape[0] == 560
        mlops = hub.require_plugin("mlops")
        assert mlops.get_version_by_alias(name, "champion").version == version  # type: ignore[attr-defined]
        collector = ResultCollector(rabbitmq_config, f"{name}.predictions")
        try:
            hub.start_streaming(name)
            sent: set[str] = set()
            for i in (1, 2, 3):
                messages = one_row_messages(pump(i), f"test{i}")
                sent |= {m.message_id for m in messages if m.message_id}
                publish(hub, f"{name}.predict", messages)
            collector.wait_for(sent, timeout=240)
            hub.stop_streaming(name)
        finally:
            collector.close()
        assert set(collector.counts) == sent
        assert sum(collector.counts.values()) - len(sent) == 0, "duplicates without a redelivery"
        rows = pd.DataFrame(collector.rows)
        assert {"score", "anomaly", "t2", "spe"} <= set(rows.columns)
        for i in (1, 2, 3):
            flags = [collector.by_id[f"test{i}-{n}"][0]["anomaly"] for n in range(len(pump(i)))]
            print(f"pump_test_{i}: anomaly rate {np.mean(flags):.2f}")
        assert hub.status(name)["counters"]["predicted_messages"] == len(sent)


def batches_of_20(frame: pd.DataFrame, prefix: str = "rows") -> list[OutgoingMessage]:
    """Messages of 20 rows each, with ids ``<prefix>-0``, ``<prefix>-1``, ..."""
    return [
        OutgoingMessage(
            frame.iloc[s : s + 20].to_json(orient="records"), message_id=f"{prefix}-{i}"
        )
        for i, s in enumerate(range(0, len(frame), 20))
    ]


def start_worker(config: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.hub_worker", str(config)],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise AssertionError(f"hub worker exited with {process.returncode} before it was ready")
    return process, json.loads(line)


def stop_worker(process: subprocess.Popen[str], *, kill: bool = False) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


def test_killed_hub_restarts_with_champion_and_loses_nothing(
    name: str, hub_config: Callable[..., Path], rabbitmq_config: dict[str, Any]
) -> None:
    with ExperimentHub.from_config(hub_config()) as hub:
        version = train_pump(hub, name)
        messages = one_row_messages(pd.concat([pump(1), pump(2), pump(3)]), "kill")
        publish(hub, f"{name}.predict", messages)
    config = hub_config(
        [{"name": name, "type": "fault_detection", "config": PCA, "streaming": True}],
        file="worker.yaml",
    )
    sent = {m.message_id for m in messages if m.message_id}
    collector = ResultCollector(rabbitmq_config, f"{name}.predictions")
    try:
        first, info = start_worker(config)
        assert info["champions"] == {name: version}
        deadline = time.monotonic() + 120
        while len(collector.counts) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop_worker(first, kill=True)  # SIGKILL mid-stream: unacked messages go back
        done_before = len(collector.counts)
        assert 0 < done_before < len(sent), "kill did not land mid-stream"
        second, info = start_worker(config)
        try:
            assert info["champions"] == {name: version}
            collector.wait_for(sent, timeout=180)
        finally:
            stop_worker(second)
    finally:
        collector.close()
    assert set(collector.counts) == sent
    duplicates = sum(collector.counts.values()) - len(sent)
    print(f"killed after {done_before} results; duplicates (redeliveries): {duplicates}")
    assert duplicates <= 200 * 2, "more duplicates than one unacked batch per worker"


def test_two_hub_processes_share_the_queues(
    name: str, hub_config: Callable[..., Path], rabbitmq_config: dict[str, Any]
) -> None:
    with ExperimentHub.from_config(hub_config()) as hub:
        version = train_pump(hub, name)
    config = hub_config(
        [{"name": name, "type": "fault_detection", "config": PCA, "streaming": True}],
        file="worker.yaml",
    )
    collector = ResultCollector(rabbitmq_config, f"{name}.predictions")
    workers = []
    try:
        for _ in range(2):
            process, info = start_worker(config)
            workers.append(process)
            assert info["champions"] == {name: version}
        with ExperimentHub.from_config(hub_config(file="publisher.yaml")) as publisher:
            messages = one_row_messages(pd.concat([pump(2), pump(3)]), "pair")
            publish(publisher, f"{name}.predict", messages)
        sent = {m.message_id for m in messages if m.message_id}
        collector.wait_for(sent, timeout=240)
    finally:
        for process in workers:
            stop_worker(process)
        collector.close()
    duplicates = sum(collector.counts.values()) - len(sent)
    print(f"two hubs: {len(sent)} messages, {duplicates} duplicates")
    assert set(collector.counts) == sent
    assert duplicates == 0, "no redelivery happened, so no message may be predicted twice"


def sensors(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(shift, 1.0, size=(n, 3)), columns=["temp", "pressure", "flow"])


def test_two_hub_processes_train_a_fired_retrain_once(
    name: str, hub_config: Callable[..., Path], rabbitmq_config: dict[str, Any]
) -> None:
    """Both hubs see the drift (each half the stream); one trains the challenger."""
    from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

    config = {"create_model": {"model": "pca"}, "retrain": {"drift": {"window": 100}}}
    with ExperimentHub.from_config(hub_config()) as hub:
        hub.create_experiment(name, "fault_detection", config)
        assert hub.train(name, data=sensors(600), wait=True).status.state == "succeeded"
    worker_config = hub_config(
        [{"name": name, "type": "fault_detection", "config": config, "streaming": True}],
        file="worker.yaml",
    )
    collector = ResultCollector(rabbitmq_config, f"{name}.predictions")
    workers = []
    claims = RabbitMQPlugin(**rabbitmq_config)  # looks in from outside, as a third hub would
    claims.connect()
    try:
        for _ in range(2):
            workers.append(start_worker(worker_config)[0])
        with ExperimentHub.from_config(hub_config(file="publisher.yaml")) as publisher:
            moved = batches_of_20(sensors(1200, shift=0.7, seed=9), "moved")
            publish(publisher, f"{name}.predict", moved)
        collector.wait_for({m.message_id for m in moved if m.message_id}, timeout=240)
        deadline = time.monotonic() + 240
        while True:  # until a challenger waits in shadow and no hub is training any more
            with ExperimentHub.from_config(hub_config(), streaming=False) as reader:
                reader.load(name)
                shadow = reader.status(name)["shadow"]
                history = reader.decisions(name, limit=100)["decisions"]
            claim = claims.claim(f"train.{name}")
            if claim is not None:
                claim.release()
            if shadow is not None and claim is not None:
                break
            assert time.monotonic() < deadline, [d["reason"] for d in history]
            time.sleep(1.0)
    finally:
        for process in workers:
            stop_worker(process)
        collector.close()
        claims.shutdown()
    fired = [d for d in history if d["kind"] == "fired"]
    skipped = [d["reason"] for d in history if d["kind"] == "skipped"]
    print(f"two hubs, one drift: {len(fired)} fired, skipped: {skipped}")
    assert len(fired) == 1, [d["reason"] for d in history]
    assert shadow["version"] == 2  # the champion is v1: no other model was trained


def test_dead_letters_and_decisions_on_rabbitmq_and_mlflow(
    name: str, hub_config: Callable[..., Path]
) -> None:
    """A CSV stream missing a column: status says why; the history outlives the hub."""
    config = hub_config()
    with ExperimentHub.from_config(config) as hub:
        train_pump(hub, name)
        csv = pump(1).drop(columns=["ds"]).head(5).iloc[:, :-1].to_csv(index=False)
        missing = pump(1).columns[-1]
        sent = [
            OutgoingMessage(csv, message_id=f"csv-{i}", content_type="text/csv") for i in range(20)
        ]
        hub.start_streaming(name)
        publish(hub, f"{name}.predict", sent)
        deadline = time.monotonic() + 60
        while hub.status(name)["dead_letters"]["total"] < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        hub.stop_streaming(name)
        dead = hub.status(name)["dead_letters"]
        assert dead["total"] == 20
        assert f"'{missing}'" in dead["summary"]
        peeked = hub.dead_letters(name, 5)
        assert [m["message_id"] for m in peeked] == [f"csv-{i}" for i in range(5)]
        assert f"'{missing}'" in peeked[0]["reason"]
        assert len(hub.dead_letters(name, 100)) == 20  # browsing took none of them
        job = hub.retrain(name, data=pump(0), wait=True)
        assert job.status.state == "succeeded", job.status.error
        before = [d["kind"] for d in hub.decisions(name)["decisions"]]
    with ExperimentHub.from_config(config, streaming=False) as again:
        again.load(name)
        after = again.decisions(name)["decisions"]
        assert [d["kind"] for d in after] == before
        assert before[-1] == "trained"  # the first training, the oldest
        assert "fired" in before
        kinds = [d["kind"] for d in again.status(name)["decisions"]]
        assert kinds[len(before) :] == ["restored", "restored"]  # version 1, the shadow
        assert kinds[: len(before)] == before[::-1]
