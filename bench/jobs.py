"""What a training job's child process costs: ``job_isolation: process`` against ``thread``.

Trains the same ``fault_detection`` experiment with both isolations on the memory plugins and
prints the best wall time of each and the difference, which is what a ``process`` job adds:
starting a fresh interpreter that imports pandas, scikit-learn and observml, and sending the
data and the fitted model across. Rounds alternate the two modes so the machine's load hits
both alike; the best of ``--repeat`` rounds is kept (noise only ever adds time).

Usage::

    python bench/jobs.py [--rows 500] [--repeat 5] [--model pca]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin


def train_seconds(isolation: str, data: pd.DataFrame, model: str) -> float:
    """Return the wall time of one ``train(wait=True)`` on a fresh memory-backed hub."""
    with ExperimentHub(job_isolation=isolation) as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("pump", "fault_detection", {"create_model": {"model": model}})
        start = time.perf_counter()
        job = hub.train("pump", data=data, wait=True)
        elapsed = time.perf_counter() - start
        assert job.status.state == "succeeded", job.status.error
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="pca")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(0, 1, (args.rows, 3)), columns=["temp", "pressure", "flow"])
    train_seconds("thread", data, args.model)  # warm-up: imports everything in this process
    times: dict[str, list[float]] = {"thread": [], "process": []}
    for round_ in range(args.repeat):
        order = ("thread", "process") if round_ % 2 == 0 else ("process", "thread")
        for isolation in order:
            times[isolation].append(train_seconds(isolation, data, args.model))
    thread, process = min(times["thread"]), min(times["process"])
    print(f"fault_detection/{args.model}, {args.rows} rows, best of {args.repeat}:")
    for isolation, best in (("thread", thread), ("process", process)):
        rounds = ", ".join(f"{t:.2f}" for t in times[isolation])
        print(f"  {isolation:7} job  {best:6.2f} s   rounds {rounds}")
    print(f"  the child adds {process - thread:.2f} s ({process / thread:.1f}x the thread job)")


if __name__ == "__main__":
    main()
