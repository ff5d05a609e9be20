"""Several hub processes on one config: how the stream scales with K hubs, and one dying (issue 13).

On RabbitMQ and an MLflow server (a private ``mlflow server`` on SQLite, started here as
``bench/mlops_logging.py`` does, unless ``--mlflow URI`` names one), with N streaming
``fault_detection/pca`` experiments trained once:

1. for each K in ``--hubs`` (default 1,2): start K hub processes from the same
   ``hub_config.yaml`` (each resumes every stream), publish ``--messages`` one-row messages to
   each ``<name>.predict`` and time until each has a result on ``<name>.predictions``: messages
   answered per second, as a ratio to K = 1's, and how many results came twice;
2. with 2 hubs, SIGKILL one when a third of the messages are answered: how many messages were
   lost (no result within ``--timeout``), how many answered twice (the killed hub's unacked
   messages, redelivered to the survivor), and how long the survivor took to finish.

Usage::

    python bench/hubs.py [--experiments 10] [--messages 300] [--hubs 1,2]
        [--rabbitmq amqp://guest:guest@127.0.0.1:5672/%2F] [--mlflow http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
from mlops_logging import throwaway_server  # the sibling script bench/mlops_logging.py

COLUMNS = [f"s{i}" for i in range(5)]
#: A hub process: start from the config, say "ready", serve until SIGTERM.
WORKER = """
import json, signal, sys, threading
from observml import ExperimentHub
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
with ExperimentHub.from_config(sys.argv[1]) as hub:
    print(json.dumps({"ready": hub.experiments()}), flush=True)
    stop.wait()
"""


def write_config(folder: Path, args: argparse.Namespace, names: list[str]) -> Path:
    url = urlparse(args.rabbitmq)
    experiments = [
        {
            "name": name,
            "type": "fault_detection",
            "config": {"create_model": {"model": "pca"}, "retrain": {"enabled": False}},
            "streaming": True,
        }
        for name in names
    ]
    document = {
        "global": {"log_level": "WARNING"},
        "plugins": {
            "mlops": {"type": "mlflow", "config": {"mlflow_uri": args.mlflow}},
            "datastream": {
                "type": "rabbitmq",
                "config": {
                    "host": url.hostname,
                    "port": url.port or 5672,
                    "username": unquote(url.username or "guest"),
                    "password": unquote(url.password or "guest"),
                },
            },
        },
        "streaming": {"batch_size": 100, "max_wait": 0.1},
        "experiments": experiments,
    }
    path = folder / "hub_config.yaml"
    path.write_text(json.dumps(document), encoding="utf-8")  # JSON is YAML
    return path


class Results:
    """Counts results by message id on every ``<name>.predictions``, on one pika connection."""

    def __init__(self, args: argparse.Namespace, names: list[str]) -> None:
        import pika

        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._connection = pika.BlockingConnection(pika.URLParameters(args.rabbitmq))
        channel = self._connection.channel()
        channel.basic_qos(prefetch_count=1000)
        for name in names:
            queue = f"{name}.predictions"
            channel.queue_declare(queue, durable=True)
            channel.basic_consume(queue, self._take)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _take(self, channel: Any, method: Any, _properties: Any, body: bytes) -> None:
        with self.lock:
            self.counts[json.loads(body)["message_id"]] += 1
        channel.basic_ack(method.delivery_tag)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._connection.process_data_events(time_limit=0.2)

    def answered(self, ids: set[str]) -> int:
        with self.lock:
            return len(ids & self.counts.keys())

    def twice(self, ids: set[str]) -> int:
        with self.lock:
            return sum(self.counts[i] - 1 for i in ids if self.counts[i] > 1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._connection.close()


def start_hubs(config: Path, k: int) -> list[subprocess.Popen[str]]:
    hubs = []
    for _ in range(k):
        hub = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(config)],
            cwd=config.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert hub.stdout is not None
        if not hub.stdout.readline():
            raise SystemExit("a hub process exited before it was ready")
        hubs.append(hub)
    return hubs


def stop_hubs(hubs: list[subprocess.Popen[str]]) -> None:
    for hub in hubs:
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
    for hub in hubs:
        try:
            hub.wait(60)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait(10)
        if hub.stdout is not None:
            hub.stdout.close()


def publish(args: argparse.Namespace, names: list[str], tag: str) -> set[str]:
    from observml.plugins.datastream import OutgoingMessage
    from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

    url = urlparse(args.rabbitmq)
    plugin = RabbitMQPlugin(
        url.hostname or "127.0.0.1",
        url.port or 5672,
        unquote(url.username or "guest"),
        unquote(url.password or "guest"),
    )
    plugin.connect()
    rng = np.random.default_rng(7)
    ids: set[str] = set()
    try:
        for name in names:
            rows = pd.DataFrame(rng.normal(0, 1, (args.messages, 5)), columns=COLUMNS)
            bodies = rows.to_json(orient="records", lines=True).splitlines()
            out = [OutgoingMessage(b, message_id=f"{tag}-{name}-{i}") for i, b in enumerate(bodies)]
            plugin.publish_batch(f"{name}.predict", out)
            ids.update(m.message_id for m in out if m.message_id)
    finally:
        plugin.shutdown()
    return ids


def wait_answered(results: Results, ids: set[str], timeout: float, at_least: int) -> float:
    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    while results.answered(ids) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--messages", type=int, default=300, help="one-row messages each")
    parser.add_argument("--hubs", default="1,2")
    parser.add_argument("--rabbitmq", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--mlflow", help="tracking URI (default: a private server on SQLite)")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if not args.mlflow:
            args.mlflow = stack.enter_context(throwaway_server())
        folder = Path(tempfile.mkdtemp(prefix="observml-hubs-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        run_all(args, folder)


def run_all(args: argparse.Namespace, folder: Path) -> None:
    run = uuid.uuid4().hex[:6]
    names = [f"hubs{run}-{i:02d}" for i in range(args.experiments)]
    config = write_config(folder, args, names)
    os.environ["OBSERVML_HOME"] = str(folder / "home")  # one signing key for every hub
    from observml import ExperimentHub

    rng = np.random.default_rng(0)
    with ExperimentHub.from_config(config, streaming=False) as hub:
        for name in names:
            frame = pd.DataFrame(rng.normal(0, 1, (500, 5)), columns=COLUMNS)
            hub.train(name, data=frame, wait=True)
    results = Results(args, names)
    rates: dict[int, float] = {}
    print(f"{len(names)} experiments x {args.messages} one-row messages, RabbitMQ + MLflow server")
    print(f"{'hubs':>4} {'answered':>12} {'seconds':>8} {'msg/s':>7} {'÷ 1 hub':>8} {'twice':>6}")
    try:
        for k in [int(x) for x in args.hubs.split(",")]:
            hubs = start_hubs(config, k)
            ids = publish(args, names, f"k{k}")
            seconds = wait_answered(results, ids, args.timeout, len(ids))
            stop_hubs(hubs)
            rates[k] = results.answered(ids) / seconds
            base = rates.get(1, rates[k])
            print(
                f"{k:>4} {results.answered(ids):>5}/{len(ids):<6} {seconds:>8.1f}"
                f" {rates[k]:>7.0f} {rates[k] / base:>8.2f} {results.twice(ids):>6}"
            )
        hubs = start_hubs(config, 2)
        ids = publish(args, names, "kill")
        wait_answered(results, ids, args.timeout, len(ids) // 3)
        hubs[0].kill()
        killed_at = results.answered(ids)
        seconds = wait_answered(results, ids, args.timeout, len(ids))
        stop_hubs(hubs)
        print(
            f"2 hubs, one SIGKILLed at {killed_at} of {len(ids)} answered: lost"
            f" {len(ids) - results.answered(ids)}, answered twice {results.twice(ids)}, the"
            f" survivor finished in {seconds:.1f} s"
        )
    finally:
        results.close()


if __name__ == "__main__":
    main()
