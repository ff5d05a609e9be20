"""What MQTT adds to the contract: login, TLS, broker restarts, share groups, plant topics."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import Mosquitto
from observml_mqtt import MQTTPlugin
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tests.contracts.datastream import WAIT, ConsumerCrash, consume_n, eventually, in_background
from tests.services import free_port

from conftest import unique_settings
from observml import PluginRegistry
from observml.config import PluginSection
from observml.config.registry import build_plugin
from observml.errors import AuthenticationError, ConfigError, ServiceUnavailableError
from observml.plugins.datastream import REASON_HEADER, Message, dead_letter_queue

pytestmark = [pytest.mark.integration]


def raw_publish(port: int, topic: str, payload: bytes, props: Properties | None = None) -> None:
    """Publish like a plant gateway does: plain paho, QoS 1, no observml."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, properties=props).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto that only lets ``hub`` / ``s3cret`` in."""
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "hub", "s3cret"], check=True)
    own = Mosquitto(tmp_path / "secured", f"password_file {passwords}\n")
    own.config.write_text(own.config.read_text().replace("allow_anonymous true", ""))
    own.start()
    yield own
    own.halt()


# -- configuration --------------------------------------------------------------------------
def test_mqtt_built_from_config_section_by_entry_point_name() -> None:
    section = PluginSection("datastream", "mqtt", {"host": "broker", "port": 1884})
    plugin = build_plugin(PluginRegistry(), section)
    assert isinstance(plugin, MQTTPlugin)
    assert (plugin.host, plugin.port) == ("broker", 1884)


def test_mqtt_unknown_setting_is_a_config_error_naming_it() -> None:
    section = PluginSection("datastream", "mqtt", {"hots": "broker"})
    with pytest.raises(ConfigError, match="hots"):
        build_plugin(PluginRegistry(), section)


def test_mqtt_queue_name_with_wildcard_is_a_config_error(mqtt_plugin: MQTTPlugin) -> None:
    with pytest.raises(ConfigError, match=r"cannot be an MQTT topic.*pump\.predict"):
        mqtt_plugin.create_queue("pump.+")


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        pytest.param({"topic": "plant/+/x", "queue": "q"}, "without '\\+'", id="wildcard"),
        pytest.param({"topic": "plant/pump/x", "queue": "q"}, "levels in braces", id="no-names"),
        pytest.param({"queue": "q"}, "expected a mapping with 'topic'", id="no-topic"),
        pytest.param({"topic": "a/{b}", "queue": "q", "qos": 1}, "unknown key", id="unknown"),
    ],
)
def test_mqtt_bad_topic_columns_name_the_entry(entry: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        MQTTPlugin(topic_columns=[entry])
    assert "topic_columns[0]" in str(info.value)


# -- connecting -----------------------------------------------------------------------------
def test_mqtt_wrong_password_fails_at_once_without_retries(
    secured: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = MQTTPlugin(
        port=secured.port, username="hub", password="wrong-pw", connection_attempts=50
    )
    with caplog.at_level(logging.WARNING), pytest.raises(AuthenticationError) as info:
        plugin.connect()
    assert "username and password" in str(info.value)
    assert "wrong-pw" not in str(info.value)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    healthy, details = plugin.health_check()
    assert not healthy
    assert "login refused" in details["message"]
    assert "wrong-pw" not in repr(details)


def test_mqtt_right_password_connects_and_round_trips(secured: Mosquitto) -> None:
    plugin = MQTTPlugin(port=secured.port, username="hub", password="s3cret", **unique_settings())
    plugin.connect()
    try:
        plugin.publish("pump.predict", "kept")
        assert plugin.pull_data("pump.predict") == "kept"
        healthy, details = plugin.health_check()
        assert healthy, details
        assert details["latency_ms"] >= 0
    finally:
        plugin.shutdown()


def test_mqtt_unreachable_broker_is_service_unavailable_after_attempts() -> None:
    plugin = MQTTPlugin(port=free_port(), connection_attempts=2, retry_interval=0.05)
    with pytest.raises(ServiceUnavailableError, match="after 2 attempt"):
        plugin.connect()
    healthy, details = plugin.health_check()
    assert not healthy
    assert details["status"] == "error"


# paho leaks the socket of a failed TLS handshake (its ResourceWarning surfaces as unraisable)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_mqtt_tls_with_a_ca_connects(tmp_path: Path) -> None:
    cert, key = tmp_path / "broker.crt", tmp_path / "broker.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    own = Mosquitto(tmp_path / "tls", f"certfile {cert}\nkeyfile {key}\n")
    own.start()
    try:
        plugin = MQTTPlugin(
            host="127.0.0.1", port=own.port, tls=True, ca_certs=str(cert), **unique_settings()
        )
        plugin.connect()
        plugin.publish("pump.predict", "over tls")
        assert plugin.pull_data("pump.predict") == "over tls"
        assert plugin.health_check()[0]
        plugin.shutdown()
        untrusted = MQTTPlugin(port=own.port, tls=True, connection_attempts=1)
        with pytest.raises(ServiceUnavailableError, match="SSL|certificate"):
            untrusted.connect()  # the broker's certificate is not signed by a known CA
    finally:
        own.halt()


# -- sessions survive the hub and the broker ------------------------------------------------
def test_mqtt_messages_published_while_the_hub_is_away_wait_for_it(
    make_plugin: Callable[..., MQTTPlugin],
) -> None:
    settings = unique_settings()
    hub = make_plugin(**settings)
    hub.create_queue("pump.predict")
    hub.disconnect()
    producer = make_plugin(topic_prefix=settings["topic_prefix"])
    producer.publish_batch("pump.predict", ["a", "b", "c"])
    hub.connect()
    got = consume_n(hub, "pump.predict", 3)
    assert [m.text() for m in got] == ["a", "b", "c"]


def test_mqtt_consumer_survives_broker_restart(broker: Mosquitto) -> None:
    settings = unique_settings(port=broker.port, host="127.0.0.1")
    consumer = MQTTPlugin(**settings)
    producer = MQTTPlugin(**{**settings, "client_id": settings["client_id"] + "-producer"})
    consumer.connect()
    producer.connect()
    consumer.create_queue("pump.predict")
    seen: list[Message] = []
    stop = threading.Event()
    thread, errors = in_background(lambda: consumer.consume("pump.predict", seen.append, stop=stop))
    try:
        producer.publish_batch("pump.predict", [f"before-{i}" for i in range(20)])
        assert eventually(lambda: len(seen) >= 20)
        broker.halt(signal.SIGTERM)
        broker.start()
        producer.publish_batch("pump.predict", [f"after-{i}" for i in range(20)])
        assert eventually(lambda: {m.text() for m in seen} >= {f"after-{i}" for i in range(20)})
    finally:
        stop.set()
        thread.join(WAIT)
        consumer.shutdown()
        producer.shutdown()
    assert errors == []
    texts = [m.text() for m in seen]
    assert set(texts) == {f"{p}-{i}" for p in ("before", "after") for i in range(20)}


def test_mqtt_hubs_in_one_share_group_compete(make_plugin: Callable[..., MQTTPlugin]) -> None:
    settings = unique_settings(share_group="hubs")
    first = make_plugin(**settings)
    second = make_plugin(**{**settings, "client_id": settings["client_id"] + "-b"})
    first.create_queue("pump.predict")
    second.create_queue("pump.predict")
    assert first.queue_depth("pump.predict") == 0
    first.publish_batch("pump.predict", [str(i) for i in range(40)])
    got: dict[str, list[str]] = {"first": [], "second": []}
    stop = threading.Event()
    threads = [
        in_background(
            lambda p=plugin, k=key: p.consume(  # type: ignore[misc]
                "pump.predict", lambda m: got[k].append(m.text()), stop=stop
            )
        )[0]
        for key, plugin in (("first", first), ("second", second))
    ]
    assert eventually(lambda: len(got["first"]) + len(got["second"]) >= 40)
    stop.set()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(got["first"] + got["second"], key=int) == [str(i) for i in range(40)]
    assert got["first"], "the first hub took no share"
    assert got["second"], "the second hub took no share"


# -- consume settles on paho's network thread ----------------------------------------------
def test_mqtt_consume_requeue_comes_back_redelivered_before_later_messages(
    mqtt_plugin: MQTTPlugin,
) -> None:
    mqtt_plugin.create_queue("pump.predict")
    mqtt_plugin.publish_batch("pump.predict", [f"m{i}" for i in range(20)])
    refused: list[str] = []

    def handler(message: Message) -> None:
        if message.text() == "m5" and not refused:
            refused.append(message.text())
            raise ServiceUnavailableError("the model server is down")

    got = consume_n(mqtt_plugin, "pump.predict", 21, handler)
    assert [m.text() for m in got] == [f"m{i}" for i in (*range(6), *range(5, 20))]
    assert [i for i, m in enumerate(got) if m.redelivered] == [6]
    assert eventually(lambda: mqtt_plugin.queue_depth("pump.predict") == 0)
    assert mqtt_plugin.queue_depth(dead_letter_queue("pump.predict")) == 0


def test_mqtt_consume_crash_mid_stream_resumes_at_the_crashed_message_in_order(
    make_plugin: Callable[..., MQTTPlugin],
) -> None:
    hub = make_plugin(prefetch=5)  # later messages arrive while earlier ones still wait
    hub.create_queue("pump.predict")
    hub.publish_batch("pump.predict", [f"m{i}" for i in range(50)])

    def crash_at_m3(message: Message) -> None:
        if message.text() == "m3":
            raise ConsumerCrash("consumer died mid-message")

    with pytest.raises(ConsumerCrash, match="died mid-message"):
        consume_n(hub, "pump.predict", 50, crash_at_m3)
    rest = consume_n(hub, "pump.predict", 47)
    assert [m.text() for m in rest] == [f"m{i}" for i in range(3, 50)]
    assert rest[0].redelivered is True
    assert eventually(lambda: hub.queue_depth("pump.predict") == 0)


# -- plant topics and foreign producers -----------------------------------------------------
def test_mqtt_plain_numbers_on_plant_topics_become_rows(
    make_plugin: Callable[..., MQTTPlugin], mqtt_config: dict[str, Any]
) -> None:
    plant = f"plant-{uuid.uuid4().hex[:8]}"
    hub = make_plugin(
        topic_columns=[{"topic": f"{plant}/{{unit}}/{{column}}", "queue": "pump.predict"}]
    )
    hub.create_queue("pump.predict")
    raw_publish(mqtt_config["port"], f"{plant}/pump1/temperature", b"ON")
    raw_publish(mqtt_config["port"], f"{plant}/pump1/temperature", b"21.5")
    raw_publish(mqtt_config["port"], f"{plant}/pump2/pressure", b'{"pressure": 3.2, "ok": 1}')
    got = consume_n(hub, "pump.predict", 2)
    assert [json.loads(m.body) for m in got] == [
        [{"unit": "pump1", "temperature": 21.5}],
        [{"unit": "pump2", "pressure": 3.2, "ok": 1}],
    ]
    assert got[0].headers["mqtt-topic"] == f"{plant}/pump1/temperature"
    dead = dead_letter_queue("pump.predict")
    assert eventually(lambda: hub.queue_depth(dead) == 1)
    [rejected] = consume_n(hub, dead, 1)
    assert rejected.body == b"ON"
    assert rejected.headers[REASON_HEADER].startswith("TopicMappingError: topic")


def test_mqtt_foreign_producer_correlation_data_is_the_message_id(
    mqtt_plugin: MQTTPlugin, mqtt_config: dict[str, Any]
) -> None:
    mqtt_plugin.create_queue("pump.predict")
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = b"gateway-42"
    props.UserProperty = [("site", "north")]
    props.ContentType = "application/json"
    topic = f"{mqtt_plugin.topic_prefix}/pump/predict"
    raw_publish(mqtt_config["port"], topic, b'[{"x": 1}]', props)
    [message] = consume_n(mqtt_plugin, "pump.predict", 1)
    assert message.message_id == "gateway-42"
    assert message.headers == {"site": "north"}
    assert message.content_type == "application/json"


def test_mqtt_concurrent_publishes_each_get_their_own_pubacks(
    make_plugin: Callable[..., MQTTPlugin],
) -> None:
    """Handlers on a pool publish at once: none may take another's PUBACKs and wait it out."""
    plugin = make_plugin(publish_timeout=5.0)
    plugin.create_queue("pump.predictions")
    failures: list[BaseException] = []

    def publish_many(worker: int) -> None:
        try:
            for n in range(30):
                plugin.publish_batch("pump.predictions", [f"{worker}-{n}-{i}" for i in range(3)])
        except BaseException as exc:  # collected: a lost PUBACK fails after publish_timeout
            failures.append(exc)

    workers = [threading.Thread(target=publish_many, args=(w,)) for w in range(6)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(WAIT)
    assert failures == []
    assert not any(thread.is_alive() for thread in workers)
