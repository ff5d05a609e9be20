"""``POST /session`` and ``DELETE /session``: sign a browser in and out with a session cookie.

``POST /session`` with ``Authorization: Bearer <token>`` answers 204 and sets
``observml_session=<hex HMAC-SHA256 keyed by the token>; HttpOnly; SameSite=Strict; Path=/``
(and ``Secure`` over https). It is a browser-session cookie (no ``Max-Age``): it lasts until the
browser closes, the user signs out, or the server's token changes. ``DELETE /session`` clears
it. Without a token configured nobody needs to sign in: both answer 204 and set nothing.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request, Response

from observml.api.auth import SESSION_COOKIE, session_value, token_matches
from observml.api.deps import make_router
from observml.config.api_settings import API_TOKEN_ENV_VAR
from observml.errors import UnauthorizedError

__all__ = ["router"]

router = make_router()

_NO_CONTENT: Final[dict[int | str, dict[str, Any]]] = {
    204: {"description": "Done; the answer has no body."}
}


def _cookie_attributes(request: Request) -> dict[str, Any]:
    return {
        "path": "/",
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
    }


@router.post(
    "/session",
    status_code=204,
    response_class=Response,
    tags=["service"],
    summary="Sign this browser in (sets the session cookie)",
    responses=_NO_CONTENT,
)
def sign_in(request: Request) -> Response:
    """Exchange the bearer token for the ``observml_session`` cookie (the dashboard's sign-in).

    Needs ``Authorization: Bearer <token>``; the cookie alone does not renew itself.
    """
    response = Response(status_code=204, headers={"cache-control": "no-store"})
    token: str | None = request.app.state.settings.token
    if token:
        # BearerTokenMiddleware checked this already; checked again so no path mints a cookie
        if not token_matches(request.headers.get("authorization"), token):
            raise UnauthorizedError(
                "POST /session needs 'Authorization: Bearer <token>' with the server's"
                f" api.token (or ${API_TOKEN_ENV_VAR})."
            )
        response.set_cookie(SESSION_COOKIE, session_value(token), **_cookie_attributes(request))
    return response


@router.delete(
    "/session",
    status_code=204,
    response_class=Response,
    tags=["service"],
    summary="Sign this browser out (clears the session cookie)",
    responses=_NO_CONTENT,
)
def sign_out(request: Request) -> Response:
    """Clear the ``observml_session`` cookie; the next page load shows the sign-in page."""
    response = Response(status_code=204, headers={"cache-control": "no-store"})
    response.delete_cookie(SESSION_COOKIE, **_cookie_attributes(request))
    return response
