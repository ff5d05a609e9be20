"""RabbitMQPlugin throughput against raw pika doing the same work, measured in one run.

Prints, for ``--messages`` persistent messages of about ``--size`` bytes on a durable queue:

- publish with confirms: ``RabbitMQPlugin.publish_batch`` / raw pika publishing with publisher
  confirms and up to ``--window`` messages in flight (``SelectConnection`` with an
  ``ack_nack_callback``, the asynchronous way pika documents), both ``mandatory``, persistent,
  with a message id and a timestamp (goal: at least 0.9);
- consume with ack: ``RabbitMQPlugin.consume`` / raw pika ``basic_consume`` acking each message
  in its callback, both with prefetch ``--prefetch`` (goal: at least 0.9);
- consume / the old system's pattern, one ``basic_get`` + ack per message as the spec's
  ``pull_data`` (goal: at least 3; raw pika's ratio is printed beside it).

Each figure is the median of ``--repeat`` rounds. In a round each side publishes its messages
and then consumes them, so the broker holds only one side's messages at a time; which side goes
first alternates between rounds. ``basic_get`` runs on ``--get-messages`` messages (it is slow;
its rate does not depend on the count). Usage::

    python bench/datastream.py [--url amqp://guest:guest@127.0.0.1:5672/%2F] [--messages 50000]

``--mqtt`` measures the MQTT plugin (observml-mqtt) against raw paho-mqtt instead, and the
hub's end-to-end streaming rate over MQTT beside RabbitMQ (see ``bench/datastream_mqtt.py``).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pika

from observml.plugins.datastream import Message
from observml.plugins.rabbitmq_plugin import RabbitMQPlugin


def settings(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5672,
        "username": unquote(parts.username or "guest"),
        "password": unquote(parts.password or "guest"),
        "virtual_host": unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
    }


def parameters(config: dict[str, Any]) -> pika.ConnectionParameters:
    credentials = pika.PlainCredentials(config["username"], config["password"])
    return pika.ConnectionParameters(
        config["host"], config["port"], config["virtual_host"], credentials
    )


def properties() -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=uuid.uuid4().hex,
        timestamp=int(time.time()),
    )


# -- raw pika -------------------------------------------------------------------------------
def raw_publish_confirmed(params: Any, queue: str, bodies: list[bytes], window: int) -> float:
    """Publish with async confirms, up to ``window`` unconfirmed; return msg/s."""
    total = len(bodies)
    state = {"sent": 0, "started": 0.0, "elapsed": 0.0}
    outstanding: set[int] = set()
    order: collections.deque[int] = collections.deque()

    def pump(channel: Any) -> None:
        while state["sent"] < total and len(outstanding) < window:
            channel.basic_publish("", queue, bodies[int(state["sent"])], properties(), True)
            state["sent"] += 1
            outstanding.add(int(state["sent"]))
            order.append(int(state["sent"]))

    def on_confirm(frame: Any) -> None:
        method = frame.method
        if method.multiple:
            while order and order[0] <= method.delivery_tag:
                outstanding.discard(order.popleft())
        else:
            outstanding.discard(method.delivery_tag)
        if state["sent"] == total and not outstanding:
            state["elapsed"] = time.perf_counter() - state["started"]
            connection.close()
        elif len(outstanding) <= window // 2:
            pump(channel_ref[0])

    channel_ref: list[Any] = []

    def on_channel(channel: Any) -> None:
        channel_ref.append(channel)

        def start(_frame: Any) -> None:
            state["started"] = time.perf_counter()
            pump(channel)

        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=start)

    connection = pika.SelectConnection(
        params,
        on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
        on_close_callback=lambda conn, reason: conn.ioloop.stop(),
    )
    connection.ioloop.start()
    return total / state["elapsed"]


def raw_consume(params: Any, queue: str, count: int, prefetch: int) -> float:
    """Consume ``count`` messages with ``basic_consume``, acking each; return msg/s."""
    started = time.perf_counter()
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    seen = [0]

    def on_message(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        seen[0] += 1
        if seen[0] >= count:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    connection.close()
    return count / (time.perf_counter() - started)


def raw_basic_get(params: Any, queue: str, count: int) -> float:
    """Take ``count`` messages with one ``basic_get`` + ack each (the old pull_data); msg/s."""
    started = time.perf_counter()
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    for _ in range(count):
        method, _properties, _body = channel.basic_get(queue)
        channel.basic_ack(method.delivery_tag)
    connection.close()
    return count / (time.perf_counter() - started)


def raw_fill(params: Any, queue: str, bodies: list[bytes]) -> None:
    """Fill a queue quickly (no confirms), then wait until the broker counts every message."""
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    for body in bodies:
        channel.basic_publish("", queue, body, properties())
    while channel.queue_declare(queue, passive=True).method.message_count < len(bodies):
        connection.sleep(0.05)
    connection.close()


# -- the plugin -----------------------------------------------------------------------------
def plugin_publish(plugin: RabbitMQPlugin, queue: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    plugin.publish_batch(queue, bodies)
    return len(bodies) / (time.perf_counter() - started)


def plugin_consume(plugin: RabbitMQPlugin, queue: str, count: int, prefetch: int) -> float:
    stop = threading.Event()
    seen = [0]

    def handler(message: Message) -> None:
        seen[0] += 1
        if seen[0] >= count:
            stop.set()

    started = time.perf_counter()
    plugin.consume(queue, handler, prefetch=prefetch, stop=stop)
    return count / (time.perf_counter() - started)


def plugin_publish_one_by_one(plugin: RabbitMQPlugin, queue: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for body in bodies:
        plugin.publish(queue, body)
    return len(bodies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--get-messages", type=int, default=20_000)
    parser.add_argument("--single-messages", type=int, default=2_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--mqtt", action="store_true", help="bench observml-mqtt instead")
    parser.add_argument("--hub-messages", type=int, default=20_000, help="--mqtt: hub run size")
    args = parser.parse_args()
    if args.mqtt:
        import datastream_mqtt  # the sibling script; needs observml-mqtt installed

        datastream_mqtt.main(args)
        return

    config = settings(args.url)
    params = parameters(config)
    plugin = RabbitMQPlugin(**config, confirm_window=args.window, prefetch=args.prefetch)
    plugin.connect()
    prefix = f"observml.bench.{uuid.uuid4().hex[:8]}"
    raw_q, plugin_q, get_q, one_q = (f"{prefix}.{name}" for name in ("raw", "plugin", "get", "one"))
    for name in (raw_q, plugin_q, get_q, one_q):
        plugin.create_queue(name)  # durable, the same arguments for both sides

    def body(i: int) -> bytes:
        head = f'{{"i": {i}, "sensor": "pump-7", "pad": "'.encode()
        return head + b"x" * max(args.size - len(head) - 2, 0) + b'"}'

    bodies = [body(i) for i in range(args.messages)]
    rates: dict[str, list[float]] = collections.defaultdict(list)
    runs: dict[str, Callable[[], float]] = {
        "raw_publish": lambda: raw_publish_confirmed(params, raw_q, bodies, args.window),
        "plugin_publish": lambda: plugin_publish(plugin, plugin_q, bodies),
        "raw_consume": lambda: raw_consume(params, raw_q, args.messages, args.prefetch),
        "plugin_consume": lambda: plugin_consume(plugin, plugin_q, args.messages, args.prefetch),
    }
    try:
        for round_ in range(args.repeat):
            order = ["raw", "plugin"] if round_ % 2 == 0 else ["plugin", "raw"]
            for side in order:  # each side publishes, then consumes what it published
                for stage in ("publish", "consume"):
                    time.sleep(1.0)  # let the broker finish writing the previous stage
                    rates[f"{side}_{stage}"].append(runs[f"{side}_{stage}"]())
            raw_fill(params, get_q, bodies[: args.get_messages])
            rates["basic_get"].append(raw_basic_get(params, get_q, args.get_messages))
            print(
                f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items())
            )
        single = plugin_publish_one_by_one(plugin, one_q, bodies[: args.single_messages])
    finally:
        admin = pika.BlockingConnection(params)
        channel = admin.channel()
        for name in (raw_q, plugin_q, get_q, one_q):
            for queue in (name, f"{name}.dead"):
                channel.queue_delete(queue)
        admin.close()
        plugin.shutdown()

    med = {key: statistics.median(values) for key, values in rates.items()}
    print(
        f"\nDataStream bench: {args.messages:,} messages x {args.size} B, prefetch"
        f" {args.prefetch}, confirm window {args.window}, median of {args.repeat} rounds"
    )
    rows = [
        ("publish with confirms", "raw pika", med["raw_publish"], med["plugin_publish"], 0.9),
        ("consume with ack", "raw pika", med["raw_consume"], med["plugin_consume"], 0.9),
        ("consume vs basic_get", "basic_get", med["basic_get"], med["plugin_consume"], 3.0),
    ]
    for label, base_name, base, ours, goal in rows:
        verdict = "ok" if ours / base >= goal else "BELOW GOAL"
        print(
            f"  {label:<22} {base_name:>9} {base:>8,.0f} msg/s   plugin {ours:>8,.0f} msg/s"
            f"   ratio {ours / base:5.2f}  (goal >= {goal}) {verdict}"
        )
    print(f"  raw pika consume vs basic_get: ratio {med['raw_consume'] / med['basic_get']:.2f}")
    print(
        f"  reference: publish() waiting for each confirm: {single:,.0f} msg/s"
        f" ({args.single_messages:,} messages)"
    )


if __name__ == "__main__":
    main()
