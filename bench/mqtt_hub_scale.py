"""Threads and file descriptors of a hub streaming N experiments over MQTT (observml-mqtt).

Run as ``python bench/mqtt_hub_scale.py --experiments 10 50`` against the Mosquitto on
127.0.0.1:1883. For each N: a hub (in-memory MLOps) trains N fault_detection/iforest
experiments, a producer publishes one row to each ``e<i>.predict``, the hub streams all N and
answers each on ``e<i>.predictions`` (held by the hub plugin's own session of that queue, so
the count includes it). Printed: the process's threads and open file descriptors with the
plugin connected and the experiments trained (idle), then while streaming with every message
answered. ``bench/scale.py`` measures the embedded queue and RabbitMQ the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid

import numpy as np
import pandas as pd
from observml_mqtt import MQTTPlugin

from observml import ExperimentHub, InMemoryMLOpsPlugin

COLUMNS = ["temperature", "pressure"]


def usage() -> tuple[int, int]:
    """Threads alive and file descriptors open in this process."""
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def measure(n: int, host: str, port: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    settings = {
        "host": host,
        "port": port,
        "topic_prefix": f"observml-bench/{tag}",
        "session_expiry": 60,
    }
    history = pd.DataFrame(np.random.default_rng(0).normal(0, 1, (200, 2)), columns=COLUMNS)
    stream = MQTTPlugin(client_id=f"observml-bench-{tag}", **settings)
    producer = MQTTPlugin(client_id=f"observml-bench-{tag}-producer", **settings)
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(stream)
        producer.connect()
        names = [f"e{i}" for i in range(n)]
        for name in names:
            hub.create_experiment(
                name,
                "fault_detection",
                {"create_model": {"model": "iforest", "params": {"n_estimators": 10}}},
            )
            job = hub.train(name, data=history, wait=True)
            assert job.status.state == "succeeded", job.status.error
            stream.create_queue(f"{name}.predictions")  # holds the answers
        idle = usage()
        started = time.monotonic()
        for name in names:
            hub.start_streaming(name)
        for name in names:
            producer.publish(f"{name}.predict", json.dumps([{"temperature": 0.1, "pressure": 1.0}]))
        deadline = time.monotonic() + 120
        answered = 0
        while time.monotonic() < deadline:
            answered = sum(stream.queue_depth(f"{name}.predictions") >= 1 for name in names)
            if answered == n:
                break
        streaming = usage()
        elapsed = time.monotonic() - started
        for name in names:
            hub.stop_streaming(name)
    producer.shutdown()
    return {
        "experiments": n,
        "answered": answered,
        "idle threads": idle[0],
        "idle fds": idle[1],
        "streaming threads": streaming[0],
        "streaming fds": streaming[1],
        "seconds to answer all": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    for n in args.experiments:
        print(measure(n, args.host, args.port), flush=True)


if __name__ == "__main__":
    main()
