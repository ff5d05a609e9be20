"""The ``observml demo`` scenario: the whole job on synthetic plant data, start to finish.

What :func:`run_demo` does, on the embedded defaults (MLflow on SQLite and the ``local`` queue
under ``$OBSERVML_HOME`` or ``./.observml``) or on RabbitMQ:

1. creates one experiment per type: ``demo-pump`` (fault detection, PCA), ``demo-line`` (fault
   isolation, random forest), ``demo-load`` (time series, Holt-Winters) and ``demo-orders``
   (process mining, heuristics miner; skipped with a clear line when pm4py is missing);
2. trains them as jobs from :mod:`observml.datasets` data (each a run and a model version);
3. streams new rows through ``<name>.predict`` -> ``<name>.predictions`` for every experiment.
   The pump's story is the retraining flow a plant runs: it moves to a new duty point, the
   monitor flags nearly every row and raises an alert; the script, acting as a person,
   confirms the new duty point as normal and retrains; the challenger scores the new rows in
   shadow beside the champion and is promoted. Later a bearing starts to fail: the alert
   comes again, and the script rejects that challenger *as a fault*, so the rows stay in the
   fault library every later challenger must keep flagging;
4. writes a self-contained HTML report and returns a :class:`DemoSummary`.

The hub config it used is written to ``<home>/demo/hub_config.yaml`` with the experiments in
it, so ``observml serve --config <that file>`` serves the demo's champions on the dashboard.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

import numpy as np
import pandas as pd
import yaml

from observml import datasets
from observml.errors import ConfigError, ExperimentError, PluginError
from observml.runtime.streaming import experiment_queues, predict_queue, predictions_queue

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.hub.hub import ExperimentHub
    from observml.plugins.datastream import DataStreamPlugin
    from observml.runtime.jobs import Job

__all__ = [
    "DemoOptions",
    "DemoReporter",
    "DemoSize",
    "DemoSummary",
    "ExperimentOutcome",
    "StoryStep",
    "demo_config",
    "run_demo",
]

PUMP: Final = "demo-pump"
LINE: Final = "demo-line"
LOAD: Final = "demo-load"
ORDERS: Final = "demo-orders"
_POLL: Final = 0.1


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


@dataclass
class ExperimentOutcome:
    """One experiment's result, a row of the summary table."""

    name: str
    experiment_type: str
    model: str
    champion_version: int | None = None
    metric: str = ""
    predictions: int = 0
    retrains: int = 0
    skipped: str | None = None
    stream: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)


@dataclass(frozen=True)
class StoryStep:
    """One step of the pump's retraining story, for the report and the summary."""

    step: str
    text: str
    version: int | None = None
    figure: Figure | None = field(default=None, repr=False, compare=False)


@dataclass
class DemoSummary:
    """What the demo did and where to look."""

    experiments: list[ExperimentOutcome]
    report: Path
    hub_config: Path
    mlflow_db: Path
    datastream: str
    story: list[StoryStep]
    seconds: float = 0.0

    def outcome(self, name: str) -> ExperimentOutcome:
        """Return the outcome of experiment ``name``."""
        return next(e for e in self.experiments if e.name == name)


class DemoReporter(Protocol):
    """Where the demo says what it does (the CLI renders it with rich)."""

    def step(self, text: str) -> None:
        """Start a stage."""

    def note(self, text: str) -> None:
        """Say something about the current stage."""

    def wait_jobs(self, jobs: Mapping[str, Job], timeout: float) -> None:
        """Return once every job ended (showing progress), or after ``timeout`` seconds."""


class _Quiet:
    def step(self, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def wait_jobs(self, jobs: Mapping[str, Job], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for job in jobs.values():
            job.wait(max(0.0, deadline - time.monotonic()))


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
    return header + yaml.safe_dump(document, sort_keys=False)


# -- data ----------------------------------------------------------------------------------
@dataclass
class _Data:
    train: pd.DataFrame
    phases: list[pd.DataFrame]  # streamed in order; the pump's story acts in between
    per_case: bool = False
    changes: tuple[str, ...] = ()  # when the pump's duty point moved and its bearing failed


def make_data(size: DemoSize) -> dict[str, _Data]:
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
        PUMP: _Data(
            pump.iloc[: cut[0]],
            [stream.iloc[a:b] for a, b in zip(ends, ends[1:], strict=False)],
            changes=(str(stream["ds"].iloc[size.pump_normal]), str(stream["ds"].iloc[ends[3]])),
        ),
        LINE: _Data(line.iloc[: size.line_train], [line.iloc[size.line_train :]]),
        LOAD: _Data(load.iloc[:split].drop(columns="anomaly"), [load.iloc[split:]]),
        ORDERS: _Data(orders_train.drop(columns="deviant"), [orders_new], per_case=True),
    }


def _messages(frame: pd.DataFrame, rows: int, per_case: bool) -> list[str]:
    if per_case:
        groups = [g for _, g in frame.groupby("case_id", sort=False)]
    else:
        groups = [frame.iloc[i : i + rows] for i in range(0, len(frame), rows)]
    return [g.to_json(orient="records", date_format="iso") for g in groups]


# -- the scenario --------------------------------------------------------------------------
class Demo:
    """The scenario on a hub (see the module docstring); :meth:`run` returns the summary."""

    def __init__(
        self, hub: ExperimentHub, options: DemoOptions, reporter: DemoReporter | None = None
    ) -> None:
        self.hub = hub
        self.options = options
        self.say = reporter or _Quiet()
        self.data = make_data(options.size)
        self.outcomes: dict[str, ExperimentOutcome] = {}
        self.sent: dict[str, int] = {}
        self.story: list[StoryStep] = []

    @property
    def stream(self) -> DataStreamPlugin:
        """The hub's datastream."""
        return cast("DataStreamPlugin", self.hub.require_plugin("datastream"))

    def active(self) -> list[str]:
        """The experiments that were created (not skipped)."""
        return [n for n, o in self.outcomes.items() if o.skipped is None]

    def run(self) -> list[ExperimentOutcome]:
        """Create, train, stream, retrain and collect; return one outcome per experiment."""
        self.create()
        self.train()
        self.stream_and_retrain()
        self.collect()
        return list(self.outcomes.values())

    def create(self) -> None:
        """Create the experiments and empty their queues (a rerun starts clean)."""
        self.say.step("Creating one experiment per type")
        for name, (kind, config) in experiment_configs(self.options.size).items():
            model = str(config["create_model"]["model"])
            outcome = ExperimentOutcome(name, kind, model)
            self.outcomes[name] = outcome
            try:
                self.hub.create_experiment(name, kind, config)
            except (ConfigError, PluginError) as exc:
                outcome.skipped = str(exc).splitlines()[0]
                self.say.note(f"skipping {name} ({kind}): {outcome.skipped}")
                continue
            for queue in experiment_queues(name):
                self.hub.flush(queue)
            self.say.note(f"{name}: {kind}, model {model}")

    def train(self) -> None:
        """Train every experiment as a job, all at once, and wait for them."""
        self.say.step("Training (one MLflow run and model version each)")
        jobs = {name: self.hub.train(name, data=self.data[name].train) for name in self.active()}
        self.say.wait_jobs(jobs, self.options.timeout)
        for name, job in jobs.items():
            status = job.status
            if status.state != "succeeded":
                raise ExperimentError(
                    f"demo: training {name} {status.state}: {status.error or 'did not finish'}"
                    f" (waited up to {self.options.timeout:g} s)."
                )
            self.outcomes[name].champion_version = status.version
            self.say.note(f"{name}: version {status.version} is the champion")

    def stream_and_retrain(self) -> None:
        """Stream new rows to every experiment; the pump's story acts between its phases."""
        self.say.step("Streaming new data through prediction")
        names = self.active()
        for name in names:
            self.hub.start_streaming(name)
        for name in names:
            self._publish(name, 0)
        if PUMP in names:
            self.pump_story()
        self._wait_streamed(names)
        for name in names:
            self.hub.stop_streaming(name)

    def pump_story(self) -> None:
        """A new duty point approved by a person, then a failing bearing rejected as a fault."""
        shift_at, fault_at = self.data[PUMP].changes
        by = "the demo, as the process engineer"
        self.say.note(f"{PUMP}: moves to a new duty point at {shift_at}; waiting for the alert")
        alert = self._wait_for_alert("the new duty point")
        self._tell("alert", str(alert["reason"]))
        self.hub.feedback(
            PUMP, label="normal", start=shift_at, reason="new duty point after maintenance", by=by
        )
        job = self.hub.retrain(PUMP, wait=True, reason="the new duty point is confirmed normal")
        if job.status.state != "succeeded" or not job.status.result.get("shadow"):
            raise ExperimentError(
                f"demo: the challenger of {PUMP} did not reach shadow: {job.status.error or ''}"
            )
        self._tell(
            "approved",
            f"rows since {shift_at} confirmed normal; challenger v{job.status.version} trained"
            " on them runs in shadow beside the champion",
            version=job.status.version,
        )
        self._publish(PUMP, 1)
        self._wait_shadowed(len(self.data[PUMP].phases[1]))
        shadow = self.hub.status(PUMP)["shadow"]
        figure = self.hub.shadow_figure(PUMP)
        reason = (
            f"on {shadow['rows']} new rows the champion flags {shadow['champion_flag_rate']:.0%},"
            f" the challenger {shadow['challenger_flag_rate']:.0%}: the duty point is normal"
        )
        version = self.hub.promote(PUMP, reason=reason, by=by)
        self.outcomes[PUMP].champion_version = version
        self.outcomes[PUMP].retrains += 1
        self._tell("promoted", f"v{version} promoted: {reason}", version=version, figure=figure)
        self._publish(PUMP, 2)
        self._wait_streamed([PUMP])
        self._publish(PUMP, 3)
        self.say.note(f"{PUMP}: a bearing starts to fail at {fault_at}; waiting for the alert")
        alert = self._wait_for_alert("the failing bearing", shadow=True)
        self._tell("alert", str(alert["reason"]))
        self._publish(PUMP, 4)
        self._wait_shadowed(len(self.data[PUMP].phases[4]))
        figure = self.hub.shadow_figure(PUMP)
        outcome = self.hub.reject(
            PUMP,
            reason="a bearing is failing: a fault, not a new normal",
            as_fault=True,
            by=by,
        )
        self._tell(
            "rejected as a fault",
            f"challenger v{outcome['version']} rejected; {outcome['fault_rows']} flagged rows"
            " kept in the fault library, which every later challenger must keep flagging",
            version=outcome["version"],
            figure=figure,
        )

    def _tell(
        self, step: str, text: str, *, version: int | None = None, figure: Figure | None = None
    ) -> None:
        self.story.append(StoryStep(step, text, version, figure))
        self.say.note(f"{PUMP}: {text}")

    def _wait_for_alert(self, what: str, *, shadow: bool = False) -> dict[str, Any]:
        """Wait for an open alert with no retrain running (and a challenger in shadow)."""
        deadline = time.monotonic() + self.options.timeout
        while time.monotonic() < deadline:
            status = self.hub.status(PUMP)
            alert = status["alerts"]["open"]
            idle = status["state"] == "ready" and not status["retrain_in_flight"]
            if alert and idle and (status["shadow"] is not None or not shadow):
                return dict(alert)
            if status.get("stream_error"):
                raise ExperimentError(f"demo: streaming {PUMP} failed: {status['stream_error']}")
            time.sleep(_POLL)
        status = self.hub.status(PUMP)
        raise ExperimentError(
            f"demo: {what} raised no alert on {PUMP} within {self.options.timeout:g} s (last"
            f" batch metrics {status['metrics']}, {status['counters']['predicted_rows']:.0f}"
            " rows predicted). Check the retrain block of its config, or raise --timeout."
        )

    def _wait_shadowed(self, rows: int) -> None:
        deadline = time.monotonic() + self.options.timeout
        while time.monotonic() < deadline:
            shadow = self.hub.status(PUMP)["shadow"]
            if shadow and shadow["rows"] >= rows:
                return
            time.sleep(_POLL)
        raise ExperimentError(
            f"demo: the challenger of {PUMP} scored fewer than {rows} rows in shadow within"
            f" {self.options.timeout:g} s."
        )

    def _publish(self, name: str, phase: int) -> None:
        data = self.data[name]
        if phase >= len(data.phases):
            return
        bodies = _messages(data.phases[phase], self.options.size.rows_per_message, data.per_case)
        self.stream.publish_batch(predict_queue(name), bodies)
        self.sent[name] = self.sent.get(name, 0) + len(bodies)
        rows = len(data.phases[phase])
        self.say.note(f"{name}: sent {rows:,} rows in {len(bodies):,} messages")

    def _wait_streamed(self, names: Sequence[str]) -> None:
        deadline = time.monotonic() + self.options.timeout
        pending = list(names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                counters = self.hub.status(name)["counters"]
                done = counters.get("predicted_messages", 0) + counters.get("dead_letters", 0)
                if done >= self.sent.get(name, 0):
                    pending.remove(name)
            time.sleep(_POLL)
        if pending:
            raise ExperimentError(
                f"demo: {', '.join(pending)} did not predict every streamed message within"
                f" {self.options.timeout:g} s. See 'observml status NAME' for stream errors."
            )

    def collect(self) -> None:
        """Read the published predictions back from ``<name>.predictions``."""
        self.say.step("Collecting predictions")
        for name in self.active():
            frames = []
            for _ in range(self.sent.get(name, 0) + 10):
                body = self.stream.pull_data(predictions_queue(name))
                if not body:
                    break
                message = json.loads(body)
                frame = pd.DataFrame(message["rows"])
                frames.append(frame.assign(version=message["version"]))
            stream = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            outcome = self.outcomes[name]
            outcome.stream = stream
            outcome.predictions = len(stream)
            outcome.metric = _key_metric(name, stream, self.data[name])
            self.say.note(f"{name}: {len(stream):,} predictions; {outcome.metric}")


def _key_metric(name: str, stream: pd.DataFrame, data: _Data) -> str:
    """One line: the number that tells whether the experiment works on the streamed rows."""
    if stream.empty:
        return "no predictions"
    if name == PUMP:
        return _pump_metric(stream, data)
    if name == LINE:
        truth = pd.concat(data.phases)["fault"].astype(str).to_numpy()
        return f"accuracy {np.mean(stream['prediction'].astype(str).to_numpy() == truth):.1%}"
    if name == LOAD:
        error = (stream["actual"] - stream["forecast"]).abs() / stream["actual"].abs()
        return f"MAPE {error.mean():.1%}, {int(stream['anomaly'].sum())} anomalies"
    if name == ORDERS:
        truth = data.phases[0].groupby("case_id", sort=False)["deviant"].first()
        flagged = ~stream.set_index("case_id")["conformant"].reindex(truth.index).astype(bool)
        caught = int(flagged[truth.to_numpy()].sum())
        others = int(flagged.sum()) - caught
        return f"{caught}/{int(truth.sum())} deviating cases flagged, {others} others"
    return ""


def _pump_metric(stream: pd.DataFrame, data: _Data) -> str:
    """Share flagged in each chapter of the pump's story, with the version that served it."""
    shift_at, fault_at = (pd.Timestamp(t) for t in data.changes)
    times = pd.to_datetime(stream["ds"])
    chapters = [
        ("before the move", times < shift_at),
        ("new duty point", (times >= shift_at) & (times < fault_at)),
        ("failing bearing", times >= fault_at),
    ]
    parts = []
    for label, mask in chapters:
        for version, rows in stream[mask.to_numpy()].groupby("version", sort=True):
            parts.append(f"{label} {rows['anomaly'].mean():.0%} (v{version})")
    return "flagged: " + ", ".join(parts)


# -- entry point ---------------------------------------------------------------------------
def run_demo(options: DemoOptions, reporter: DemoReporter | None = None) -> DemoSummary:
    """Run the scenario on a hub built from the demo config; write the report; summarise.

    Raises:
        ObservMLError: A stage failed or timed out; the message says which and why.
    """
    from observml.config import HOME_ENV_VAR
    from observml.demo.report import write_report
    from observml.hub.hub import ExperimentHub

    started = time.perf_counter()
    say = reporter or _Quiet()
    home = Path(os.environ.get(HOME_ENV_VAR) or ".observml").resolve()  # as the plugins do
    folder = home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "hub_config.yaml"
    config_file.write_text(demo_config(options), encoding="utf-8")
    where = "RabbitMQ" if options.datastream == "rabbitmq" else "the local queue"
    say.step(f"Starting a hub: MLflow under {_short(home)}, {where}")
    with ExperimentHub.from_config(config_file) as hub:
        demo = Demo(hub, options, say)
        outcomes = demo.run()
        say.step("Writing the report")
        summary = DemoSummary(
            experiments=outcomes,
            report=options.report.resolve(),
            hub_config=config_file,
            mlflow_db=home / "mlflow.db",
            datastream=options.datastream,
            story=list(demo.story),
        )
        write_report(hub, summary)
    config_file.write_text(demo_config(options, experiments=demo.active()), encoding="utf-8")
    summary.seconds = time.perf_counter() - started
    return summary


def _short(path: Path) -> str:
    try:
        return f"./{path.relative_to(Path.cwd().resolve())}"
    except ValueError:
        return str(path)
