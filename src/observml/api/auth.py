"""Authentication of the REST API: a bearer token, or a session cookie issued for it.

With a token configured (``api.token`` or ``$OBSERVML_API_TOKEN``), every request but ``/livez``
needs one of:

- ``Authorization: Bearer <token>`` (scripts, the CLI, Prometheus, Swagger UI's Authorize);
- the ``observml_session`` cookie that ``POST /session`` sets in exchange for the bearer token
  (the sign-in page does this for a browser). Its value is the hex HMAC-SHA256 of a fixed
  label keyed by the token: the server keeps no sessions, and a new token signs every browser
  out.

An ``Authorization`` header, when sent, decides alone. A cookie-authenticated request with an
unsafe method (POST, PUT, PATCH, DELETE) whose ``Origin`` is not this server's host is refused
with 403 (against cross-site request forgery, on top of ``SameSite=Strict``). A browser
navigation without valid credentials (``GET`` accepting ``text/html``) gets a 401 sign-in page
(``signin.html``, no data in it); any other request gets the JSON 401 with
``WWW-Authenticate: Bearer``. Tokens are compared in constant time and never sent back.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from observml.api.middleware import send_error
from observml.config.api_settings import API_TOKEN_ENV_VAR
from observml.errors import ForbiddenError, UnauthorizedError

__all__ = [
    "PUBLIC_PATHS",
    "SESSION_COOKIE",
    "BearerTokenMiddleware",
    "same_origin",
    "session_matches",
    "session_value",
    "token_matches",
]

#: Paths answered without credentials.
PUBLIC_PATHS: frozenset[str] = frozenset({"/livez"})
#: The cookie ``POST /session`` sets.
SESSION_COOKIE: Final = "observml_session"
_SESSION_LABEL: Final = b"observml session cookie v1"
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


def session_value(token: str) -> str:
    """Return the session cookie's value for ``token``: hex HMAC-SHA256 of a fixed label."""
    return hmac.new(token.encode("utf-8"), _SESSION_LABEL, hashlib.sha256).hexdigest()


def session_matches(cookie_header: str | None, token: str) -> bool:
    """Return whether a ``Cookie`` header carries the session cookie of ``token``."""
    given = cookie_parser(cookie_header).get(SESSION_COOKIE) if cookie_header else None
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), session_value(token).encode("ascii"))


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


class BearerTokenMiddleware:
    """Answer 401 (or 403) to requests without the bearer token or its session cookie.

    Args:
        app: The wrapped application.
        token: The token requests must carry.
        public_paths: Paths answered without credentials.
    """

    def __init__(
        self, app: ASGIApp, token: str, *, public_paths: Iterable[str] = PUBLIC_PATHS
    ) -> None:
        self.app = app
        self.token = token
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
        if authorization is not None:
            if token_matches(authorization, self.token):
                await self.app(scope, receive, send)
                return
            message = (
                "the Authorization header does not carry the API's bearer token. Send"
                " 'Authorization: Bearer <token>' with the server's api.token"
                f" (or ${API_TOKEN_ENV_VAR})."
            )
        elif (method, path) not in _BEARER_ONLY and session_matches(
            headers.get("cookie"), self.token
        ):
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
        elif SESSION_COOKIE in cookie_parser(headers.get("cookie", "")):
            message = (
                "the session cookie is no longer valid (signed out, or the server's token"
                " changed). Sign in again on the dashboard page, or send 'Authorization: Bearer"
                f" <token>' with the server's api.token (or ${API_TOKEN_ENV_VAR})."
            )
        else:
            message = (
                "this API needs a bearer token. Send 'Authorization: Bearer <token>'; the token"
                f" is api.token in hub_config.yaml or ${API_TOKEN_ENV_VAR} on the server."
            )
        if method == "GET" and "text/html" in headers.get("accept", "").lower():
            await _send_signin_page(send, scope)
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


async def _send_signin_page(send: Send, scope: Scope) -> None:
    """Send the 401 sign-in page; its script posts to ``session`` at the app's root."""
    depth = _app_path(scope, raw=True).count("/") - 1
    body = _SIGNIN_PAGE.replace("{{root}}", "../" * max(depth, 0)).encode("utf-8")
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"www-authenticate", b"Bearer"),
        (b"cache-control", b"no-store"),
        (b"x-frame-options", b"DENY"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
