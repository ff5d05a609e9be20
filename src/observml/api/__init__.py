"""The REST API and dashboard of an ExperimentHub (needs the ``api`` extra: fastapi, uvicorn).

``create_app(hub)`` returns the FastAPI application; ``observml serve`` runs it with uvicorn.
fastapi is imported on first use of ``create_app``, so reading the ``api:`` settings
(:class:`ApiSettings`, used by ``observml config check``) works without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from observml.config.api_settings import API_TOKEN_ENV_VAR, ApiSettings

if TYPE_CHECKING:
    from observml.api.app import create_app

__all__ = ["API_TOKEN_ENV_VAR", "ApiSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from observml.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
