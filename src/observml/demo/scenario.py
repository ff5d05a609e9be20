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
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import pandas as pd

from observml.demo.setup import (
    LINE,
    LOAD,
    ORDERS,
    PUMP,
    DemoData,
    DemoOptions,
    experiment_configs,
    make_data,
    messages,
)
from observml.demo.summary import DemoReporter, ExperimentOutcome, QuietReporter, StoryStep
from observml.errors import ConfigError, ExperimentError, PluginError
from observml.io.queues import experiment_queues, predict_queue, predictions_queue

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.hub.hub import ExperimentHub
    from observml.plugins.datastream import DataStreamPlugin

__all__ = ["Demo"]

_POLL: Final = 0.1


# -- the scenario --------------------------------------------------------------------------
class Demo:
    """The scenario on a hub (see the module docstring); :meth:`run` returns the summary."""

    def __init__(
        self, hub: ExperimentHub, options: DemoOptions, reporter: DemoReporter | None = None
    ) -> None:
        self.hub = hub
        self.options = options
        self.say = reporter or QuietReporter()
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
        bodies = messages(data.phases[phase], self.options.size.rows_per_message, data.per_case)
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


def _key_metric(name: str, stream: pd.DataFrame, data: DemoData) -> str:
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


def _pump_metric(stream: pd.DataFrame, data: DemoData) -> str:
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
