"""A local copy of downloaded model folders, kept by run, so a command does not fetch twice.

Every CLI command is a new process that restores the champion from the MLOps store; without a
cache each one downloads the same model folder again. A run's ``model`` artifacts do not change
once saved, so the copy is kept under ``$OBSERVML_HOME/model-cache/<run id>/<artifact path>``
and reused. The cache only saves the download: whoever loads from it checks the folder's
signature exactly as for a fresh download (:func:`observml.store.folders.load_folder`), and a
cached copy that fails that check is removed and fetched again. Beside each copy, the state
read from it is kept signed (``<artifact path>.snapshot``), so the next process restores the
model without reading it with skops again (:mod:`observml.store.snapshots`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from observml.config import HOME_ENV_VAR

__all__ = ["CACHE_DIR", "ModelCache"]

#: Folder of the cache inside ``$OBSERVML_HOME``.
CACHE_DIR: Final = "model-cache"
#: Suffix of the folder beside a copy that keeps the state read from it.
SNAPSHOT_SUFFIX: Final = ".snapshot"


class ModelCache:
    """Model folders by run id and artifact path under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls) -> ModelCache:
        """The cache of the embedded stores: ``$OBSERVML_HOME/model-cache`` (``./.observml``)."""
        home = Path(os.environ.get(HOME_ENV_VAR) or ".observml")
        return cls(home.resolve() / CACHE_DIR)

    @staticmethod
    def accepts(run_id: str) -> bool:
        """Whether ``run_id`` can name a cache folder (letters, digits and ``-`` only).

        Other ids (a path someone sent) are not cached: the store answers for them.
        """
        return bool(run_id) and run_id.replace("-", "").isalnum()

    def folder(self, run_id: str, artifact_path: str) -> Path:
        """Where the copy of ``run_id``'s ``artifact_path`` lives (whether or not it exists).

        Raises:
            ValueError: ``run_id`` is not one :meth:`accepts`.
        """
        if not self.accepts(run_id):
            raise ValueError(f"model cache: run id {run_id!r} is not a plain identifier.")
        safe = [part for part in artifact_path.split("/") if part not in ("", ".", "..")]
        return self.root.joinpath(run_id, *safe)

    def get(self, run_id: str, artifact_path: str) -> Path | None:
        """Return the cached folder when a copy exists (it is complete: see :meth:`fill`)."""
        folder = self.folder(run_id, artifact_path)
        return folder if folder.is_dir() else None

    def fill(self, run_id: str, artifact_path: str, download: Callable[[Path], Path]) -> Path:
        """Download into the cache (``download(tmp_dir)`` returns the folder) and return it.

        The copy appears at once and complete (a rename of a folder downloaded beside it), so
        a folder that exists is whole, and processes that fill the cache at the same time
        never read half a folder. Nothing is added to the folder: its signature covers every
        file in it.
        """
        target = self.folder(run_id, artifact_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fill-", dir=target.parent) as tmp:
            local = download(Path(tmp) / "download")
            try:
                os.replace(local, target)
            except OSError:  # another process filled it first (a non-empty folder)
                if self.get(run_id, artifact_path) is None:
                    raise
        return target

    def snapshot(self, run_id: str, artifact_path: str) -> Path:
        """Where the state read from the copy is kept (see :mod:`observml.store.snapshots`)."""
        folder = self.folder(run_id, artifact_path)
        return folder.with_name(folder.name + SNAPSHOT_SUFFIX)

    def discard(self, run_id: str, artifact_path: str) -> None:
        """Remove a cached copy (one that failed its signature check) and its snapshot."""
        shutil.rmtree(self.folder(run_id, artifact_path), ignore_errors=True)
        shutil.rmtree(self.snapshot(run_id, artifact_path), ignore_errors=True)
