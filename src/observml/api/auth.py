"""Authentication of the REST API: a bearer token, or a session cookie issued for it.

With a token configured (``api.token`` or ``$OBSERVML_API_TOKEN``), every request but ``/livez``
needs one of:

- ``Authorization: Bearer <token>`` (scripts, the CLI, Prometheus, Swagger UI's Authorize);
- the ``observml_session`` cookie that ``POST /session`` sets in exchange for the bearer token
  (the sign-in page does this for a browser): signed, expiring after ``api.session_max_age``,
  revoked by ``DELETE /session`` and by a change of token (see
  :mod:`observml.api.session_cookie`).

An ``Authorization`` header, when sent, decides alone. A cookie-authenticated request with an
unsafe method (POST, PUT, PATCH, DELETE) whose ``Origin`` is not this server's host is refused
with 403 (against cross-site request forgery, on top of ``SameSite=Strict``). A browser
navigation without valid credentials (``GET`` accepting ``text/html``) gets a 401 sign-in page
(``signin.html``, no data in it); any other request gets the JSON 401 with
``WWW-Authenticate: Bearer``. Both say why a cookie was refused (expired, signed out, the token
changed, altered). Tokens are compared in constant time and never sent back.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from observml.api.middleware import send_error
from observml.api.session_cookie import (
    SESSION_COOKIE,
    SessionCookies,
    SessionProblem,
    describe_duration,
)
from observml.config.api_settings import API_TOKEN_ENV_VAR, DEFAULT_SESSION_MAX_AGE
from observml.errors import ForbiddenError, UnauthorizedError

__all__ = [
    "PUBLIC_PATHS",
    "SESSION_COOKIE",
    "BearerTokenMiddleware",
    "same_origin",
    "token_matches",
]

#: Paths answered without credentials.
PUBLIC_PATHS: frozenset[str] = frozenset({"/livez"})
#: Requests the cookie cannot authenticate: a cookie does not mint a cookie.
_BEARER_ONLY: Final = frozenset({("POST", "/session")})
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_SIGNIN_PAGE: Final = Path(__file__).with_name("signin.html").read_text(encoding="utf-8")


def token_matches(header: str | None, token: str) -> bool:
    """Return whether an ``Authorization`` header carries ``token`` (constant-time compare)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


def same_origin(origin: str, host: str | None) -> bool:
    """Return whether an ``Origin`` header names the host the request was sent to."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or not host:
        return False
    default_port = ":443" if parts.scheme == "https" else ":80"

    def normal(value: str) -> str:
        value = value.lower()
        return value.removesuffix(default_port)

    return normal(parts.netloc) == normal(host)


#: Why a session cookie was refused: the 401 message, and the note on the sign-in page.
_REFUSED: Final[Mapping[SessionProblem, tuple[str, str]]] = {
    SessionProblem.EXPIRED: (
        "the session cookie expired: a sign-in lasts {lifetime} (api.session_max_age).",
        "Your session ended: a sign-in lasts {lifetime}.",
    ),
    SessionProblem.SIGNED_OUT: (
        "the session cookie was signed out (DELETE /session).",
        "You signed out.",
    ),
    SessionProblem.OTHER_TOKEN: (
        "the session cookie was issued for another token: the server's token changed since"
        " this browser signed in.",
        "The server's token changed: sign in with the new one.",
    ),
    SessionProblem.NOT_YET_VALID: (
        "the session cookie was issued later than this server's clock says it is now (servers"
        " with different clocks?).",
        "Your session is not valid on this server (its clock differs).",
    ),
    SessionProblem.INVALID: (
        "the session cookie is not valid (altered, or not issued by this server).",
        "Your session cookie was not accepted.",
    ),
}
_SIGN_IN_AGAIN: Final = (
    " Sign in again on the dashboard page, or send 'Authorization: Bearer <token>' with the"
    f" server's api.token (or ${API_TOKEN_ENV_VAR})."
)


class BearerTokenMiddleware:
    """Answer 401 (or 403) to requests without the bearer token or a valid session cookie.

    Args:
        app: The wrapped application.
        token: The token requests must carry.
        sessions: Checks the session cookies (the app's, which ``DELETE /session`` revokes
            in); by default cookies of ``token`` that last ``DEFAULT_SESSION_MAX_AGE``.
        public_paths: Paths answered without credentials.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        *,
        sessions: SessionCookies | None = None,
        public_paths: Iterable[str] = PUBLIC_PATHS,
    ) -> None:
        self.app = app
        self.token = token
        self.sessions = sessions or SessionCookies(token, max_age=DEFAULT_SESSION_MAX_AGE)
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        path = _app_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in self.public_paths:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method: str = scope["method"]
        authorization = headers.get("authorization")
        cookie = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        lifetime = describe_duration(self.sessions.max_age)
        note = ""
        if authorization is not None:
            if token_matches(authorization, self.token):
                await self.app(scope, receive, send)
                return
            message = (
                "the Authorization header does not carry the API's bearer token. Send"
                " 'Authorization: Bearer <token>' with the server's api.token"
                f" (or ${API_TOKEN_ENV_VAR})."
            )
        elif cookie is not None and (method, path) in _BEARER_ONLY:
            message = (
                f"{method} {path} needs 'Authorization: Bearer <token>': a session cookie does"
                " not renew itself. Sign in again with the server's api.token"
                f" (or ${API_TOKEN_ENV_VAR})."
            )
        elif cookie is not None:
            problem = self.sessions.problem(cookie)
            if problem is None:
                origin = headers.get("origin")
                if (
                    method in _SAFE_METHODS
                    or origin is None
                    or same_origin(origin, headers.get("host"))
                ):
                    await self.app(scope, receive, send)
                    return
                await _forbid(send, method, scope["path"], origin, headers.get("host"))
                return
            reason, page_note = _REFUSED[problem]
            message = reason.format(lifetime=lifetime) + _SIGN_IN_AGAIN
            note = page_note.format(lifetime=lifetime)
        else:
            message = (
                "this API needs a bearer token. Send 'Authorization: Bearer <token>'; the token"
                f" is api.token in hub_config.yaml or ${API_TOKEN_ENV_VAR} on the server."
            )
        if method == "GET" and "text/html" in headers.get("accept", "").lower():
            await _send_signin_page(send, scope, note=note, lifetime=lifetime)
            return
        exc = UnauthorizedError(message)
        await send_error(
            send, exc.http_status, type(exc).__name__, str(exc), {"www-authenticate": "Bearer"}
        )


def _headers(scope: Scope) -> dict[str, str]:
    """Return the request headers by lowercase name (repeated cookie headers joined)."""
    found: dict[str, str] = {}
    for raw_key, raw_value in scope.get("headers", []):
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key == "cookie" and key in found:
            found[key] += "; " + value
        else:
            found.setdefault(key, value)
    return found


def _app_path(scope: Scope, *, raw: bool = False) -> str:
    """Return the request path without the app's ``root_path`` (``raw``: as sent, encoded)."""
    raw_path = scope.get("raw_path") if raw else None
    path: str = raw_path.decode("latin-1") if raw_path else scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


async def _forbid(send: Send, method: str, path: str, origin: str, host: str | None) -> None:
    exc = ForbiddenError(
        f"{method} {path} was signed in by the session cookie but sent from {origin}, not"
        f" from this server ({host or 'no Host header'}): refused against cross-site request"
        " forgery. Use the dashboard served by this server; from a script or another site,"
        " send 'Authorization: Bearer <token>' instead of the cookie. Behind a reverse proxy,"
        " pass the original Host header on (nginx: proxy_set_header Host $host)."
    )
    await send_error(send, exc.http_status, type(exc).__name__, str(exc))


async def _send_signin_page(send: Send, scope: Scope, *, note: str, lifetime: str) -> None:
    """Send the 401 sign-in page; its script posts to ``session`` at the app's root.

    ``note`` says why the browser's cookie was refused (empty when it sent none).
    """
    depth = _app_path(scope, raw=True).count("/") - 1
    page = _SIGNIN_PAGE.replace("{{root}}", "../" * max(depth, 0))
    page = page.replace("{{note}}", escape(note)).replace("{{lifetime}}", escape(lifetime))
    body = page.encode("utf-8")
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"www-authenticate", b"Bearer"),
        (b"cache-control", b"no-store"),
        (b"x-frame-options", b"DENY"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
