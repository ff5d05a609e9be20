"""The embedded ``local`` queue: the shared contract, and its guarantees across processes."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from observml.errors import ConfigError
from observml.plugins.datastream import REASON_HEADER, Message, dead_letter_queue
from observml.plugins.local import FILE_NAME, LocalQueuePlugin
from observml.plugins.subscriptions import Subscription
from tests.contracts.claims import ClaimsContract, claim_in_child, reap
from tests.contracts.datastream import (
    WAIT,
    DataStreamContract,
    QueueBrowserContract,
    consume_n,
    eventually,
)
from tests.contracts.subscriptions import SubscribeContract

#: A consumer in another process: it records each message id it takes, then sleeps or acks.
CONSUMER = textwrap.dedent(
    """
    import sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from observml.plugins.local import LocalQueuePlugin

    folder, queue, visibility, log, mode, api = sys.argv[1:7]
    plugin = LocalQueuePlugin(folder, visibility_timeout=float(visibility), poll_interval=0.01)
    plugin.connect()

    def handler(message):
        with open(log, "a") as out:
            out.write(f"{message.message_id} {int(message.redelivered)}\\n")
        if mode == "hang":
            time.sleep(600)

    if api == "consume":
        plugin.consume(queue, handler, prefetch=5)
    else:
        pool = ThreadPoolExecutor(2)
        batch_handler = lambda batch: [handler(m) for m in batch] and None
        plugin.subscribe(queue, batch_handler, executor=pool, batch_size=1, max_wait=0.01)
        threading.Event().wait()
    """
)
#: Both ways a process takes messages from a queue.
APIS = [pytest.param("consume", id="consume"), pytest.param("subscribe", id="subscribe")]


class TestLocalQueue(DataStreamContract, QueueBrowserContract, SubscribeContract):
    @pytest.fixture
    def datastream(self, tmp_path: Path) -> Iterator[LocalQueuePlugin]:
        plugin = LocalQueuePlugin(str(tmp_path / "queues"), visibility_timeout=5.0)
        plugin.poll_interval = 0.01
        plugin.initialize()
        yield plugin
        plugin.shutdown()


class TestLocalQueueClaims(ClaimsContract):
    """Two plugins on one folder stand for two hub processes on one machine."""

    @pytest.fixture
    def datastream(self, tmp_path: Path) -> Iterator[LocalQueuePlugin]:
        plugin = LocalQueuePlugin(str(tmp_path / "queues"))
        plugin.connect()
        yield plugin
        plugin.shutdown()

    @pytest.fixture
    def twin(self, tmp_path: Path) -> Iterator[LocalQueuePlugin]:
        plugin = LocalQueuePlugin(str(tmp_path / "queues"))
        plugin.connect()
        yield plugin
        plugin.shutdown()


def test_local_queue_claim_of_a_killed_process_is_free_again(tmp_path: Path) -> None:
    folder = tmp_path / "queues"
    code = (
        "from observml.plugins.local import LocalQueuePlugin\n"
        f"plugin = LocalQueuePlugin({str(folder)!r})"
    )
    child = claim_in_child(code, "train.pump")
    plugin = LocalQueuePlugin(str(folder))
    plugin.connect()
    try:
        assert plugin.claim("train.pump") is None
        assert "pid" in (folder / "claims" / "train.pump.lock").read_text()
        child.kill()
        child.wait(10)
        claim = plugin.claim("train.pump")
        assert claim is not None, "the kernel gives a dead process's lock up"
        claim.release()
    finally:
        reap(child)
        plugin.shutdown()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "shared-queues"


@pytest.fixture
def plugin(folder: Path) -> Iterator[LocalQueuePlugin]:
    local = LocalQueuePlugin(str(folder), visibility_timeout=1.0, poll_interval=0.01)
    local.connect()
    yield local
    local.shutdown()


def start_consumer(
    folder: Path, queue: str, log: Path, mode: str, api: str = "consume"
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", CONSUMER, str(folder), queue, "0.5", str(log), mode, api]
    return subprocess.Popen(args)


def logged(log: Path) -> list[tuple[str, bool]]:
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [(line.split()[0], line.split()[1] == "1") for line in lines if line.count(" ") == 1]


def test_local_queue_default_file_is_under_observml_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSERVML_HOME", str(tmp_path / "home"))
    plugin = LocalQueuePlugin()
    plugin.connect()
    plugin.publish("q", "kept")
    plugin.shutdown()
    assert plugin.file == tmp_path / "home" / "queues" / FILE_NAME
    assert plugin.file.exists()


def test_local_queue_messages_survive_reopening(plugin: LocalQueuePlugin, folder: Path) -> None:
    plugin.publish("q", "durable", message_id="m-1")
    plugin.shutdown()
    reopened = LocalQueuePlugin(str(folder))
    reopened.connect()
    assert reopened.pull_data("q") == "durable"
    reopened.shutdown()


def test_local_queue_unwritable_folder_raises_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    plugin = LocalQueuePlugin(str(blocker / "queues"))
    with pytest.raises(ConfigError, match="cannot open the queue file") as info:
        plugin.connect()
    assert info.value.key == "plugins.datastream.config.path"


def test_local_queue_connect_unknown_setting_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'visibility'.*visibility_timeout"):
        LocalQueuePlugin().connect(visibility=3)


def test_local_queue_health_check_reports_file_and_queues(plugin: LocalQueuePlugin) -> None:
    plugin.create_queue("q")
    healthy, details = plugin.health_check()
    assert healthy
    assert details["queues"] == 2  # q and q.dead
    assert details["path"] == str(plugin.file)
    plugin.shutdown()
    assert plugin.health_check()[0] is False


def test_local_queue_long_handler_keeps_its_lease(plugin: LocalQueuePlugin) -> None:
    plugin.publish("q", "slow", message_id="slow-1")
    seen_meanwhile: list[str] = []

    def slow(message: Message) -> None:
        # 3x the visibility timeout: the lease keeper must renew the lease meanwhile.
        threading.Event().wait(3.0)
        seen_meanwhile.append(plugin.pull_data("q"))

    deliveries = consume_n(plugin, "q", 1, slow)
    assert [m.message_id for m in deliveries] == ["slow-1"]
    assert seen_meanwhile == [""]
    assert plugin.queue_depth("q") == 0


def test_local_queue_delivery_limit_dead_letters_a_poison_message(folder: Path) -> None:
    plugin = LocalQueuePlugin(str(folder), max_deliveries=2, poll_interval=0.01)
    plugin.connect()
    plugin.publish("q", "poison", message_id="p-1")

    def crash(message: Message) -> None:
        raise KeyboardInterrupt

    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            consume_n(plugin, "q", 1, crash)
    assert plugin.pull_data("q") == ""
    [dead] = consume_n(plugin, dead_letter_queue("q"), 1)
    assert dead.message_id == "p-1"
    assert "delivered 2 times without an ack" in dead.headers[REASON_HEADER]
    plugin.shutdown()


@pytest.mark.parametrize("api", APIS)
def test_local_queue_killed_consumer_process_message_comes_back_redelivered(
    plugin: LocalQueuePlugin, folder: Path, tmp_path: Path, api: str
) -> None:
    plugin.create_queue("jobs")
    message_id = plugin.publish("jobs", "work", message_id="job-1")
    log = tmp_path / "taken.log"
    child = start_consumer(folder, "jobs", log, "hang", api)
    try:
        assert eventually(lambda: logged(log) == [("job-1", False)], timeout=WAIT * 2)
        # The child is alive and renews its lease: nobody else may take the message.
        threading.Event().wait(1.5)
        assert plugin.queue_depth("jobs") == 0
        assert plugin.pull_data("jobs") == ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
    [again] = consume_n(plugin, "jobs", 1)
    assert again.message_id == message_id
    assert again.redelivered is True
    assert again.body == b"work"


@pytest.mark.parametrize("api", APIS)
def test_local_queue_competing_processes_share_work_without_duplicates(
    plugin: LocalQueuePlugin, folder: Path, tmp_path: Path, api: str
) -> None:
    plugin.create_queue("work")
    ids = plugin.publish_batch("work", [f"item-{i}" for i in range(300)])
    logs = [tmp_path / f"consumer-{n}.log" for n in range(2)]
    children = [start_consumer(folder, "work", log, "ack", api) for log in logs]
    try:
        assert eventually(
            lambda: (
                sum(len(logged(log)) for log in logs) >= 300 and plugin.queue_depth("work") == 0
            ),
            timeout=WAIT * 3,
        )
    finally:
        for child in children:
            child.terminate()
            child.wait(WAIT)
    seen = [message_id for log in logs for message_id, _ in logged(log)]
    assert sorted(seen) == sorted(ids)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4, thread_name_prefix="test-handler") as executor:
        yield executor


def queue_file_fds(plugin: LocalQueuePlugin) -> int:
    """Open file descriptors of this process on the queue file (and its -wal, -shm)."""
    file, count = str(plugin.file.absolute()), 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += fd.readlink().as_posix().startswith(file)
        except OSError:  # closed since it was listed
            continue
    return count


def threads_named(name: str) -> int:
    return sum(t.name == name for t in threading.enumerate())


def own_threads() -> list[str]:
    """Names of the threads alive, but the handler pool's (it grows lazily) and timers."""
    return sorted(
        t.name
        for t in threading.enumerate()
        if not t.name.startswith("test-handler") and not isinstance(t, threading.Timer)
    )


def test_local_queue_subscriptions_hold_constant_threads_and_connections(
    plugin: LocalQueuePlugin, pool: ThreadPoolExecutor
) -> None:
    queues = [f"exp-{i}.predict" for i in range(200)]
    seen: dict[str, int] = dict.fromkeys(queues, 0)

    def count(batch: Sequence[Message]) -> None:
        for message in batch:
            seen[message.queue] += 1

    def subscribe_and_drain(names: list[str]) -> list[Subscription]:
        made = [
            plugin.subscribe(q, count, executor=pool, batch_size=5, max_wait=0.01) for q in names
        ]
        for q in names:
            plugin.publish_batch(q, ["a", "b", "c"])
        assert eventually(lambda: all(seen[q] == 3 for q in names))
        return made

    subscriptions = subscribe_and_drain(queues[:10])
    threads, fds = own_threads(), queue_file_fds(plugin)
    subscriptions += subscribe_and_drain(queues[10:])
    assert own_threads() == threads
    assert queue_file_fds(plugin) == fds
    assert threads_named("observml-local-subscriber") == 1
    assert threads_named("observml-lease-keeper") == 1
    for subscription in subscriptions:
        subscription.cancel()
    # With no subscription left, the subscriber's thread, keeper and connections are gone.
    assert eventually(lambda: threads_named("observml-local-subscriber") == 0)
    assert eventually(lambda: threads_named("observml-lease-keeper") == 0)
    assert plugin.queue_depth(queues[0]) == 0


def test_local_queue_cancel_leaves_every_settlement_committed(
    plugin: LocalQueuePlugin, pool: ThreadPoolExecutor
) -> None:
    plugin.publish_batch("q", [str(i) for i in range(30)])
    entered, release = threading.Event(), threading.Event()

    def slow(batch: Sequence[Message]) -> dict[int, str]:
        entered.set()
        release.wait(WAIT)
        return {0: "rejected"}

    subscription = plugin.subscribe(
        "q", slow, executor=pool, batch_size=5, max_wait=0.01, prefetch=15
    )
    assert entered.wait(WAIT)  # 5 in hand, 10 more leased and buffered
    threading.Timer(0.2, release.set).start()
    subscription.cancel()
    # Read through a connection of its own: only what was committed is there.
    with contextlib.closing(sqlite3.connect(plugin.file)) as other:
        rows = other.execute(
            "SELECT queue, COUNT(*), COUNT(lease_owner), MAX(deliveries) FROM messages"
            " GROUP BY queue ORDER BY queue"
        ).fetchall()
    # 4 acked, 1 dead-lettered, 25 given back unleased and uncounted.
    assert rows == [("q", 25, 0, 0), (dead_letter_queue("q"), 1, 0, 0)]


def test_local_queue_subscription_keeps_its_lease_while_the_handler_runs(
    plugin: LocalQueuePlugin, pool: ThreadPoolExecutor
) -> None:
    plugin.publish("q", "slow", message_id="slow-1")
    seen_meanwhile: list[str] = []
    done = threading.Event()

    def slow(batch: Sequence[Message]) -> None:
        # 3x the visibility timeout: the subscriber's lease keeper must renew the lease.
        threading.Event().wait(3.0)
        seen_meanwhile.append(plugin.pull_data("q"))
        done.set()

    subscription = plugin.subscribe("q", slow, executor=pool, batch_size=1, max_wait=0.01)
    assert done.wait(WAIT)
    subscription.cancel()
    assert seen_meanwhile == [""]
    assert plugin.queue_depth("q") == 0
