"""Bearer-token authentication of the REST API.

With a token configured (``api.token`` or ``$OBSERVML_API_TOKEN``), every request needs
``Authorization: Bearer <token>`` except the ones that carry no data: ``/livez`` (for
orchestrators), the dashboard's page and static files (the page asks for the token and sends
it on each of its API calls), and the OpenAPI document and its viewers.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from observml.api.middleware import send_error
from observml.api.settings import API_TOKEN_ENV_VAR
from observml.errors import UnauthorizedError

__all__ = ["PUBLIC_PATHS", "PUBLIC_PREFIXES", "BearerTokenMiddleware", "token_matches"]

#: Paths answered without a token.
PUBLIC_PATHS: frozenset[str] = frozenset(
    {"/livez", "/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
#: Path prefixes answered without a token (static files: no data).
PUBLIC_PREFIXES: tuple[str, ...] = ("/static/",)


def token_matches(header: str | None, token: str) -> bool:
    """Return whether an ``Authorization`` header carries ``token`` (constant-time compare)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


class BearerTokenMiddleware:
    """Answer 401 to requests without the right bearer token.

    Args:
        app: The wrapped application.
        token: The token requests must carry.
        public_paths: Paths answered without a token.
        public_prefixes: Path prefixes answered without a token.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        *,
        public_paths: Iterable[str] = PUBLIC_PATHS,
        public_prefixes: Iterable[str] = PUBLIC_PREFIXES,
    ) -> None:
        self.app = app
        self.token = token
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or self._is_public(scope):
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        if header is None:
            message = (
                "this API needs a bearer token. Send 'Authorization: Bearer <token>'; the token"
                f" is api.token in hub_config.yaml or ${API_TOKEN_ENV_VAR} on the server."
            )
        else:
            message = (
                "the Authorization header does not carry the API's bearer token. Send"
                " 'Authorization: Bearer <token>' with the server's api.token"
                f" (or ${API_TOKEN_ENV_VAR})."
            )
        exc = UnauthorizedError(message)
        await send_error(
            send, exc.http_status, type(exc).__name__, str(exc), {"www-authenticate": "Bearer"}
        )

    def _is_public(self, scope: Scope) -> bool:
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        return path in self.public_paths or path.startswith(self.public_prefixes)
