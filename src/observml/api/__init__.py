"""The REST API and dashboard of an ExperimentHub (needs the ``api`` extra: fastapi, uvicorn).

``create_app(hub)`` returns the FastAPI application; ``observml serve`` runs it with uvicorn.
"""

from __future__ import annotations

from observml.api.app import create_app
from observml.api.settings import API_TOKEN_ENV_VAR, ApiSettings

__all__ = ["API_TOKEN_ENV_VAR", "ApiSettings", "create_app"]
