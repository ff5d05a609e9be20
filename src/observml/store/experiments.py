"""Save experiments to, and load them from, an MLOps plugin (through the protocol only).

A saved experiment is the folder :meth:`Experiment.save` writes, signed with the hub's model
key, uploaded under the run's ``model`` artifact path and registered as a version of the model
named like the experiment; the run gets the key id and the signature as tags. Loading
downloads that folder into a temporary directory and checks its signature before reading
anything in it (see :mod:`observml.store.signing`): anyone who can write to the MLOps store can
replace a file there, and a pickle runs code when it is read.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from observml.errors import UntrustedModelError
from observml.experiments.base import Experiment
from observml.store.folders import load_folder, save_folder

if TYPE_CHECKING:
    from observml.config.registry import PluginRegistry
    from observml.plugins.mlops import MLOpsPlugin, ModelVersion
    from observml.store.cache import ModelCache
    from observml.store.signing import ModelSigner

__all__ = ["ARTIFACT_PATH", "load_experiment_from_store", "save_experiment"]

logger = logging.getLogger(__name__)

#: Artifact folder of a run that holds the saved experiment.
ARTIFACT_PATH = "model"


def save_experiment(
    mlops: MLOpsPlugin,
    experiment: Experiment,
    *,
    run_id: str,
    alias: str | None = None,
    log_metrics: bool = True,
    signer: ModelSigner | None = None,
    folder: Path | None = None,
    params: Mapping[str, str] | None = None,
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
        signer: The hub's model key; ``None`` uses ``$OBSERVML_MODEL_KEY`` or the key file.
        folder: The experiment already written and signed there by
            :func:`~observml.store.folders.save_folder` with ``signer`` (a training child does
            it beside the fit); ``None`` writes it here.
        params: More params to log on the run in the same call (the training job's flattened
            config), whatever ``log_metrics`` says.

    Returns:
        The registered version.
    """
    from observml.store.artifacts import save_artifacts
    from observml.store.signing import KEY_ID_TAG, SIGNATURE_TAG, ModelSigner

    signer = signer or ModelSigner.from_settings()
    with tempfile.TemporaryDirectory(prefix="observml-save-") as tmp:
        root = folder if folder is not None else save_folder(experiment, tmp, signer=signer)
        tags = {KEY_ID_TAG: signer.key_id, SIGNATURE_TAG: _signature(root)}
        if log_metrics:  # one call: signature tags, metrics, the model's and the caller's params
            settings = experiment.settings_
            model_params = {
                "experiment_type": experiment.experiment_type,
                "model": settings.model,
                **{f"param.{k}": _short(v) for k, v in settings.params.items()},
                **{f"option.{k}": _short(v) for k, v in settings.options.items()},
            }
            mlops.log_batch(
                run_id,
                metrics=dict(experiment.metrics_),
                params={**(params or {}), **model_params},
                tags=tags,
            )
        else:
            mlops.log_batch(run_id, params=params, tags=tags)
        return save_artifacts(
            mlops,
            run_id,
            root,
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
    signer: ModelSigner | None = None,
    trust_unsigned: bool = False,
    cache: ModelCache | None = None,
) -> Experiment:
    """Download the experiment registered as ``name``, check its signature, and load it.

    Exactly one of ``run_id``, ``version`` or ``alias`` selects it (in that order of
    precedence; ``alias`` defaults to ``"champion"``).

    Args:
        mlops: The MLOps plugin.
        name: The experiment (= registered model) name.
        alias: Model alias to load.
        run_id: Load the experiment saved in this run instead.
        version: Load this model version instead.
        registry: Where to find experiment classes by type (see
            :func:`~observml.store.folders.load_folder`).
        signer: The hub's model key; ``None`` uses ``$OBSERVML_MODEL_KEY`` or the key file.
        trust_unsigned: Load a folder no hub key signed (``global.trust_unsigned_models``).
        cache: Keep the downloaded folder here by run and reuse it (its signature is checked
            on every load all the same); ``None`` downloads into a temporary folder.

    Raises:
        NotFoundError: No such model, alias, version or run artifact.
        UntrustedModelError: The folder is unsigned, altered or signed by another key; the
            message names the run.
    """
    from observml.store.artifacts import load_artifacts, resolve_run

    artifact_path = ARTIFACT_PATH
    if run_id is None:
        selected = (alias or "champion") if version is None else None
        run_id, artifact_path = resolve_run(mlops, name, selected, version)
        label = f"run {run_id} ({name} {'version ' + str(version) if version else selected})"
    else:
        label = f"run {run_id} ({name})"

    def load(local: Path, snapshot: Path | None = None) -> Experiment:
        return load_folder(
            local,
            registry,
            signer=signer,
            trust_unsigned=trust_unsigned,
            where=label,
            snapshot=snapshot,
        )

    def download(dst: Path) -> Path:
        return load_artifacts(mlops, run_id=run_id, dst_dir=dst, artifact_path=artifact_path)

    if cache is None or not cache.accepts(run_id):
        with tempfile.TemporaryDirectory(prefix="observml-load-") as tmp:
            experiment = load(download(Path(tmp)))
    else:
        experiment = _load_cached(cache, run_id, artifact_path, load, download)
    if experiment.name != name:
        experiment.name = name
    return experiment


def _load_cached(
    cache: ModelCache,
    run_id: str,
    artifact_path: str,
    load: Callable[[Path, Path | None], Experiment],
    download: Callable[[Path], Path],
) -> Experiment:
    """Load the cached copy of a run's model folder, downloading it first when missing.

    A cached copy that does not load (its signature fails: altered on disk, or signed by a key
    this hub no longer has) is removed and downloaded again; the fresh copy is checked the
    same way, and its error is the one raised.
    """
    cached = cache.get(run_id, artifact_path)
    snapshot = cache.snapshot(run_id, artifact_path)
    if cached is not None:
        try:
            return load(cached, snapshot)
        except UntrustedModelError:
            logger.warning("model cache: %s did not pass its check; downloading again", cached)
            cache.discard(run_id, artifact_path)
    folder = cache.fill(run_id, artifact_path, download)
    try:
        return load(folder, snapshot)
    except UntrustedModelError:
        cache.discard(run_id, artifact_path)
        raise


def _signature(folder: Path) -> str:
    from observml.store.signing import SIGNATURE_FILE

    document = json.loads((folder / SIGNATURE_FILE).read_text("utf-8"))
    return str(document["mac"])


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 250 else text[:247] + "..."
