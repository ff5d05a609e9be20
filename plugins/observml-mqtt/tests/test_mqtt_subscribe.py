"""What MQTT adds to the subscribe contract: flat threads for many queues, broker restarts."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from mqtt_broker import Mosquitto
from observml_mqtt import MQTTPlugin
from tests.contracts.datastream import eventually

from conftest import unique_settings
from observml.errors import ServiceUnavailableError
from observml.plugins.datastream import Message

pytestmark = [pytest.mark.integration]

WORKERS = 4


def threads() -> int:
    """Threads alive, not counting the timers of :func:`eventually`."""
    return sum(not isinstance(t, threading.Timer) for t in threading.enumerate())


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    """A pool whose workers all exist already, so they do not count as the plugin's threads."""
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="test-handler") as pool:
        barrier = threading.Barrier(WORKERS)
        for _ in range(WORKERS):
            pool.submit(barrier.wait, 10)
        yield pool


class Recorder:
    """A batch handler that keeps every message it got, per thread-safe list append."""

    def __init__(self) -> None:
        self.got: list[Message] = []

    def __call__(self, batch: Sequence[Message]) -> None:
        self.got.extend(batch)

    def texts(self) -> list[str]:
        return [m.text() for m in list(self.got)]


def test_fifty_subscriptions_add_one_thread_and_every_message_is_handled_and_acked(
    make_plugin: Callable[..., MQTTPlugin], executor: ThreadPoolExecutor
) -> None:
    plugin = make_plugin()
    queues = [f"pump{i}.predict" for i in range(50)]
    before = threads()
    got = {q: Recorder() for q in queues}
    subscriptions = [plugin.subscribe(q, got[q], executor=executor, max_wait=0.05) for q in queues]
    # 50 queues are 100 sessions (each queue's and its dead letters'), each its own connection,
    # all driven by the plugin's one driver thread: the only thread they add.
    assert threads() == before + 1
    for q in queues:
        plugin.publish_batch(q, [f"{q}-{i}" for i in range(5)])
    assert eventually(lambda: all(len(r.got) == 5 for r in got.values()), 60)
    for q in queues:
        assert got[q].texts() == [f"{q}-{i}" for i in range(5)]
    assert threads() == before + 1
    assert all(s.active and s.error is None for s in subscriptions)
    for subscription in subscriptions:
        subscription.cancel(timeout=10)
    assert not any(s.active for s in subscriptions)
    # Acked: nothing comes back to this hub's sessions.
    assert all(plugin.queue_depth(q) == 0 for q in queues[:5])


def test_subscription_rides_out_a_broker_restart_and_loses_nothing(
    broker: Mosquitto, executor: ThreadPoolExecutor
) -> None:
    settings = unique_settings(port=broker.port, host="127.0.0.1")
    consumer = MQTTPlugin(**settings)
    producer = MQTTPlugin(**{**settings, "client_id": settings["client_id"] + "-producer"})
    consumer.connect()
    producer.connect()
    got = Recorder()
    try:
        subscription = consumer.subscribe("pump.predict", got, executor=executor, max_wait=0.05)
        producer.publish_batch("pump.predict", [f"before-{i}" for i in range(20)])
        assert eventually(lambda: len(got.got) >= 20)
        broker.halt(signal.SIGTERM)
        assert eventually(lambda: (subscription.error or "").startswith("reconnecting: "))
        assert subscription.active
        broker.start()
        assert eventually(lambda: subscription.error is None)
        producer.publish_batch("pump.predict", [f"after-{i}" for i in range(20)])
        expected = {f"{p}-{i}" for p in ("before", "after") for i in range(20)}
        assert eventually(lambda: set(got.texts()) >= expected)
        assert subscription.active
        subscription.cancel(timeout=10)
        assert subscription.error is None
        assert set(got.texts()) == expected
        assert consumer.queue_depth("pump.predict") == 0  # every message acked
    finally:
        consumer.shutdown()
        producer.shutdown()


def test_subscription_ends_when_the_broker_stays_away(
    broker: Mosquitto, executor: ThreadPoolExecutor
) -> None:
    plugin = MQTTPlugin(
        **unique_settings(port=broker.port, host="127.0.0.1", reconnect_timeout=1.0)
    )
    plugin.connect()
    try:
        subscription = plugin.subscribe("pump.predict", Recorder(), executor=executor)
        broker.halt(signal.SIGTERM)
        assert eventually(lambda: not subscription.active)
        assert "unreachable" in (subscription.error or "")
        assert "reconnect_timeout" in (subscription.error or "")
    finally:
        plugin.shutdown()


def test_subscribing_a_queue_being_consumed_is_refused(
    make_plugin: Callable[..., MQTTPlugin], executor: ThreadPoolExecutor
) -> None:
    plugin = make_plugin()
    plugin.subscribe("pump.predict", Recorder(), executor=executor)
    with pytest.raises(ServiceUnavailableError, match="being consumed by this plugin already"):
        plugin.subscribe("pump.predict", Recorder(), executor=executor)
    with pytest.raises(ServiceUnavailableError, match="being consumed by this plugin already"):
        plugin.consume("pump.predict", lambda m: None)
