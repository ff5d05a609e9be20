"""Logging 1,000 metrics to one run over HTTP: MLflowPlugin against MLflow's own client calls.

Prints two ratios measured in the same process against the same server:

- plugin / MLflow ``log_batch``: ``MLflowPlugin.log_batch`` against ``MlflowClient.log_batch``
  with the same 1,000 metrics (goal: at most 1.2, i.e. no more than 20% overhead);
- 1,000 x ``log_metric`` / plugin: how many times faster the plugin is than one HTTP call per
  metric (goal: at least 10).

Usage::

    python bench/mlops_logging.py                      # starts a throw-away mlflow server
    python bench/mlops_logging.py --uri http://127.0.0.1:5000

Without ``--uri`` the script starts ``mlflow server --workers 1`` on a free loopback port with a
SQLite backend in a temp dir and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric

from observml.plugins.mlflow_plugin import MLflowPlugin

METRICS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_server() -> Iterator[str]:
    """Start an ``mlflow server`` with a SQLite backend; yield its URI; stop it."""
    folder = Path(tempfile.mkdtemp(prefix="observml-bench-"))
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    executable = Path(sys.executable).with_name("mlflow")
    command = [
        str(executable if executable.exists() else "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{(folder / 'mlflow.db').as_posix()}",
        "--artifacts-destination",
        (folder / "artifacts").as_uri(),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow server did not start; see {folder}/server.log"
                    ) from None
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(uri: str, repeats: int) -> None:
    plugin = MLflowPlugin(uri)
    plugin.initialize()
    client = MlflowClient(tracking_uri=uri)
    experiment_id = plugin.create_experiment(f"bench-logging-{int(time.time())}")
    values = {f"metric_{i:04d}": float(i) for i in range(METRICS)}
    run_ids: list[str] = []

    def plugin_batch() -> None:
        run_ids.append(plugin.start_run(experiment_id))
        plugin.log_batch(run_ids[-1], metrics=values)

    def mlflow_batch() -> None:
        run_id = client.create_run(experiment_id).info.run_id
        run_ids.append(run_id)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])

    def mlflow_singles() -> None:
        run_id = client.create_run(experiment_id).info.run_id
        run_ids.append(run_id)
        for key, value in values.items():
            client.log_metric(run_id, key, value)

    # Each measurement includes creating its run (one call) so the three are comparable.
    plugin_batch()  # warm up connections and server caches
    mlflow_batch()
    plugin_times, batch_times = [], []
    for i in range(repeats):  # interleaved, alternating who goes first: drift hits both alike
        if i % 2:
            batch_times.append(timed(mlflow_batch))
            plugin_times.append(timed(plugin_batch))
        else:
            plugin_times.append(timed(plugin_batch))
            batch_times.append(timed(mlflow_batch))
    singles = timed(mlflow_singles)
    for run_id in run_ids:
        plugin.end_run(run_id)
    plugin.shutdown()

    plugin_s, batch_s = statistics.median(plugin_times), statistics.median(batch_times)
    print(f"server: {uri}; {METRICS} metrics on one run; median of {repeats} repeats")
    print(f"  MLflowPlugin.log_batch      {plugin_s * 1000:9.1f} ms")
    print(f"  MlflowClient.log_batch      {batch_s * 1000:9.1f} ms")
    print(f"  {METRICS} x log_metric        {singles * 1000:9.1f} ms (once)")
    print(f"plugin / mlflow log_batch = {plugin_s / batch_s:.2f}  (goal <= 1.2)")
    print(f"{METRICS} x log_metric / plugin = {singles / plugin_s:.1f}x  (goal >= 10x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help="tracking server; default: start a throw-away one")
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    if args.uri:
        run(args.uri, args.repeats)
        return
    with throwaway_server() as uri:
        run(uri, args.repeats)


if __name__ == "__main__":
    main()
