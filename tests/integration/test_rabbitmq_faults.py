"""Fault tests against the real broker, counted as RabbitMQ's Jepsen suite counts them.

20,000 messages (1% malformed) are consumed by a separate process while the broker application
is stopped and started (``rabbitmqctl stop_app`` / ``start_app``) twice and the consumer process
is killed (SIGKILL) and restarted. Every message id the consumer handled is logged before its
handler returns; the analysis counts lost, unexpected and duplicated messages and checks that
each duplicate was flagged as a redelivery. The broker is always left running.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from observml.plugins.datastream import REASON_HEADER, OutgoingMessage, dead_letter_queue
from observml.plugins.rabbitmq_plugin import RabbitMQPlugin
from tests.contracts.datastream import consume_n, eventually
from tests.contracts.faults import body, is_malformed, read_log

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

TOTAL = 20_000
STAGE_TIMEOUT = 180.0  # per stage; the whole test takes one to two minutes here

#: The consumer process: logs "<message id> <redelivered>" for each well-formed message, then
#: returns (ack); a malformed body raises, which dead-letters it with the reason.
CONSUMER = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

    queue, log = sys.argv[1:3]
    config = json.loads(os.environ["OBSERVML_FAULT_CONFIG"])
    plugin = RabbitMQPlugin(**config, retry_interval=0.2, retry_interval_max=2.0)
    plugin.connect()
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *args: stop.set())

    def handler(message):
        json.loads(message.body)
        os.write(out, f"{message.message_id} {int(message.redelivered)}\\n".encode())
        time.sleep(0.001)

    plugin.consume(queue, handler, prefetch=100, stop=stop)
    """
)


def test_rabbitmq_faults_broker_restarts_and_consumer_kill_lose_nothing(
    rabbitmq_config: dict[str, Any],
    broker_control: Callable[[], None],
    rabbitmq_drop_queues: Callable[[list[str]], None],
    tmp_path: Path,
) -> None:
    queue = f"observml.faults.{uuid.uuid4().hex[:12]}"
    publisher = RabbitMQPlugin(**rabbitmq_config, retry_interval=0.2)
    publisher.connect()
    consumers: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "handled.log"
    env = {**os.environ, "OBSERVML_FAULT_CONFIG": json.dumps(rabbitmq_config)}

    def start_consumer() -> None:
        consumers.append(
            subprocess.Popen([sys.executable, "-c", CONSUMER, queue, str(log)], env=env)
        )

    def handled_at_least(count: int) -> bool:
        assert consumers[-1].poll() is None, "the consumer process exited on its own"
        return len(read_log(log)) >= count

    try:
        publisher.create_queue(queue)
        ids = [f"m{i:05d}" for i in range(TOTAL)]
        for start in range(0, TOTAL, 5000):
            chunk = range(start, start + 5000)
            publisher.publish_batch(
                queue,
                [OutgoingMessage(body(i), {"source": "faults"}, ids[i]) for i in chunk],
            )
        malformed = {ids[i] for i in range(TOTAL) if is_malformed(i)}
        good = set(ids) - malformed

        start_consumer()
        assert eventually(lambda: handled_at_least(4000), STAGE_TIMEOUT)
        broker_control()  # 1: broker app stopped and started under consumer A
        assert eventually(lambda: handled_at_least(9000), STAGE_TIMEOUT)
        consumers[-1].send_signal(signal.SIGKILL)  # 2: consumer A dies mid-stream
        consumers[-1].wait(30)
        start_consumer()
        assert eventually(lambda: handled_at_least(14000), STAGE_TIMEOUT)
        broker_control()  # 3: broker app stopped and started under consumer B
        assert eventually(lambda: good <= {i for i, _ in read_log(log)}, STAGE_TIMEOUT)
        dead = dead_letter_queue(queue)
        assert eventually(
            lambda: (
                publisher.queue_depth(queue) == 0 and publisher.queue_depth(dead) >= len(malformed)
            ),
            STAGE_TIMEOUT,
        )
    finally:
        for consumer in consumers:
            if consumer.poll() is None:
                consumer.terminate()
                consumer.wait(60)

    rows = read_log(log)
    handled = collections.Counter(message_id for message_id, _ in rows)
    first: set[str] = set()
    unflagged = 0
    for message_id, redelivered in rows:
        if message_id in first and not redelivered:
            unflagged += 1
        first.add(message_id)
    dead_letters = consume_n(publisher, dead, publisher.queue_depth(dead))
    dead_ids = collections.Counter(str(m.message_id) for m in dead_letters)
    report = {
        "published": TOTAL,
        "malformed": len(malformed),
        "handled_deliveries": len(rows),
        "lost": len(good - set(handled)),
        "unexpected": len(set(handled) - good),
        "duplicated": sum(n - 1 for n in handled.values()),
        "duplicates_not_flagged_redelivered": unflagged,
        "redelivered_deliveries": sum(1 for _, redelivered in rows if redelivered),
        "dead_letters": len(dead_letters),
        "dead_lost": len(malformed - set(dead_ids)),
        "dead_duplicated": sum(n - 1 for n in dead_ids.values()),
    }
    print("\nfault test:", json.dumps(report))
    publisher.shutdown()
    rabbitmq_drop_queues([queue, dead, dead_letter_queue(dead)])

    assert report["lost"] == 0
    assert report["unexpected"] == 0
    assert report["duplicates_not_flagged_redelivered"] == 0
    assert report["dead_lost"] == 0
    assert set(dead_ids) == malformed
    assert all(m.headers[REASON_HEADER].startswith("JSONDecodeError") for m in dead_letters)
