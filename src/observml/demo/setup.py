"""What the demo runs on: its experiments, their configs, the hub config, and the data.

The pump's data tells its story in phases: normal rows, a new duty point, more rows at that
point while a challenger waits in shadow, settled rows, then a bearing that starts to fail
(see :class:`DemoSize`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from observml import datasets
from observml.config.yaml_dump import dump_yaml

__all__ = [
    "LINE",
    "LOAD",
    "ORDERS",
    "PUMP",
    "DemoData",
    "DemoOptions",
    "DemoSize",
    "demo_config",
    "experiment_configs",
    "make_data",
    "messages",
]

PUMP: Final = "demo-pump"
LINE: Final = "demo-line"
LOAD: Final = "demo-load"
ORDERS: Final = "demo-orders"


@dataclass(frozen=True)
class DemoSize:
    """How much data the demo generates (rows, or cases for the event log).

    The pump streams ``pump_normal`` rows, then ``pump_shifted`` at its new duty point (the
    alert), then ``pump_after`` more at that point while a challenger is in shadow, then
    ``pump_settled`` normal rows for the new champion and ``pump_fault`` rows of a failing
    bearing (in two halves: the second is scored in shadow before the person decides).
    ``pump_window`` is the retrain window (``streaming.retrain_rows``).
    """

    pump_train: int = 1500
    pump_normal: int = 300
    pump_shifted: int = 600
    pump_after: int = 400
    pump_settled: int = 300
    pump_fault: int = 300
    pump_window: int = 600
    line_train: int = 1500
    line_stream: int = 400
    load_days: int = 45
    orders_train: int = 200
    orders_stream: int = 60
    rows_per_message: int = 10

    @classmethod
    def quick(cls) -> DemoSize:
        """A small run (tests, ``--quick``)."""
        return cls(
            pump_train=600,
            pump_normal=200,
            pump_shifted=400,
            pump_after=200,
            pump_settled=200,
            pump_fault=200,
            pump_window=400,
            line_train=500,
            line_stream=150,
            load_days=21,
            orders_train=60,
            orders_stream=20,
        )


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo runs and how big it is.

    Attributes:
        size: Data sizes.
        datastream: ``"local"`` (embedded queue) or ``"rabbitmq"``.
        rabbitmq: Connection settings for ``rabbitmq`` (host, port, username, virtual_host;
            the password comes from ``$RABBITMQ_PASSWORD``, default ``guest``).
        report: Where the HTML report goes.
        timeout: Seconds to wait for each phase (training, streaming, the retrain).
        job_isolation: How training jobs run (``thread`` starts fastest).
    """

    size: DemoSize = field(default_factory=DemoSize)
    datastream: Literal["local", "rabbitmq"] = "local"
    rabbitmq: Mapping[str, Any] = field(default_factory=dict)
    report: Path = Path("observml-demo-report.html")
    timeout: float = 120.0
    job_isolation: Literal["thread", "process"] = "thread"


# -- configuration -------------------------------------------------------------------------
def experiment_configs(size: DemoSize) -> dict[str, tuple[str, dict[str, Any]]]:
    """Return ``{name: (type, config)}`` of the demo's experiments."""
    off = {"enabled": False}
    return {
        PUMP: (
            "fault_detection",
            {
                "description": "pump sensors; alerts when the anomaly rate stays high",
                "setup": {"datetime_column": "ds"},
                "create_model": {"model": "pca", "params": {"alpha": 0.99}},
                "retrain": {
                    "metric": "anomaly_rate",
                    "threshold": 0.3,
                    "higher_better": False,
                    "window": 3,
                    "min_samples": size.pump_normal,
                    "promotion": "approve",
                },
            },
        ),
        LINE: (
            "fault_isolation",
            {
                "description": "three-phase line: which fault is it?",
                "setup": {"datetime_column": "ds", "target": "fault"},
                "create_model": {"model": "random_forest", "params": {"n_estimators": 100}},
                "retrain": off,
            },
        ),
        LOAD: (
            "time_series",
            {
                "description": "hourly load forecast; actuals outside the interval are anomalies",
                "setup": {"target": "y", "datetime_column": "ds", "freq": "h"},
                "create_model": {
                    "model": "exponential_smoothing",
                    "params": {"trend": "add", "seasonal": "add", "seasonal_periods": 24},
                },
                "retrain": off,
            },
        ),
        ORDERS: (
            "process_mining",
            {
                "description": "production orders checked against the discovered process",
                "setup": {"case_column": "case_id", "activity_column": "activity"},
                "create_model": {"model": "heuristics_miner"},
                "retrain": off,
            },
        ),
    }


def demo_config(options: DemoOptions, *, experiments: Sequence[str] = ()) -> str:
    """Return the demo's hub config as YAML (``experiments`` are listed for ``serve``)."""
    if options.datastream == "rabbitmq":
        settings = {
            "host": "127.0.0.1",
            "port": 5672,
            "username": "guest",
            **{k: v for k, v in options.rabbitmq.items() if k != "password"},
            "password": "${RABBITMQ_PASSWORD:-guest}",
        }
        datastream: dict[str, Any] = {"type": "rabbitmq", "config": settings}
    else:
        datastream = {"type": "local"}
    configs = experiment_configs(options.size)
    document: dict[str, Any] = {
        "version": 1,
        "global": {"log_level": "WARNING", "job_isolation": options.job_isolation},
        "plugins": {
            "mlops": {"type": "mlflow", "config": {"mlflow_uri": "local"}},
            "datastream": datastream,
        },
        "streaming": {
            "batch_size": 10,
            "max_wait": 0.2,
            "retrain_rows": options.size.pump_window,
            "holdout_fraction": 0.25,
            "log_interval": 2.0,
        },
    }
    if experiments:
        document["experiments"] = [
            {"name": n, "type": configs[n][0], "config": configs[n][1], "streaming": True}
            for n in experiments
        ]
    header = (
        "# Written by 'observml demo'. Serve the demo's experiments on the dashboard with:\n"
        "#   observml serve --config <this file>\n"
    )
    return header + dump_yaml(document)


# -- data ----------------------------------------------------------------------------------
@dataclass
class DemoData:
    """One experiment's training rows and the phases streamed to it."""

    train: pd.DataFrame
    phases: list[pd.DataFrame]  # streamed in order; the pump's story acts in between
    per_case: bool = False
    changes: tuple[str, ...] = ()  # when the pump's duty point moved and its bearing failed


def make_data(size: DemoSize) -> dict[str, DemoData]:
    """Generate every experiment's training rows and streamed rows."""
    parts = [
        size.pump_train,
        size.pump_normal,
        size.pump_shifted,
        size.pump_after,
        size.pump_settled,
        size.pump_fault,
    ]
    pump = datasets.pump_sensors(sum(parts), seed=11, faults=False)
    pump = pump.drop(columns=["fault", "fault_type"])
    cut = np.cumsum(parts)
    stream = pump.iloc[cut[0] :].reset_index(drop=True)
    moved = np.clip((np.arange(len(stream)) - size.pump_normal) / 12, 0, 1)
    stream["sensor_00"] += 18 * moved  # a new duty point after maintenance
    stream["sensor_01"] -= 12 * moved
    failing = np.arange(cut[4] - cut[0], len(stream))
    stream.loc[failing, "sensor_03"] += np.linspace(15, 30, len(failing))  # a bearing wears
    ends = [0, size.pump_normal + size.pump_shifted, *(cut[3:] - cut[0])]
    ends.insert(-1, ends[-2] + size.pump_fault // 2)
    line = datasets.fault_table(size.line_train + size.line_stream, seed=3)
    hours = 24 * size.load_days
    load = datasets.seasonal_series(hours, seed=4, n_anomalies=max(3, size.load_days // 5))
    split = 2 * hours // 3
    orders_train = datasets.event_log(size.orders_train, seed=6, deviation_rate=0.05)
    orders_new = datasets.event_log(
        size.orders_stream, seed=7, deviation_rate=0.25, start="2024-03-01"
    )
    return {
        PUMP: DemoData(
            pump.iloc[: cut[0]],
            [stream.iloc[a:b] for a, b in zip(ends, ends[1:], strict=False)],
            changes=(str(stream["ds"].iloc[size.pump_normal]), str(stream["ds"].iloc[ends[3]])),
        ),
        LINE: DemoData(line.iloc[: size.line_train], [line.iloc[size.line_train :]]),
        LOAD: DemoData(load.iloc[:split].drop(columns="anomaly"), [load.iloc[split:]]),
        ORDERS: DemoData(orders_train.drop(columns="deviant"), [orders_new], per_case=True),
    }


def messages(frame: pd.DataFrame, rows: int, per_case: bool) -> list[str]:
    """Cut ``frame`` into JSON message bodies: ``rows`` rows each, or one case each."""
    if per_case:
        groups = [g for _, g in frame.groupby("case_id", sort=False)]
    else:
        groups = [frame.iloc[i : i + rows] for i in range(0, len(frame), rows)]
    return [g.to_json(orient="records", date_format="iso") for g in groups]
