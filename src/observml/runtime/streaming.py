"""The prediction stream: consume -> micro-batch predict -> publish results -> ack.

One :class:`StreamWorker` thread per streaming experiment consumes ``<name>.predict`` in
micro-batches. A batch is predicted with the champion read once (so a swap never splits a
batch), one result message per input message goes to ``<name>.predictions`` with publisher
confirms, and only then are the inputs acked. A message that cannot be parsed or scored goes
to ``<name>.predict.dead`` with the reason; the others carry on. If publishing fails because
the service is down, the batch is requeued (nothing is lost; a redelivered input may produce a
second result with the same ``message_id``, which consumers deduplicate).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from observml.errors import ObservMLError, ServiceUnavailableError
from observml.hub.managed import ManagedExperiment
from observml.io.messages import encode_rows, json_records, rows_from_batch, rows_from_message
from observml.plugins.datastream import DataStreamPlugin, Message
from observml.plugins.mlops import Metric, MLOpsPlugin
from observml.retraining.alerts import alerts_queue
from observml.retraining.shadow import Shadow, shadow_queue

if TYPE_CHECKING:
    from observml.config import StreamingSection
    from observml.experiments.base import Experiment
    from observml.retraining.drift import ScoreSample

__all__ = [
    "StreamWorker",
    "batch_metrics",
    "experiment_queues",
    "predict_queue",
    "predictions_queue",
    "train_queue",
]

logger = logging.getLogger(__name__)


def train_queue(name: str) -> str:
    """The queue training data for experiment ``name`` is read from."""
    return f"{name}.train"


def predict_queue(name: str) -> str:
    """The queue rows to predict for experiment ``name`` arrive on."""
    return f"{name}.predict"


def predictions_queue(name: str) -> str:
    """The queue results for experiment ``name`` are published to."""
    return f"{name}.predictions"


def experiment_queues(name: str) -> tuple[str, ...]:
    """Every queue the hub declares for experiment ``name`` (each with its ``.dead`` queue)."""
    return (
        train_queue(name),
        predict_queue(name),
        predictions_queue(name),
        shadow_queue(name),
        alerts_queue(name),
    )


def batch_metrics(
    experiment: Experiment, frame: pd.DataFrame, result: pd.DataFrame
) -> dict[str, float]:
    """Metrics of one predicted batch, computed from the predictions (no second predict).

    ``anomaly_rate`` and ``mean_score`` from detector outputs; ``accuracy`` when the batch
    carries the classifier's target; ``mae``/``mape`` when forecasts meet actuals;
    ``fitness``/``conformance_rate`` from process-mining verdicts.
    """
    metrics: dict[str, float] = {}
    if "anomaly" in result:
        metrics["anomaly_rate"] = float(np.mean(result["anomaly"].astype(bool)))
    if "score" in result:
        metrics["mean_score"] = float(np.nanmean(result["score"].astype(float)))
    if "fitness" in result:
        metrics["fitness"] = float(np.nanmean(pd.to_numeric(result["fitness"], errors="coerce")))
    if "conformant" in result:
        metrics["conformance_rate"] = float(np.mean(result["conformant"].astype(bool)))
    target = experiment.settings_.setup.get("target") if experiment.is_trained else None
    if "prediction" in result and target and target in frame:
        truth = frame[target].astype(str).to_numpy()
        predicted = result["prediction"].astype(str).to_numpy()
        metrics["accuracy"] = float(np.mean(truth == predicted))
    if "forecast" in result and "actual" in result:
        actual = pd.to_numeric(result["actual"], errors="coerce")
        error = (actual - pd.to_numeric(result["forecast"], errors="coerce")).abs()
        if error.notna().any():
            metrics["mae"] = float(error.mean())
            nonzero = actual.abs() > 1e-12
            if nonzero.any():
                metrics["mape"] = float((error[nonzero] / actual[nonzero].abs()).mean() * 100)
    return metrics


class StreamWorker:
    """Streams predictions for one experiment until :meth:`stop`.

    Args:
        managed: The experiment.
        datastream: Where messages come from and results go.
        mlops: Where batch metrics are logged (in batches, every ``settings.log_interval`` s).
        settings: Batch size, wait, prefetch and intervals.
        after_batch: Called with ``(managed, metrics, n_rows, scores)`` after each batch (the
            hub's retrain check; ``scores`` is ``None`` unless the policy has a drift test); it
            must not block.
        refresh_champion: Called at most every ``settings.champion_refresh`` seconds to pick up
            a champion another hub process promoted.
    """

    def __init__(
        self,
        managed: ManagedExperiment,
        datastream: DataStreamPlugin,
        mlops: MLOpsPlugin | None,
        settings: StreamingSection,
        *,
        after_batch: Callable[
            [ManagedExperiment, Mapping[str, float], int, ScoreSample | None], None
        ],
        refresh_champion: Callable[[ManagedExperiment], None],
    ) -> None:
        self.managed = managed
        self.datastream = datastream
        self.mlops = mlops
        self.settings = settings
        self._after_batch = after_batch
        self._refresh_champion = refresh_champion
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"observml-stream-{managed.name}", daemon=True
        )
        self._pending: list[Metric] = []
        self._last_log = time.monotonic()
        self._last_refresh = time.monotonic()
        self._serving_run: str | None = None
        self._step = 0
        self._drift_warned = False
        self.error: str | None = None

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Declare the queues and start consuming in a background thread."""
        name = self.managed.name
        for queue in (predict_queue(name), predictions_queue(name), shadow_queue(name)):
            self.datastream.create_queue(queue)
        self._thread.start()
        self.managed.streaming = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming (the batch in hand finishes first) and flush pending metrics."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.managed.streaming = False
        self._flush_metrics(final=True)

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            if self.managed.champion()[0] is None:
                self._wait_for_champion()
                continue
            try:
                self.datastream.consume_batch(
                    predict_queue(self.managed.name),
                    self._handle,
                    batch_size=self.settings.batch_size,
                    max_wait=self.settings.max_wait,
                    prefetch=self.settings.prefetch,
                    stop=self._stop,
                )
                if not self._stop.is_set():  # the plugin was disconnected under us
                    self._stop.wait(backoff)
            except ObservMLError as exc:
                self.error = str(exc)
                logger.warning(
                    "%s: stream interrupted: %s; retrying in %.1f s",
                    self.managed.name,
                    exc,
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                self.error = "unexpected error in the stream worker; see the logs"
                logger.exception("%s: stream worker failed; retrying", self.managed.name)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5
        self.managed.streaming = False

    def _wait_for_champion(self) -> None:
        """Leave messages queued until a champion exists (trained here or in another hub)."""
        self._last_refresh = 0.0
        self._maybe_refresh()
        if self.managed.champion()[0] is None:
            self._stop.wait(min(1.0, self.settings.champion_refresh))

    def _handle(self, batch: Sequence[Message]) -> dict[int, str]:
        """Predict one micro-batch; return ``{index: reason}`` for messages to dead-letter."""
        self._maybe_refresh()
        experiment, version = self.managed.champion()
        if experiment is None:
            raise ServiceUnavailableError(
                f"experiment {self.managed.name!r} has no champion yet; messages wait in"
                f" {predict_queue(self.managed.name)!r} until one is trained."
            )
        started = time.perf_counter()
        fmt = experiment.settings_.format
        dead: dict[int, str] = {}
        parts: list[tuple[int, list[dict[str, Any]] | pd.DataFrame]] = []
        fast = rows_from_batch(batch, fmt)
        if fast is not None:
            parts = list(enumerate(fast))
        else:
            for index, message in enumerate(batch):
                try:
                    parts.append((index, rows_from_message(message, fmt)))
                except ObservMLError as exc:
                    dead[index] = f"{type(exc).__name__}: {exc}"
        if not parts:
            self.managed.count("dead_letters", len(dead))
            return dead
        frame, spans = _combine(parts)
        parts_by_index = dict(parts)
        records, failed, predicted = _predict_spans(experiment, frame, spans, parts_by_index)
        dead.update(failed)
        outgoing = [
            encode_rows(batch[index].message_id, self.managed.name, version, records[index])
            for index, _, _ in spans
            if index in records
        ]
        if outgoing:
            self.datastream.publish_batch(predictions_queue(self.managed.name), outgoing)
        self.managed.count("dead_letters", len(dead))
        scored = [(start, stop) for index, start, stop in spans if index in records]
        if scored:
            if predicted is not None:  # the whole batch in one call: rows and results as they are
                rows, result = frame, predicted.reset_index(drop=True)
            else:
                keep = np.concatenate([np.arange(a, b) for a, b in scored])
                rows = frame.iloc[keep].reset_index(drop=True)
                result = pd.DataFrame.from_records(
                    [row for index, _, _ in spans if index in records for row in records[index]]
                )
            metrics = batch_metrics(experiment, rows, result)
            self.managed.count("predicted_messages", len(outgoing))
            self.managed.remember(rows, result, metrics, experiment.alarms(rows, result))
            shadow = self.managed.shadow
            if shadow is not None:
                kept = [(index, parts_by_index[index]) for index, _, _ in spans if index in records]
                self._shadow(shadow, batch, kept, rows, experiment, result)
            self.managed.observe_batch(time.perf_counter() - started)
            self._queue_metrics(metrics, len(rows))
            sample = self._score_sample(experiment, result, version)
            self._after_batch(self.managed, metrics, len(rows), sample)
        return dead

    def _shadow(
        self,
        shadow: Shadow,
        batch: Sequence[Message],
        parts: list[tuple[int, list[dict[str, Any]] | pd.DataFrame]],
        rows: pd.DataFrame,
        champion: Experiment,
        champion_result: pd.DataFrame,
    ) -> None:
        """Score the champion's rows with the challenger in shadow and publish to ``.shadow``."""
        name = self.managed.name
        _, spans = _combine(parts)
        records, failed, predicted = _predict_spans(shadow.experiment, rows, spans, dict(parts))
        for reason in failed.values():
            shadow.failed(reason)
        if not records:
            return
        outgoing = [
            encode_rows(batch[index].message_id, name, shadow.version, records[index])
            for index, _, _ in spans
            if index in records
        ]
        try:
            self.datastream.publish_batch(shadow_queue(name), outgoing)
        except ObservMLError as exc:  # advisory results: the champion's went out already
            shadow.failed(f"publishing to {shadow_queue(name)!r} failed: {exc}")
        if failed:  # verdicts are compared only on batches both models scored whole
            return
        result = (
            predicted.reset_index(drop=True)
            if predicted is not None
            else pd.DataFrame.from_records([r for index, _, _ in spans for r in records[index]])
        )
        time_values = champion.time_values(rows)
        shadow.observe(
            rows,
            champion,
            champion_result,
            result,
            x=None if time_values is None else time_values.to_numpy(),
        )
        self.managed.count("shadow_rows", len(rows))

    def _score_sample(
        self, experiment: Experiment, result: pd.DataFrame, version: int | None
    ) -> ScoreSample | None:
        """The batch's scores for the drift test (``None`` when the policy has none)."""
        if self.managed.tracker.policy.drift is None:
            return None
        try:
            return experiment.score_sample(result, model=version)
        except ObservMLError as exc:  # predictions went out; only the drift test misses them
            if not self._drift_warned:
                logger.warning("%s: drift test skipped: %s", self.managed.name, exc)
                self._drift_warned = True
            return None

    # -- champion refresh and metric logging ----------------------------------------------
    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_refresh < self.settings.champion_refresh:
            return
        self._last_refresh = now
        try:
            self._refresh_champion(self.managed)
        except Exception:
            logger.warning("%s: champion refresh failed", self.managed.name, exc_info=True)

    def _queue_metrics(self, metrics: Mapping[str, float], rows: int) -> None:
        if self.mlops is None:
            return
        self._step += 1
        stamp = int(time.time() * 1000)
        self._pending.extend(
            Metric(f"stream_{k}", v, self._step, stamp) for k, v in metrics.items()
        )
        self._pending.append(Metric("stream_batch_rows", float(rows), self._step, stamp))
        if time.monotonic() - self._last_log >= self.settings.log_interval:
            self._flush_metrics()

    def _flush_metrics(self, *, final: bool = False) -> None:
        if self.mlops is None or not (self._pending or (final and self._serving_run)):
            return
        points, self._pending = self._pending, []
        self._last_log = time.monotonic()
        try:
            if self._serving_run is None:
                experiment_id = self.mlops.create_experiment(self.managed.name)
                self._serving_run = self.mlops.start_run(
                    experiment_id, run_name="serving", tags={"observml.kind": "serving"}
                )
            if points:
                self.mlops.log_batch(self._serving_run, metrics=points)
            if final:
                self.mlops.end_run(self._serving_run, "FINISHED")
                self._serving_run = None
        except Exception:
            logger.warning("%s: logging stream metrics failed", self.managed.name, exc_info=True)


def _combine(
    parts: list[tuple[int, list[dict[str, Any]] | pd.DataFrame]],
) -> tuple[pd.DataFrame, list[tuple[int, int, int]]]:
    """Stack every message's rows into one frame; return it and ``(index, start, stop)`` spans."""
    spans: list[tuple[int, int, int]] = []
    position = 0
    for index, rows in parts:
        spans.append((index, position, position + len(rows)))
        position += len(rows)
    if all(isinstance(rows, list) for _, rows in parts):
        records = [row for _, rows in parts for row in rows]
        return pd.DataFrame.from_records(records), spans
    frames = [
        rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
        for _, rows in parts
    ]
    return pd.concat(frames, ignore_index=True), spans


def _predict_spans(
    experiment: Experiment,
    frame: pd.DataFrame,
    spans: list[tuple[int, int, int]],
    parts: Mapping[int, list[dict[str, Any]] | pd.DataFrame],
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, str], pd.DataFrame | None]:
    """Predict the whole frame in one call, or message by message to find the bad ones.

    Returns:
        JSON-ready result rows per message index, reasons for the failures, and the whole
        prediction frame when one call predicted every row (else ``None``).
    """
    try:
        predicted = experiment.predict(frame)
    except Exception:  # retried message by message below
        predicted = None
    if predicted is not None and len(predicted) == len(frame):
        rows = json_records(predicted)
        return {index: rows[start:stop] for index, start, stop in spans}, {}, predicted
    results: dict[int, list[dict[str, Any]]] = {}
    failed: dict[int, str] = {}
    for index, _, _ in spans:
        rows = parts[index]  # the message's own columns, so errors name what it lacks
        try:
            part = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
            results[index] = json_records(experiment.predict(part))
        except Exception as exc:  # a model failing on one message's rows
            failed[index] = f"{type(exc).__name__}: {exc}"
    return results, failed, None
