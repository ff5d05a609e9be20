"""Plotly figures as API responses: plotly JSON, a standalone HTML page, or a PNG.

PNG export uses kaleido 1.x, which drives a headless Chromium (Debian's ``chromium``). Starting
the browser takes seconds, so one :class:`PngRenderer` per app keeps it open after the first
PNG request and closes it when the app shuts down; each render is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from starlette.responses import Response

from observml.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["FigureFormat", "PngRenderer", "figure_response"]

logger = logging.getLogger(__name__)

FigureFormat: TypeAlias = Literal["json", "png", "html"]

_OPEN_TIMEOUT: Final = 90.0
_RENDER_TIMEOUT: Final = 60.0
_CHROMIUM_HINT: Final = (
    "PNG export needs kaleido and Debian's chromium (apt-get install chromium);"
    " ask for ?format=json or ?format=html instead."
)


class PngRenderer:
    """A kaleido browser kept open in a background event loop, started on first use."""

    def __init__(self, *, open_timeout: float = _OPEN_TIMEOUT, timeout: float = _RENDER_TIMEOUT):
        self.open_timeout = open_timeout
        self.timeout = timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._kaleido: Any = None

    def render(
        self, figure: Figure, *, width: int | None = None, height: int | None = None
    ) -> bytes:
        """Return the figure as PNG bytes.

        Raises:
            ServiceUnavailableError: kaleido or Chromium is missing, or rendering timed out.
        """
        kaleido = self._ensure_open()
        opts: dict[str, Any] = {"format": "png"}
        if width:
            opts["width"] = width
        if height:
            opts["height"] = height
        try:
            data = self._run(kaleido.calc_fig(figure.to_dict(), opts=opts), self.timeout)
        except TimeoutError as exc:
            raise ServiceUnavailableError(
                f"PNG export took longer than {self.timeout:g} s. Try again, or ask for"
                " ?format=json."
            ) from exc
        except ServiceUnavailableError:
            raise
        except Exception as exc:  # kaleido/choreographer errors: the browser failed
            self.close()
            raise ServiceUnavailableError(
                f"PNG export failed: {type(exc).__name__}: {exc}. {_CHROMIUM_HINT}"
            ) from exc
        return bytes(data)

    def close(self) -> None:
        """Close the browser and stop the background loop (safe to call twice)."""
        with self._lock:
            kaleido, loop, thread = self._kaleido, self._loop, self._thread
            self._kaleido = self._loop = self._thread = None
        if loop is None:
            return
        if kaleido is not None:
            try:
                asyncio.run_coroutine_threadsafe(kaleido.close(), loop).result(15)
            except Exception:
                logger.warning("closing the PNG export browser failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)

    def _ensure_open(self) -> Any:
        with self._lock:
            if self._kaleido is not None:
                return self._kaleido
            try:
                from kaleido import Kaleido
                from kaleido.errors import ChromeNotFoundError
            except ImportError as exc:
                raise ServiceUnavailableError(
                    f"kaleido is not installed. {_CHROMIUM_HINT}"
                ) from exc
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_run_loop, args=(loop,), name="observml-png-export", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread

            async def start() -> Any:
                browser = Kaleido(n=1, timeout=self.timeout, mathjax=False)
                await browser.open()
                return browser

            try:
                self._kaleido = self._run(start(), self.open_timeout)
            except Exception as exc:
                self._loop = self._thread = None
                loop.call_soon_threadsafe(loop.stop)
                thread.join(5)
                if isinstance(exc, ChromeNotFoundError):
                    raise ServiceUnavailableError(_no_browser_message()) from exc
                reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
                raise ServiceUnavailableError(
                    f"PNG export could not start its browser ({reason}: {exc}). {_CHROMIUM_HINT}"
                ) from exc
            return self._kaleido

    def _run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise ServiceUnavailableError(f"PNG export is shut down. {_CHROMIUM_HINT}")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


def _no_browser_message() -> str:
    """Say which browser kaleido did not find and what to install."""
    path = os.environ.get("BROWSER_PATH")
    looked = (
        f"BROWSER_PATH={path!r} is not a browser"
        if path
        else "no chromium or chrome on PATH or in /usr/bin"
    )
    return (
        f"PNG export: no Chromium to render with ({looked}). Install Debian's chromium"
        " (apt-get install chromium), or ask for ?format=json or ?format=html instead."
    )


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


def figure_response(
    figure: Figure,
    fmt: FigureFormat,
    *,
    renderer: PngRenderer,
    plotly_js_url: str,
    title: str,
) -> Response:
    """Render ``figure`` in ``fmt`` as an HTTP response.

    Args:
        figure: The plotly figure.
        fmt: ``json`` (plotly's figure JSON: ``{"data": [...], "layout": {...}}``), ``html`` (a
            page loading plotly.js from ``plotly_js_url``) or ``png``.
        renderer: The PNG renderer of the app.
        plotly_js_url: Where the HTML page loads plotly.js from (the API serves it).
        title: The HTML page's title.
    """
    if fmt == "png":
        return Response(renderer.render(figure), media_type="image/png")
    if fmt == "html":
        html = figure.to_html(include_plotlyjs=plotly_js_url, full_html=True)
        html = html.replace("<head>", f"<head><title>{_escape(title)}</title>", 1)
        return Response(html, media_type="text/html; charset=utf-8")
    return Response(figure.to_json(), media_type="application/json")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
