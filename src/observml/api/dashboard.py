"""The dashboard page, its static files, plotly.js and the offline API docs.

Everything is served by the API itself, with no build step and no CDN: the page is one HTML
file and one script under ``static/``; plotly.js comes from the installed ``plotly`` package;
Swagger UI and ReDoc come from ``fastapi-offline`` when it is installed (else FastAPI's CDN
defaults are used).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "install", "plotly_js_path"]

#: The dashboard's own files.
STATIC_DIR: Final = Path(__file__).with_name("static")


def _package_dir(package: str) -> Path | None:
    """Return a package's folder without importing it (``None`` when not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def plotly_js_path() -> Path | None:
    """Return ``plotly.min.js`` of the installed plotly package."""
    folder = _package_dir("plotly")
    path = folder / "package_data" / "plotly.min.js" if folder else None
    return path if path is not None and path.is_file() else None


def _docs_assets() -> Path | None:
    folder = _package_dir("fastapi_offline")
    static = folder / "static" if folder else None
    return static if static is not None and (static / "swagger-ui-bundle.js").is_file() else None


def install(app: FastAPI) -> None:
    """Add ``/``, ``/static/*``, ``/docs`` and ``/redoc`` to ``app``."""
    docs_assets = _docs_assets()

    @app.get("/", include_in_schema=False)
    def dashboard(request: Request) -> HTMLResponse:
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        settings = getattr(request.app.state, "settings", None)
        if settings is not None and settings.token:  # the page shows "sign out"
            page = page.replace('data-auth="off"', 'data-auth="on"', 1)
        return HTMLResponse(page)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        path = plotly_js_path()
        if path is None:  # plotly is a core dependency; this is a broken install
            raise FileNotFoundError("plotly/package_data/plotly.min.js is missing")
        return FileResponse(path, media_type="text/javascript")

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        openapi_url, title = f"{root}/openapi.json", f"{app.title} API"
        if docs_assets is None:
            return get_swagger_ui_html(openapi_url=openapi_url, title=title)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{root}/static/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        openapi_url, title = f"{root}/openapi.json", f"{app.title} API"
        if docs_assets is None:
            return get_redoc_html(openapi_url=openapi_url, title=title, with_google_fonts=False)
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{root}/static/docs/redoc.standalone.js",
            redoc_favicon_url=f"{root}/static/docs/favicon.png",
            with_google_fonts=False,
        )

    if docs_assets is not None:
        app.mount("/static/docs", StaticFiles(directory=docs_assets), name="docs-static")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
