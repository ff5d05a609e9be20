"""What N experiments on one hub cost, and how that grows with N (issue 13).

For each N (default 10, 50, 200, 500), in a fresh process and a fresh ``$OBSERVML_HOME``, on
the embedded defaults (``ExperimentHub.from_config()`` with no config: MLflow on SQLite, the
local datastream), or with ``--rabbitmq URL --mlflow URI`` on a broker and a tracking server:

1. create N ``fault_detection/pca`` experiments (time to create);
2. train them all at once on 500 x 5 rows each (time until every job ended; how many
   succeeded; the most jobs seen running at once against ``global.max_jobs``);
3. publish ``--messages`` one-row messages to each ``<name>.predict``, start streaming all of
   them, and time until every message is answered on ``<name>.predictions`` (messages/s);
4. read the hub process's threads, open file descriptors (sockets among them) and RSS growth
   over the empty hub, and the RSS of its child processes (the warm training children).

Each per-experiment figure is also printed as a ratio to N = 10's. The training wall time per
experiment (all jobs' wall time / N, and one job's own duration) is divided by the bare
``PCA.fit`` on the same rows plus one store round trip (``get_experiment_by_name``), both
measured in the same process (goal of the issue: 1.5 or less).

Usage::

    python bench/scale.py [--sizes 10,50,200,500] [--messages 100] [--timeout 900]
    python bench/scale.py --rabbitmq amqp://guest:guest@127.0.0.1:5672/%2F \\
        --mlflow http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROWS, COLUMNS = 500, [f"s{i}" for i in range(5)]


# -- one N, in a process of its own ------------------------------------------------------------
def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def fds() -> tuple[int, int]:
    """Open file descriptors of this process, and how many of them are sockets."""
    total = sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        total += 1
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return total, sockets


def frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0, 1, (ROWS, len(COLUMNS))), columns=COLUMNS)


def config_file(args: argparse.Namespace, home: Path) -> str | None:
    if not args.rabbitmq:
        return None
    from urllib.parse import unquote, urlparse

    url = urlparse(args.rabbitmq)
    path = home / "hub_config.yaml"
    path.write_text(
        "plugins:\n"
        f"  mlops: {{type: mlflow, config: {{mlflow_uri: {json.dumps(args.mlflow)}}}}}\n"
        "  datastream:\n    type: rabbitmq\n    config:\n"
        f"      host: {url.hostname}\n      port: {url.port or 5672}\n"
        f"      username: {unquote(url.username or 'guest')}\n"
        f"      password: {unquote(url.password or 'guest')}\n",
        encoding="utf-8",
    )
    return str(path)


def baseline(hub: Any, experiment: str = "scale-000") -> tuple[float, float]:
    """Best-of-7 bare ``PCA.fit`` on 500 x 5 rows, and the median store round trip.

    The round trip is ``get_experiment_by_name(experiment)``.
    """
    from sklearn.decomposition import PCA

    data = frame(0).to_numpy()
    fits, trips = [], []
    mlops = hub.get_plugin("mlops")
    for _ in range(7):
        start = time.perf_counter()
        PCA().fit(data)
        fits.append(time.perf_counter() - start)
        start = time.perf_counter()
        mlops.get_experiment_by_name(experiment)
        trips.append(time.perf_counter() - start)
    return min(fits), statistics.median(trips)


def run_one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    from observml import ExperimentHub

    home = Path(tempfile.mkdtemp(prefix=f"observml-scale-{n}-"))
    os.environ["OBSERVML_HOME"] = str(home)
    tag = f"{os.getpid()}-" if args.rabbitmq else ""
    names = [f"scale-{tag}{i:03d}" for i in range(n)]
    out: dict[str, Any] = {"n": n}
    with ExperimentHub.from_config(config_file(args, home)) as hub:
        rss0, threads0, (fds0, socks0) = rss_mb(), threading.active_count(), fds()
        start = time.perf_counter()
        for name in names:
            hub.create_experiment(name, "fault_detection", {"create_model": {"model": "pca"}})
        out["create_s"] = time.perf_counter() - start

        most_running = 0
        start = time.perf_counter()
        jobs = [hub.train(name, data=frame(i)) for i, name in enumerate(names)]
        deadline = start + args.timeout
        while not all(j.done for j in jobs) and time.perf_counter() < deadline:
            running = sum(j.status.state == "running" for j in jobs)
            most_running = max(most_running, running)
            time.sleep(0.02)
        out["train_s"] = time.perf_counter() - start
        statuses = [j.status for j in jobs]
        out["trained"] = sum(s.state == "succeeded" for s in statuses)
        out["errors"] = sorted({str(s.error)[:200] for s in statuses if s.state == "failed"})[:3]
        took = [s.finished_at - s.started_at for s in statuses if s.finished_at and s.started_at]
        out["job_s"] = statistics.median(took) if took else float("nan")
        out["max_jobs"], out["most_running"] = getattr(hub, "max_jobs", 0), most_running
        out["fit_s"], out["trip_s"] = baseline(hub)

        stream = hub.get_plugin("datastream")
        rows = frame(99).head(args.messages).to_dict(orient="records")
        bodies = [json.dumps(row) for row in rows]
        for name in names:
            stream.publish_batch(f"{name}.predict", bodies)
        expected = n * len(bodies)
        start = time.perf_counter()
        for name in names:
            if hub.status(name)["trained"]:
                hub.start_streaming(name)
        answered = 0
        deadline = start + args.timeout
        while time.perf_counter() < deadline:
            answered = sum(stream.queue_depth(f"{name}.predictions") for name in names)
            if answered >= expected:
                break
            time.sleep(0.1)
        out["stream_s"] = time.perf_counter() - start
        out["answered"], out["expected"] = answered, expected
        out["msg_per_s"] = answered / out["stream_s"]
        fds1, socks1 = fds()
        out["threads"] = threading.active_count() - threads0
        out["fds"], out["sockets"] = fds1 - fds0, socks1 - socks0
        out["rss_mb"] = rss_mb() - rss0
        out["children_rss_mb"] = sum(rss_mb(pid) for pid in descendants(os.getpid()))
        for name in names:
            hub.stop_streaming(name)
    if args.rabbitmq:
        delete_queues(args.rabbitmq, names)
    return out


def delete_queues(url: str, names: list[str]) -> None:
    """Leave the broker as it was: delete every queue the run declared."""
    import pika
    from datastream import parameters, settings  # the sibling script bench/datastream.py

    from observml.io.queues import experiment_queues

    connection = pika.BlockingConnection(parameters(settings(url)))
    try:
        channel = connection.channel()
        for name in names:
            for queue in experiment_queues(name):
                for each in (queue, f"{queue}.dead"):
                    channel.queue_delete(each)
    finally:
        connection.close()


# -- the table ---------------------------------------------------------------------------------
def per(result: dict[str, Any], key: str) -> float:
    return float(result[key]) / result["n"]


def table(results: list[dict[str, Any]]) -> str:
    base = results[0]
    lines = [
        f"{'N':>4} {'create s':>8} {'train s':>8} {'ok':>7} {'run<=max':>8} {'msg/s':>7}"
        f" {'answered':>11} {'threads':>7} {'fds':>5} {'socks':>5} {'RSS MB':>7}"
        f" {'child MB':>8} {'wall/exp ÷ (fit+trip)':>22} {'job ÷ (fit+trip)':>17}"
    ]
    for r in results:
        unit = r["fit_s"] + r["trip_s"]
        lines.append(
            f"{r['n']:>4} {r['create_s']:>8.2f} {r['train_s']:>8.1f} {r['trained']:>3}/{r['n']:<3}"
            f" {r['most_running']:>3}<={r['max_jobs']:<3} {r['msg_per_s']:>7.0f}"
            f" {r['answered']:>5}/{r['expected']:<5} {r['threads']:>7} {r['fds']:>5}"
            f" {r['sockets']:>5} {r['rss_mb']:>7.0f} {r['children_rss_mb']:>8.0f}"
            f" {r['train_s'] / r['n'] / unit:>22.1f} {r['job_s'] / unit:>17.1f}"
        )
    lines.append("")
    lines.append(f"per experiment, as a ratio to N = {base['n']}'s:")
    lines.append(
        f"{'N':>4} {'create':>7} {'train':>7} {'threads':>8} {'fds':>6} {'RSS':>6} {'msg/s':>7}"
    )
    for r in results:
        ratio = {
            k: per(r, k) / per(base, k) if per(base, k) else float("nan")
            for k in ("create_s", "train_s", "threads", "fds", "rss_mb")
        }
        lines.append(
            f"{r['n']:>4} {ratio['create_s']:>7.2f} {ratio['train_s']:>7.2f}"
            f" {ratio['threads']:>8.2f} {ratio['fds']:>6.2f} {ratio['rss_mb']:>6.2f}"
            f" {r['msg_per_s'] / base['msg_per_s']:>7.2f}"
        )
    lines.append("")
    for r in results:
        lines.append(
            f"N={r['n']}: bare PCA.fit {r['fit_s'] * 1000:.1f} ms, store round trip"
            f" {r['trip_s'] * 1000:.1f} ms, one job {r['job_s'] * 1000:.0f} ms (median)"
            + (f"; errors: {r['errors']}" if r["errors"] else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200,500")
    parser.add_argument("--messages", type=int, default=100, help="one-row messages per experiment")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per phase at most")
    parser.add_argument("--rabbitmq", help="AMQP URL: run on RabbitMQ (needs --mlflow)")
    parser.add_argument("--mlflow", help="MLflow tracking URI (with --rabbitmq)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if bool(args.rabbitmq) != bool(args.mlflow):
        parser.error("--rabbitmq and --mlflow go together")
    if args.one is not None:
        print(json.dumps(run_one(args.one, args)))
        return
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(n), *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"N={n} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            break
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"N={n} done: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    if results:
        print(table(results))


if __name__ == "__main__":
    main()
