"""The hub streams over MQTT: results keep the input's message id; bad rows are dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from observml_mqtt import MQTTPlugin
from tests.contracts.datastream import consume_n, eventually

from observml import ExperimentHub, InMemoryMLOpsPlugin
from observml.io.messages import SOURCE_ID_HEADER
from observml.plugins.datastream import REASON_HEADER, OutgoingMessage, dead_letter_queue

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COLUMNS = ["temperature", "pressure"]


def test_hub_streams_over_mqtt_keeping_message_ids(
    make_plugin: Callable[..., MQTTPlugin],
) -> None:
    hub_stream = make_plugin()
    settings = {"topic_prefix": hub_stream.topic_prefix}
    rng = np.random.default_rng(0)
    history = pd.DataFrame(rng.normal(0, 1, (300, len(COLUMNS))), columns=COLUMNS)
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(hub_stream)
        hub.create_experiment(
            "pump",
            "fault_detection",
            {"create_model": {"model": "iforest", "params": {"n_estimators": 20}}},
        )
        job = hub.train("pump", data=history, wait=True)
        assert job.status.state == "succeeded", job.status.error
        reader = make_plugin(**settings)  # another client: its own session of the results
        reader.create_queue("pump.predictions")
        hub.start_streaming("pump")
        producer = make_plugin(**settings)
        rows = [{"temperature": 0.1 * i, "pressure": 1.0} for i in range(5)]
        producer.publish_batch(
            "pump.predict",
            [OutgoingMessage(json.dumps([row]), message_id=f"in-{i}") for i, row in enumerate(rows)]
            + [OutgoingMessage(b'[{"temperature": ', message_id="broken")],
        )
        results = consume_n(reader, "pump.predictions", 5)
        dead = dead_letter_queue("pump.predict")
        assert eventually(lambda: hub_stream.queue_depth(dead) == 1)
        [rejected] = consume_n(hub_stream, dead, 1)
        hub.stop_streaming("pump")
    assert sorted(m.message_id or "" for m in results) == [f"in-{i}.result" for i in range(5)]
    assert sorted(m.headers[SOURCE_ID_HEADER] for m in results) == [f"in-{i}" for i in range(5)]
    assert all(json.loads(m.body)["rows"] for m in results)
    assert rejected.message_id == "broken"
    assert rejected.headers[REASON_HEADER]
