"""One training run, end to end: MLOps run, isolated fit, logging, model version, run ended.

The run is always ended: ``FINISHED`` on success, ``FAILED`` when anything raised, ``KILLED``
when the job was stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from observml.plugins.mlops import MLOpsPlugin, ModelVersion, tracked_run
from observml.runtime.jobs import Isolation, Job, JobStoppedError, run_isolated
from observml.store.experiments import save_experiment

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment
    from observml.store.signing import ModelSigner

__all__ = ["TrainingOutcome", "fit_experiment", "flatten_params", "run_training"]

#: ``(experiment, model version)`` handed to the caller's ``on_trained``.
TrainingOutcome = tuple["Experiment", ModelVersion]


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
