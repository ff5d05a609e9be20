"""Streams on a datastream that can subscribe share the hub's pool: no thread per experiment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.config import HubConfig, StreamingSection

PCA = {"create_model": {"model": "pca"}}


def sensors(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0.0, 1.0, size=(n, 3)), columns=["temp", "pressure", "flow"])


def make_hub(stream: InMemoryDataStreamPlugin, workers: int = 3) -> ExperimentHub:
    settings = StreamingSection(max_wait=0.05, champion_refresh=0.5, workers=workers)
    hub = ExperimentHub(config=HubConfig(plugins={}, streaming=settings), job_isolation="thread")
    hub.register_plugin(InMemoryMLOpsPlugin())
    hub.register_plugin(stream)
    return hub


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def publish_rows(stream: InMemoryDataStreamPlugin, name: str, n: int) -> None:
    rows = sensors(n, seed=5).to_dict(orient="records")
    stream.publish_batch(f"{name}.predict", [json.dumps(row) for row in rows])


def threads(prefix: str) -> int:
    return sum(t.name.startswith(prefix) for t in threading.enumerate())


def test_forty_streams_run_on_a_pool_of_three_and_answer_every_message() -> None:
    stream = InMemoryDataStreamPlugin()
    names = [f"unit{i:02d}" for i in range(40)]
    with make_hub(stream, workers=3) as hub:
        for name in names:
            hub.create_experiment(name, "fault_detection", PCA)
            hub.train(name, data=sensors(200), wait=True)
        before = threading.active_count()
        for name in names:
            hub.start_streaming(name)
            publish_rows(stream, name, 15)
        wait_for(lambda: all(stream.queue_depth(f"{n}.predictions") == 15 for n in names))
        added = threading.active_count() - before
        pooled = threads("observml-stream")
        statuses = [hub.status(name) for name in names]
        for name in names:
            hub.stop_streaming(name)
    assert pooled <= 3
    # the pool, the watch (1 + up to 4 checking) and the plugin's subscriber: not 2 per stream
    assert added <= 3 + 5 + 1, added
    assert all(s["streaming"] and s["counters"]["predicted_rows"] == 15 for s in statuses)


def test_a_stream_started_before_its_first_champion_answers_once_trained() -> None:
    stream = InMemoryDataStreamPlugin()
    with make_hub(stream) as hub:
        hub.create_experiment("pump", "fault_detection", PCA)
        hub.start_streaming("pump")
        publish_rows(stream, "pump", 10)
        time.sleep(0.3)
        assert stream.queue_depth("pump.predict") == 10  # no champion: they wait queued
        hub.train("pump", data=sensors(200), wait=True)
        wait_for(lambda: stream.queue_depth("pump.predictions") == 10)
        hub.stop_streaming("pump")


def test_a_stream_subscribes_again_after_the_datastream_came_back() -> None:
    stream = InMemoryDataStreamPlugin()
    with make_hub(stream) as hub:
        hub.create_experiment("pump", "fault_detection", PCA)
        hub.train("pump", data=sensors(200), wait=True)
        hub.start_streaming("pump")
        publish_rows(stream, "pump", 5)
        wait_for(lambda: stream.queue_depth("pump.predictions") == 5)
        stream.disconnect()  # every subscription ends, as when a broker goes away for good
        stream.connect()
        publish_rows(stream, "pump", 5)
        wait_for(lambda: stream.queue_depth("pump.predictions") == 10)
        assert hub.status("pump")["streaming"]
        hub.stop_streaming("pump")


def test_stop_streaming_leaves_later_messages_queued() -> None:
    stream = InMemoryDataStreamPlugin()
    with make_hub(stream) as hub:
        hub.create_experiment("pump", "fault_detection", PCA)
        hub.train("pump", data=sensors(200), wait=True)
        hub.start_streaming("pump")
        hub.stop_streaming("pump")
        publish_rows(stream, "pump", 7)
        time.sleep(0.3)
        assert stream.queue_depth("pump.predict") == 7
        assert not hub.status("pump")["streaming"]
