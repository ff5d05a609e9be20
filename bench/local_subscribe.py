"""The local queue's ``subscribe`` against a ``consume_batch`` thread per queue, in one run.

For ``--queues`` queues of ``--messages`` messages each (published first), each round prints:

- drain: seconds from the first ``subscribe`` (or consumer thread start) until every message
  was handled; ``subscribe`` runs the handlers on a ``--workers``-thread pool, the baseline
  calls ``consume_batch`` from a thread per queue, both with ``--batch-size`` / ``--max-wait``;
- idle CPU: CPU seconds (user + system) this process spends per wall second while every queue
  is empty and still consumed;
- threads and open file descriptors on the queue file, while consuming.

Which side goes first alternates between rounds; the medians are printed with their ratio
(subscribe / consume_batch). Nothing is asserted. Usage::

    python bench/local_subscribe.py [--queues 200] [--messages 10] [--workers 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from observml.plugins.datastream import Message
from observml.plugins.local import LocalQueuePlugin

Figures = dict[str, float]


class Counter:
    """A batch handler counting messages; ``done`` is set once ``expected`` were handled."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, batch: Sequence[Message]) -> None:
        with self._lock:
            self.count += len(batch)
            if self.count >= self.expected:
                self.done.set()


def queue_fds(plugin: LocalQueuePlugin) -> int:
    file, count = str(plugin.file.absolute()), 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += fd.readlink().as_posix().startswith(file)
        except OSError:
            continue
    return count


def idle_cpu(seconds: float) -> float:
    """CPU seconds per wall second this process spends over ``seconds``."""
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def run(
    folder: Path,
    args: argparse.Namespace,
    start: Callable[[LocalQueuePlugin, list[str], Counter], Callable[[], None]],
) -> Figures:
    """Fill the queues, drain them with ``start`` (which returns its stop), measure."""
    plugin = LocalQueuePlugin(str(folder))
    plugin.connect()
    queues = [f"exp-{i}.predict" for i in range(args.queues)]
    for queue in queues:
        plugin.publish_batch(queue, [f"{queue}-{n}" for n in range(args.messages)])
    counter = Counter(args.queues * args.messages)
    threads, began = threading.active_count(), time.perf_counter()
    stop = start(plugin, queues, counter)
    if not counter.done.wait(120):
        raise RuntimeError(f"only {counter.count} of {counter.expected} handled in 120 s")
    drain = time.perf_counter() - began
    figures = {
        "drain_s": drain,
        "idle_cpu": idle_cpu(args.idle),
        "threads": threading.active_count() - threads,
        "file_fds": queue_fds(plugin),
    }
    stop()
    plugin.shutdown()
    return figures


def subscribing(args: argparse.Namespace) -> Callable[..., Callable[[], None]]:
    def start(plugin: LocalQueuePlugin, queues: list[str], counter: Counter) -> Callable[[], None]:
        pool = ThreadPoolExecutor(args.workers)
        subscriptions = [
            plugin.subscribe(
                q, counter, executor=pool, batch_size=args.batch_size, max_wait=args.max_wait
            )
            for q in queues
        ]

        def stop() -> None:
            for subscription in subscriptions:
                subscription.cancel()
            pool.shutdown()

        return stop

    return start


def consuming(args: argparse.Namespace) -> Callable[..., Callable[[], None]]:
    def start(plugin: LocalQueuePlugin, queues: list[str], counter: Counter) -> Callable[[], None]:
        done = threading.Event()
        threads = [
            threading.Thread(
                target=plugin.consume_batch,
                args=(q, counter),
                kwargs={"batch_size": args.batch_size, "max_wait": args.max_wait, "stop": done},
                daemon=True,
            )
            for q in queues
        ]
        for thread in threads:
            thread.start()

        def stop() -> None:
            done.set()
            for thread in threads:
                thread.join()

        return stop

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-wait", type=float, default=0.5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle measured")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sides = {"subscribe": subscribing(args), "consume_batch": consuming(args)}
    results: dict[str, list[Figures]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                figures = run(Path(tmp) / f"{name}-{round_}", args, sides[name])
                results[name].append(figures)
                shown = ", ".join(f"{k} {v:.3g}" for k, v in figures.items())
                print(f"round {round_ + 1} {name:13} {shown}", flush=True)
    print(
        f"\n{args.queues} queues x {args.messages} messages, batch_size {args.batch_size},"
        f" max_wait {args.max_wait}, subscribe on {args.workers} workers; medians:"
    )
    for key in ("drain_s", "idle_cpu", "threads", "file_fds"):
        sub, con = (statistics.median(f[key] for f in results[name]) for name in sides)
        ratio = f"{sub / con:.2f}" if con else "n/a"
        print(f"  {key:9} subscribe {sub:8.3f}   consume_batch {con:8.3f}   ratio {ratio}")


if __name__ == "__main__":
    main()
