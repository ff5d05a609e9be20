"""One training run, end to end: MLOps run, isolated fit, logging, model version, run ended.

The run is always ended: ``FINISHED`` on success, ``FAILED`` when anything raised, ``KILLED``
when the job was stopped.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from observml.errors import NotFoundError
from observml.plugins.mlops import MLOpsPlugin, ModelVersion, tracked_run
from observml.runtime.jobs import (
    Isolation,
    IsolationSetting,
    Job,
    JobStoppedError,
    choose_isolation,
    run_isolated,
)
from observml.store.experiments import save_experiment

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment
    from observml.store.signing import ModelSigner

__all__ = [
    "OnTrained",
    "TrainingJobs",
    "TrainingOutcome",
    "fit_experiment",
    "flatten_params",
    "run_training",
]

#: ``(experiment, model version)`` handed to the caller's ``on_trained``.
TrainingOutcome = tuple["Experiment", ModelVersion]
#: ``on_trained(managed, experiment, version, run_id)``: what the new version becomes.
OnTrained = Callable[["ManagedExperiment", "Experiment", ModelVersion, str], dict[str, Any]]


def fit_experiment(
    cls: type[Experiment], name: str, config: Mapping[str, Any], data: pd.DataFrame
) -> Experiment:
    """Build an experiment of ``cls`` and train it (runs in the training process).

    The class itself is passed, not its ``module:Class`` name: a class from an importable
    module travels by reference, one defined in ``__main__`` by value, so both train in a
    child process.
    """
    experiment = cls(name, dict(config))
    experiment.train(data)
    return experiment


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested config into ``{"create_model.params.n_estimators": "200"}``."""
    out: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, path + "."))
        else:
            out[path] = str(value)[:500]
    return out


def run_training(
    job: Job,
    mlops: MLOpsPlugin,
    managed: ManagedExperiment,
    data: pd.DataFrame,
    *,
    isolation: Isolation,
    kind: str,
    on_trained: Callable[[Experiment, ModelVersion, str], dict[str, Any]],
    signer: ModelSigner | None = None,
) -> dict[str, Any]:
    """Train ``managed`` on ``data`` inside an MLOps run and register a model version.

    ``on_trained(experiment, version, run_id)`` decides what the new version becomes (champion,
    challenger) and returns extra result fields; it runs before the run is ended, so what it
    logs lands in the same run. The model folder is signed with ``signer`` (the hub's key).
    """
    tags = {
        "observml.type": managed.experiment_type,
        "observml.model": managed.template.model_name,
        "observml.kind": kind,
        "observml.job_id": job.job_id,
    }
    with tracked_run(
        mlops,
        mlops.create_experiment(managed.name),
        run_name=f"{kind}-{job.job_id}",
        tags=tags,
        killed_by=(KeyboardInterrupt, JobStoppedError),
    ) as run_id:
        job.update(run_id=run_id, stage="fitting", progress=0.1)
        mlops.log_batch(
            run_id,
            params=flatten_params(managed.config),
            tags={"observml.train_rows": str(len(data))},
        )
        experiment = run_isolated(
            job,
            fit_experiment,
            type(managed.template),
            managed.name,
            managed.config,
            data,
            isolation=isolation,
        )
        job.check_stopped()
        job.update(stage="saving", progress=0.8)  # save_experiment logs metrics and params
        version = save_experiment(mlops, experiment, run_id=run_id, signer=signer)
        job.update(version=version.version, progress=0.95, stage="registering")
        extra = on_trained(experiment, version, run_id)
    return {
        "run_id": run_id,
        "version": version.version,
        "metrics": dict(experiment.metrics_),
        **extra,
    }


class TrainingJobs:
    """A hub's training jobs: each a :func:`run_training` in a :class:`Job`, kept by id.

    Args:
        mlops: Returns the MLOps plugin (raises when none is configured).
        signer: Returns the key model folders are signed with.
        isolation: The ``global.job_isolation`` setting (see :func:`choose_isolation`).
    """

    def __init__(
        self,
        *,
        mlops: Callable[[], MLOpsPlugin],
        signer: Callable[[], ModelSigner],
        isolation: IsolationSetting,
    ) -> None:
        self._mlops = mlops
        self._signer = signer
        self.isolation = isolation
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(
        self,
        managed: ManagedExperiment,
        kind: str,
        frame: pd.DataFrame,
        on_trained: OnTrained,
        *,
        finally_: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_success: Path | None = None,
        wait: bool = False,
    ) -> Job:
        """Start training ``managed`` on ``frame`` as a job and return it.

        Args:
            managed: The experiment.
            kind: ``"train"`` or ``"retrain"`` (the run's name and tag).
            frame: The training rows.
            on_trained: Decides what the new version becomes (see :func:`run_training`).
            finally_: Runs when the job ends, whatever the outcome.
            on_error: Runs with the exception when the job fails (not when it was stopped).
            on_success: A spool folder of the rows, deleted once the run stored them.
            wait: The caller waits for the job (``auto`` isolation then fits in-process).
        """
        mlops = self._mlops()
        isolation = choose_isolation(self.isolation, wait=wait)

        def body(job: Job) -> dict[str, Any]:
            try:
                result = run_training(
                    job,
                    mlops,
                    managed,
                    frame,
                    isolation=isolation,
                    kind=kind,
                    signer=self._signer(),
                    on_trained=lambda exp, version, run_id: on_trained(
                        managed, exp, version, run_id
                    ),
                )
            except Exception as exc:
                if on_error is not None and not job.stop_requested.is_set():
                    on_error(exc)
                raise
            finally:
                if finally_ is not None:
                    finally_()
            if on_success is not None:  # the rows are stored with the run now
                shutil.rmtree(on_success, ignore_errors=True)
            return result

        job = Job(managed.name, kind, body)
        with self._lock:
            self._jobs[job.job_id] = job
        managed.add_job(job)
        return job.start()

    def get(self, job_id: str) -> Job:
        """Return a job by id.

        Raises:
            NotFoundError: No such job in this hub.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r}: no such job in this hub.")
        return job

    def stop_all(self, timeout: float = 10) -> None:
        """Stop every running job and wait up to ``timeout`` seconds for each."""
        with self._lock:
            running = [j for j in self._jobs.values() if not j.done]
        for job in running:
            job.stop()
        for job in running:
            job.wait(timeout)
