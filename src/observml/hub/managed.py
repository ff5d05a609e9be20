"""The hub's state for one experiment: definition, champion, shadow, jobs, decisions, counters.

The champion is swapped under a lock and read as one ``(experiment, version)`` pair, so a batch
either sees the old model or the new one, never half of each. Durable state (model versions,
aliases, decisions) lives in the MLOps store; what is here can be rebuilt from it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from observml.errors import (
    ExperimentError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    ModelNotTrainedError,
    TrainingInProgressError,
)
from observml.hub.dead_letters import DeadLetterTally
from observml.retraining.alerts import Alerts
from observml.retraining.decisions import Decision
from observml.retraining.events import emit
from observml.retraining.tracker import RetrainTracker
from observml.retraining.window import RetrainWindow

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.retraining.gate import GateResult
    from observml.retraining.shadow import Shadow
    from observml.retraining.window import Selection
    from observml.runtime.jobs import Job

__all__ = ["ExperimentTable", "ManagedExperiment"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_MAX_DECISIONS = 200
_MAX_JOBS = 50


class ManagedExperiment:
    """One experiment as the hub runs it.

    Args:
        name: The experiment's name (also its MLOps experiment and registered model name).
        experiment_type: The registry name of its type.
        target: ``module:Class`` of the type, importable in a training child process.
        config: The experiment config (``setup``, ``create_model``, ``retrain``, ...).
        template: An untrained instance, used to validate the config and read the policy.
        retrain_rows: How many recent streamed rows are kept for retraining.
    """

    def __init__(
        self,
        name: str,
        experiment_type: str,
        target: str,
        config: Mapping[str, Any],
        template: Experiment,
        *,
        retrain_rows: int,
    ) -> None:
        self.name = name
        self.experiment_type = experiment_type
        self.target = target
        self.config = dict(config)
        self.template = template
        self.lock = threading.RLock()
        self._champion: tuple[Experiment | None, int | None] = (None, None)
        self.previous_version: int | None = None
        self.challenger_version: int | None = None
        self.jobs: deque[Job] = deque(maxlen=_MAX_JOBS)
        self.decisions: deque[Decision] = deque(maxlen=_MAX_DECISIONS)
        self.tracker = RetrainTracker(template.retrain_policy, template.validate_config().metric)
        self.window = RetrainWindow(retrain_rows)
        self.alerts = Alerts(name)
        self.dead_letters = DeadLetterTally(name)
        self._shadow: Shadow | None = None
        self.last_selection: Selection | None = None
        #: Newest window row (sequence number) the champion learnt from; -1: none of them.
        self.learnt_through = -1
        self.last_gate: GateResult | None = None
        self.counters: dict[str, float] = {
            "predicted_rows": 0,
            "predicted_messages": 0,
            "dead_letters": 0,
            "batches": 0,
            "retrains": 0,
            "alerts": 0,
            "shadow_rows": 0,
            "batch_seconds": 0.0,  # summed over "batches": mean latency = sum / count
        }
        self.last_metrics: dict[str, float] = {}
        self.last_predictions: deque[dict[str, Any]] = deque(maxlen=500)
        self.batch_seconds: deque[float] = deque(maxlen=1000)
        self.streaming = False

    # -- champion -------------------------------------------------------------------------
    def champion(self) -> tuple[Experiment | None, int | None]:
        """Return ``(experiment, version)`` of the champion as one consistent pair."""
        with self.lock:
            return self._champion

    def swap(
        self, experiment: Experiment, version: int | None, *, learnt_through: int = -1
    ) -> None:
        """Make ``experiment`` the champion; the old version is kept for rollback.

        ``learnt_through`` is the newest window row the new champion learnt from.
        """
        with self.lock:
            old_version = self._champion[1]
            if old_version is not None and old_version != version:
                self.previous_version = old_version
            self._champion = (experiment, version)
            self.learnt_through = learnt_through
        if old_version != version:
            self.tracker.forget()

    def require_champion(self) -> tuple[Experiment, int | None]:
        """Return the champion pair, or say why there is none and what to do.

        Raises:
            ModelNotTrainedError: No champion yet; says whether a training job is running.
        """
        experiment, version = self.champion()
        if experiment is None:
            job = self.active_job()
            hint = (
                f" Training job {job.job_id} is {job.status.state}; wait for it."
                if job
                else " Call train() first."
            )
            raise ModelNotTrainedError(f"experiment {self.name!r} has no trained model.{hint}")
        return experiment, version

    @property
    def row_format(self) -> Any:
        """How this experiment reads rows from messages and files (its ``setup`` format)."""
        return self.template.validate_config().format

    def clear(self) -> None:
        """Forget the champion and the shadow (the experiment is being deleted)."""
        with self.lock:
            self._champion = (None, None)
            self._shadow = None

    # -- shadow ---------------------------------------------------------------------------
    @property
    def shadow(self) -> Shadow | None:
        """The challenger in shadow, awaiting a person's decision, if any."""
        with self.lock:
            return self._shadow

    def set_shadow(self, shadow: Shadow | None) -> None:
        """Put a challenger in shadow (``None`` ends the shadow)."""
        with self.lock:
            self._shadow = shadow
            self.challenger_version = shadow.version if shadow else None

    # -- jobs and decisions ---------------------------------------------------------------
    def active_job(self) -> Job | None:
        """Return the training or retraining job still running, if any."""
        with self.lock:
            for job in reversed(self.jobs):
                if not job.done:
                    return job
        return None

    def ensure_idle(self) -> None:
        """Raise if a training or retraining job is running.

        Raises:
            TrainingInProgressError: Says which job and how to stop it.
        """
        job = self.active_job()
        if job is not None:
            raise TrainingInProgressError(
                f"experiment {self.name!r}: job {job.job_id} ({job.status.kind}) is"
                f" {job.status.state}. Wait for it or call stop_training({self.name!r})."
            )

    def add_job(self, job: Job) -> None:
        """Remember a job (the newest :data:`_MAX_JOBS` are kept)."""
        with self.lock:
            self.jobs.append(job)

    def record(self, decision: Decision) -> None:
        """Append a decision to the history and log it (see :mod:`observml.retraining.events`)."""
        with self.lock:
            self.decisions.append(decision)
        emit(
            decision.kind,
            self.name,
            decision.version,
            decision.reason,
            metrics=dict(decision.metrics),
            at=decision.at,
        )

    def seed_decisions(self, decisions: list[Decision]) -> None:
        """Put decisions read back from the store (oldest first) before this process's own.

        Nothing is logged: they were logged when they were taken.
        """
        with self.lock:
            own = list(self.decisions)
            self.decisions.clear()
            self.decisions.extend([*decisions, *own][-_MAX_DECISIONS:])

    # -- streamed data --------------------------------------------------------------------
    def remember(
        self,
        frame: pd.DataFrame,
        predictions: pd.DataFrame,
        metrics: Mapping[str, float],
        flags: np.ndarray,
    ) -> None:
        """Keep ``frame`` and its verdicts in the retrain window; update counters and live rows."""
        self.window.add(frame, flags)
        with self.lock:
            self.counters["predicted_rows"] += len(frame)
            self.counters["batches"] += 1
            self.last_metrics = {**self.last_metrics, **metrics}
            now = time.time()
            tail = predictions.tail(50)
            for row in tail.to_dict(orient="records"):
                self.last_predictions.append({"at": now, **_plain_row(row)})

    @property
    def recent_rows(self) -> int:
        """How many rows the retrain window holds."""
        return len(self.window)

    def observe_batch(self, seconds: float) -> None:
        """Record how long one streamed batch took (parse, predict, publish)."""
        with self.lock:
            self.batch_seconds.append(seconds)
            self.counters["batch_seconds"] = self.counters.get("batch_seconds", 0.0) + seconds

    def dead_lettered(
        self, dead: Mapping[int, str], message_ids: Sequence[str | None], *, queue: str
    ) -> None:
        """Count a batch's dead letters (``{index: reason}``), by reason, and log them."""
        if not dead:
            return
        self.count("dead_letters", len(dead))
        self.dead_letters.add(dead, message_ids, queue=queue, version=self.champion()[1])

    def count(self, key: str, amount: float = 1) -> None:
        """Add to a counter."""
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + amount

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Return a JSON-ready snapshot for ``hub.status(name)`` and the API."""
        experiment, version = self.champion()
        policy = self.tracker.policy
        shadow = self.shadow
        with self.lock:
            jobs = [j.status.to_dict() for j in self.jobs]
            decisions = [d.to_dict() for d in self.decisions]
            active = self.active_job()
            active_status = active.status if active else None
            return {
                "name": self.name,
                "type": self.experiment_type,
                "model": self.template.model_name,
                "trained": experiment is not None,
                "champion_version": version,
                "previous_version": self.previous_version,
                "challenger_version": self.challenger_version,
                "state": active_status.state
                if active_status
                else ("ready" if experiment else "untrained"),
                "queue_position": active_status.queue_position if active_status else None,
                "job": active_status.to_dict() if active_status else (jobs[-1] if jobs else None),
                "jobs": jobs,
                "streaming": self.streaming,
                "metrics": dict(self.last_metrics),
                "train_metrics": dict(getattr(experiment, "metrics_", {}) or {}),
                "counters": dict(self.counters),
                "retrain_window_rows": self.recent_rows,
                "retrain_in_flight": self.tracker.in_flight,
                "retrain_failure": self.tracker.failure_status(),
                "promotion": policy.promotion,
                "window_rows": policy.window_rows,
                "alerts": self.alerts.status(),
                "shadow": shadow.status() if shadow else None,
                "last_window": self.last_selection.to_dict() if self.last_selection else None,
                "last_gate": self.last_gate.to_dict() if self.last_gate else None,
                "drift": self.tracker.drift_status(),
                "decisions": decisions,
                "dead_letters": self.dead_letters.status(),
                "last_predictions": list(self.last_predictions),
            }


class ExperimentTable:
    """The hub's experiments by name (thread-safe)."""

    def __init__(self) -> None:
        self._experiments: dict[str, ManagedExperiment] = {}
        self._lock = threading.RLock()

    def names(self) -> list[str]:
        """The experiments' names, sorted."""
        with self._lock:
            return sorted(self._experiments)

    def find(self, name: str) -> ManagedExperiment | None:
        """The experiment called ``name``, or ``None``."""
        with self._lock:
            return self._experiments.get(name)

    def get(self, name: str) -> ManagedExperiment:
        """The experiment called ``name``.

        Raises:
            ExperimentNotFoundError: No such experiment; lists the known ones.
        """
        with self._lock:
            managed = self._experiments.get(name)
            known = sorted(self._experiments)
        if managed is None:
            raise ExperimentNotFoundError(
                f"experiment {name!r} does not exist. Known: {', '.join(known) or 'none'}."
                " Create it with create_experiment(name, type, config)."
            )
        return managed

    @staticmethod
    def check_name(name: object) -> None:
        """Raise unless ``name`` can name an experiment (also its queues and registered model).

        Raises:
            ExperimentError: Says which characters a name may hold.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ExperimentError(
                f"experiment name {name!r}: use 1-100 letters, digits, '_', '.' or '-',"
                " starting with a letter or digit."
            )

    def ensure_free(self, name: str) -> None:
        """Raise if ``name`` is taken.

        Raises:
            ExperimentExistsError: The name is taken.
        """
        with self._lock:
            if name in self._experiments:
                raise ExperimentExistsError(
                    f"experiment {name!r} already exists. Delete it first or pick another name."
                )

    def add(self, managed: ManagedExperiment) -> None:
        """Add ``managed`` under its name.

        Raises:
            ExperimentExistsError: The name was taken in the meantime.
        """
        with self._lock:
            if managed.name in self._experiments:
                raise ExperimentExistsError(f"experiment {managed.name!r} already exists.")
            self._experiments[managed.name] = managed

    def remove(self, name: str) -> None:
        """Forget ``name`` (no error when it is not there)."""
        with self._lock:
            self._experiments.pop(name, None)


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp):
            out[str(key)] = value.isoformat()
        elif hasattr(value, "item"):
            out[str(key)] = value.item()
        else:
            out[str(key)] = value
    return out
