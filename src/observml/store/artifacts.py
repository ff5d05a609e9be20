"""Save a trained experiment to the MLOps store and load it back, through the protocol only.

A trained experiment is a folder (model file, config, reports). :func:`save_artifacts` uploads it
to a run and registers it as a model version; :func:`load_artifacts` downloads it again, found by
run id, by version number or by alias (``champion``, ``challenger``). Both work with any
:class:`~observml.plugins.mlops.MLOpsPlugin`, the in-memory one included.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Final

from observml.errors import ConfigError, NotFoundError
from observml.plugins.mlops import MLOpsPlugin, ModelVersion

__all__ = ["ARTIFACT_PATH_TAG", "load_artifacts", "resolve_run", "save_artifacts"]

logger = logging.getLogger(__name__)

#: Model version tag holding the artifact folder the version was saved under.
ARTIFACT_PATH_TAG: Final = "observml.artifact_path"


def save_artifacts(
    mlops: MLOpsPlugin,
    run_id: str,
    local_dir: str | Path,
    *,
    model_name: str,
    artifact_path: str = "model",
    alias: str | None = None,
) -> ModelVersion:
    """Upload ``local_dir`` to the run and register it as a new version of ``model_name``.

    Args:
        mlops: The MLOps plugin.
        run_id: Run the artifacts belong to.
        local_dir: Folder with the model file, config and reports.
        model_name: Registered model to add a version to.
        artifact_path: Folder inside the run's artifacts.
        alias: Alias to point at the new version (e.g. ``"challenger"``); the version number
            returned by the registration is used, never "latest".

    Returns:
        The new model version (with ``alias`` in its ``aliases`` when given).

    Raises:
        NotFoundError: The run or ``local_dir`` does not exist.
    """
    folder = Path(local_dir)
    if not folder.is_dir():
        raise NotFoundError(
            f"save_artifacts: {folder} is not a folder. Write the model file, config and"
            " reports into a folder first."
        )
    mlops.log_artifacts(run_id, str(folder), artifact_path)
    version = mlops.register_model(model_name, run_id, artifact_path)
    mlops.set_version_tag(model_name, version.version, ARTIFACT_PATH_TAG, artifact_path)
    if alias:
        mlops.set_alias(model_name, alias, version.version)
    logger.info(
        "saved run %s as %s version %d%s",
        run_id,
        model_name,
        version.version,
        f" ({alias})" if alias else "",
    )
    return replace(
        version,
        tags={**version.tags, ARTIFACT_PATH_TAG: artifact_path},
        aliases=tuple(sorted({*version.aliases, alias})) if alias else version.aliases,
    )


def load_artifacts(
    mlops: MLOpsPlugin,
    *,
    run_id: str | None = None,
    model_name: str | None = None,
    alias: str | None = None,
    version: int | None = None,
    dst_dir: str | Path,
    artifact_path: str = "model",
) -> Path:
    """Download a saved experiment folder and return its local path.

    Give either ``run_id`` (with ``artifact_path``), or ``model_name`` with exactly one of
    ``alias`` and ``version``.

    Args:
        mlops: The MLOps plugin.
        run_id: Run whose artifacts to load.
        model_name: Registered model to load a version of.
        alias: Alias of the version, e.g. ``"champion"``.
        version: Version number.
        dst_dir: Local folder to download into.
        artifact_path: Folder inside the run's artifacts, used with ``run_id``.

    Returns:
        The local folder holding the downloaded files.

    Raises:
        ConfigError: The arguments do not name exactly one run or version.
        NotFoundError: The model, alias, version, run or its artifacts do not exist; the
            message names the run.
    """
    if run_id is None:
        run_id, artifact_path = resolve_run(mlops, model_name, alias, version)
    elif model_name is not None or alias is not None or version is not None:
        raise ConfigError(
            "load_artifacts: give either run_id or model_name with alias/version, not both.",
            key="run_id",
        )
    mlops.get_run(run_id)  # raises NotFoundError naming the run
    if not mlops.list_artifacts(run_id, artifact_path):
        raise NotFoundError(
            f"run {run_id}: no artifacts under {artifact_path!r}; the run was not saved with"
            " save_artifacts() or its artifacts were deleted. Train and save the experiment"
            " again, or load another version."
        )
    Path(dst_dir).mkdir(parents=True, exist_ok=True)
    return Path(mlops.download_artifacts(run_id, artifact_path, str(dst_dir)))


def resolve_run(
    mlops: MLOpsPlugin, model_name: str | None, alias: str | None, version: int | None
) -> tuple[str, str]:
    """Return ``(run_id, artifact_path)`` of the version that ``alias`` or ``version`` names.

    Raises:
        ConfigError: Not exactly one of ``alias`` and ``version``, or no ``model_name``.
        NotFoundError: No such model, alias or version.
    """
    if model_name is None or (alias is None) == (version is None):
        raise ConfigError(
            "load_artifacts: give run_id, or model_name with exactly one of alias and version"
            " (e.g. alias='champion').",
            key="model_name",
        )
    if version is not None:
        found: ModelVersion | None = _find(mlops, model_name, version)
    else:
        found = mlops.get_version_by_alias(model_name, str(alias))
    if found is None:
        raise NotFoundError(
            f"model {model_name!r}: alias {alias!r} is not set. Train and save a model with"
            f" alias={alias!r}, or pick a version from list_versions({model_name!r})."
        )
    path = found.tags.get(ARTIFACT_PATH_TAG) or _path_from_source(mlops, found)
    return found.run_id, path


def _find(mlops: MLOpsPlugin, model_name: str, version: int) -> ModelVersion:
    for candidate in mlops.list_versions(model_name):
        if candidate.version == version:
            return candidate
    raise NotFoundError(
        f"model {model_name!r}: no version {version}. Pick one from list_versions({model_name!r})."
    )


def _path_from_source(mlops: MLOpsPlugin, found: ModelVersion) -> str:
    """Derive the artifact folder from ``source`` for versions not saved by this module."""
    root = mlops.get_run(found.run_id).artifact_uri.rstrip("/")
    if root and found.source.startswith(root + "/"):
        return found.source[len(root) + 1 :]
    return "model"
