"""Retraining on real pump data (SKAB): faults stay flagged, new normals are followed.

Every figure is printed beside a monitor that never retrains, scored on the same rows in the
same run. The streams are built from the SKAB benchmark (``../shared/datasets/skab``, GPL: read
from there, never copied into the project), with a PCA monitor (T² and SPE at 99 %), streamed
through a hub in messages of 5 rows, the retrain policy's drift test on and every other setting
at its default:

* **fault** — a labelled file's first 400 rows train the monitor (the benchmark's protocol); its
  remaining normal rows stream in, then its anomalous segment ``--repeats`` times, so the fault
  persists across many drift tests. For ``approve`` (the default), ``auto`` (in-control windows)
  and ``auto`` with ``window_rows: all``: the share of fault rows flagged by each model version
  that served, beside the never-retrained monitor on the same rows.
* **new normal** — ``anomaly-free.csv`` rows 0-2,999 train; the next rows stream in, shifted from
  stream row 1,000 by +3 standard deviations on ``Current`` and ``Volume Flow RateRMS`` (a new
  duty point, no fault). The script acts as a person would: it labels the rows since the shift as
  normal, retrains, and promotes the challenger from shadow. Printed: false alarms after.
* **ramp** — ``anomaly-free.csv`` rows 0-2,999 train; the next 4,000 rows stream in with a
  linear ramp of +1 standard deviation on the same two sensors on top of the file's own slow
  drift, with ``promotion: auto`` and in-control windows. Printed: false alarms per eighth.

Usage::

    python bench/retraining.py [--skab ../shared/datasets/skab] [--files valve1/13.csv ...]
        [--repeats 8] [--only fault|new_normal|ramp]

The functions here are also what ``tests/integration/test_retraining_skab.py`` runs against
RabbitMQ and an MLflow server.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin

SKAB = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "skab"
SENSORS = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
]
MOVED = ["Current", "Volume Flow RateRMS"]
TIME = "datetime"
FAULT_FILES = ("valve1/13.csv", "valve1/10.csv", "valve2/0.csv", "other/14.csv")
MODES: dict[str, dict[str, Any]] = {
    "approve": {},
    "auto": {"promotion": "auto"},
    "auto, all rows": {"promotion": "auto", "window_rows": "all"},
}


def read_skab(path: Path) -> pd.DataFrame:
    """Read one SKAB file (``;``-separated, ``datetime`` first)."""
    return pd.read_csv(path, sep=";")


def monitor_config(**retrain: Any) -> dict[str, Any]:
    """The PCA monitor every scenario uses, with the drift test on and ``retrain`` on top."""
    return {
        "setup": {"datetime_column": TIME, "features": SENSORS},
        "create_model": {"model": "pca"},
        "retrain": {"drift": True, **retrain},
    }


# -- the streams ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """Training rows, the rows streamed after them (with ``is_fault``), and where phases end."""

    name: str
    train: pd.DataFrame
    stream: pd.DataFrame
    is_fault: np.ndarray
    phases: tuple[int, ...] = ()
    changes_at: int | None = None


def fault_stream(skab: Path, file: str, repeats: int = 8) -> Scenario:
    """First 400 rows train; the rest of the normal rows, then the fault ``repeats`` times."""
    frame = read_skab(skab / file)
    anomaly = frame["anomaly"].to_numpy() == 1
    first, last = int(np.argmax(anomaly)), len(anomaly) - int(np.argmax(anomaly[::-1]))
    normal, fault = frame.iloc[400:first], frame.iloc[first:last]
    stream = pd.concat([normal] + [fault] * repeats, ignore_index=True)
    stream[TIME] = _fresh_times(frame[TIME].iloc[399], len(stream))
    return Scenario(
        f"fault {file}",
        frame.iloc[:400][[TIME, *SENSORS]],
        stream[[TIME, *SENSORS]],
        stream["anomaly"].to_numpy() == 1,
    )


def new_normal_stream(skab: Path, *, shift_at: int = 1000, rows: int = 3500) -> Scenario:
    """``anomaly-free.csv``: 3,000 rows train; the stream moves +3 std on two sensors."""
    frame = read_skab(skab / "anomaly-free" / "anomaly-free.csv")
    stream = frame.iloc[3000 : 3000 + rows].reset_index(drop=True)
    std = frame[MOVED].std()
    for column in MOVED:
        stream.loc[shift_at:, column] += 3 * std[column]
    return Scenario(
        "new normal",
        frame.iloc[:3000],
        stream,
        np.zeros(len(stream), dtype=bool),
        phases=(shift_at + 600,),
        changes_at=shift_at,
    )


def ramp_stream(skab: Path, *, rows: int = 4000, size: float = 1.0) -> Scenario:
    """``anomaly-free.csv``: 3,000 rows train; ``rows`` stream with a ramp of ``size`` std."""
    frame = read_skab(skab / "anomaly-free" / "anomaly-free.csv")
    stream = frame.iloc[3000 : 3000 + rows].reset_index(drop=True)
    std = frame[MOVED].std()
    ramp = np.linspace(0.0, size, len(stream))
    for column in MOVED:
        stream[column] += ramp * std[column]
    return Scenario("ramp", frame.iloc[:3000], stream, np.zeros(len(stream), dtype=bool))


def _fresh_times(after: str, n: int) -> list[str]:
    """One-second steps after ``after``, so repeated rows keep moving forward in time."""
    start = pd.Timestamp(after) + pd.Timedelta(seconds=1)
    return [str(t) for t in pd.date_range(start, periods=n, freq="s")]


# -- running a stream through a hub -----------------------------------------------------------
@dataclass
class Run:
    """What the served models said of every streamed row, and the decisions taken."""

    scenario: Scenario
    served: pd.DataFrame  # per stream row: version, flagged
    never_retrained: np.ndarray
    decisions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def fault_rows_flagged(self) -> list[tuple[int, int, float, float]]:
        """Per served version: (version, fault rows, share flagged, never-retrained share)."""
        out = []
        fault = self.scenario.is_fault
        for version, rows in self.served.groupby("version", sort=True):
            mask = np.zeros(len(fault), dtype=bool)
            mask[rows.index] = True
            mask &= fault
            if mask.any():
                served = float(self.served["flagged"].to_numpy()[mask].mean())
                base = float(self.never_retrained[mask].mean())
                out.append((int(version), int(mask.sum()), served, base))
        return out

    def false_alarms(self, start: int = 0, stop: int | None = None) -> tuple[float, float]:
        """Share of normal rows flagged in ``[start, stop)``: served, never retrained."""
        normal = ~self.scenario.is_fault
        normal[:start] = False
        if stop is not None:
            normal[stop:] = False
        flagged = self.served["flagged"].to_numpy()
        return float(flagged[normal].mean()), float(self.never_retrained[normal].mean())


def stream_through(
    hub: ExperimentHub,
    name: str,
    scenario: Scenario,
    config: dict[str, Any],
    *,
    person: Callable[[ExperimentHub, str, Scenario], None] | None = None,
    rows_per_message: int = 5,
    pace: int = 100,
    timeout: float = 600.0,
) -> Run:
    """Train on the scenario, stream it through ``hub`` phase by phase, and collect results.

    ``person(hub, name, scenario)`` runs after the first phase (a person looking at the hub).
    Every ``pace`` rows the stream waits until they are answered and any retrain has ended:
    sensor rows arrive far slower than a retrain takes (1 s apart on the SKAB rig), and
    streaming faster than the hub retrains would measure the backlog, not the policy.
    """
    started = time.perf_counter()
    hub.create_experiment(name, "fault_detection", config)
    for suffix in ("predict", "predictions", "shadow", "alerts"):
        hub.flush(f"{name}.{suffix}")
    job = hub.train(name, data=scenario.train, wait=True)
    if job.status.state != "succeeded":
        raise RuntimeError(f"training {name} {job.status.state}: {job.status.error}")
    never = hub.predict(name, data=scenario.stream)["anomaly"].to_numpy(dtype=bool)
    stream = hub.require_plugin("datastream")
    hub.start_streaming(name)
    bounds = [0, *scenario.phases, len(scenario.stream)]
    sent = 0
    for phase, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        for start in range(a, b, rows_per_message):
            stop = min(b, start + rows_per_message)
            body = scenario.stream.iloc[start:stop].to_json(orient="records")
            stream.publish(f"{name}.predict", body, message_id=f"r{start}")  # type: ignore[attr-defined]
            sent += 1
            if (start - a) // pace != (stop - a) // pace:
                settle(hub, name, sent, timeout)  # a plant's rows come slower than a retrain
        settle(hub, name, sent, timeout)
        if person is not None and phase == 0:
            person(hub, name, scenario)
            settle(hub, name, sent, timeout)
    hub.stop_streaming(name)
    served = _collect(stream, name, len(scenario.stream))
    return Run(
        scenario,
        served,
        never,
        hub.status(name)["decisions"],
        time.perf_counter() - started,
    )


def settle(hub: ExperimentHub, name: str, sent: int, timeout: float) -> None:
    """Wait until every message was answered and no retrain runs (three checks in a row)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        status = hub.status(name)
        counters = status["counters"]
        done = counters["predicted_messages"] + counters["dead_letters"] >= sent
        idle = status["state"] == "ready" and not status["retrain_in_flight"]
        quiet = quiet + 1 if done and idle else 0
        if quiet >= 3:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name}: the stream did not settle within {timeout:g} s")


def _collect(stream: Any, name: str, n: int) -> pd.DataFrame:
    """Every result message, placed back on its stream rows by message id."""
    version = np.full(n, -1)
    flagged = np.zeros(n, dtype=bool)
    while body := stream.pull_data(f"{name}.predictions"):
        message = json.loads(body)
        start = int(str(message["message_id"]).removeprefix("r"))
        rows = message["rows"]
        version[start : start + len(rows)] = message["version"]
        flagged[start : start + len(rows)] = [bool(r["anomaly"]) for r in rows]
    if (version < 0).any():
        raise RuntimeError(f"{name}: {int((version < 0).sum())} streamed rows got no result")
    return pd.DataFrame({"version": version, "flagged": flagged})


def approve_the_new_normal(hub: ExperimentHub, name: str, scenario: Scenario) -> None:
    """What a person does after the shift: confirm the rows since it, retrain, promote."""
    status = hub.status(name)
    if status["alerts"]["open"] is None:
        raise RuntimeError(f"{name}: the shift raised no alert")
    assert scenario.changes_at is not None
    hub.feedback(
        name,
        label="normal",
        start=scenario.stream[TIME].iloc[scenario.changes_at],
        reason="new duty point: flow and current raised on purpose",
        by="bench",
    )
    job = hub.retrain(name, wait=True, reason="new duty point confirmed by a person")
    if job.status.state != "succeeded":
        raise RuntimeError(f"{name}: retrain {job.status.state}: {job.status.error}")
    if hub.status(name)["shadow"] is None:
        raise RuntimeError(f"{name}: the retrain left no challenger in shadow")
    hub.promote(name, reason="the new duty point is normal", by="bench")


@contextmanager
def memory_hub() -> Iterator[ExperimentHub]:
    """A hub on the in-memory plugins with thread jobs (what the bench uses by default)."""
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


# -- printing ---------------------------------------------------------------------------------
def print_fault(runs: Sequence[tuple[str, Run]]) -> None:
    """Fault rows flagged per served version, beside the never-retrained monitor."""
    print("\nfault rows flagged by each served version (never retrained, same rows)")
    for mode, run in runs:
        parts = [
            f"v{v} {served:.1%} ({base:.1%}) of {n}"
            for v, n, served, base in run.fault_rows_flagged()
        ]
        print(f"  {run.scenario.name:22} {mode:15} {'; '.join(parts)}  [{_kinds(run)}]")


def print_false_alarms(label: str, run: Run, start: int) -> None:
    """False alarms from ``start`` on, per eighth, beside the never-retrained monitor."""
    n = len(run.scenario.stream)
    edges = np.linspace(start, n, 9).astype(int)
    served, base = run.false_alarms(start)
    parts = [
        "{:.0%}/{:.0%}".format(*run.false_alarms(a, b))
        for a, b in zip(edges, edges[1:], strict=False)
    ]
    first, first_base = run.false_alarms(start, start + 500)
    print(
        f"  {label:36} {served:6.1%} ({base:.1%}); first 500 rows {first:.1%}"
        f" ({first_base:.1%}); by eighths {' '.join(parts)}  [{_kinds(run)}]"
    )


def _kinds(run: Run) -> str:
    wanted = ("promoted", "rejected", "skipped", "shadow")
    counts: dict[str, int] = {}
    for decision in run.decisions:
        if decision["kind"] in wanted:
            counts[decision["kind"]] = counts.get(decision["kind"], 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--skab", type=Path, default=SKAB)
    parser.add_argument("--files", nargs="*", default=list(FAULT_FILES))
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--only", choices=("fault", "new_normal", "ramp"))
    args = parser.parse_args(argv)
    if not args.skab.is_dir():
        raise SystemExit(f"{args.skab}: no SKAB folder. Pass --skab PATH (the GPL data set).")
    if args.only in (None, "fault"):
        runs = []
        for file in args.files:
            scenario = fault_stream(args.skab, file, args.repeats)
            for mode, retrain in MODES.items():
                with memory_hub() as hub:
                    run = stream_through(hub, "pump", scenario, monitor_config(**retrain))
                runs.append((mode, run))
        print_fault(runs)
    if args.only in (None, "new_normal"):
        scenario = new_normal_stream(args.skab)
        print("\nfalse alarms after a new duty point (served, never retrained in brackets)")
        with memory_hub() as hub:
            run = stream_through(
                hub, "pump", scenario, monitor_config(), person=approve_the_new_normal
            )
        print_false_alarms("approve: after the person's approval", run, scenario.phases[0])
    if args.only in (None, "ramp"):
        print("\nfalse alarms under a slow ramp (served, never retrained in brackets)")
        for size in (1.0, 2.0):
            scenario = ramp_stream(args.skab, size=size)
            with memory_hub() as hub:
                run = stream_through(hub, "pump", scenario, monitor_config(promotion="auto"))
            print_false_alarms(f"auto, in control: ramp +{size:g} std", run, 0)


if __name__ == "__main__":
    main()
