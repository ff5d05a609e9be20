"""Sign the model folders a hub writes, and refuse to load one no hub key signed.

A saved experiment is a folder (see :mod:`observml.store.model_files`). Before it is
uploaded, :meth:`ModelSigner.sign` writes ``signature.json``: the SHA-256 of every file and an
HMAC-SHA256 over that list with the hub's model key. Before anything in a downloaded folder is
read, :meth:`ModelSigner.verify` recomputes both; an unsigned folder, a changed byte in any
file, an added or removed file, or a signature made with another key is refused with
:class:`~observml.errors.UntrustedModelError`, unless the operator set
``global.trust_unsigned_models: true``.

Where the key comes from, first found wins:

1. ``global.model_key`` in ``hub_config.yaml`` (``${VAR}`` expansion works there);
2. the environment variable ``OBSERVML_MODEL_KEY``;
3. the key file ``$OBSERVML_HOME/model.key`` (default ``./.observml/model.key``), created once
   with 32 random bytes and mode 0600 when it does not exist.

Two hub processes share a key by sharing that file (same ``OBSERVML_HOME``) or by being given
the same ``OBSERVML_MODEL_KEY``. The key never leaves the process: runs and signatures carry
only its *key id*, an HMAC of a fixed label, which says which key signed without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from observml.config import HOME_ENV_VAR
from observml.errors import ConfigError, UntrustedModelError

__all__ = [
    "KEY_FILE",
    "KEY_ID_TAG",
    "MODEL_KEY_ENV_VAR",
    "SIGNATURE_FILE",
    "SIGNATURE_TAG",
    "ModelSigner",
]

logger = logging.getLogger(__name__)

#: Environment variable holding the model key (any text; at least 16 characters).
MODEL_KEY_ENV_VAR: Final = "OBSERVML_MODEL_KEY"
#: Key file created under ``$OBSERVML_HOME`` when no key is configured.
KEY_FILE: Final = "model.key"
#: The signature written into each saved model folder.
SIGNATURE_FILE: Final = "signature.json"
#: Run tag holding the id of the key that signed the run's model.
KEY_ID_TAG: Final = "observml.model_key_id"
#: Run tag holding the HMAC of the run's model folder.
SIGNATURE_TAG: Final = "observml.model_signature"

_FORMAT: Final = 1
_ALGORITHM: Final = "HMAC-SHA256"
_MIN_KEY_BYTES: Final = 16
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class ModelSigner:
    """Signs and verifies model folders with one hub key.

    Args:
        key: The secret (never logged, never in a message or a run).
        source: Where the key came from, for messages (``global.model_key``, the env var, the
            key file's path).
    """

    key: bytes = field(repr=False)
    source: str = "key"

    def __post_init__(self) -> None:
        if len(self.key) < _MIN_KEY_BYTES:
            raise ConfigError(
                f"the model key from {self.source} has {len(self.key)} bytes; it needs at least"
                f" {_MIN_KEY_BYTES}. Use a long random value, e.g. the output of"
                " 'python -c \"import secrets; print(secrets.token_hex(32))\"'.",
                key="global.model_key",
            )

    # -- where the key comes from ---------------------------------------------------------
    @classmethod
    def from_settings(cls, model_key: str | None = None) -> ModelSigner:
        """Return the signer of ``model_key``, else ``$OBSERVML_MODEL_KEY``, else the key file.

        The key file ``$OBSERVML_HOME/model.key`` is created (mode 0600) when it is missing.

        Raises:
            ConfigError: The key is shorter than 16 bytes, or the key file cannot be read or
                created.
        """
        if model_key:
            return cls(model_key.encode("utf-8"), "global.model_key")
        env = os.environ.get(MODEL_KEY_ENV_VAR)
        if env:
            return cls(env.encode("utf-8"), f"${MODEL_KEY_ENV_VAR}")
        return cls.from_key_file(_default_key_file())

    @classmethod
    def from_key_file(cls, path: Path) -> ModelSigner:
        """Return the signer of the key in ``path``, creating the file (mode 0600) if missing.

        Raises:
            ConfigError: The file cannot be created or read.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first: use theirs
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(secrets.token_hex(32) + "\n")
                logger.info("created the model key file %s (mode 0600)", path)
            text = path.read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"model key file {path}: {exc.strerror or exc}. Make its folder writable, set"
                f" {HOME_ENV_VAR} to a writable folder, or give the key in"
                f" {MODEL_KEY_ENV_VAR} or global.model_key.",
                key="global.model_key",
            ) from exc
        return cls(text.encode("utf-8"), str(path))

    @property
    def key_id(self) -> str:
        """A short public name of the key (an HMAC of a fixed label; reveals nothing)."""
        return hmac.new(self.key, b"observml model key id", hashlib.sha256).hexdigest()[:16]

    # -- signing and checking -------------------------------------------------------------
    def sign(self, folder: str | os.PathLike[str]) -> str:
        """Write ``signature.json`` into ``folder`` covering every file in it; return the HMAC."""
        root = Path(folder)
        files = _digests(root)
        mac = self._mac(files)
        document = {
            "format": _FORMAT,
            "algorithm": _ALGORITHM,
            "key_id": self.key_id,
            "files": files,
            "mac": mac,
        }
        (root / SIGNATURE_FILE).write_text(json.dumps(document, indent=2, sort_keys=True), "utf-8")
        return mac

    def check(self, folder: str | os.PathLike[str]) -> str | None:
        """Return why ``folder`` is not signed by this key, or ``None`` when it is."""
        root = Path(folder)
        path = root / SIGNATURE_FILE
        if not path.is_file():
            return f"it has no {SIGNATURE_FILE} (it is unsigned)"
        try:
            document = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return f"its {SIGNATURE_FILE} cannot be read ({type(exc).__name__}); it was altered"
        if not isinstance(document, dict) or not isinstance(document.get("files"), dict):
            return f"its {SIGNATURE_FILE} is not an observml signature; it was altered"
        if document.get("key_id") != self.key_id:
            return (
                f"it was signed by another key (key id {str(document.get('key_id'))[:40]!r};"
                f" this hub's key id is {self.key_id!r})"
            )
        claimed: dict[str, Any] = document["files"]
        if not hmac.compare_digest(str(document.get("mac", "")), self._mac(claimed)):
            return f"its {SIGNATURE_FILE} does not match its own HMAC; it was altered"
        actual = _digests(root)
        for name in sorted(set(claimed) | set(actual)):
            if name not in actual:
                return f"the signed file {name!r} is missing"
            if name not in claimed:
                return f"the file {name!r} was added after signing"
            if not hmac.compare_digest(str(claimed[name]), actual[name]):
                return f"the file {name!r} was altered after signing"
        return None

    def verify(self, folder: str | os.PathLike[str], *, where: str) -> None:
        """Raise unless ``folder`` carries a valid signature of this key.

        Args:
            folder: The downloaded model folder.
            where: What the folder is, for the message (e.g. ``run 3f2a… (pump version 4)``).

        Raises:
            UntrustedModelError: Unsigned, altered or signed by another key; says what to do.
        """
        reason = self.check(folder)
        if reason is None:
            return
        raise UntrustedModelError(
            f"{where}: refusing to load the model: {reason}. A model file can run code when it"
            " is loaded, so this hub loads only what a hub with its key wrote. Train or save"
            " the experiment again with this hub; if a hub with another key wrote it, give"
            f" both the same key ({MODEL_KEY_ENV_VAR} or global.model_key, or one"
            f" {HOME_ENV_VAR}/{KEY_FILE}); to load unsigned models anyway, set"
            " global.trust_unsigned_models: true (see docs/security.md)."
        )

    def _mac(self, files: dict[str, Any]) -> str:
        message = json.dumps(
            {"format": _FORMAT, "key_id": self.key_id, "files": files},
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()


def _default_key_file() -> Path:
    home = os.environ.get(HOME_ENV_VAR)
    return (Path(home).expanduser() if home else Path(".observml")) / KEY_FILE


def _digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (but the signature), by POSIX relative path."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.relative_to(root).as_posix() == SIGNATURE_FILE:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        out[path.relative_to(root).as_posix()] = digest.hexdigest()
    return out
