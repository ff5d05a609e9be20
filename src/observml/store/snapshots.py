"""A restored model's state kept beside its cached folder, so the next command restores it fast.

Reading a model folder's estimators with skops means importing skops, which names every
public scikit-learn type on import (about a second of CPU before the first row is scored).
Every CLI command is a new process that restores the champion, so once a folder from the
:class:`~observml.store.cache.ModelCache` has been read and its signature checked, the state it
gave is written beside it as one pickle in a folder signed with the hub's key, like a model
folder (:meth:`~observml.store.signing.ModelSigner.sign`). The next process checks that
signature, then unpickles: only the modules the model itself uses are imported.

This is no new trust: the snapshot never leaves ``$OBSERVML_HOME`` (where the hub's key file
also lives), it is written only from a folder this hub's key signed, and it is read only when
the same key's signature over its bytes holds; anything else is removed, and the folder is read
with skops again. A model folder in the MLOps store is never a pickle that is trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

from observml.store.signing import SIGNATURE_FILE, ModelSigner

__all__ = ["SNAPSHOT_FILE", "read_snapshot", "write_snapshot"]

logger = logging.getLogger(__name__)

#: The pickled state inside a snapshot folder.
SNAPSHOT_FILE: Final = "state.pkl"


def read_snapshot(folder: Path, signer: ModelSigner) -> dict[str, Any] | None:
    """Return the state kept in ``folder``, or ``None`` when there is none that ``signer`` signed.

    A snapshot that fails its check (altered, or signed by a key the hub no longer has) is
    removed, so the caller reads the model folder and writes a new one.
    """
    path = folder / SNAPSHOT_FILE
    if not path.is_file():
        return None
    reason = signer.check(folder)
    data = path.read_bytes()
    if reason is None and not hmac.compare_digest(_signed_digest(folder), _sha256(data)):
        reason = f"{SNAPSHOT_FILE} changed while it was read"
    if reason is not None:
        logger.warning("model cache: removing the snapshot %s: %s", folder, reason)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    state = pickle.loads(data)  # signed by this hub's key: checked above
    return state if isinstance(state, dict) else None


def write_snapshot(folder: Path, state: dict[str, Any], signer: ModelSigner) -> None:
    """Keep ``state`` in ``folder``, signed with ``signer``; never raises (it is only a cache).

    The folder appears complete or not at all (a rename), so a process reading it never sees
    half a snapshot.
    """
    try:
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".snapshot-", dir=folder.parent) as tmp:
            staged = Path(tmp) / "snapshot"
            staged.mkdir()
            (staged / SNAPSHOT_FILE).write_bytes(data)
            signer.sign(staged)
            os.replace(staged, folder)
    except OSError as exc:  # another process wrote it first, or the disk said no
        if not (folder / SNAPSHOT_FILE).is_file():
            logger.debug("model cache: no snapshot at %s (%s)", folder, exc)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        logger.debug("model cache: the state cannot be kept as a snapshot (%s)", exc)


def _signed_digest(folder: Path) -> str:
    try:
        document = json.loads((folder / SIGNATURE_FILE).read_text("utf-8"))
        return str(document["files"][SNAPSHOT_FILE])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
