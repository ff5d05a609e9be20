"""``POST /session`` and ``DELETE /session``: sign a browser in and out with a session cookie.

``POST /session`` with ``Authorization: Bearer <token>`` answers 204 and sets a fresh
``observml_session`` cookie (``HttpOnly; SameSite=Strict; Path=/``, and ``Secure`` over https):
signed, bound to the token, and accepted for ``api.session_max_age`` seconds after sign-in
(:mod:`observml.api.session_cookie`). It is a browser-session cookie (no ``Max-Age``), so the
browser also drops it when it closes. ``DELETE /session`` revokes the cookie it was sent and
clears it. Without a token configured nobody needs to sign in: both answer 204 and set nothing.
"""

from __future__ import annotations

from typing import Any, Final, cast

from fastapi import Request, Response

from observml.api.auth import token_matches
from observml.api.deps import make_router
from observml.api.session_cookie import SESSION_COOKIE, SessionCookies
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


def _sessions(request: Request) -> SessionCookies | None:
    """Return the app's session cookies (``None`` when the server has no token)."""
    return cast(SessionCookies | None, getattr(request.app.state, "sessions", None))


def _revoke_sent_cookie(request: Request, sessions: SessionCookies | None) -> None:
    value = request.cookies.get(SESSION_COOKIE)
    if sessions is not None and value:
        sessions.revoke(value)


@router.post(
    "/session",
    status_code=204,
    response_class=Response,
    tags=["service"],
    summary="Sign this browser in (sets a fresh session cookie)",
    responses=_NO_CONTENT,
)
def sign_in(request: Request) -> Response:
    """Exchange the bearer token for a new ``observml_session`` cookie (the dashboard's sign-in).

    Needs ``Authorization: Bearer <token>``: a cookie does not renew itself. Each sign-in gets
    a different cookie, valid for ``api.session_max_age`` seconds; a cookie sent along is
    revoked.
    """
    response = Response(status_code=204, headers={"cache-control": "no-store"})
    token: str | None = request.app.state.settings.token
    sessions = _sessions(request)
    if token and sessions is not None:
        # BearerTokenMiddleware checked this already; checked again so no path mints a cookie
        if not token_matches(request.headers.get("authorization"), token):
            raise UnauthorizedError(
                "POST /session needs 'Authorization: Bearer <token>' with the server's"
                f" api.token (or ${API_TOKEN_ENV_VAR})."
            )
        _revoke_sent_cookie(request, sessions)
        response.set_cookie(SESSION_COOKIE, sessions.issue(), **_cookie_attributes(request))
    return response


@router.delete(
    "/session",
    status_code=204,
    response_class=Response,
    tags=["service"],
    summary="Sign this browser out (ends and clears the session cookie)",
    responses=_NO_CONTENT,
)
def sign_out(request: Request) -> Response:
    """End the session of the ``observml_session`` cookie sent, and clear it in the browser.

    The cookie's value no longer signs anyone in, even if it was copied; the next page load
    shows the sign-in page.
    """
    response = Response(status_code=204, headers={"cache-control": "no-store"})
    _revoke_sent_cookie(request, _sessions(request))
    response.delete_cookie(SESSION_COOKIE, **_cookie_attributes(request))
    return response
