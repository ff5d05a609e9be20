"""``create_app(hub)``: the FastAPI application of a hub, with its error handling and guards.

Usage::

    from observml import ExperimentHub
    from observml.api import create_app

    app = create_app(ExperimentHub.from_config("hub_config.yaml"))   # uvicorn app

Every error is JSON ``{"error": <type name>, "message": <what to do>}``: an
:class:`~observml.errors.ObservMLError` with its ``http_status``, a bad request with 422, an
unknown route with 404, anything unexpected with 500 (the traceback stays in the server log).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from observml.api import artifacts, dashboard, decisions, queues, routes, session
from observml.api.auth import PUBLIC_PATHS, BearerTokenMiddleware
from observml.api.figures import PngRenderer
from observml.api.metrics import build_registry
from observml.api.middleware import BodyLimitMiddleware, CatchAllMiddleware, error_payload
from observml.api.session_cookie import SessionCookies
from observml.config.api_settings import ApiSettings
from observml.errors import ObservMLError
from observml.hub.hub import ExperimentHub

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Train, predict, stream, retrain and version process-monitoring models through an
`ExperimentHub`. Every error is `{"error": <type>, "message": <what to do>}`.
With `api.token` set, send `Authorization: Bearer <token>` (browsers sign in at `/`, which
sets a session cookie through `POST /session`). The dashboard is at `/`.
"""
_HTTP_ERRORS = {404: "NotFoundError", 405: "MethodNotAllowedError"}


def create_app(
    hub: ExperimentHub | None = None,
    *,
    settings: ApiSettings | None = None,
    owns_hub: bool | None = None,
) -> FastAPI:
    """Build the REST API (and dashboard) of ``hub``.

    Args:
        hub: The hub to serve; ``None`` builds one with ``ExperimentHub.from_config()``.
        settings: Token, session lifetime, body limit and CORS; by default read from the hub
            config's ``api:`` section (``$OBSERVML_API_TOKEN`` overrides the token).
        owns_hub: Shut the hub down when the app shuts down; by default only a hub the app
            built itself.

    Raises:
        ConfigError: The ``api:`` section is invalid.
    """
    owned = hub is None if owns_hub is None else owns_hub
    the_hub = hub if hub is not None else ExperimentHub.from_config()
    try:
        settings = settings or ApiSettings.from_config(
            the_hub.config.api, source=the_hub.config.source
        )
    except BaseException:
        if owned:
            the_hub.shutdown()
        raise
    png = PngRenderer()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(png.close)
            if owned:
                logger.info("stopping streams, jobs and plugins")
                await run_in_threadpool(the_hub.shutdown)

    from observml import __version__

    app = FastAPI(
        title="observml",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.hub = the_hub
    app.state.settings = settings
    app.state.sessions = (
        SessionCookies(settings.token, max_age=settings.session_max_age) if settings.token else None
    )
    app.state.png = png
    app.state.metrics = build_registry(the_hub)
    _add_exception_handlers(app)
    app.include_router(routes.router)
    app.include_router(artifacts.router)
    app.include_router(decisions.router)
    app.include_router(queues.router)
    app.include_router(session.router)
    dashboard.install(app)
    _add_middleware(app, settings)
    if settings.token:
        _declare_bearer_auth(app)
    return app


def _declare_bearer_auth(app: FastAPI) -> None:
    """Mark every operation but ``/livez`` as needing the bearer token (for /docs' Authorize)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearerAuth"] = {
                "type": "http",
                "scheme": "bearer",
            }
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    if path not in PUBLIC_PATHS:
                        operation["security"] = [{"bearerAuth": []}]
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _add_middleware(app: FastAPI, settings: ApiSettings) -> None:
    """Outermost first: CORS (when on), the catch-all 500, the token check, the body limit."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.token:
        app.add_middleware(BearerTokenMiddleware, token=settings.token, sessions=app.state.sessions)
    app.add_middleware(CatchAllMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=[routes.TOTAL_HEADER],
        )


def _add_exception_handlers(app: FastAPI) -> None:
    async def observml_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ObservMLError)
        if exc.http_status >= 500:
            logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            error_payload(type(exc).__name__, str(exc)), status_code=exc.http_status
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(
            error_payload("RequestValidationError", _describe(exc.errors())), status_code=422
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        name = _HTTP_ERRORS.get(exc.status_code, "HTTPError")
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = (
                f"no route {request.method} {request.url.path}. The routes are listed at /docs."
            )
        elif exc.status_code == 405:
            message = (
                f"{request.method} is not allowed on {request.url.path}."
                f" Allowed: {_header(exc.headers, 'allow') or 'see /docs'}."
            )
        else:
            message = str(exc.detail)
        return JSONResponse(
            error_payload(name, message), status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(ObservMLError, observml_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    return next((v for k, v in (headers or {}).items() if k.lower() == name), None)


def _describe(errors: Sequence[Any]) -> str:
    """Summarize pydantic errors as ``where: what`` (values are not echoed back)."""
    parts = []
    for error in list(errors)[:10]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{location or 'request'}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return (
        "the request does not fit the API: "
        + "; ".join(parts)
        + more
        + ". See /docs for the expected shape."
    )
