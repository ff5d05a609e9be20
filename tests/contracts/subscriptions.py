"""What a datastream plugin that implements ``SupportsSubscribe`` does.

A plugin's test class adds :class:`SubscribeContract` beside ``DataStreamContract`` (it uses
that class's ``datastream``, ``queue`` and ``new_queue`` fixtures) only if it can subscribe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from observml.errors import ServiceUnavailableError
from observml.plugins.datastream import REASON_HEADER, DataStreamPlugin, Message, dead_letter_queue
from observml.plugins.subscriptions import Subscription, SupportsSubscribe
from tests.contracts.datastream import ConsumerCrash, consume_n, eventually

Handler = Callable[[Sequence[Message]], Mapping[int, str] | None]


class Collector:
    """A batch handler that records what it got and checks one batch at a time."""

    def __init__(self, then: Handler | None = None) -> None:
        self.batches: list[list[Message]] = []
        self.overlaps = 0
        self._busy = False
        self._lock = threading.Lock()
        self._then = then

    def __call__(self, batch: Sequence[Message]) -> Mapping[int, str] | None:
        with self._lock:
            if self._busy:
                self.overlaps += 1
            self._busy = True
        try:
            self.batches.append(list(batch))
            return self._then(batch) if self._then is not None else None
        finally:
            with self._lock:
                self._busy = False

    @property
    def messages(self) -> list[Message]:
        return [m for batch in list(self.batches) for m in batch]


class SubscribeContract:
    """Behaviour tests of ``subscribe`` against a plugin through the ``datastream`` fixture."""

    @pytest.fixture
    def executor(self) -> Iterator[ThreadPoolExecutor]:
        with ThreadPoolExecutor(4, thread_name_prefix="contract-handler") as pool:
            yield pool

    @pytest.fixture
    def subscribe(
        self, datastream: DataStreamPlugin, executor: ThreadPoolExecutor
    ) -> Iterator[Callable[..., Subscription]]:
        """``subscribe(queue, handler, **kw)``; every subscription is cancelled afterwards."""
        made: list[Subscription] = []

        def make(queue: str, handler: Handler, **kwargs: Any) -> Subscription:
            assert isinstance(datastream, SupportsSubscribe)
            subscription = datastream.subscribe(queue, handler, executor=executor, **kwargs)
            made.append(subscription)
            return subscription

        yield make
        for subscription in made:
            subscription.cancel(timeout=10)

    def test_datastream_satisfies_subscribe_protocol(self, datastream: DataStreamPlugin) -> None:
        assert isinstance(datastream, SupportsSubscribe)

    def test_subscribe_delivers_batches_and_acks(
        self, datastream: DataStreamPlugin, queue: str, subscribe: Callable[..., Subscription]
    ) -> None:
        ids = datastream.publish_batch(queue, [str(i) for i in range(25)])
        got = Collector()
        subscription = subscribe(queue, got, batch_size=10, max_wait=0.2)
        assert subscription.queue == queue
        assert subscription.active
        assert eventually(lambda: len(got.messages) == 25)
        assert [m.message_id for m in got.messages] == ids
        assert all(len(batch) <= 10 for batch in got.batches)
        assert got.overlaps == 0
        subscription.cancel()
        assert not subscription.active
        assert subscription.error is None
        assert eventually(lambda: datastream.queue_depth(queue) == 0)
        assert _left_over(datastream, queue) == []

    def test_many_subscriptions_share_threads(
        self,
        datastream: DataStreamPlugin,
        new_queue: Callable[[], str],
        subscribe: Callable[..., Subscription],
    ) -> None:
        queues = [new_queue() for _ in range(20)]
        got = {q: Collector() for q in queues}
        subscribe(queues[0], got[queues[0]], batch_size=5, max_wait=0.05)
        threads_with_one = _threads()
        for q in queues[1:]:
            subscribe(q, got[q], batch_size=5, max_wait=0.05)
        for q in queues:
            datastream.publish_batch(q, [f"{q}-{i}" for i in range(7)])
        assert eventually(lambda: all(len(c.messages) == 7 for c in got.values()))
        for q in queues:
            assert [m.text() for m in got[q].messages] == [f"{q}-{i}" for i in range(7)]
        # 19 more subscriptions add at most the executor's 4 workers, no thread per queue.
        assert _threads() <= threads_with_one + 4

    def test_subscribe_dead_letters_rejected_indices_and_failed_batches(
        self, datastream: DataStreamPlugin, queue: str, subscribe: Callable[..., Subscription]
    ) -> None:
        datastream.publish_batch(queue, ["ok", "bad", "ok", "boom"])

        def judge(batch: Sequence[Message]) -> Mapping[int, str] | None:
            if any(m.text() == "boom" for m in batch):
                raise ValueError("cannot score boom")
            return {i: "bad row" for i, m in enumerate(batch) if m.text() == "bad"}

        got = Collector(judge)
        subscribe(queue, got, batch_size=3, max_wait=0.1)
        dead = dead_letter_queue(queue)
        assert eventually(lambda: datastream.queue_depth(dead) == 2)
        reasons = {m.text(): m.headers[REASON_HEADER] for m in consume_n(datastream, dead, 2)}
        assert reasons == {"bad": "bad row", "boom": "ValueError: cannot score boom"}
        assert eventually(lambda: datastream.queue_depth(queue) == 0)

    def test_subscribe_service_unavailable_requeues_then_succeeds(
        self, datastream: DataStreamPlugin, queue: str, subscribe: Callable[..., Subscription]
    ) -> None:
        datastream.publish(queue, "payload")
        calls: list[int] = []

        def flaky(batch: Sequence[Message]) -> None:
            calls.append(len(batch))
            if len(calls) < 3:
                raise ServiceUnavailableError("store is down")

        subscribe(queue, Collector(flaky), batch_size=5, max_wait=0.05)
        assert eventually(lambda: len(calls) >= 3)
        assert eventually(lambda: datastream.queue_depth(queue) == 0)
        assert datastream.queue_depth(dead_letter_queue(queue)) == 0

    def test_oversize_body_is_dead_lettered_unread(
        self, datastream: DataStreamPlugin, queue: str, subscribe: Callable[..., Subscription]
    ) -> None:
        limit = datastream.max_message_bytes  # type: ignore[attr-defined]
        datastream.publish_batch(queue, [b"x" * (limit + 1), b"small"])
        got = Collector()
        subscribe(queue, got, batch_size=2, max_wait=0.1)
        dead = dead_letter_queue(queue)
        assert eventually(lambda: datastream.queue_depth(dead) == 1)
        assert [m.body for m in got.messages] == [b"small"]

    def test_cancel_waits_for_the_batch_in_hand_and_gives_back_the_rest(
        self, datastream: DataStreamPlugin, queue: str, subscribe: Callable[..., Subscription]
    ) -> None:
        datastream.publish_batch(queue, [str(i) for i in range(30)])
        entered, release = threading.Event(), threading.Event()

        def slow(batch: Sequence[Message]) -> None:
            entered.set()
            release.wait(10)

        got = Collector(slow)
        subscription = subscribe(queue, got, batch_size=5, max_wait=0.05, prefetch=15)
        assert entered.wait(10)
        threading.Timer(0.3, release.set).start()
        subscription.cancel(timeout=10)  # returns once the batch in hand settled
        assert not subscription.active
        assert len(got.messages) == 5
        assert eventually(lambda: datastream.queue_depth(queue) == 25)
        rest = consume_n(datastream, queue, 25)
        assert sorted(int(m.text()) for m in rest) == list(range(5, 30))
        assert not any(m.redelivered for m in rest)  # given back, not counted as a death

    def test_cancel_from_the_handler_does_not_wait_for_itself(
        self, datastream: DataStreamPlugin, queue: str, subscribe: Callable[..., Subscription]
    ) -> None:
        datastream.publish_batch(queue, ["a", "b"])
        mine: list[Subscription] = []
        returned = threading.Event()

        def stop_myself(batch: Sequence[Message]) -> None:
            mine[0].cancel(timeout=30)
            returned.set()

        mine.append(subscribe(queue, Collector(stop_myself), batch_size=1, max_wait=0.05))
        assert returned.wait(10)
        assert eventually(lambda: not mine[0].active)
        mine[0].cancel()  # idempotent

    def test_crashing_handler_ends_the_subscription_and_its_batch_comes_back(
        self, datastream: DataStreamPlugin, queue: str, subscribe: Callable[..., Subscription]
    ) -> None:
        message_id = datastream.publish(queue, "payload")

        def crash(batch: Sequence[Message]) -> None:
            raise ConsumerCrash("consumer died mid-batch")

        subscription = subscribe(queue, Collector(crash), batch_size=1, max_wait=0.05)
        assert eventually(lambda: not subscription.active)
        assert "died mid-batch" in (subscription.error or "")
        [again] = consume_n(datastream, queue, 1)
        assert again.message_id == message_id
        assert again.redelivered is True

    def test_disconnect_ends_every_subscription(
        self,
        datastream: DataStreamPlugin,
        new_queue: Callable[[], str],
        subscribe: Callable[..., Subscription],
    ) -> None:
        subscriptions = [subscribe(new_queue(), Collector(), max_wait=0.05) for _ in range(3)]
        datastream.disconnect()
        try:
            assert eventually(lambda: not any(s.active for s in subscriptions))
        finally:
            datastream.connect()

    def test_subscribe_when_disconnected_raises(
        self, datastream: DataStreamPlugin, queue: str, executor: ThreadPoolExecutor
    ) -> None:
        assert isinstance(datastream, SupportsSubscribe)
        datastream.disconnect()
        try:
            with pytest.raises(ServiceUnavailableError):
                datastream.subscribe(queue, Collector(), executor=executor)
        finally:
            datastream.connect()


def _threads() -> int:
    """Threads alive, not counting the timers of :func:`eventually`."""
    return sum(not isinstance(t, threading.Timer) for t in threading.enumerate())


def _left_over(datastream: DataStreamPlugin, queue: str) -> list[Message]:
    """What a consumer gets from ``queue`` within half a second (acked messages never come)."""
    got: list[Message] = []
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    datastream.consume(queue, got.append, stop=stop)
    return got
