"""RabbitMQPlugin against the real broker: the shared contract, errors, dead letters, recovery."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from observml.errors import AuthenticationError, ConfigError, ServiceUnavailableError
from observml.plugins.datastream import REASON_HEADER, Message, dead_letter_queue
from observml.plugins.rabbitmq_plugin import RabbitMQPlugin
from tests.contracts.datastream import WAIT, DataStreamContract, consume_n, eventually
from tests.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


class TestRabbitMQ(DataStreamContract):
    @pytest.fixture
    def datastream(self, rabbitmq_plugin: RabbitMQPlugin) -> RabbitMQPlugin:
        return rabbitmq_plugin

    @pytest.fixture(autouse=True)
    def _drop(self, rabbitmq_drop_queues: Callable[[list[str]], None]) -> None:
        self._dropper = rabbitmq_drop_queues

    def drop_queues(self, datastream: Any, names: list[str]) -> None:
        self._dropper(names)


class TestRabbitMQQuorum(TestRabbitMQ):
    @pytest.fixture
    def datastream(self, rabbitmq_config: dict[str, Any]) -> Iterator[RabbitMQPlugin]:
        plugin = RabbitMQPlugin(**rabbitmq_config, queue_type="quorum", retry_interval=0.1)
        plugin.initialize()
        yield plugin
        plugin.shutdown()


@pytest.fixture
def queue_names(
    rabbitmq_drop_queues: Callable[[list[str]], None],
) -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        names.append(f"observml.test.{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    dead = [dead_letter_queue(name) for name in names]
    rabbitmq_drop_queues([*names, *dead, *map(dead_letter_queue, dead)])


def test_rabbitmq_wrong_password_fails_within_5s_without_retrying(
    rabbitmq_config: dict[str, Any],
) -> None:
    plugin = RabbitMQPlugin(**{**rabbitmq_config, "password": "not-the-password-42"})
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="refused the login of user") as info:
        plugin.connect()
    assert time.monotonic() - started < 5
    assert "not-the-password-42" not in str(info.value)
    assert "username and password" in str(info.value)


def test_rabbitmq_unknown_virtual_host_is_an_authentication_error(
    rabbitmq_config: dict[str, Any],
) -> None:
    plugin = RabbitMQPlugin(**{**rabbitmq_config, "virtual_host": "no-such-vhost"})
    with pytest.raises(AuthenticationError, match="may not use virtual host 'no-such-vhost'"):
        plugin.connect()


def test_rabbitmq_broker_down_health_check_false_within_5s() -> None:
    plugin = RabbitMQPlugin("127.0.0.1", free_port(), password="s3cret-pw")
    started = time.monotonic()
    healthy, details = plugin.health_check()
    assert time.monotonic() - started < 5
    assert healthy is False
    assert details["status"] == "error"
    assert "is the broker running?" in details["message"]
    assert "s3cret-pw" not in repr(details)


def test_rabbitmq_broker_down_connect_names_host_and_port_after_bounded_retries() -> None:
    port = free_port()
    plugin = RabbitMQPlugin("127.0.0.1", port, connection_attempts=3, retry_interval=0.01)
    with pytest.raises(ServiceUnavailableError, match=rf"127.0.0.1:{port} is unreachable after 3"):
        plugin.connect()


def test_rabbitmq_health_check_before_connect_probes_the_broker(
    rabbitmq_config: dict[str, Any],
) -> None:
    healthy, details = RabbitMQPlugin(**rabbitmq_config).health_check()
    assert healthy, details
    assert details["status"] == "reachable"


def test_rabbitmq_connect_unknown_setting_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'prefech'.*prefetch"):
        RabbitMQPlugin().connect(prefech=10)


def test_rabbitmq_queue_declared_with_other_type_raises_config_error(
    rabbitmq_plugin: RabbitMQPlugin,
    rabbitmq_config: dict[str, Any],
    queue_names: Callable[[], str],
) -> None:
    name = queue_names()
    rabbitmq_plugin.create_queue(name)  # classic
    quorum = RabbitMQPlugin(**rabbitmq_config, queue_type="quorum")
    quorum.connect()
    try:
        with pytest.raises(ConfigError, match="already exists with other settings") as info:
            quorum.create_queue(name)
        assert info.value.key == "plugins.datastream.config.queue_type"
        quorum.publish(name, "the plugin still works after the channel error")
    finally:
        quorum.shutdown()


def test_rabbitmq_quorum_queues_have_type_and_delivery_limit(
    rabbitmq_config: dict[str, Any],
    rabbitmqctl: Callable[..., str],
    queue_names: Callable[[], str],
) -> None:
    name = queue_names()
    plugin = RabbitMQPlugin(**rabbitmq_config, queue_type="quorum", delivery_limit=7)
    plugin.connect()
    try:
        plugin.create_queue(name)
    finally:
        plugin.shutdown()
    listing = rabbitmqctl("list_queues", "name", "type", "durable", "arguments", "-q")
    rows = {line.split("\t")[0]: line for line in listing.splitlines()}
    assert "quorum" in rows[name]
    assert "x-delivery-limit" in rows[name]
    assert "7" in rows[name]
    assert "quorum" in rows[dead_letter_queue(name)]


def test_rabbitmq_publish_batch_confirms_every_message_with_many_in_flight(
    rabbitmq_config: dict[str, Any], queue_names: Callable[[], str]
) -> None:
    name = queue_names()
    plugin = RabbitMQPlugin(**rabbitmq_config, confirm_window=64)
    plugin.connect()
    try:
        ids = plugin.publish_batch(name, [f"{i:05d}" for i in range(5000)])
        assert len(set(ids)) == 5000
        assert plugin.queue_depth(name) == 5000
    finally:
        plugin.shutdown()


def test_rabbitmq_one_percent_malformed_end_in_dead_letters_with_reason(
    rabbitmq_plugin: RabbitMQPlugin, queue_names: Callable[[], str]
) -> None:
    name = queue_names()
    rabbitmq_plugin.create_queue(name)
    bodies = [
        "{not json" if i % 100 == 42 else json.dumps({"i": i, "temp": 20.5}) for i in range(3000)
    ]
    ids = rabbitmq_plugin.publish_batch(name, bodies)
    bad = {message_id for message_id, body in zip(ids, bodies, strict=True) if body[1] == "n"}
    processed: list[str] = []

    def handler(message: Message) -> None:
        json.loads(message.body)
        processed.append(str(message.message_id))

    consume_n(rabbitmq_plugin, name, 3000, handler)
    dead = dead_letter_queue(name)
    assert eventually(lambda: rabbitmq_plugin.queue_depth(dead) == 30)
    dead_letters = consume_n(rabbitmq_plugin, dead, 30)
    assert sorted(processed) == sorted(set(ids) - bad)
    assert {m.message_id for m in dead_letters} == bad
    assert all(m.headers[REASON_HEADER].startswith("JSONDecodeError") for m in dead_letters)
    assert rabbitmq_plugin.queue_depth(name) == 0


def test_rabbitmq_long_handler_keeps_heartbeats_and_acks_once(
    rabbitmq_config: dict[str, Any], queue_names: Callable[[], str]
) -> None:
    name = queue_names()
    plugin = RabbitMQPlugin(**rabbitmq_config, heartbeat=1)
    plugin.connect()
    try:
        plugin.publish(name, "slow", message_id="slow-1")

        def slow(message: Message) -> None:
            threading.Event().wait(4.0)  # 4 heartbeat intervals on the worker thread

        deliveries = consume_n(plugin, name, 1, slow)
        assert [(m.message_id, m.redelivered) for m in deliveries] == [("slow-1", False)]
        assert plugin.pull_data(name) == ""  # acked: closing the consumer returned nothing
    finally:
        plugin.shutdown()


def close_connections_named(rabbitmqctl: Callable[..., str], *fragments: str) -> int:
    """Make the broker close the connections whose client name contains every fragment."""
    closed = 0
    for line in rabbitmqctl("list_connections", "pid", "client_properties", "-q").splitlines():
        pid, _, properties = line.partition("\t")
        name = properties.partition('{"connection_name","')[2].partition('"}')[0]
        if pid.startswith("<") and name and all(f in name for f in fragments):
            rabbitmqctl("close_connection", pid, "observml test: connection lost")
            closed += 1
    return closed


def test_rabbitmq_main_connection_closed_by_broker_is_reopened_transparently(
    rabbitmq_plugin: RabbitMQPlugin,
    rabbitmqctl: Callable[..., str],
    queue_names: Callable[[], str],
) -> None:
    name = queue_names()
    rabbitmq_plugin.publish(name, "before")
    assert close_connections_named(rabbitmqctl, "observml main", rabbitmq_plugin._tag) == 1
    rabbitmq_plugin.publish(name, "after")
    assert rabbitmq_plugin.queue_depth(name) == 2


def test_rabbitmq_consumer_resumes_after_broker_closes_its_connection(
    rabbitmq_config: dict[str, Any],
    rabbitmqctl: Callable[..., str],
    queue_names: Callable[[], str],
) -> None:
    name = queue_names()
    plugin = RabbitMQPlugin(**rabbitmq_config, retry_interval=0.1)
    plugin.connect()
    seen: list[tuple[str, bool]] = []
    closed = threading.Event()
    stop = threading.Event()
    try:
        ids = plugin.publish_batch(name, [str(i) for i in range(400)])

        def handler(message: Message) -> None:
            seen.append((str(message.message_id), message.redelivered))
            if len(seen) == 100:  # the broker drops the connection while this one is in hand
                if close_connections_named(rabbitmqctl, "observml consumer", name):
                    closed.set()
            if len({i for i, _ in seen}) == len(ids):
                stop.set()

        safety = threading.Timer(WAIT * 3, stop.set)
        safety.start()
        try:
            plugin.consume(name, handler, prefetch=50, stop=stop)
        finally:
            safety.cancel()
        assert eventually(lambda: plugin.queue_depth(name) == 0)
    finally:
        plugin.shutdown()
    assert closed.is_set()
    first_seen: set[str] = set()
    for message_id, redelivered in seen:
        assert message_id not in first_seen or redelivered, f"{message_id} duplicated"
        first_seen.add(message_id)
    assert first_seen == set(ids)
    assert any(redelivered for _, redelivered in seen)
