"""Streaming benchmark: one-row messages through RabbitMQ to a trained fault_detection/iforest.

Prints, measured in the same run on the same broker and model:

* the hub's end-to-end rate divided by a hand-written pika loop doing the same consume ->
  micro-batch -> ``model.predict`` -> publish-with-confirm -> ack (goal: at least 0.8). Both
  rates are measured the same way, publish of the first input to arrival of the last result at
  the same in-process collector (its JSON decoding shares this process's CPU with either);
* the hub's rate divided by the old system's pattern, one ``basic_get`` + predict + publish
  per message (goal: at least 20x);
* p50 / p99 latency from publish to result, with messages paced below capacity;
* peak RSS growth of the process over the hub's run (goal: under 50 MB).

Usage: ``python bench/streaming.py [--messages 100000] [--rounds 3] [--old-messages 5000]``
(RabbitMQ on 127.0.0.1:5672, guest/guest, or ``--url``).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pika

# the sibling script bench/datastream.py: AMQP URL -> plugin settings -> pika parameters
from datastream import parameters, settings

from observml import ExperimentHub, HubConfig, InMemoryMLOpsPlugin
from observml.config import StreamingSection
from observml.plugins.datastream import OutgoingMessage
from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

COLUMNS = [f"sensor_{i:02d}" for i in range(8)]
BATCH = 200


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bodies(n: int, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(0, 1, (n, len(COLUMNS))), columns=COLUMNS)
    return [line.encode() for line in frame.to_json(orient="records", lines=True).splitlines()]


class Results:
    """Consumes a result queue on its own connection; records arrival time per message id."""

    def __init__(self, conf: dict[str, Any], queue: str) -> None:
        self.plugin = RabbitMQPlugin(**conf)
        self.plugin.initialize()
        self.plugin.create_queue(queue)
        self.arrived: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(queue,), daemon=True)
        self.thread.start()

    def _run(self, queue: str) -> None:
        def take(batch: Any) -> None:
            now = time.perf_counter()
            for message in batch:
                self.arrived[json.loads(message.body)["message_id"]] = now

        self.plugin.consume_batch(queue, take, batch_size=500, max_wait=0.05, stop=self.stop)

    def wait(self, n: int, timeout: float = 900) -> float:
        deadline = time.monotonic() + timeout
        while len(self.arrived) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.arrived)} of {n} results after {timeout} s")
            time.sleep(0.01)
        return max(self.arrived.values())

    def close(self) -> None:
        self.stop.set()
        self.plugin.shutdown()


def publish_all(plugin: RabbitMQPlugin, queue: str, payload: list[bytes]) -> dict[str, float]:
    sent: dict[str, float] = {}
    for start in range(0, len(payload), 2000):
        chunk = payload[start : start + 2000]
        ids = [uuid.uuid4().hex for _ in chunk]
        now = time.perf_counter()
        plugin.publish_batch(
            queue, [OutgoingMessage(b, message_id=i) for b, i in zip(chunk, ids, strict=True)]
        )
        sent.update(dict.fromkeys(ids, now))
    return sent


def train(hub: ExperimentHub, name: str) -> Any:
    rng = np.random.default_rng(0)
    history = pd.DataFrame(rng.normal(0, 1, (5000, len(COLUMNS))), columns=COLUMNS)
    hub.create_experiment(
        name,
        "fault_detection",
        {"create_model": {"model": "iforest", "params": {"n_estimators": 100}}},
    )
    job = hub.train(name, data=history, wait=True)
    assert job.status.state == "succeeded", job.status.error
    return hub._get(name).champion()[0]  # the same fitted model for the baselines


def run_hub(conf: dict[str, Any], n: int) -> tuple[float, float, ExperimentHub, str]:
    name = f"bench{uuid.uuid4().hex[:6]}"
    streaming = StreamingSection(batch_size=BATCH, max_wait=0.05, prefetch=BATCH * 3)
    hub = ExperimentHub(config=HubConfig(plugins={}, streaming=streaming), job_isolation="thread")
    hub.register_plugin(InMemoryMLOpsPlugin())
    hub.register_plugin(RabbitMQPlugin(**conf))
    train(hub, name)
    publisher = RabbitMQPlugin(**conf)
    publisher.initialize()
    results = Results(conf, f"{name}.predictions")
    payload = bodies(n)
    rss_start = rss_mb()
    peak = [rss_start]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.2):
            peak[0] = max(peak[0], rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    hub.start_streaming(name)
    started = time.perf_counter()
    publish_all(publisher, f"{name}.predict", payload)
    finished = results.wait(n)
    rate = n / (finished - started)
    sampling.set()
    hub.stop_streaming(name)
    results.close()
    publisher.shutdown()
    return rate, peak[0] - rss_start, hub, name


def pika_loop(conf: dict[str, Any], model: Any, n: int) -> float:
    """Hand-written: consume (prefetch) -> batch -> predict -> publish with confirms -> ack.

    Confirms are tracked by delivery tag on the channel's asynchronous side (the fastest
    correct way pika allows), waiting for the whole batch before acking its inputs.
    """
    params = parameters(conf)
    source, target = f"raw{uuid.uuid4().hex[:6]}", f"raw{uuid.uuid4().hex[:6]}.out"
    results = Results(conf, target)  # declares the result queue as the hub's are
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(source, durable=True)
    out = connection.channel()
    unconfirmed: set[int] = set()
    counter = [0]

    def on_confirm(frame: Any) -> None:
        tag, multiple = frame.method.delivery_tag, frame.method.multiple
        if multiple:
            unconfirmed.difference_update({t for t in unconfirmed if t <= tag})
        else:
            unconfirmed.discard(tag)

    out._impl.confirm_delivery(ack_nack_callback=on_confirm)
    connection.process_data_events(time_limit=0.1)
    publisher = RabbitMQPlugin(**conf)
    publisher.initialize()
    payload = bodies(n)
    channel.basic_qos(prefetch_count=BATCH * 3)
    done = [0]
    pending: list[tuple[int, str, bytes]] = []
    started = time.perf_counter()
    threading.Thread(target=publish_all, args=(publisher, source, payload), daemon=True).start()

    def flush() -> None:
        frame = pd.DataFrame.from_records([json.loads(b) for _, _, b in pending])
        predicted = model.predict(frame)
        rows = predicted.to_dict(orient="records")
        for (_, message_id, _), row in zip(pending, rows, strict=True):
            result = {"message_id": message_id, "rows": [row]}
            out._impl.basic_publish(
                "", target, json.dumps(result).encode(), pika.BasicProperties(delivery_mode=2)
            )
            counter[0] += 1
            unconfirmed.add(counter[0])
        while unconfirmed:
            connection.process_data_events(time_limit=0.01)
        channel.basic_ack(pending[-1][0], multiple=True)
        done[0] += len(pending)
        pending.clear()

    for method, properties, body in channel.consume(source, inactivity_timeout=0.05):
        if method is not None:
            pending.append((method.delivery_tag, properties.message_id, body))
        if pending and (len(pending) >= BATCH or method is None):
            flush()
        if done[0] >= n:
            break
    rate = n / (results.wait(n) - started)
    results.close()
    channel.cancel()
    for q in (source, target, f"{target}.dead"):
        channel.queue_delete(q)
    connection.close()
    publisher.shutdown()
    return rate


def basic_get_loop(conf: dict[str, Any], model: Any, n: int) -> float:
    """The old system: one basic_get per request, predict it, publish, ack."""
    params = parameters(conf)
    source, target = f"old{uuid.uuid4().hex[:6]}", f"old{uuid.uuid4().hex[:6]}.out"
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    for q in (source, target):
        channel.queue_declare(q, durable=True)
    publisher = RabbitMQPlugin(**conf)
    publisher.initialize()
    publish_all(publisher, source, bodies(n))
    started = time.perf_counter()
    done = 0
    while done < n:
        method, _, body = channel.basic_get(source)
        if method is None:
            continue
        row = model.predict(pd.DataFrame.from_records([json.loads(body)])).to_dict(orient="records")
        channel.basic_publish(
            "", target, json.dumps(row).encode(), pika.BasicProperties(delivery_mode=2)
        )
        channel.basic_ack(method.delivery_tag)
        done += 1
    rate = n / (time.perf_counter() - started)
    for q in (source, target):
        channel.queue_delete(q)
    connection.close()
    publisher.shutdown()
    return rate


def latency(
    conf: dict[str, Any], hub: ExperimentHub, name: str, n: int, pace: float
) -> tuple[float, float]:
    """Publish ``n`` messages at ``pace`` msg/s; return p50/p99 publish->result in ms."""
    publisher = RabbitMQPlugin(**conf)
    publisher.initialize()
    results = Results(conf, f"{name}.predictions")
    hub.start_streaming(name)
    sent: dict[str, float] = {}
    payload = bodies(n, seed=3)
    started = time.perf_counter()
    for i in range(0, n, 10):
        chunk = payload[i : i + 10]
        ids = [uuid.uuid4().hex for _ in chunk]
        publisher.publish_batch(
            f"{name}.predict",
            [OutgoingMessage(b, message_id=m) for b, m in zip(chunk, ids, strict=True)],
        )
        now = time.perf_counter()
        sent.update(dict.fromkeys(ids, now))
        delay = started + (i + 10) / pace - now
        if delay > 0:
            time.sleep(delay)
    results.wait(n)
    hub.stop_streaming(name)
    results.close()
    publisher.shutdown()
    waits = np.array([(results.arrived[k] - v) * 1000 for k, v in sent.items()])
    return float(np.percentile(waits, 50)), float(np.percentile(waits, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="hub and pika runs, alternated")
    parser.add_argument("--old-messages", type=int, default=5_000)
    parser.add_argument("--latency-messages", type=int, default=5_000)
    parser.add_argument("--pace", type=float, default=1000.0, help="msg/s for the latency run")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    args = parser.parse_args()
    conf = settings(args.url)

    hub_rates: list[float] = []
    raw_rates: list[float] = []
    rss_growth = 0.0
    previous: ExperimentHub | None = None
    for _ in range(args.rounds):  # alternated, so drift in the machine's load hits both
        if previous is not None:
            previous.shutdown()
        hub_rate, growth, hub, name = run_hub(conf, args.messages)
        previous = hub
        hub_rates.append(hub_rate)
        rss_growth = max(rss_growth, growth)
        model = hub._get(name).champion()[0]
        raw_rates.append(pika_loop(conf, model, args.messages))
    hub_rate, raw_rate = float(np.median(hub_rates)), float(np.median(raw_rates))
    old_rate = basic_get_loop(conf, model, args.old_messages)
    p50, p99 = latency(conf, hub, name, args.latency_messages, args.pace)
    hub.shutdown()
    rounds = ", ".join(f"{h / r:.2f}" for h, r in zip(hub_rates, raw_rates, strict=True))
    print(f"messages: {args.messages} one-row messages, batch {BATCH}, fault_detection/iforest")
    print(f"hub end-to-end:        {hub_rate:10.0f} msg/s  (median of {args.rounds} rounds)")
    print(f"hand-written pika:     {raw_rate:10.0f} msg/s  (median of {args.rounds} rounds)")
    print(f"old basic_get pattern: {old_rate:10.0f} msg/s  ({args.old_messages} messages)")
    print(
        f"ratio hub / pika loop:      {hub_rate / raw_rate:6.2f}   (goal >= 0.8; rounds {rounds})"
    )
    print(f"ratio hub / basic_get:      {hub_rate / old_rate:6.1f}x  (goal >= 20x)")
    print(f"latency at {args.pace:.0f} msg/s:  p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"peak RSS growth during the hub run: {rss_growth:.1f} MB (goal < 50 MB)")


if __name__ == "__main__":
    main()
