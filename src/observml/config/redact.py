"""Keep secrets out of messages, logs and health details (kombu's ``as_uri(mask="**")``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "is_secret_key", "mask_text", "mask_uri", "redact", "secrets_of"]

MASK: Final = "****"
_SECRET_WORDS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "credential",
    "model_key",
)
_URI_PASSWORD: Final = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@/\s]*(?=@)")


def is_secret_key(key: str) -> bool:
    """Return True when a config key or header name holds a secret."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def mask_uri(uri: str) -> str:
    """Return ``uri`` with the password of its user-info replaced by ``****``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return mask_text(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":" + MASK
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def mask_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask passwords inside URIs found in ``text`` and every literal in ``secrets``."""
    masked = _URI_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in secrets:
        if secret:
            masked = masked.replace(secret, MASK)
    return masked


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``values`` with secret keys masked and URIs stripped of passwords."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if is_secret_key(key) and value not in (None, ""):
            out[key] = MASK
        elif isinstance(value, Mapping):
            out[key] = redact(value)
        elif isinstance(value, str):
            out[key] = mask_text(value)
        else:
            out[key] = value
    return out


def secrets_of(obj: object) -> tuple[str, ...]:
    """Return the string values of ``obj``'s attributes whose names mark them as secrets."""
    found = []
    for name, value in vars(obj).items() if hasattr(obj, "__dict__") else ():
        if is_secret_key(name.lstrip("_")) and isinstance(value, str) and value:
            found.append(value)
    return tuple(found)
