"""Many queues through ``RabbitMQPlugin.subscribe`` against a ``consume_batch`` thread per queue.

For ``--queues`` durable queues holding ``--messages`` persistent messages each, measured in one
run against the same broker:

- subscribe: every queue subscribed on one plugin, handlers on a ``--workers`` thread pool;
- consume_batch: one thread per queue calling ``consume_batch`` (the way a hub streamed before
  subscriptions), each with its own connection and handler thread.

Both use the same ``--batch-size``, ``max_wait`` and the plugin's default prefetch, and a handler
that only counts (plus ``--work-ms`` of sleep per batch, standing for a model). Printed per
side: the drain time (from the first subscribe / thread start until every message was handled),
the threads and sockets the process gained while draining, and the connections the broker
shows for the plugin (``rabbitmqctl list_connections``, when it can reach the broker; the
plugin's main connection included). Each figure is the median of ``--repeat`` rounds on fresh
queues, the side that goes first alternating; ratios are subscribe / consume_batch. Usage::

    python bench/subscriptions.py [--url amqp://guest:guest@127.0.0.1:5672/%2F] [--queues 100]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
from datastream import parameters, settings  # the sibling script bench/datastream.py
from scale import fds  # the sibling script bench/scale.py

from observml.plugins.datastream import Message, dead_letter_queue
from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

Side = Callable[[RabbitMQPlugin, list[str], "Counter", argparse.Namespace], dict[str, float]]


class Counter:
    """Counts handled messages; ``handler`` is the batch handler both sides use."""

    def __init__(self, total: int, work: float) -> None:
        self.total = total
        self._work = work
        self._count = 0
        self._lock = threading.Lock()
        self.done = threading.Event()

    def handler(self, batch: Sequence[Message]) -> None:
        if self._work:
            time.sleep(self._work)
        with self._lock:
            self._count += len(batch)
            if self._count >= self.total:
                self.done.set()


def broker_connections(tag: str) -> float:
    """Connections the broker shows for the plugin tagged ``tag`` (NaN without rabbitmqctl)."""
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        return float("nan")
    done = subprocess.run(
        [tool, "list_connections", "client_properties", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return float("nan")
    return float(sum(f"[{tag}]" in line for line in done.stdout.splitlines()))


def drained(
    plugin: RabbitMQPlugin, counter: Counter, started: float, threads0: int, sockets0: int
) -> dict[str, float]:
    """Wait for every message; return the drain time and what the process holds meanwhile."""
    if not counter.done.wait(600):
        raise SystemExit("not every message was handled within 600 s")
    seconds = time.monotonic() - started
    return {
        "drain_s": seconds,
        "threads": threading.active_count() - threads0,
        "sockets": fds()[1] - sockets0,
        "connections": broker_connections(plugin._tag),
    }


def through_subscribe(
    plugin: RabbitMQPlugin, queues: list[str], counter: Counter, args: argparse.Namespace
) -> dict[str, float]:
    with ThreadPoolExecutor(args.workers) as pool:
        threads0, sockets0 = threading.active_count(), fds()[1]  # the pool starts lazily
        started = time.monotonic()
        subscriptions = [
            plugin.subscribe(
                q, counter.handler, executor=pool, batch_size=args.batch_size, max_wait=0.05
            )
            for q in queues
        ]
        figures = drained(plugin, counter, started, threads0, sockets0)
        for subscription in subscriptions:
            subscription.cancel()
    return figures


def through_consume_batch(
    plugin: RabbitMQPlugin, queues: list[str], counter: Counter, args: argparse.Namespace
) -> dict[str, float]:
    stop = threading.Event()
    threads0, sockets0 = threading.active_count(), fds()[1]
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=plugin.consume_batch,
            args=(q, counter.handler),
            kwargs={"batch_size": args.batch_size, "max_wait": 0.05, "stop": stop},
            daemon=True,
        )
        for q in queues
    ]
    for thread in threads:
        thread.start()
    figures = drained(plugin, counter, started, threads0, sockets0)
    stop.set()
    for thread in threads:
        thread.join(60)
    return figures


def one_round(side: Side, args: argparse.Namespace) -> dict[str, float]:
    """Fill fresh queues, drain them through ``side`` on a fresh plugin, delete them."""
    config = settings(args.url)
    plugin = RabbitMQPlugin(**config)
    plugin.connect()
    queues = [f"observml.bench.sub.{uuid.uuid4().hex[:10]}" for _ in range(args.queues)]
    try:
        for q in queues:
            plugin.create_queue(q)
            plugin.publish_batch(q, [f"{q}-{i}".encode() for i in range(args.messages)])
        counter = Counter(args.queues * args.messages, args.work_ms / 1000)
        return side(plugin, queues, counter, args)
    finally:
        plugin.shutdown()
        delete(config, queues)


def delete(config: dict[str, Any], queues: list[str]) -> None:
    connection = pika.BlockingConnection(parameters(config))
    try:
        channel = connection.channel()
        for q in queues:
            channel.queue_delete(q)
            channel.queue_delete(dead_letter_queue(q))
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100, help="per queue")
    parser.add_argument("--workers", type=int, default=4, help="subscribe's handler pool")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--work-ms", type=float, default=0.0, help="sleep per batch")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    sides: dict[str, Side] = {
        "subscribe": through_subscribe,
        "consume_batch": through_consume_batch,
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for i in range(args.repeat):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            rounds[name].append(one_round(sides[name], args))
            print(f"round {i + 1} {name}: {rounds[name][-1]}", flush=True)

    keys = ("drain_s", "threads", "sockets", "connections")
    median = {
        name: {k: statistics.median(r[k] for r in rounds[name]) for k in keys} for name in sides
    }
    print(
        f"\n{args.queues} queues x {args.messages} messages, batch {args.batch_size},"
        f" {args.work_ms:g} ms of work per batch, subscribe on {args.workers} workers"
        f" (median of {args.repeat})"
    )
    print(f"{'':>14} {'drain s':>8} {'msg/s':>8} {'threads':>8} {'sockets':>8} {'conns':>6}")
    total = args.queues * args.messages
    for name in sides:
        m = median[name]
        print(
            f"{name:>14} {m['drain_s']:>8.2f} {total / m['drain_s']:>8.0f} {m['threads']:>8.0f}"
            f" {m['sockets']:>8.0f} {m['connections']:>6.0f}"
        )
    ratio = {k: median["subscribe"][k] / median["consume_batch"][k] for k in keys}
    print(
        f"{'ratio':>14} {ratio['drain_s']:>8.2f} {1 / ratio['drain_s']:>8.2f}"
        f" {ratio['threads']:>8.2f} {ratio['sockets']:>8.2f} {ratio['connections']:>6.2f}"
    )


if __name__ == "__main__":
    main()
