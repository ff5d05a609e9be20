"""Fault test on a private Mosquitto, counted as RabbitMQ's fault test counts them.

20,000 messages (1% malformed) wait in a hub's durable session; a separate consumer process
works through them while Mosquitto is stopped (SIGTERM, persistence on) and started twice and
the consumer process is killed (SIGKILL) once and started again. Every message id the consumer
handled is logged before its handler returns; the analysis counts lost, unexpected and
duplicated messages, checks that each duplicate was flagged as a redelivery, and that every
malformed message is in the dead-letter topic with its reason.

Mosquitto 2.0 writes its persistence file on a clean stop and every ``autosave_interval``
seconds: a SIGKILLed broker loses what it acknowledged since the last save, whatever the client
does, so the broker is stopped, not killed (the plugin's README says so).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from mqtt_broker import Mosquitto
from observml_mqtt import MQTTPlugin
from tests.contracts.datastream import eventually
from tests.contracts.faults import body, is_malformed, read_log

from conftest import unique_settings
from observml.plugins.datastream import REASON_HEADER, Message, OutgoingMessage, dead_letter_queue

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 20_000
STAGE_TIMEOUT = 180.0  # per stage; the whole test takes well under a minute here

#: The consumer process: logs "<message id> <redelivered>" for each well-formed message, then
#: returns (ack); a malformed body raises, which dead-letters it with the reason.
CONSUMER = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    from observml_mqtt import MQTTPlugin

    queue, log = sys.argv[1:3]
    plugin = MQTTPlugin(**json.loads(os.environ["OBSERVML_FAULT_CONFIG"]))
    plugin.connect()
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *args: stop.set())

    def handler(message):
        json.loads(message.body)
        os.write(out, f"{message.message_id} {int(message.redelivered)}\\n".encode())

    plugin.consume(queue, handler, stop=stop)
    plugin.shutdown()
    """
)


def drain(plugin: MQTTPlugin, queue: str, expected: set[str]) -> list[Message]:
    """Consume ``queue`` until every id in ``expected`` came (or ``STAGE_TIMEOUT`` passed)."""
    got: list[Message] = []
    stop = threading.Event()
    quiet = threading.Timer(STAGE_TIMEOUT, stop.set)
    quiet.start()
    missing = set(expected)

    def take(message: Message) -> None:
        got.append(message)
        missing.discard(str(message.message_id))
        if not missing:
            stop.set()

    try:
        plugin.consume(queue, take, stop=stop)
    finally:
        quiet.cancel()
    return got


def test_mqtt_faults_broker_restarts_and_consumer_kill_lose_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    queue = f"faults.{uuid.uuid4().hex[:8]}.predict"
    hub: dict[str, Any] = {
        **unique_settings(host="127.0.0.1", port=broker.port),
        "prefetch": 100,
        "retry_interval": 0.2,
        "retry_interval_max": 1.0,
    }
    producer_settings = {**hub, "client_id": f"{hub['client_id']}-producer"}
    consumers: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "handled.log"
    env = {**os.environ, "OBSERVML_FAULT_CONFIG": json.dumps(hub)}

    def start_consumer() -> None:
        consumers.append(
            subprocess.Popen([sys.executable, "-c", CONSUMER, queue, str(log)], env=env)
        )

    def handled_at_least(count: int) -> bool:
        assert consumers[-1].poll() is None, "the consumer process exited on its own"
        return len(read_log(log)) >= count

    def restart_broker() -> None:
        broker.halt(signal.SIGTERM)
        threading.Event().wait(2.0)  # the broker stays down a while
        broker.start()

    publisher = MQTTPlugin(**producer_settings)
    try:
        setup = MQTTPlugin(**hub)  # the hub's sessions exist before anything is published
        setup.connect()
        setup.create_queue(queue)
        setup.shutdown()
        publisher.connect()
        ids = [f"m{i:05d}" for i in range(TOTAL)]
        for start in range(0, TOTAL, 5000):
            publisher.publish_batch(
                queue,
                [
                    OutgoingMessage(body(i), {"source": "faults"}, ids[i])
                    for i in range(start, start + 5000)
                ],
            )
        malformed = {ids[i] for i in range(TOTAL) if is_malformed(i)}
        good = set(ids) - malformed

        start_consumer()
        assert eventually(lambda: handled_at_least(4000), STAGE_TIMEOUT)
        restart_broker()  # 1: broker stopped and started under consumer A
        assert eventually(lambda: handled_at_least(9000), STAGE_TIMEOUT)
        consumers[-1].send_signal(signal.SIGKILL)  # 2: consumer A dies mid-stream
        consumers[-1].wait(30)
        start_consumer()
        assert eventually(lambda: handled_at_least(14000), STAGE_TIMEOUT)
        restart_broker()  # 3: broker stopped and started under consumer B
        assert eventually(lambda: good <= {i for i, _ in read_log(log)}, STAGE_TIMEOUT)
    finally:
        for consumer in consumers:
            if consumer.poll() is None:
                consumer.terminate()
                consumer.wait(60)
        publisher.shutdown()

    reader = MQTTPlugin(**hub)  # the hub's own session of the dead letters
    reader.connect()
    try:
        dead_letters = drain(reader, dead_letter_queue(queue), malformed)
        leftover = reader.flush_queue(queue)
        dead_leftover = reader.flush_queue(dead_letter_queue(queue))
    finally:
        reader.shutdown()

    rows = read_log(log)
    handled = collections.Counter(message_id for message_id, _ in rows)
    first: set[str] = set()
    unflagged = 0
    for message_id, redelivered in rows:
        if message_id in first and not redelivered:
            unflagged += 1
        first.add(message_id)
    dead_ids = collections.Counter(str(m.message_id) for m in dead_letters)
    report = {
        "published": TOTAL,
        "malformed": len(malformed),
        "handled_deliveries": len(rows),
        "lost": len(good - set(handled)),
        "unexpected": len(set(handled) - good),
        "duplicated": sum(n - 1 for n in handled.values()),
        "duplicates_not_flagged_redelivered": unflagged,
        "redelivered_deliveries": sum(1 for _, redelivered in rows if redelivered),
        "left_in_queue": leftover,
        "dead_letters": len(dead_letters) + dead_leftover,
        "dead_lost": len(malformed - set(dead_ids)),
        "dead_duplicated": sum(n - 1 for n in dead_ids.values()) + dead_leftover,
    }
    print("\nMQTT fault test:", json.dumps(report))

    assert report["lost"] == 0
    assert report["unexpected"] == 0
    assert report["duplicates_not_flagged_redelivered"] == 0
    assert report["dead_lost"] == 0
    assert set(dead_ids) == malformed
    assert all(m.headers[REASON_HEADER].startswith("JSONDecodeError") for m in dead_letters)


#: Experiment of the hub fault test: an isolation forest on two synthetic sensors.
HUB_EXPERIMENT = {"create_model": {"model": "iforest", "params": {"n_estimators": 20}}}
HUB_TOTAL = 20_000


def hub_row(i: int) -> str:
    if is_malformed(i):
        return '[{"temperature": 20.5, "pressure"'  # truncated JSON
    return json.dumps([{"temperature": 20.0 + (i % 13) * 0.1, "pressure": 3.0 + (i % 7) * 0.01}])


def test_mqtt_faults_through_the_hub_process(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000 messages through a hub process (observml's hub worker): two broker restarts, one
    SIGKILL of the hub; every input must get a result (duplicates are counted)."""
    import numpy as np
    import pandas as pd
    import yaml

    from observml import ExperimentHub

    monkeypatch.setenv("OBSERVML_HOME", str(tmp_path / ".observml"))
    monkeypatch.chdir(tmp_path)
    name = f"pump{uuid.uuid4().hex[:6]}"
    hub_settings = {
        **unique_settings(host="127.0.0.1", port=broker.port),
        "retry_interval": 0.2,
        "retry_interval_max": 1.0,
    }
    tag = hub_settings["client_id"]

    def config(file: str, experiments: list[dict[str, Any]]) -> Path:
        document = {
            "global": {"job_isolation": "thread"},
            "plugins": {
                "mlops": {"type": "mlflow", "config": {"mlflow_uri": "local"}},
                "datastream": {"type": "mqtt", "config": hub_settings},
            },
            "streaming": {"batch_size": 200, "max_wait": 0.2},
            "experiments": experiments,
        }
        path = tmp_path / file
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path

    rng = np.random.default_rng(0)
    history = pd.DataFrame(
        {"temperature": rng.normal(20.6, 0.4, 500), "pressure": rng.normal(3.03, 0.02, 500)}
    )
    with ExperimentHub.from_config(config("train.yaml", [])) as hub:  # the hub's sessions too
        hub.create_experiment(name, "fault_detection", HUB_EXPERIMENT)
        job = hub.train(name, data=history, wait=True)
        assert job.status.state == "succeeded", job.status.error

    collector = MQTTPlugin(**{**hub_settings, "client_id": f"{tag}-collector"})
    collector.connect()
    collector.create_queue(f"{name}.predictions")
    producer = MQTTPlugin(**{**hub_settings, "client_id": f"{tag}-producer"})
    producer.connect()
    ids = [f"h{i:05d}" for i in range(HUB_TOTAL)]
    for start in range(0, HUB_TOTAL, 5000):
        producer.publish_batch(
            f"{name}.predict",
            [OutgoingMessage(hub_row(i), message_id=ids[i]) for i in range(start, start + 5000)],
        )
    producer.shutdown()
    malformed = {ids[i] for i in range(HUB_TOTAL) if is_malformed(i)}
    good = set(ids) - malformed

    results: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def take(message: Message) -> None:
        with lock:
            results[json.loads(message.body)["message_id"]] += 1

    reader = threading.Thread(
        target=collector.consume, args=(f"{name}.predictions", take), kwargs={"stop": stop}
    )
    reader.start()
    worker_config = config(
        "worker.yaml",
        [{"name": name, "type": "fault_detection", "config": HUB_EXPERIMENT, "streaming": True}],
    )
    workers: list[subprocess.Popen[bytes]] = []
    repo = Path(__file__).resolve().parents[3]

    def start_worker() -> None:
        env = {**os.environ, "PYTHONPATH": str(repo)}
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.integration.hub_worker", str(worker_config)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )

    def results_at_least(count: int) -> bool:
        assert workers[-1].poll() is None, "the hub process exited on its own"
        with lock:
            return len(results) >= count

    def restart_broker() -> None:
        broker.halt(signal.SIGTERM)
        threading.Event().wait(2.0)
        broker.start()

    try:
        start_worker()
        assert eventually(lambda: results_at_least(4000), STAGE_TIMEOUT)
        restart_broker()  # 1: broker stopped and started under hub A
        assert eventually(lambda: results_at_least(9000), STAGE_TIMEOUT)
        workers[-1].send_signal(signal.SIGKILL)  # 2: hub A dies mid-stream
        workers[-1].wait(30)
        start_worker()
        assert eventually(lambda: results_at_least(14000), STAGE_TIMEOUT)
        restart_broker()  # 3: broker stopped and started under hub B
        assert eventually(lambda: good <= set(results), STAGE_TIMEOUT)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(60)
        stop.set()
        reader.join(60)
        collector.shutdown()

    dead_reader = MQTTPlugin(**hub_settings)  # the hub's own session of its dead letters
    dead_reader.connect()
    try:
        dead_letters = drain(dead_reader, dead_letter_queue(f"{name}.predict"), malformed)
    finally:
        dead_reader.shutdown()
    dead_ids = collections.Counter(str(m.message_id) for m in dead_letters)
    report = {
        "published": HUB_TOTAL,
        "malformed": len(malformed),
        "results": sum(results.values()),
        "lost": len(good - set(results)),
        "unexpected": len(set(results) - good),
        "duplicated": sum(n - 1 for n in results.values()),
        "dead_letters": len(dead_letters),
        "dead_lost": len(malformed - set(dead_ids)),
    }
    print("\nMQTT hub fault test:", json.dumps(report))

    assert report["lost"] == 0
    assert report["unexpected"] == 0
    assert report["dead_lost"] == 0
    assert all(m.headers[REASON_HEADER] for m in dead_letters)
