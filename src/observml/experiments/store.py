"""Save experiments to, and load them from, an MLOps plugin (through the protocol only).

A saved experiment is the folder :meth:`Experiment.save` writes, uploaded under the run's
``model`` artifact path and registered as a version of the model named like the experiment.
Loading downloads that folder into a temporary directory and unpickles ``model.pkl`` from there:
models are only ever unpickled from the configured store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from observml.experiments.base import Experiment, load_experiment

if TYPE_CHECKING:
    from observml.plugins.mlops import MLOpsPlugin, ModelVersion
    from observml.registry import PluginRegistry

__all__ = ["ARTIFACT_PATH", "load_experiment_from_store", "save_experiment"]

#: Artifact folder of a run that holds the saved experiment.
ARTIFACT_PATH = "model"


def save_experiment(
    mlops: MLOpsPlugin,
    experiment: Experiment,
    *,
    run_id: str,
    alias: str | None = None,
    log_metrics: bool = True,
) -> ModelVersion:
    """Upload a trained experiment to ``run_id`` and register it as a model version.

    The model, ``config.yaml``, ``metrics.json`` and ``reports/*.json`` go under the run's
    ``model/`` artifacts; with ``log_metrics`` the metrics and the model's parameters are also
    logged on the run. The registered model is named after the experiment.

    Args:
        mlops: The MLOps plugin.
        experiment: A trained experiment.
        run_id: The run to attach it to (started by the caller, who also ends it).
        alias: Alias to point at the new version (e.g. ``"champion"``); ``None`` sets none.
        log_metrics: Also log ``metrics_`` and the model params on the run.

    Returns:
        The registered version.
    """
    from observml.persistence import save_artifacts

    with tempfile.TemporaryDirectory(prefix="observml-save-") as tmp:
        experiment.save(tmp)
        if log_metrics:
            settings = experiment.settings_
            params = {
                "experiment_type": experiment.experiment_type,
                "model": settings.model,
                **{f"param.{k}": _short(v) for k, v in settings.params.items()},
                **{f"option.{k}": _short(v) for k, v in settings.options.items()},
            }
            mlops.log_batch(run_id, metrics=dict(experiment.metrics_), params=params)
        return save_artifacts(
            mlops,
            run_id,
            Path(tmp),
            model_name=experiment.name,
            artifact_path=ARTIFACT_PATH,
            alias=alias,
        )


def load_experiment_from_store(
    mlops: MLOpsPlugin,
    name: str,
    *,
    alias: str | None = "champion",
    run_id: str | None = None,
    version: int | None = None,
    registry: PluginRegistry | Mapping[str, type[Experiment]] | None = None,
) -> Experiment:
    """Download and load the experiment registered as ``name``.

    Exactly one of ``run_id``, ``version`` or ``alias`` selects it (in that order of
    precedence; ``alias`` defaults to ``"champion"``).

    Args:
        mlops: The MLOps plugin.
        name: The experiment (= registered model) name.
        alias: Model alias to load.
        run_id: Load the experiment saved in this run instead.
        version: Load this model version instead.
        registry: Where to find experiment classes by type (see :func:`load_experiment`).

    Raises:
        NotFoundError: No such model, alias, version or run artifact.
    """
    from observml.persistence import load_artifacts

    with tempfile.TemporaryDirectory(prefix="observml-load-") as tmp:
        if run_id is not None:
            local = load_artifacts(
                mlops, run_id=run_id, dst_dir=Path(tmp), artifact_path=ARTIFACT_PATH
            )
        elif version is not None:
            local = load_artifacts(mlops, model_name=name, version=version, dst_dir=Path(tmp))
        else:
            local = load_artifacts(
                mlops, model_name=name, alias=alias or "champion", dst_dir=Path(tmp)
            )
        experiment = load_experiment(local, registry)
    if experiment.name != name:
        experiment.name = name
    return experiment


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 250 else text[:247] + "..."
