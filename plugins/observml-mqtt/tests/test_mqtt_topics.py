"""Queue names as topics, plant topics as rows, and messages in MQTT 5 properties (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from observml_mqtt.properties import message_of, properties_of
from observml_mqtt.topics import TopicMapping, queue_topic, shared_filter

from observml.errors import ConfigError
from observml.plugins.datastream import OutgoingMessage


@pytest.mark.parametrize(
    ("prefix", "queue", "topic"),
    [
        pytest.param("observml", "pump.predict", "observml/pump/predict", id="prefixed"),
        pytest.param("plant/a", "pump.predict.dead", "plant/a/pump/predict/dead", id="dead"),
        pytest.param("", "pump.train", "pump/train", id="no-prefix"),
    ],
)
def test_queue_topic_splits_dots_into_levels(prefix: str, queue: str, topic: str) -> None:
    assert queue_topic(prefix, queue) == topic


@pytest.mark.parametrize("queue", ["pump.#", "pump/predict", "pump..predict", ""])
def test_queue_topic_refuses_names_that_are_no_topic(queue: str) -> None:
    with pytest.raises(ConfigError, match="cannot be an MQTT topic"):
        queue_topic("observml", queue)


def test_shared_filter_only_with_a_group() -> None:
    assert shared_filter("hubs", "observml/pump/predict") == "$share/hubs/observml/pump/predict"
    assert shared_filter(None, "observml/pump/predict") == "observml/pump/predict"


def test_topic_mapping_levels_become_columns() -> None:
    mapping = TopicMapping("plant/{unit}/{column}", "pump.predict", timestamp="at")
    received = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert mapping.topic_filter == "plant/+/+"
    assert mapping.matches("plant/pump1/temperature")
    assert not mapping.matches("plant/pump1/temperature/raw")
    assert not mapping.matches("site/pump1/temperature")
    assert mapping.row("plant/pump1/temperature", b" 21.5\n", received) == {
        "unit": "pump1",
        "temperature": 21.5,
        "at": "2026-11-30T09:00:00+00:00",
    }


@pytest.mark.parametrize("payload", [b"ON", b"NaN", b"true", b"[1, 2]", b"\xff"])
def test_topic_mapping_refuses_what_is_no_number_or_object(payload: bytes) -> None:
    mapping = TopicMapping("plant/{unit}/{column}", "pump.predict")
    with pytest.raises(ValueError, match="neither a number nor a JSON object"):
        mapping.row("plant/pump1/temperature", payload)


def test_properties_round_trip_keeps_id_type_and_typed_headers() -> None:
    out = OutgoingMessage(b"{}", {"source": "pump-7", "rows": 3, "tags": ["a"]}, "m-1", "text/x")
    message = message_of("pump.predict", b"{}", properties_of(out), redelivered=True)
    assert message.message_id == "m-1"
    assert message.content_type == "text/x"
    assert message.headers == {"source": "pump-7", "rows": 3, "tags": ["a"]}
    assert message.redelivered is True
    assert message.queue == "pump.predict"


def test_message_without_properties_has_no_id_and_no_headers() -> None:
    message = message_of("pump.predict", b"21.5", None, redelivered=False)
    assert (message.message_id, message.headers, message.content_type) == (None, {}, None)
