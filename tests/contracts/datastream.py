"""The behaviour every DataStream plugin shares (kombu's ``BasicFunctionality`` pattern).

A plugin's test module subclasses :class:`DataStreamContract` (and :class:`QueueBrowserContract`
if the plugin can browse queues) and provides a ``datastream`` fixture yielding a connected
plugin. Queue names are unique per test; a subclass that must
clean up queues on a shared service overrides :meth:`DataStreamContract.drop_queues`.
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from observml.errors import DataError, ServiceUnavailableError
from observml.plugins.browse import browse_queue
from observml.plugins.datastream import (
    MAX_MESSAGE_BYTES,
    REASON_HEADER,
    DataStreamPlugin,
    Message,
    OutgoingMessage,
    dead_letter_queue,
)

#: Upper bound for a background consumer to finish; a safety net, not a timing assertion.
WAIT = 20.0


class ConsumerCrash(BaseException):
    """Stands for a consumer dying mid-message: not an ``Exception``, so not dead-lettered."""


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if predicate():
                return True
            done.wait(0.02)
        return predicate()
    finally:
        deadline.cancel()


def consume_n(
    datastream: DataStreamPlugin,
    queue: str,
    count: int,
    handler: Callable[[Message], None] | None = None,
    **kwargs: Any,
) -> list[Message]:
    """Consume until ``count`` deliveries were handled (or ``WAIT`` passed); return them."""
    got: list[Message] = []
    stop = threading.Event()

    def handle(message: Message) -> None:
        got.append(message)
        if len(got) >= count:
            stop.set()
        if handler is not None:
            handler(message)

    safety = threading.Timer(WAIT, stop.set)
    safety.start()
    try:
        datastream.consume(queue, handle, stop=stop, **kwargs)
    finally:
        safety.cancel()
    return got


def consume_batches(
    datastream: DataStreamPlugin,
    queue: str,
    count: int,
    handler: Callable[[Sequence[Message]], Mapping[int, str] | None],
    **kwargs: Any,
) -> list[list[Message]]:
    """Consume micro-batches until ``count`` deliveries were handled; return the batches."""
    batches: list[list[Message]] = []
    stop = threading.Event()

    def handle(batch: Sequence[Message]) -> Mapping[int, str] | None:
        batches.append(list(batch))
        if sum(map(len, batches)) >= count:
            stop.set()
        return handler(batch)

    safety = threading.Timer(WAIT, stop.set)
    safety.start()
    try:
        datastream.consume_batch(queue, handle, stop=stop, **kwargs)
    finally:
        safety.cancel()
    return batches


def in_background(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``target`` in a daemon thread; errors it raised are collected in the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


class DataStreamContract:
    """Behaviour tests run against every DataStream plugin through a ``datastream`` fixture."""

    def drop_queues(self, datastream: DataStreamPlugin, names: list[str]) -> None:
        """Delete queues a test created; plugins backed by a shared service override this."""

    @pytest.fixture
    def new_queue(self, datastream: DataStreamPlugin) -> Iterator[Callable[[], str]]:
        """Return a factory of unique queue names (not created); dropped after the test."""
        names: list[str] = []

        def make() -> str:
            name = f"observml.test.{uuid.uuid4().hex[:12]}"
            names.append(name)
            return name

        yield make
        # Consuming q.dead declares q.dead.dead (every queue gets a dead-letter queue).
        dead = [dead_letter_queue(name) for name in names]
        self.drop_queues(datastream, [*names, *dead, *map(dead_letter_queue, dead)])

    @pytest.fixture
    def queue(self, datastream: DataStreamPlugin, new_queue: Callable[[], str]) -> str:
        """A created, empty queue with a unique name."""
        name = new_queue()
        datastream.create_queue(name)
        return name

    # -- shape and health -----------------------------------------------------------------
    def test_datastream_satisfies_protocol(self, datastream: DataStreamPlugin) -> None:
        assert isinstance(datastream, DataStreamPlugin)
        assert datastream.plugin_type == "datastream"

    def test_health_check_connected_is_healthy_without_secrets(
        self, datastream: DataStreamPlugin
    ) -> None:
        healthy, details = datastream.health_check()
        assert healthy, details
        assert details["status"] == "connected"
        password = getattr(datastream, "password", None)
        if password:
            assert password not in repr(details)

    # -- publish and consume --------------------------------------------------------------
    def test_publish_consume_round_trip_keeps_body_headers_and_id(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        returned = datastream.publish(
            queue,
            b'{"x": 1}',
            headers={"source": "pump-7", "rows": 3},
            message_id="msg-1",
            content_type="application/json",
        )
        [message] = consume_n(datastream, queue, 1)
        assert returned == "msg-1"
        assert message.body == b'{"x": 1}'
        assert message.headers["source"] == "pump-7"
        assert message.headers["rows"] == 3
        assert message.message_id == "msg-1"
        assert message.content_type == "application/json"
        assert message.queue == queue
        assert message.redelivered is False

    def test_publish_without_id_generates_unique_ids(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        first = datastream.publish(queue, "a")
        second = datastream.publish(queue, "b")
        messages = consume_n(datastream, queue, 2)
        assert first != second
        assert [m.message_id for m in messages] == [first, second]
        assert [m.text() for m in messages] == ["a", "b"]

    def test_publish_batch_returns_ids_in_order_and_keeps_order(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        items: list[OutgoingMessage | bytes | str] = [
            OutgoingMessage(b"0", {"i": 0}, "id-0"),
            b"1",
            "2",
            *(f"{i}" for i in range(3, 50)),
        ]
        ids = datastream.publish_batch(queue, items)
        messages = consume_n(datastream, queue, 50)
        assert len(ids) == len(set(ids)) == 50
        assert ids[0] == "id-0"
        assert [m.message_id for m in messages] == ids
        assert [m.text() for m in messages] == [str(i) for i in range(50)]

    def test_publish_batch_empty_returns_no_ids(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        assert datastream.publish_batch(queue, []) == []
        assert datastream.queue_depth(queue) == 0

    def test_publish_to_new_queue_creates_it(
        self, datastream: DataStreamPlugin, new_queue: Callable[[], str]
    ) -> None:
        name = new_queue()
        datastream.publish(name, "kept")
        assert datastream.queue_depth(name) == 1
        assert datastream.pull_data(name) == "kept"

    def test_create_queue_is_idempotent(self, datastream: DataStreamPlugin, queue: str) -> None:
        datastream.publish(queue, "kept")
        datastream.create_queue(queue)
        assert datastream.queue_depth(queue) == 1
        assert datastream.queue_depth(dead_letter_queue(queue)) == 0

    # -- acks after the handler -----------------------------------------------------------
    def test_consume_handler_error_dead_letters_with_reason(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish_batch(queue, ["good-1", "bad", "good-2"])

        def handler(message: Message) -> None:
            if message.body == b"bad":
                raise ValueError("row 2 has no timestamp")

        handled = consume_n(datastream, queue, 3, handler)
        assert [m.text() for m in handled] == ["good-1", "bad", "good-2"]
        assert eventually(lambda: datastream.queue_depth(dead_letter_queue(queue)) == 1)
        assert datastream.queue_depth(queue) == 0
        [dead] = consume_n(datastream, dead_letter_queue(queue), 1)
        assert dead.body == b"bad"
        assert dead.message_id == handled[1].message_id
        assert dead.headers[REASON_HEADER] == "ValueError: row 2 has no timestamp"

    def test_max_message_bytes_defaults_to_16_mib(self, datastream: DataStreamPlugin) -> None:
        parameter = inspect.signature(type(datastream)).parameters["max_message_bytes"]
        assert parameter.default == MAX_MESSAGE_BYTES == 16 * 1024 * 1024

    def test_oversize_message_is_dead_lettered_unread(
        self, datastream: DataStreamPlugin, queue: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(datastream, "max_message_bytes", 1000)
        datastream.publish(queue, "small-1")
        datastream.publish(queue, b"{" * 1001, message_id="big-1")
        datastream.publish(queue, "small-2")
        handled = consume_n(datastream, queue, 2)
        assert [m.text() for m in handled] == ["small-1", "small-2"]  # the big one never was
        assert eventually(lambda: datastream.queue_depth(dead_letter_queue(queue)) == 1)
        monkeypatch.setattr(datastream, "max_message_bytes", 0)  # 0: no limit, to read it back
        [dead] = consume_n(datastream, dead_letter_queue(queue), 1)
        assert (dead.message_id, len(dead.body)) == ("big-1", 1001)
        assert dead.headers[REASON_HEADER].startswith(
            "PayloadTooLargeError: message big-1: the body has 1001 bytes, over"
            " max_message_bytes (1000)"
        )

    def test_consume_crash_before_ack_redelivers(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        message_id = datastream.publish(queue, "payload")

        def crash(message: Message) -> None:
            raise ConsumerCrash("consumer died mid-message")

        with pytest.raises(ConsumerCrash, match="died mid-message"):
            consume_n(datastream, queue, 1, crash)
        [again] = consume_n(datastream, queue, 1)
        assert again.message_id == message_id
        assert again.redelivered is True
        assert eventually(lambda: datastream.queue_depth(queue) == 0)
        assert datastream.queue_depth(dead_letter_queue(queue)) == 0

    def test_consume_stop_leaves_unhandled_messages_queued(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish_batch(queue, [str(i) for i in range(10)])
        handled = consume_n(datastream, queue, 3, prefetch=5)
        assert [m.text() for m in handled] == ["0", "1", "2"]
        assert eventually(lambda: datastream.queue_depth(queue) == 7)
        rest = consume_n(datastream, queue, 7)
        assert sorted(m.text() for m in rest) == [str(i) for i in range(3, 10)]

    def test_consume_returns_when_stop_is_set(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        stop = threading.Event()
        thread, errors = in_background(
            lambda: datastream.consume(queue, lambda message: None, stop=stop)
        )
        stop.set()
        thread.join(WAIT)
        assert not thread.is_alive()
        assert errors == []

    def test_consume_returns_on_disconnect(self, datastream: DataStreamPlugin, queue: str) -> None:
        started = threading.Event()
        datastream.publish(queue, "first")
        thread, errors = in_background(
            lambda: datastream.consume(queue, lambda message: started.set())
        )
        assert started.wait(WAIT)
        datastream.disconnect()
        thread.join(WAIT)
        assert not thread.is_alive()
        assert errors == []
        datastream.connect()
        assert datastream.queue_depth(queue) == 0

    def test_operations_after_disconnect_raise_until_connect(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.disconnect()
        with pytest.raises(ServiceUnavailableError, match=r"connect\(\)"):
            datastream.publish(queue, "lost?")
        with pytest.raises(ServiceUnavailableError, match=r"connect\(\)"):
            datastream.consume(queue, lambda message: None)
        datastream.connect()
        datastream.publish(queue, "kept")
        assert datastream.pull_data(queue) == "kept"

    # -- micro-batches ---------------------------------------------------------------------
    def test_consume_batch_groups_up_to_batch_size(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish_batch(queue, [str(i) for i in range(7)])
        batches = consume_batches(datastream, queue, 7, lambda batch: None, batch_size=3)
        assert all(1 <= len(batch) <= 3 for batch in batches)
        assert [m.text() for batch in batches for m in batch] == [str(i) for i in range(7)]
        assert eventually(lambda: datastream.queue_depth(queue) == 0)

    def test_consume_batch_dead_letters_only_rejected_indices(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish_batch(queue, [f"row-{i}" for i in range(5)])

        def reject_bad(batch: Sequence[Message]) -> Mapping[int, str]:
            return {i: "value out of range" for i, m in enumerate(batch) if m.body == b"row-3"}

        batches = consume_batches(datastream, queue, 5, reject_bad, batch_size=5, max_wait=WAIT / 4)
        assert [len(b) for b in batches] == [5]
        dead = dead_letter_queue(queue)
        assert eventually(lambda: datastream.queue_depth(dead) == 1)
        assert datastream.queue_depth(queue) == 0
        [rejected] = consume_n(datastream, dead, 1)
        assert rejected.body == b"row-3"
        assert rejected.headers[REASON_HEADER] == "value out of range"

    def test_consume_batch_error_dead_letters_the_whole_batch(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish_batch(queue, ["a", "b"])

        def fail(batch: Sequence[Message]) -> None:
            raise KeyError("column 'temp'")

        consume_batches(datastream, queue, 2, fail, batch_size=2, max_wait=WAIT / 4)
        dead = dead_letter_queue(queue)
        assert eventually(lambda: datastream.queue_depth(dead) == 2)
        reasons = {m.headers[REASON_HEADER] for m in consume_n(datastream, dead, 2)}
        assert reasons == {"KeyError: \"column 'temp'\""}

    def test_consume_batch_service_unavailable_requeues(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish(queue, "retry me")
        calls: list[bool] = []

        def flaky(batch: Sequence[Message]) -> None:
            calls.append(batch[0].redelivered)
            if len(calls) == 1:
                raise ServiceUnavailableError("tracking server down")

        consume_batches(datastream, queue, 2, flaky, batch_size=1)
        assert calls == [False, True]
        assert eventually(lambda: datastream.queue_depth(queue) == 0)
        assert datastream.queue_depth(dead_letter_queue(queue)) == 0

    # -- the spec's pull / flush / depth ---------------------------------------------------
    def test_pull_data_empty_queue_returns_empty_string(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        assert datastream.pull_data(queue) == ""

    def test_pull_data_unknown_queue_returns_empty_string(
        self, datastream: DataStreamPlugin, new_queue: Callable[[], str]
    ) -> None:
        assert datastream.pull_data(new_queue()) == ""

    def test_pull_data_takes_one_message_in_order(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish_batch(queue, ["first", "second"])
        assert datastream.pull_data(queue) == "first"
        assert datastream.queue_depth(queue) == 1
        assert datastream.pull_data(queue) == "second"
        assert datastream.pull_data(queue) == ""

    def test_pull_data_binary_body_goes_to_dead_letters(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish(queue, b"\xff\xfe binary", message_id="bin-1")
        with pytest.raises(DataError, match="not UTF-8 text"):
            datastream.pull_data(queue)
        assert datastream.queue_depth(queue) == 0
        [dead] = consume_n(datastream, dead_letter_queue(queue), 1)
        assert dead.message_id == "bin-1"
        assert dead.headers[REASON_HEADER].startswith("UnicodeDecodeError")

    def test_pull_data_oversize_body_goes_to_dead_letters_unread(
        self, datastream: DataStreamPlugin, queue: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(datastream, "max_message_bytes", 1000)
        datastream.publish(queue, b"{" * 1001, message_id="big-1")
        datastream.publish(queue, "small")
        with pytest.raises(DataError, match=r"queue .*: PayloadTooLargeError: message big-1"):
            datastream.pull_data(queue)
        assert datastream.pull_data(queue) == "small"
        monkeypatch.setattr(datastream, "max_message_bytes", 0)  # 0: no limit, to read it back
        [dead] = consume_n(datastream, dead_letter_queue(queue), 1)
        assert (dead.message_id, len(dead.body)) == ("big-1", 1001)
        assert dead.headers[REASON_HEADER].startswith("PayloadTooLargeError: message big-1")

    def test_flush_queue_returns_removed_count(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish_batch(queue, ["a", "b", "c"])
        assert datastream.flush_queue(queue) == 3
        assert datastream.queue_depth(queue) == 0
        assert datastream.flush_queue(queue) == 0

    def test_queue_depth_counts_ready_messages(
        self, datastream: DataStreamPlugin, queue: str, new_queue: Callable[[], str]
    ) -> None:
        assert datastream.queue_depth(queue) == 0
        datastream.publish_batch(queue, ["a", "b"])
        assert datastream.queue_depth(queue) == 2
        assert datastream.queue_depth(new_queue()) == 0


class QueueBrowserContract:
    """What a datastream that also implements :class:`~observml.plugins.browse.QueueBrowser` does.

    Browsing is optional (a broker such as MQTT cannot show messages without taking them), so a
    plugin's test class adds this beside :class:`DataStreamContract` only if it can browse. It
    uses the same ``datastream`` and ``queue`` fixtures.
    """

    def test_browse_shows_oldest_first_and_leaves_messages(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        ids = datastream.publish_batch(queue, ["a", "b", "c"])
        seen = browse_queue(datastream, queue, 2)
        assert [(m.text(), m.message_id) for m in seen] == [("a", ids[0]), ("b", ids[1])]
        assert eventually(lambda: datastream.queue_depth(queue) == 3)
        again = browse_queue(datastream, queue, 10)
        assert sorted(m.text() for m in again) == ["a", "b", "c"]  # nothing lost
        taken = consume_n(datastream, queue, 3)
        assert sorted(m.text() for m in taken) == ["a", "b", "c"]

    def test_browse_dead_letters_shows_their_reason(
        self, datastream: DataStreamPlugin, queue: str
    ) -> None:
        datastream.publish(queue, "bad", message_id="bad-1")

        def handler(message: Message) -> None:
            raise ValueError("missing column 'feed_flow'")

        consume_n(datastream, queue, 1, handler)
        dead = dead_letter_queue(queue)
        assert eventually(lambda: datastream.queue_depth(dead) == 1)
        [seen] = browse_queue(datastream, dead, 5)
        assert seen.message_id == "bad-1"
        assert seen.headers[REASON_HEADER] == "ValueError: missing column 'feed_flow'"
        assert eventually(lambda: datastream.queue_depth(dead) == 1)

    def test_browse_unknown_or_empty_queue_is_empty(
        self, datastream: DataStreamPlugin, queue: str, new_queue: Callable[[], str]
    ) -> None:
        assert browse_queue(datastream, queue, 5) == []
        assert browse_queue(datastream, new_queue(), 5) == []
