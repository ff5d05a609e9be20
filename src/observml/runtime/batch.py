"""One micro-batch of messages through the champion: what the stream and on-demand share.

:class:`BatchPredictor` parses a batch's messages, predicts them with the champion read once
(so a swap never splits a batch), publishes one result per message to ``<name>.predictions``
(and the challenger's to ``<name>.shadow`` while one waits in shadow), keeps the rows and the
champion's verdicts in the retrain window, counts, and hands the batch's metrics and scores to
the retrain policy. A message that cannot be parsed or scored is returned with its reason, to
be dead-lettered; the others carry on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from observml.errors import ObservMLError, ServiceUnavailableError
from observml.hub.managed import ManagedExperiment
from observml.io.messages import encode_rows, json_records, rows_from_batch, rows_from_message
from observml.io.queues import predict_queue, predictions_queue, shadow_queue
from observml.plugins.datastream import DataStreamPlugin, Message
from observml.retraining.shadow import Shadow

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.retraining.drift import ScoreSample

__all__ = [
    "AfterBatch",
    "BatchOutcome",
    "BatchPredictor",
    "batch_metrics",
]

logger = logging.getLogger(__name__)

#: Called with ``(managed, metrics, n_rows, scores)`` after each predicted batch (the hub's
#: retrain policy; ``scores`` is ``None`` unless the policy has a drift test); must not block.
AfterBatch = Callable[[ManagedExperiment, Mapping[str, float], int, "ScoreSample | None"], None]


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


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch gave: messages to dead-letter, and the rows and results it scored."""

    dead: dict[int, str] = field(default_factory=dict)
    rows: pd.DataFrame | None = None
    result: pd.DataFrame | None = None
    message_ids: list[str | None] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


class BatchPredictor:
    """Predicts micro-batches of one experiment's messages (see the module docstring).

    Args:
        managed: The experiment.
        datastream: Where results are published.
        after_batch: The retrain policy's hook, called after each scored batch.
    """

    def __init__(
        self,
        managed: ManagedExperiment,
        datastream: DataStreamPlugin,
        *,
        after_batch: AfterBatch | None = None,
    ) -> None:
        self.managed = managed
        self.datastream = datastream
        self._after_batch = after_batch
        self._drift_warned = False

    def __call__(self, batch: Sequence[Message]) -> BatchOutcome:
        """Predict one batch; the outcome says which messages to dead-letter and why.

        Raises:
            ServiceUnavailableError: No champion yet (the batch is requeued).
        """
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
            self._dead_letter(batch, dead)
            return BatchOutcome(dead)
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
        self._dead_letter(batch, dead)
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
            if self._after_batch is not None:
                sample = self._score_sample(experiment, result, version)
                self._after_batch(self.managed, metrics, len(rows), sample)
            ids = [batch[i].message_id for i, a, b in spans if i in records for _ in range(b - a)]
            if len(ids) != len(result):  # one result row per case, not per input row
                ids = [None] * len(result)
            return BatchOutcome(dead, rows, result, ids, metrics)
        return BatchOutcome(dead)

    def _dead_letter(self, batch: Sequence[Message], dead: Mapping[int, str]) -> None:
        """Count and log the batch's messages that go to the dead-letter queue."""
        ids = [message.message_id for message in batch]
        self.managed.dead_lettered(dead, ids, queue=predict_queue(self.managed.name))

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
