"""One training run, end to end: MLOps run, isolated fit, logging, model version, run ended.

The run is always ended: ``FINISHED`` on success, ``FAILED`` when anything raised, ``KILLED``
when the job was stopped.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from observml.errors import NotFoundError
from observml.plugins.mlops import MLOpsPlugin, ModelVersion, tracked_run
from observml.runtime.children import ChildPool
from observml.runtime.job_queue import JobQueue
from observml.runtime.jobs import (
    Isolation,
    IsolationSetting,
    Job,
    JobStoppedError,
    choose_isolation,
    run_isolated,
)
from observml.runtime.store_retry import StoreRetry, retrying_store
from observml.store.experiments import save_experiment
from observml.store.folders import save_folder
from observml.store.signing import ModelSigner

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment

__all__ = [
    "OnTrained",
    "TrainingJobs",
    "TrainingOutcome",
    "fit_and_save",
    "fit_experiment",
    "flatten_params",
    "run_training",
]

logger = logging.getLogger(__name__)

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


def fit_and_save(
    cls: type[Experiment],
    name: str,
    config: Mapping[str, Any],
    data: pd.DataFrame,
    folder: str,
    signer: ModelSigner,
) -> Experiment:
    """Train like :func:`fit_experiment`, then write and sign the model folder into ``folder``.

    Runs in the training process: the folder's report figures (a tenth of a second of plotly
    for a small model, more than the fit itself) are built there, off the hub's threads, by as
    many children as run jobs.
    """
    experiment = fit_experiment(cls, name, config, data)
    save_folder(experiment, folder, signer=signer)
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
    children: ChildPool | None = None,
    retry: StoreRetry | None = None,
) -> dict[str, Any]:
    """Train ``managed`` on ``data`` inside an MLOps run and register a model version.

    ``on_trained(experiment, version, run_id)`` decides what the new version becomes (champion,
    challenger) and returns extra result fields; it runs before the run is ended, so what it
    logs lands in the same run. The model folder is signed with ``signer`` (the hub's key).
    A process fit borrows a warm child from ``children`` (see :mod:`.children`). With
    ``retry``, each store call (and ``on_trained`` as a whole) is retried while the store is
    transiently unavailable (see :mod:`.store_retry`).
    """
    if retry is not None:
        mlops = retrying_store(mlops, retry, job)
    tags = {
        "observml.type": managed.experiment_type,
        "observml.model": managed.template.model_name,
        "observml.kind": kind,
        "observml.job_id": job.job_id,
        "observml.train_rows": str(len(data)),
    }
    # The config's params go with the metrics in save_experiment's one log_batch; a run that
    # ends before that call (failed, stopped) gets them on its way out.
    params = flatten_params(managed.config)
    with tracked_run(
        mlops,
        mlops.create_experiment(managed.name),
        run_name=f"{kind}-{job.job_id}",
        tags=tags,
        killed_by=(KeyboardInterrupt, JobStoppedError),
    ) as run_id:
        job.update(run_id=run_id, stage="fitting", progress=0.1)
        signer = signer or ModelSigner.from_settings()
        try:
            with tempfile.TemporaryDirectory(prefix="observml-save-") as folder:
                experiment = run_isolated(
                    job,
                    fit_and_save,
                    type(managed.template),
                    managed.name,
                    managed.config,
                    data,
                    folder,
                    signer,
                    isolation=isolation,
                    children=children,
                )
                job.check_stopped()
                job.update(stage="saving", progress=0.8)  # save_experiment logs metrics, params
                version = save_experiment(
                    mlops,
                    experiment,
                    run_id=run_id,
                    signer=signer,
                    folder=Path(folder),
                    params=params,
                )
        except BaseException:  # logging the same values again is allowed, if save got that far
            _log_params_quietly(mlops, run_id, params)
            raise
        job.update(version=version.version, progress=0.95, stage="registering")
        if retry is None:
            extra = on_trained(experiment, version, run_id)
        else:
            extra = retry.call(
                f"recording version {version.version} (aliases, decision)",
                lambda: on_trained(experiment, version, run_id),
                job=job,
            )
    return {
        "run_id": run_id,
        "version": version.version,
        "metrics": dict(experiment.metrics_),
        **extra,
    }


def _log_params_quietly(mlops: MLOpsPlugin, run_id: str, params: Mapping[str, str]) -> None:
    """Log a run's config params while it ends early; the run's own error is the one raised."""
    try:
        mlops.log_batch(run_id, params=params)
    except Exception:
        logger.warning("run %s: could not log its params", run_id, exc_info=True)


def _say_rows_kept(name: str, spool: Path) -> None:
    """Log where the rows a job drained from ``<name>.train`` wait, since it did not store them."""
    logger.warning(
        "experiment %r: the rows this job drained from %r stay in %s; the next training from"
        " the queue (train without data) trains on them first. Delete that folder to drop them.",
        name,
        f"{name}.train",
        spool,
    )


class TrainingJobs:
    """A hub's training jobs: each a :func:`run_training` in a :class:`Job`, kept by id.

    Every job, training or retraining, goes through one :class:`JobQueue`: at most
    ``max_jobs`` run at once, each in a warm child of one :class:`ChildPool` of that size
    when it fits in a process.

    Args:
        mlops: Returns the MLOps plugin (raises when none is configured).
        signer: Returns the key model folders are signed with.
        isolation: The ``global.job_isolation`` setting (see :func:`choose_isolation`).
        max_jobs: How many jobs run at once (``global.max_jobs``).
        retry: How store calls inside a job are retried (see :class:`StoreRetry`).
    """

    def __init__(
        self,
        *,
        mlops: Callable[[], MLOpsPlugin],
        signer: Callable[[], ModelSigner],
        isolation: IsolationSetting,
        max_jobs: int,
        retry: StoreRetry | None = None,
    ) -> None:
        self._mlops = mlops
        self._signer = signer
        self.isolation = isolation
        self.queue = JobQueue(max_jobs)
        self.children = ChildPool(max_jobs)
        self.retry = retry or StoreRetry()
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
                    children=self.children,
                    retry=self.retry,
                    on_trained=lambda exp, version, run_id: on_trained(
                        managed, exp, version, run_id
                    ),
                )
            except BaseException as exc:
                if on_success is not None:
                    _say_rows_kept(managed.name, on_success)
                if isinstance(exc, Exception) and on_error is not None:
                    if not job.stop_requested.is_set():
                        on_error(exc)
                raise
            finally:
                if finally_ is not None:
                    finally_()
            if on_success is not None:  # the rows are stored with the run now
                shutil.rmtree(on_success, ignore_errors=True)
            return result

        job = Job(managed.name, kind, body, on_cancel=finally_)
        with self._lock:
            self._jobs[job.job_id] = job
        managed.add_job(job)
        return self.queue.submit(job)

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
        """Stop the queued jobs, then the running ones; wait up to ``timeout`` s for each.

        The queue refuses new jobs from then on, and the warm children are shut down.
        """
        for job in self.queue.close():
            job.stop()
        with self._lock:
            running = [j for j in self._jobs.values() if not j.done]
        for job in running:
            job.stop()
        for job in running:
            job.wait(timeout)
        self.children.close()
