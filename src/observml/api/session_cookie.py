"""The browser's session cookie: signed, expiring, rotated on every sign-in, revocable.

``POST /session`` exchanges the bearer token for a cookie; :class:`SessionCookies` issues and
checks it with itsdangerous' :class:`~itsdangerous.TimestampSigner` (the signer starlette's
``SessionMiddleware`` uses). The value is ``<session id>.<token fingerprint>.<issue time>.<HMAC>``:

- the **session id** is random for each sign-in, so every sign-in gets a different cookie and
  one browser can be signed out without the others;
- the **token fingerprint** is a keyed hash of the token under its own purpose label (never the
  token): a cookie belongs to the token it was issued for;
- the **issue time** makes it expire ``api.session_max_age`` seconds after sign-in. Using the
  API does not extend it (no sliding renewal): the dashboard polls every second, so a renewing
  cookie would keep an unattended or stolen browser signed in for ever, and a cookie does not
  mint a cookie;
- the **signature** is keyed by a key derived from the token under another purpose label. No
  secret is stored or shared: a restart keeps browsers signed in, several API processes with the
  same token accept each other's cookies, and changing the token invalidates every cookie issued
  for the old one. The key is only as strong as the token, which is why the docs generate it
  with ``secrets``.

Signing out (``DELETE /session``) puts the session id on this process's revocation list until
the cookie would have expired anyway; the list lives in memory, so with several API processes a
sign-out ends the session on the process that answered it (the browser drops the cookie too).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Final

from itsdangerous import BadSignature, BadTimeSignature, SignatureExpired, TimestampSigner

__all__ = [
    "SESSION_COOKIE",
    "SessionCookies",
    "SessionProblem",
    "describe_duration",
    "token_fingerprint",
]

#: The cookie ``POST /session`` sets.
SESSION_COOKIE: Final = "observml_session"
_KEY_LABEL: Final = b"observml session signing key v2"
_FINGERPRINT_LABEL: Final = b"observml session token fingerprint v2"
_SALT: Final = "observml.api.session"
_SEP: Final = "."


class SessionProblem(enum.Enum):
    """Why a session cookie is refused."""

    INVALID = "invalid"  #: altered, truncated, or not issued by an observml server
    OTHER_TOKEN = "other_token"  #: issued for a token the server no longer has
    EXPIRED = "expired"  #: issued more than ``max_age`` seconds ago
    NOT_YET_VALID = "not_yet_valid"  #: issued "in the future": the server clocks differ
    SIGNED_OUT = "signed_out"  #: ``DELETE /session`` ended it


def token_fingerprint(token: str) -> str:
    """Return a short keyed hash that tells tokens apart without revealing them."""
    digest = hmac.new(token.encode("utf-8"), _FINGERPRINT_LABEL, hashlib.sha256)
    return digest.hexdigest()[:16]


def describe_duration(seconds: int) -> str:
    """Return ``seconds`` in words: ``8 hours``, ``90 minutes``, ``45 seconds``."""
    count, unit = seconds, "second"
    for size, name in ((60, "minute"), (3600, "hour")):
        if seconds % size == 0:
            count, unit = seconds // size, name
    return f"{count} {unit}{'' if count == 1 else 's'}"


class _Signer(TimestampSigner):
    """itsdangerous' timestamp signer reading the time from ``clock`` (tests set the clock)."""

    def __init__(self, key: bytes, clock: Callable[[], float]) -> None:
        super().__init__(key, salt=_SALT, key_derivation="hmac", digest_method=hashlib.sha256)
        self._clock = clock

    def get_timestamp(self) -> int:
        """Return the clock's time in whole seconds."""
        return int(self._clock())


class SessionCookies:
    """Issue, check and revoke the session cookies of one bearer token.

    Args:
        token: The API's bearer token; the signing key and the fingerprint derive from it.
        max_age: Seconds a cookie is accepted after it was issued.
        clock: The time in epoch seconds (``time.time``; tests pass a clock they move).
    """

    def __init__(self, token: str, *, max_age: int, clock: Callable[[], float] = time.time) -> None:
        self.max_age = max_age
        self.clock = clock
        key = hmac.new(token.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()
        self._signer = _Signer(key, lambda: self.clock())
        self._fingerprint = token_fingerprint(token)
        self._revoked: dict[str, float] = {}  # session id -> when its cookie expires anyway
        self._lock = threading.Lock()

    def issue(self) -> str:
        """Return a new cookie value: a fresh session id, this token, issued now."""
        session_id = secrets.token_urlsafe(18)
        return self._signer.sign(f"{session_id}{_SEP}{self._fingerprint}").decode("ascii")

    def problem(self, value: str) -> SessionProblem | None:
        """Return why ``value`` is refused, or ``None`` when it signs a browser in."""
        checked = self._check(value)
        return checked if isinstance(checked, SessionProblem) else None

    def revoke(self, value: str) -> bool:
        """End the session of ``value``; return whether it was a session that was valid."""
        checked = self._check(value)
        if isinstance(checked, SessionProblem):
            return False
        session_id, issued = checked
        with self._lock:
            now = self.clock()
            self._revoked = {sid: end for sid, end in self._revoked.items() if end >= now}
            self._revoked[session_id] = issued + self.max_age
        return True

    def _check(self, value: str) -> SessionProblem | tuple[str, float]:
        """Return the session id and issue time of a valid ``value``, or what is wrong."""
        try:
            payload, signed_at = self._signer.unsign(
                value, max_age=self.max_age, return_timestamp=True
            )
        except SignatureExpired as exc:
            future = exc.date_signed is not None and exc.date_signed.timestamp() > self.clock()
            return SessionProblem.NOT_YET_VALID if future else SessionProblem.EXPIRED
        except BadTimeSignature as exc:
            return self._why_unsigned(exc.payload)
        except BadSignature:
            return SessionProblem.INVALID
        session_id, _, fingerprint = payload.decode("ascii", "replace").partition(_SEP)
        if not session_id or not hmac.compare_digest(
            fingerprint.encode("utf-8"), self._fingerprint.encode("ascii")
        ):
            return SessionProblem.INVALID
        with self._lock:
            if session_id in self._revoked:
                return SessionProblem.SIGNED_OUT
        return session_id, signed_at.timestamp()

    def _why_unsigned(self, payload: object) -> SessionProblem:
        """Tell a cookie of an earlier token from an altered one (only to word the 401)."""
        text = payload.decode("ascii", "replace") if isinstance(payload, bytes) else ""
        session_id, _, fingerprint = text.partition(_SEP)
        looks_issued = bool(session_id) and len(fingerprint) == len(self._fingerprint)
        if looks_issued and fingerprint != self._fingerprint:
            return SessionProblem.OTHER_TOKEN
        return SessionProblem.INVALID
