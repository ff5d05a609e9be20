"""How long the ``observml`` commands take, beside a bare ``python -c "import observml"``.

Each command is a new process, as a person runs it: ``observml status NAME``, ``observml
predict NAME --data FILE`` (50 rows) and ``observml health``, on the embedded defaults (MLflow
on SQLite and the local queue under ``$OBSERVML_HOME``). The setup is the demo's: pass
``--home`` to use a folder ``observml demo`` already filled (run the commands where the demo ran),
or leave it out and the bench runs ``observml demo --quick`` in a temporary folder first. Each
command runs ``--repeat`` times in turn with the others, so the machine's load hits all alike;
the median is printed with its ratio to the bare import, and the CPU time (user + system) of
the children, which a busy machine inflates less than the wall time. Nothing is asserted.

Usage::

    python bench/cli.py [--home PATH] [--repeat 5] [--name demo-pump]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _observml() -> list[str]:
    script = Path(sys.executable).parent / "observml"
    return [str(script)] if script.is_file() else [shutil.which("observml") or "observml"]


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv`` to its end; return its wall time and its CPU time (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="a folder the demo ran in")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--name", default="demo-pump")
    args = parser.parse_args()
    observml = _observml()
    with tempfile.TemporaryDirectory(prefix="observml-bench-cli-") as tmp:
        cwd = args.home.resolve() if args.home else Path(tmp)
        env = {**os.environ, "OBSERVML_HOME": str(cwd / ".observml")}
        env.pop("OBSERVML_CONFIG", None)
        if args.home is None:
            print(f"setting up: observml demo --quick in {cwd} ...", flush=True)
            run_once([*observml, "demo", "--quick"], cwd, env)
        rows = cwd / ".observml" / "demo" / "demo-pump-rows.csv"
        if not rows.is_file():
            raise SystemExit(f"{rows} is missing: run 'observml demo' there first (or no --home)")
        commands = {
            'python -c "import observml"': [sys.executable, "-c", "import observml"],
            f"observml status {args.name}": [*observml, "status", args.name],
            f"observml predict {args.name} (50 rows)": [
                *observml,
                "predict",
                args.name,
                "--data",
                str(rows),
            ],
            "observml health": [*observml, "health"],
            # as the demo prints it: with its hub config, which lists four experiments
            f"observml status {args.name} --config (demo's)": [
                *observml,
                "status",
                args.name,
                "--config",
                str(cwd / ".observml" / "demo" / "hub_config.yaml"),
            ],
        }
        run_once(commands[f"observml status {args.name}"], cwd, env)  # warm-up: caches, OS
        walls: dict[str, list[float]] = {label: [] for label in commands}
        cpus: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.repeat):
            for label, argv in commands.items():
                wall, cpu = run_once(argv, cwd, env)
                walls[label].append(wall)
                cpus[label].append(cpu)
    base = statistics.median(walls['python -c "import observml"'])
    base_cpu = statistics.median(cpus['python -c "import observml"'])
    print(f"median of {args.repeat} runs, each a new process (load {os.getloadavg()[0]:.1f}):")
    print(f"  {'command':42} {'wall':>8} {'ratio':>6} {'cpu':>8} {'ratio':>6}")
    for label in commands:
        wall, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
        print(f"  {label:42} {wall:7.2f}s {wall / base:5.1f}x {cpu:7.2f}s {cpu / base_cpu:5.1f}x")


if __name__ == "__main__":
    main()
