"""A trained experiment as a folder: what :func:`save_folder` writes and :func:`load_folder` reads.

The folder holds the fitted state (see :mod:`observml.store.model_files`: formats that run no
code on load where one exists, the rest a pickle), ``config.yaml`` (``type``, ``name``,
``config``), ``metrics.json``, ``reports/*.json`` and ``signature.json``. :func:`load_folder`
checks the signature before it reads anything (see :mod:`observml.store.signing`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

import numpy as np
import yaml

from observml.errors import ExperimentError
from observml.experiments.base import Experiment
from observml.store.model_files import read_state, write_state
from observml.store.signing import ModelSigner
from observml.store.snapshots import read_snapshot, write_snapshot

if TYPE_CHECKING:
    from observml.config.registry import PluginRegistry

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "REPORTS_DIR",
    "load_folder",
    "read_saved_config",
    "report_filename",
    "report_name",
    "save_folder",
]

logger = logging.getLogger(__name__)

#: The part of a saved state that only a pickle can hold (signed; see ``model_files``).
MODEL_FILE: Final = "model.pkl"
CONFIG_FILE: Final = "config.yaml"
METRICS_FILE: Final = "metrics.json"
REPORTS_DIR: Final = "reports"


def save_folder(
    experiment: Experiment, directory: Path | str, *, signer: ModelSigner | None = None
) -> Path:
    """Write a trained experiment's state, config, metrics and reports, then sign the folder.

    The state is :meth:`Experiment.fitted_state` (every attribute ending in ``_`` but
    ``settings_``, which is rebuilt from the config), each in a format that does not run code
    when read where one exists (see :mod:`observml.store.model_files`).

    Args:
        experiment: A trained experiment.
        directory: The folder to write.
        signer: The hub's key; ``None`` uses ``$OBSERVML_MODEL_KEY`` or the key file
            (see :mod:`observml.store.signing`).

    Raises:
        ModelNotTrainedError: The experiment is not trained.
    """
    state = experiment.fitted_state()
    root = Path(directory)
    (root / REPORTS_DIR).mkdir(parents=True, exist_ok=True)
    write_state(root, state)
    document = {
        "type": experiment.experiment_type,
        "name": experiment.name,
        "config": _plain(experiment.config),
    }
    (root / CONFIG_FILE).write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    (root / METRICS_FILE).write_text(json.dumps(experiment.metrics_, indent=2), "utf-8")
    for name, figure in experiment.reports().items():
        (root / REPORTS_DIR / report_filename(name)).write_text(figure.to_json(), "utf-8")
    (signer or ModelSigner.from_settings()).sign(root)
    return root


def load_folder(
    directory: Path | str,
    registry: PluginRegistry | Mapping[str, type[Experiment]] | None = None,
    *,
    signer: ModelSigner | None = None,
    trust_unsigned: bool = False,
    where: str | None = None,
    snapshot: Path | None = None,
) -> Experiment:
    """Check a saved experiment's signature, then load it with the class ``config.yaml`` names.

    Nothing in the folder is read before its signature is checked. A folder signed by
    ``signer`` loads fully, and its type may be any class the registry resolves for the
    operator. Otherwise it is refused, unless ``trust_unsigned``: then it loads with a
    warning, and its type must be a registered name (never a module path).

    Args:
        directory: What :func:`save_folder` wrote.
        registry: Type name -> class, or a :class:`~observml.config.registry.PluginRegistry` (its
            ``experiment`` plugin type); ``None`` uses the built-ins and entry points.
        signer: The hub's key; ``None`` uses ``$OBSERVML_MODEL_KEY`` or the key file.
        trust_unsigned: Load folders that are unsigned, altered or signed by another key
            (``global.trust_unsigned_models``).
        where: What the folder is, for messages (``run <id> (<name> version <n>)``).
        snapshot: Where the model cache keeps the state of this folder once read (see
            :mod:`observml.store.snapshots`); used only for a folder ``signer`` signed.

    Raises:
        UntrustedModelError: The signature is missing, wrong or another key's; names
            ``where`` and says what to do.
    """
    root = Path(directory)
    where = where or str(root)
    if not (root / CONFIG_FILE).is_file():
        raise ExperimentError(f"{root}: no {CONFIG_FILE}; this is not a saved experiment.")
    signer = signer or ModelSigner.from_settings()
    reason = signer.check(root)
    if reason is not None:
        if not trust_unsigned:
            signer.verify(root, where=where)  # raises, saying why and what to do
        logger.warning(
            "%s: loading a model this hub's key did not sign (%s), because"
            " global.trust_unsigned_models is true",
            where,
            reason,
        )
    kind = str(read_saved_config(root).get("type", ""))
    if isinstance(registry, Mapping):
        cls = registry.get(kind)
        if cls is None:
            raise ExperimentError(
                f"{where}: {CONFIG_FILE}: unknown experiment type {kind!r}."
                f" Known: {', '.join(sorted(registry))}."
            )
    else:
        from observml.config.registry import PluginRegistry

        cls = (registry or PluginRegistry()).resolve(
            "experiment", kind, where=f"{where}: {CONFIG_FILE}: type", trusted=reason is None
        )
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise ExperimentError(f"{where}: {CONFIG_FILE}: type {kind!r} is not an Experiment class.")
    state = read_snapshot(snapshot, signer) if snapshot is not None and reason is None else None
    if state is None:
        state = read_state(root, allow_pickle=reason is None or trust_unsigned, where=where)
        if snapshot is not None and reason is None:
            write_snapshot(snapshot, state, signer)
    document = read_saved_config(root)
    return cls.from_state(str(document.get("name", root.name)), document.get("config") or {}, state)


def report_filename(name: str) -> str:
    """Return the file a report is saved as: ``<name>.json`` with ``/``, ``%`` etc. escaped.

    Report names carry column names (``histogram_Flow (m3/h)``); :func:`report_name` undoes it.
    """
    return quote(name, safe=" ()[]{}-_.,+=@") + ".json"


def report_name(filename: str) -> str:
    """Return the report name of a file written by :func:`save_folder`."""
    return unquote(filename.removesuffix(".json"))


def read_saved_config(root: Path) -> dict[str, Any]:
    """Read ``config.yaml`` of a saved folder (``type``, ``name``, ``config``)."""
    path = root / CONFIG_FILE
    if not path.is_file():
        raise ExperimentError(f"{root}: no {CONFIG_FILE}; this is not a saved experiment.")
    document = yaml.safe_load(path.read_text("utf-8"))
    if not isinstance(document, dict):
        raise ExperimentError(f"{path}: expected a mapping with type, name and config.")
    return document


def _plain(value: Any) -> Any:
    """Turn a config into YAML-safe builtins (mappings, lists, scalars)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
