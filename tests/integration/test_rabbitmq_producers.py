"""Outside producers with plain pika: the producer example of docs/datastream.md against a hub.

A producer written by another team declares ``<experiment>.predict`` with ``durable=True`` and
no arguments, before the hub exists or after it declared the queue, and publishes; a hub
streaming ``fault_detection`` (in-memory MLOps, real RabbitMQ) answers every message exactly
once. The producer code is the ``python`` block of the docs, extracted and run as written.
"""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryMLOpsPlugin
from observml.io.queues import experiment_queues
from observml.plugins.rabbitmq_plugin import RabbitMQPlugin
from tests.services import RABBITMQ_URL

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]

DOC = Path(__file__).resolve().parents[2] / "docs" / "datastream.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
FD_CONFIG: dict[str, Any] = {"create_model": {"model": "iforest", "params": {"n_estimators": 50}}}


def producer_example() -> dict[str, Any]:
    """Run the docs' producer block (its ``__main__`` part stays off) and return its names."""
    blocks = [
        b for b in BLOCK.findall(DOC.read_text(encoding="utf-8")) if "def publish_readings" in b
    ]
    assert len(blocks) == 1, "docs/datastream.md must hold one producer example"
    namespace: dict[str, Any] = {"__name__": "producer_example"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # our own docs
    return namespace


def sensors(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["temp", "pressure", "flow"])


@pytest.fixture
def name(rabbitmq_drop_queues: Callable[[list[str]], None]) -> Iterator[str]:
    value = f"producers{uuid.uuid4().hex[:8]}"
    yield value
    queues = [f"{value}.{kind}" for kind in ("train", "predict", "predictions")]
    rabbitmq_drop_queues([*queues, *(f"{queue}.dead" for queue in queues)])


@pytest.mark.parametrize("producer_first", [True, False], ids=["producer-first", "hub-first"])
def test_plain_pika_producer_every_message_answered_once(
    name: str, rabbitmq_config: dict[str, Any], producer_first: bool
) -> None:
    example = producer_example()
    publish, read_results = example["publish_readings"], example["read_results"]
    predict, predictions = f"{name}.predict", f"{name}.predictions"
    readings = sensors(60, seed=7).to_dict(orient="records")
    sent: list[str] = []
    if producer_first:  # before the hub exists: the producer declares the queue itself
        sent += publish(readings[:30], queue=predict, url=RABBITMQ_URL)
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(RabbitMQPlugin(**rabbitmq_config))
        hub.create_experiment(name, "fault_detection", FD_CONFIG)  # declares the same queues
        job = hub.train(name, data=sensors(300, seed=0), wait=True)
        assert job.status.state == "succeeded", job.status.error
        hub.start_streaming(name)
        sent += publish(readings[len(sent) :], queue=predict, url=RABBITMQ_URL)
        results = read_results(len(sent), queue=predictions, url=RABBITMQ_URL)
        hub.stop_streaming(name)
        stream = hub.require_plugin("datastream")
        left = stream.queue_depth(predictions)  # type: ignore[attr-defined]
        dead = stream.queue_depth(f"{predict}.dead")  # type: ignore[attr-defined]
        predicted = hub.status(name)["counters"]["predicted_messages"]
    answers = Counter(result["message_id"] for result in results)
    assert len(sent) == 60
    assert set(answers) == set(sent)
    assert set(answers.values()) == {1}
    assert (left, dead, predicted) == (0, 0, 60)
    assert all(len(result["rows"]) == 1 and result["version"] == 1 for result in results)


@pytest.fixture
def text_name(rabbitmq_drop_queues: Callable[[list[str]], None]) -> Iterator[str]:
    value = f"textrows{uuid.uuid4().hex[:8]}"
    yield value
    queues = experiment_queues(value)
    rabbitmq_drop_queues([*queues, *(f"{queue}.dead" for queue in queues)])


def test_plain_pika_producer_of_csv_text_rows_retrains_instead_of_failing(
    text_name: str, rabbitmq_config: dict[str, Any]
) -> None:
    """``json.dumps(row)`` for ``csv.DictReader`` rows sends every number as a string."""
    example = producer_example()
    publish, read_results = example["publish_readings"], example["read_results"]
    rng = np.random.default_rng(3)
    shift = np.r_[np.zeros(500), np.full(1500, 0.4)]  # a slow drift the drift test notices
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=2000, freq="s").astype(str),
            "feed_flow": (rng.normal(12.5, 0.5, 2000) + shift).round(3),
            "temp": (rng.normal(80.0, 1.0, 2000) + shift).round(3),
            "pressure": rng.normal(3.0, 0.1, 2000).round(3),
        }
    )
    text_rows = list(csv.DictReader(io.StringIO(frame.to_csv(index=False))))
    assert text_rows[0]["feed_flow"] == str(frame["feed_flow"].iloc[0])  # strings on the wire
    config = {
        "setup": {"datetime_column": "timestamp"},
        "create_model": {"model": "pca"},
        "retrain": {"drift": {"window": 200}, "cooldown": 0},
    }
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(RabbitMQPlugin(**rabbitmq_config))
        hub.create_experiment(text_name, "fault_detection", config)
        history = frame.iloc[:500].assign(timestamp=pd.date_range("2023-12-01", periods=500))
        assert hub.train(text_name, data=history, wait=True).status.state == "succeeded"
        hub.start_streaming(text_name)
        sent = publish(text_rows, queue=f"{text_name}.predict", url=RABBITMQ_URL)
        results = read_results(len(sent), queue=f"{text_name}.predictions", url=RABBITMQ_URL)
        hub.stop_streaming(text_name)
        deadline = time.monotonic() + 120.0
        while hub.status(text_name)["retrain_in_flight"] and time.monotonic() < deadline:
            time.sleep(0.1)
        status = hub.status(text_name)
    assert len(results) == 2000
    assert status["counters"]["dead_letters"] == 0
    kinds = [d["kind"] for d in status["decisions"]]
    assert "fired" in kinds
    retrains = [j for j in status["jobs"] if j["kind"] == "retrain"]
    assert retrains, kinds
    assert all(j["state"] == "succeeded" for j in retrains), [j["error"] for j in retrains]
    assert "trained" in kinds
    assert status["retrain_failure"] is None
