"""RabbitMQPlugin against the real broker: the shared contract, errors, dead letters, recovery."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from observml.errors import (
    AuthenticationError,
    ConfigError,
    DataError,
    NotFoundError,
    ServiceUnavailableError,
)
from observml.plugins.datastream import REASON_HEADER, Message, dead_letter_queue
from observml.plugins.rabbitmq_plugin import RabbitMQPlugin
from observml.plugins.subscriptions import Subscription
from tests.contracts.claims import ClaimsContract, claim_in_child, reap
from tests.contracts.datastream import (
    WAIT,
    ConsumerCrash,
    DataStreamContract,
    QueueBrowserContract,
    consume_n,
    eventually,
    in_background,
)
from tests.contracts.subscriptions import SubscribeContract
from tests.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


class TestRabbitMQ(DataStreamContract, QueueBrowserContract, SubscribeContract):
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


class TestRabbitMQClaims(ClaimsContract):
    """Two plugins (two connections) stand for two hub processes on one broker."""

    @pytest.fixture
    def datastream(self, rabbitmq_plugin: RabbitMQPlugin) -> RabbitMQPlugin:
        return rabbitmq_plugin

    @pytest.fixture
    def twin(self, rabbitmq_config: dict[str, Any]) -> Iterator[RabbitMQPlugin]:
        plugin = RabbitMQPlugin(**rabbitmq_config, retry_interval=0.1)
        plugin.initialize()
        yield plugin
        plugin.shutdown()


def test_rabbitmq_claim_of_a_killed_process_is_free_again(
    rabbitmq_plugin: RabbitMQPlugin, rabbitmq_config: dict[str, Any]
) -> None:
    code = (
        "from observml.plugins.rabbitmq_plugin import RabbitMQPlugin\n"
        f"plugin = RabbitMQPlugin(**{rabbitmq_config!r})"
    )
    key = f"test.{uuid.uuid4().hex[:12]}"
    child = claim_in_child(code, key)
    try:
        assert rabbitmq_plugin.claim(key) is None
        child.kill()
        taken: list[Any] = []

        def take() -> bool:
            claim = rabbitmq_plugin.claim(key)
            if claim is not None:
                taken.append(claim)
            return claim is not None

        assert eventually(take), "the broker deletes a dead connection's exclusive queue"
        taken[0].release()
    finally:
        reap(child)


def test_rabbitmq_claims_share_one_connection(rabbitmq_plugin: RabbitMQPlugin) -> None:
    """A hub queueing hundreds of trainings holds as many claims, not as many connections."""

    def sockets() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        return count

    before = sockets()
    claims = [rabbitmq_plugin.claim(f"test.{uuid.uuid4().hex[:12]}") for _ in range(20)]
    try:
        assert all(claim is not None for claim in claims)
        assert sockets() - before <= 3  # one connection: its TCP socket and pika's wake-up pair
    finally:
        for claim in claims:
            if claim is not None:
                claim.release()


def test_rabbitmq_claim_survives_idle_heartbeats(rabbitmq_config: dict[str, Any]) -> None:
    """A claim held longer than the heartbeat timeout stays held: the keeper answers for it."""
    holder = RabbitMQPlugin(**rabbitmq_config, heartbeat=1)
    other = RabbitMQPlugin(**rabbitmq_config)
    holder.connect()
    other.connect()
    key = f"test.{uuid.uuid4().hex[:12]}"
    try:
        claim = holder.claim(key)
        assert claim is not None
        time.sleep(4)  # the broker drops a connection after two missed heartbeats (2 s here)
        assert other.claim(key) is None
        claim.release()
        again = other.claim(key)
        assert again is not None
        again.release()
    finally:
        holder.shutdown()
        other.shutdown()


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


@pytest.fixture
def pika_channel(rabbitmq_config: dict[str, Any]) -> Iterator[Callable[[], Any]]:
    """Return a function opening a plain pika channel, as another team's producer would."""
    credentials = pika.PlainCredentials(rabbitmq_config["username"], rabbitmq_config["password"])
    parameters = pika.ConnectionParameters(
        rabbitmq_config["host"],
        rabbitmq_config["port"],
        rabbitmq_config["virtual_host"],
        credentials,
    )
    connection = pika.BlockingConnection(parameters)
    yield connection.channel
    connection.close()


def connection_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record each ``pika.BlockingConnection`` the plugin opens (or tries to)."""
    import observml.plugins._rabbitmq_connect as connect

    attempts: list[object] = []
    real = connect.pika.BlockingConnection

    class Counted:  # pika's class, counted: the plugin reaches it through its module
        def __new__(cls, parameters: object) -> object:
            attempts.append(parameters)
            return real(parameters)

    monkeypatch.setattr(connect.pika, "BlockingConnection", Counted)
    return attempts


def test_rabbitmq_wrong_password_fails_at_the_first_attempt_without_retrying(
    rabbitmq_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = RabbitMQPlugin(
        **{**rabbitmq_config, "password": "not-the-password-42", "connection_attempts": 5}
    )
    attempts = connection_attempts(monkeypatch)
    with pytest.raises(AuthenticationError, match="refused the login of user") as info:
        plugin.connect()
    assert len(attempts) == 1  # a refused login is not retried, whatever connection_attempts says
    assert "not-the-password-42" not in str(info.value)
    assert "plugins.datastream.config.username" in str(info.value)
    assert "plugins.datastream.config.password" in str(info.value)


def test_rabbitmq_unknown_virtual_host_is_an_authentication_error(
    rabbitmq_config: dict[str, Any],
) -> None:
    plugin = RabbitMQPlugin(**{**rabbitmq_config, "virtual_host": "no-such-vhost"})
    with pytest.raises(AuthenticationError, match="may not use virtual host 'no-such-vhost'"):
        plugin.connect()


def test_rabbitmq_broker_down_health_check_is_false_after_one_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = RabbitMQPlugin("127.0.0.1", free_port(), password="s3cret-pw", connection_attempts=5)
    attempts = connection_attempts(monkeypatch)
    healthy, details = plugin.health_check()
    assert len(attempts) == 1  # health probes once; connection_attempts is for connect()
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
        with pytest.raises(ConfigError, match="already exists as another type") as info:
            quorum.create_queue(name)
        assert info.value.key == "plugins.datastream.config.queue_type"
        quorum.publish(name, "the plugin still works after the channel error")
    finally:
        quorum.shutdown()


#: What a producer declares for each queue_type of the hub (docs/datastream.md says the same).
PRODUCER_ARGUMENTS = {"classic": None, "quorum": {"x-queue-type": "quorum"}}


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
@pytest.mark.parametrize("producer_first", [True, False], ids=["producer-first", "hub-first"])
def test_rabbitmq_producer_declaring_durable_queue_agrees_with_the_plugin(
    rabbitmq_config: dict[str, Any],
    pika_channel: Callable[[], Any],
    queue_names: Callable[[], str],
    queue_type: str,
    producer_first: bool,
) -> None:
    name = queue_names()
    channel = pika_channel()
    arguments = PRODUCER_ARGUMENTS[queue_type]
    plugin = RabbitMQPlugin(**rabbitmq_config, queue_type=queue_type)  # type: ignore[arg-type]
    plugin.connect()
    try:
        if producer_first:
            channel.queue_declare(name, durable=True, arguments=arguments)
        plugin.create_queue(name)
        channel.queue_declare(name, durable=True, arguments=arguments)  # 406 if they differ
        channel.basic_publish("", name, b"reading", pika.BasicProperties(delivery_mode=2))
        assert eventually(lambda: plugin.pull_data(name) == "reading")
        dead = dead_letter_queue(name)
        channel.queue_declare(dead, durable=True, arguments=arguments)
    finally:
        plugin.shutdown()


def test_rabbitmq_queue_left_with_dead_letter_arguments_is_used_as_it_is(
    rabbitmq_plugin: RabbitMQPlugin,
    pika_channel: Callable[[], Any],
    queue_names: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = queue_names()
    dead = dead_letter_queue(name)
    old_arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    pika_channel().queue_declare(name, durable=True, arguments=old_arguments)  # observml < 0.x
    with caplog.at_level(logging.WARNING, logger="observml.plugins.rabbitmq_plugin"):
        rabbitmq_plugin.create_queue(name)
        rabbitmq_plugin.create_queue(name)
        rabbitmq_plugin.publish_batch(name, ["good", "bad"])

        def handler(message: Message) -> None:
            if message.body == b"bad":
                raise ValueError("no timestamp")

        assert [m.text() for m in consume_n(rabbitmq_plugin, name, 2, handler)] == ["good", "bad"]
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("observml")]
    assert len(warnings) == 1, warnings
    assert "x-dead-letter-exchange" in warnings[0]
    assert f"rabbitmqctl delete_queue {name}" in warnings[0]
    [rejected] = consume_n(rabbitmq_plugin, dead, 1)
    assert rejected.headers[REASON_HEADER] == "ValueError: no timestamp"
    assert rabbitmq_plugin.queue_depth(name) == 0


def test_rabbitmq_queue_that_is_not_durable_raises_config_error(
    rabbitmq_plugin: RabbitMQPlugin,
    pika_channel: Callable[[], Any],
    queue_names: Callable[[], str],
) -> None:
    name = queue_names()
    pika_channel().queue_declare(name, durable=False)
    with pytest.raises(ConfigError, match="settings the hub cannot use.*durable=True"):
        rabbitmq_plugin.create_queue(name)
    with pytest.raises(ChannelClosedByBroker, match="inequivalent arg 'durable'"):
        pika_channel().queue_declare(name, durable=True)


def consume_until(
    plugin: RabbitMQPlugin,
    queue: str,
    handler: Callable[[Sequence[Message]], None],
    done: Callable[[], bool],
    **kwargs: Any,
) -> BaseException | None:
    """Consume batches until ``done()`` or the consumer ends; return what ended it, if anything."""
    stop = threading.Event()
    thread, errors = in_background(
        lambda: plugin.consume_batch(queue, handler, stop=stop, **kwargs)
    )
    eventually(lambda: done() or not thread.is_alive())
    stop.set()
    thread.join(WAIT)
    return errors[0] if errors else None


def test_rabbitmq_message_that_crashes_every_consumer_ends_in_dead_letters_alone(
    rabbitmq_config: dict[str, Any], queue_names: Callable[[], str]
) -> None:
    name = queue_names()
    dead = dead_letter_queue(name)
    plugin = RabbitMQPlugin(**rabbitmq_config, delivery_limit=3)
    plugin.connect()
    handled: list[str] = []

    def handler(batch: Sequence[Message]) -> None:
        if any(m.body == b"poison" for m in batch):
            raise ConsumerCrash("the model's native code died on this row")
        handled.extend(m.text() for m in batch)

    try:
        plugin.publish_batch(name, ["good-0", "good-1", "poison", "good-2", "good-3"])
        crashes = 0
        for _ in range(10):
            ended = consume_until(
                plugin,
                name,
                handler,
                lambda: len(handled) == 4 and plugin.queue_depth(dead) == 1,
                batch_size=5,
                max_wait=WAIT / 4,
            )
            if ended is None:
                break
            assert isinstance(ended, ConsumerCrash)
            crashes += 1
        [poison] = consume_n(plugin, dead, 1)
    finally:
        plugin.shutdown()
    assert crashes == 3
    assert sorted(handled) == ["good-0", "good-1", "good-2", "good-3"]  # each exactly once
    assert poison.body == b"poison"
    assert poison.headers[REASON_HEADER].startswith("delivered 3 times without an ack")
    assert "x-observml-redeliveries" not in poison.headers


#: A consumer process that dies (SIGKILL) on a poison message and logs the others it handled.
KILLED_CONSUMER = textwrap.dedent(
    """
    import json, os, signal, sys
    from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

    queue, log = sys.argv[1:3]
    plugin = RabbitMQPlugin(**json.loads(os.environ["OBSERVML_TEST_CONFIG"]), delivery_limit=2)
    plugin.connect()
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def handler(message):
        if message.body == b"poison":
            os.kill(os.getpid(), signal.SIGKILL)
        os.write(out, message.body + b"\\n")

    plugin.consume(queue, handler, prefetch=1)  # holds only the message in hand
    """
)


def test_rabbitmq_message_that_kills_the_consumer_process_ends_in_dead_letters(
    rabbitmq_plugin: RabbitMQPlugin,
    rabbitmq_config: dict[str, Any],
    queue_names: Callable[[], str],
    tmp_path: Path,
) -> None:
    name = queue_names()
    dead = dead_letter_queue(name)
    log = tmp_path / "handled.log"
    env = {**os.environ, "OBSERVML_TEST_CONFIG": json.dumps(rabbitmq_config)}
    rabbitmq_plugin.publish_batch(name, ["good-0", "poison", "good-1", "good-2"])

    def finished() -> bool:
        lines = log.read_text().splitlines() if log.exists() else []
        return len(lines) == 3 and rabbitmq_plugin.queue_depth(dead) == 1

    def run_consumer_process() -> int:
        child = subprocess.Popen([sys.executable, "-c", KILLED_CONSUMER, name, str(log)], env=env)
        try:
            eventually(lambda: finished() or child.poll() is not None, WAIT * 2)
        finally:
            if child.poll() is None:
                child.terminate()
            child.wait(WAIT)
        return child.returncode

    kills = 0
    for _ in range(6):
        if run_consumer_process() == -signal.SIGKILL:
            kills += 1
        if finished():
            break
    assert kills == 2
    assert sorted(log.read_text().splitlines()) == ["good-0", "good-1", "good-2"]
    [poison] = consume_n(rabbitmq_plugin, dead, 1)
    assert poison.headers[REASON_HEADER].startswith("delivered 2 times without an ack")


def test_rabbitmq_requeues_and_clean_stops_do_not_count_towards_delivery_limit(
    rabbitmq_config: dict[str, Any], queue_names: Callable[[], str]
) -> None:
    name = queue_names()
    plugin = RabbitMQPlugin(**rabbitmq_config, delivery_limit=1)
    plugin.connect()
    try:
        plugin.publish_batch(name, [f"m{i}" for i in range(5)])
        firsts = [consume_n(plugin, name, 1, prefetch=10)[0] for _ in range(3)]  # 3 clean stops
        calls: list[str] = []

        def flaky(batch: Sequence[Message]) -> None:
            calls.append(batch[0].text())
            if len(calls) <= 3:
                raise ServiceUnavailableError("tracking server down")

        consume_until(plugin, name, flaky, lambda: len(calls) == 3 + 2, batch_size=1)
        assert eventually(lambda: plugin.queue_depth(name) == 0)
        dead_depth = plugin.queue_depth(dead_letter_queue(name))
    finally:
        plugin.shutdown()
    assert sorted([m.text() for m in firsts] + calls[3:]) == [f"m{i}" for i in range(5)]
    assert dead_depth == 0


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


def connections_named(rabbitmqctl: Callable[..., str], *fragments: str) -> list[str]:
    """Return the broker's ids of the connections whose client name contains every fragment."""
    found = []
    for line in rabbitmqctl("list_connections", "pid", "client_properties", "-q").splitlines():
        pid, _, properties = line.partition("\t")
        name = properties.partition('{"connection_name","')[2].partition('"}')[0]
        if pid.startswith("<") and name and all(f in name for f in fragments):
            found.append(pid)
    return found


def close_connections_named(rabbitmqctl: Callable[..., str], *fragments: str) -> int:
    """Make the broker close the connections whose client name contains every fragment."""
    pids = connections_named(rabbitmqctl, *fragments)
    for pid in pids:
        rabbitmqctl("close_connection", pid, "observml test: connection lost")
    return len(pids)


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
        # All 400 were handled; what may be left are copies of handled messages whose ack died
        # with the connection and that came back after the last new one (at least once).
        left = plugin.queue_depth(name)
        leftovers = consume_n(plugin, name, left) if left else []
        assert {str(m.message_id) for m in leftovers} <= {i for i, _ in seen}
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


# -- subscriptions: one connection, a channel per queue --------------------------------------
@pytest.fixture
def handler_pool() -> Iterator[ThreadPoolExecutor]:
    """The subscriber's executor, its 4 workers started, so thread counts compare exactly."""
    with ThreadPoolExecutor(4, thread_name_prefix="test-handler") as pool:
        barrier = threading.Barrier(4)
        for future in [pool.submit(barrier.wait, WAIT) for _ in range(4)]:
            future.result()
        yield pool


def threads() -> int:
    """Threads alive, not counting the timers of :func:`eventually`."""
    return sum(not isinstance(t, threading.Timer) for t in threading.enumerate())


def handled_ids(seen: list[Message]) -> set[str]:
    return {str(m.message_id) for m in list(seen)}


def test_rabbitmq_subscriptions_share_one_connection_and_one_thread(
    rabbitmq_plugin: RabbitMQPlugin,
    rabbitmqctl: Callable[..., str],
    queue_names: Callable[[], str],
    handler_pool: ThreadPoolExecutor,
) -> None:
    """100 subscriptions: one connection on the broker, one thread more, every message handled."""
    queues = [queue_names() for _ in range(100)]
    seen: dict[str, list[Message]] = {q: [] for q in queues}
    threads_before = threads()
    subscriptions = [
        rabbitmq_plugin.subscribe(
            q, seen[q].extend, executor=handler_pool, batch_size=5, max_wait=0.05, prefetch=10
        )
        for q in queues
    ]
    try:
        ids = {q: rabbitmq_plugin.publish_batch(q, [f"{q}-{i}" for i in range(10)]) for q in queues}
        assert eventually(lambda: all(len(seen[q]) >= 10 for q in queues))
        for q in queues:
            assert [m.message_id for m in seen[q]] == ids[q]  # each once, in queue order
        subscriber = connections_named(rabbitmqctl, "observml subscriber", rabbitmq_plugin._tag)
        assert len(subscriber) == 1
        assert threads() - threads_before == 1  # the subscriber's I/O thread
        assert all(s.active and s.error is None for s in subscriptions)
    finally:
        for subscription in subscriptions:
            subscription.cancel()
    assert eventually(lambda: threads() == threads_before)
    # the thread closes the connection before it ends, after the last subscription ended
    assert connections_named(rabbitmqctl, "observml subscriber", rabbitmq_plugin._tag) == []
    assert all(rabbitmq_plugin.queue_depth(q) == 0 for q in queues)


def test_rabbitmq_subscription_the_broker_refuses_ends_alone(
    rabbitmq_plugin: RabbitMQPlugin,
    pika_channel: Callable[[], Any],
    queue_names: Callable[[], str],
    handler_pool: ThreadPoolExecutor,
) -> None:
    locked, free = queue_names(), queue_names()
    rabbitmq_plugin.create_queue(locked)
    pika_channel().basic_consume(locked, lambda *args: None, exclusive=True)  # another service
    got: list[Message] = []
    served = rabbitmq_plugin.subscribe(free, got.extend, executor=handler_pool, max_wait=0.05)
    refused = rabbitmq_plugin.subscribe(locked, got.extend, executor=handler_pool, max_wait=0.05)
    try:
        assert eventually(lambda: not refused.active)
        assert "ACCESS_REFUSED" in (refused.error or "")
        assert "another consumer holds the queue exclusively" in (refused.error or "")
        rabbitmq_plugin.publish(free, "still served")
        assert eventually(lambda: [m.text() for m in got] == ["still served"])
        assert served.active
        assert served.error is None
    finally:
        served.cancel()


def test_rabbitmq_crashed_subscription_ends_alone(
    rabbitmq_plugin: RabbitMQPlugin,
    queue_names: Callable[[], str],
    handler_pool: ThreadPoolExecutor,
) -> None:
    doomed, other = queue_names(), queue_names()

    def crash(batch: Sequence[Message]) -> None:
        raise ConsumerCrash("the model's native code died")

    got: list[Message] = []
    crashed = rabbitmq_plugin.subscribe(doomed, crash, executor=handler_pool, max_wait=0.05)
    served = rabbitmq_plugin.subscribe(other, got.extend, executor=handler_pool, max_wait=0.05)
    try:
        rabbitmq_plugin.publish_batch(doomed, ["poison", "next"])
        assert eventually(lambda: not crashed.active)
        assert "native code died" in (crashed.error or "")
        rabbitmq_plugin.publish(other, "still served")
        assert eventually(lambda: [m.text() for m in got] == ["still served"])
        assert served.active
    finally:
        served.cancel()
    back = consume_n(rabbitmq_plugin, doomed, 2)
    assert sorted((m.text(), m.redelivered) for m in back) == [("next", True), ("poison", True)]


def test_rabbitmq_subscription_declares_its_deleted_queue_again(
    rabbitmq_plugin: RabbitMQPlugin,
    pika_channel: Callable[[], Any],
    queue_names: Callable[[], str],
    handler_pool: ThreadPoolExecutor,
) -> None:
    name = queue_names()
    got: list[Message] = []
    subscription = rabbitmq_plugin.subscribe(name, got.extend, executor=handler_pool, max_wait=0.05)
    try:
        rabbitmq_plugin.publish(name, "before")
        assert eventually(lambda: len(got) == 1)
        pika_channel().queue_delete(name)  # the broker cancels the subscription's consumer

        def published() -> bool:
            try:
                rabbitmq_plugin.publish(name, "after")
            except NotFoundError:  # not declared again yet
                return False
            return True

        assert eventually(published)
        assert eventually(lambda: [m.text() for m in got] == ["before", "after"])
        assert subscription.active
        assert subscription.error is None
    finally:
        subscription.cancel()


def assert_at_least_once(seen: Sequence[Message], published: set[str]) -> None:
    """Every published id was handled; an id handled again was flagged redelivered."""
    first: set[str] = set()
    for message in seen:
        message_id = str(message.message_id)
        assert message_id not in first or message.redelivered, f"{message_id} duplicated"
        first.add(message_id)
    assert first == published


@pytest.mark.slow
def test_rabbitmq_subscriptions_ride_out_a_broker_restart(
    rabbitmq_config: dict[str, Any],
    broker_control: Callable[[], None],
    queue_names: Callable[[], str],
    handler_pool: ThreadPoolExecutor,
) -> None:
    plugin = RabbitMQPlugin(**rabbitmq_config, retry_interval=0.2, retry_interval_max=1.0)
    plugin.connect()
    queues = [queue_names() for _ in range(5)]
    seen: dict[str, list[Message]] = {q: [] for q in queues}

    def handler(queue: str) -> Callable[[Sequence[Message]], None]:
        def handle(batch: Sequence[Message]) -> None:
            threading.Event().wait(0.02)  # slow enough that the restart comes mid-stream
            seen[queue].extend(batch)

        return handle

    subscriptions: list[Subscription] = []
    try:
        subscriptions = [
            plugin.subscribe(
                q, handler(q), executor=handler_pool, batch_size=10, max_wait=0.05, prefetch=50
            )
            for q in queues
        ]
        ids = {q: set(plugin.publish_batch(q, [f"{q}-{i}" for i in range(2000)])) for q in queues}
        assert eventually(lambda: sum(map(len, seen.values())) >= 500)
        restart, errors = in_background(broker_control)
        assert eventually(
            lambda: all((s.error or "").startswith("reconnecting: ") for s in subscriptions)
        )
        restart.join(120)
        assert not errors, errors
        assert eventually(lambda: all(handled_ids(seen[q]) == ids[q] for q in queues), 120)
        assert all(s.active and s.error is None for s in subscriptions)
        after = {q: plugin.publish(q, f"{q}-after") for q in queues}  # still subscribed
        assert eventually(lambda: all(after[q] in handled_ids(seen[q]) for q in queues))
        assert eventually(lambda: all(plugin.queue_depth(q) == 0 for q in queues))
        assert all(plugin.queue_depth(dead_letter_queue(q)) == 0 for q in queues)
    finally:
        for subscription in subscriptions:
            subscription.cancel()
        plugin.shutdown()
    for q in queues:
        assert_at_least_once(seen[q], ids[q] | {after[q]})
    assert any(m.redelivered for q in queues for m in seen[q])  # the batches in hand came back


@pytest.mark.slow
def test_rabbitmq_subscriptions_end_when_the_broker_stays_away(
    rabbitmq_config: dict[str, Any],
    rabbitmqctl: Callable[..., str],
    queue_names: Callable[[], str],
    handler_pool: ThreadPoolExecutor,
) -> None:
    plugin = RabbitMQPlugin(
        **rabbitmq_config, retry_interval=0.1, retry_interval_max=0.5, reconnect_timeout=1.0
    )
    plugin.connect()
    subscriptions = [
        plugin.subscribe(queue_names(), lambda batch: None, executor=handler_pool) for _ in range(2)
    ]
    try:
        rabbitmqctl("stop_app")
        assert eventually(lambda: not any(s.active for s in subscriptions))
        for subscription in subscriptions:
            assert "is unreachable after" in (subscription.error or "")
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
        plugin.shutdown()


def test_rabbitmq_subscription_never_acks_an_old_batch_on_the_new_connection(
    rabbitmq_config: dict[str, Any],
    rabbitmqctl: Callable[..., str],
    queue_names: Callable[[], str],
    handler_pool: ThreadPoolExecutor,
) -> None:
    """A batch in hand when the connection drops settles later: its tags mean nothing now.

    Acked on the new connection, tag 1 would ack another message, or twice, which makes the
    broker close the channel (406 unknown delivery tag) and end the subscription.
    """
    name = queue_names()
    plugin = RabbitMQPlugin(**rabbitmq_config, retry_interval=0.1)
    plugin.connect()
    seen: list[Message] = []
    entered, release = threading.Event(), threading.Event()

    def handler(batch: Sequence[Message]) -> None:
        seen.extend(batch)
        entered.set()
        release.wait(WAIT)

    try:
        plugin.publish_batch(name, ["a", "b", "c"])
        subscription = plugin.subscribe(
            name, handler, executor=handler_pool, batch_size=1, max_wait=0.05
        )
        assert entered.wait(WAIT)
        [old] = connections_named(rabbitmqctl, "observml subscriber", plugin._tag)
        rabbitmqctl("close_connection", old, "observml test: connection lost")
        assert eventually(
            lambda: (
                connections_named(rabbitmqctl, "observml subscriber", plugin._tag)
                not in ([], [old])
            )
        )
        release.set()  # the old batch settles now, on the new connection's watch
        assert eventually(lambda: len(seen) == 4)
        plugin.publish(name, "d")
        assert eventually(lambda: len(seen) == 5)
        assert subscription.active
        assert subscription.error is None
        assert eventually(lambda: plugin.queue_depth(name) == 0)
        subscription.cancel()
    finally:
        release.set()
        plugin.shutdown()
    assert [(m.text(), m.redelivered) for m in seen] == [
        ("a", False),  # in hand when the connection dropped
        ("a", True),
        ("b", True),
        ("c", True),
        ("d", False),
    ]


@pytest.fixture
def small_max_message_size(rabbitmqctl: Callable[..., str]) -> Iterator[int]:
    """The broker's ``max_message_size`` lowered to 64 KiB for new channels, restored after."""
    before = rabbitmqctl("eval", "application:get_env(rabbit, max_message_size).").strip()
    limit = 64 * 1024
    rabbitmqctl("eval", f"application:set_env(rabbit, max_message_size, {limit}).")
    try:
        yield limit
    finally:
        if before.startswith("{ok,"):  # "{ok,134217728}"
            value = before.removeprefix("{ok,").removesuffix("}")
            rabbitmqctl("eval", f"application:set_env(rabbit, max_message_size, {value}).")
        else:
            rabbitmqctl("eval", "application:unset_env(rabbit, max_message_size).")


def test_rabbitmq_publish_over_the_broker_max_message_size_raises_and_the_plugin_goes_on(
    rabbitmq_config: dict[str, Any],
    small_max_message_size: int,
    queue_names: Callable[[], str],
) -> None:
    """The broker closes the confirm channel (406): the plugin raises instead of waiting forever
    for confirms, names the limit and what to do, and its next publish works."""
    name = queue_names()
    plugin = RabbitMQPlugin(**rabbitmq_config)  # channels opened after the limit was lowered
    plugin.connect()
    try:
        too_big = "x" * (small_max_message_size * 2)
        with pytest.raises(DataError, match="larger than configured max size") as info:
            plugin.publish_batch(name, ["small", too_big])
        assert "raise max_message_size in rabbitmq.conf" in str(info.value)
        plugin.publish(name, "after")
        bodies = [m.body for m in plugin.browse(name, 10)]
        assert b"after" in bodies
        assert too_big.encode() not in bodies
    finally:
        plugin.disconnect()
