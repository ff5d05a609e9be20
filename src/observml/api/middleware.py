"""ASGI middleware of the REST API: the last-resort 500 and the request body limit.

Both answer in the API's one error shape, ``{"error": <type name>, "message": <text>}``, and
never with a traceback.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observml.errors import ObservMLError, PayloadTooLargeError

__all__ = ["BodyLimitMiddleware", "CatchAllMiddleware", "error_payload", "send_error"]

logger = logging.getLogger(__name__)

_METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def error_payload(error: str, message: str) -> dict[str, str]:
    """Return the API's error body."""
    return {"error": error, "message": message}


async def send_error(
    send: Send,
    status: int,
    error: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Send a complete JSON error response on a raw ASGI ``send``."""
    body = json.dumps(error_payload(error, message)).encode("utf-8")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    raw_headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class CatchAllMiddleware:
    """Turn any exception that escaped the route handlers into a JSON 500.

    The traceback goes to the server log with a short incident id; the client gets the id and
    no internals.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            incident = uuid.uuid4().hex[:12]
            logger.error(
                "%s %s failed (incident %s)",
                scope.get("method"),
                scope.get("path"),
                incident,
                exc_info=True,
            )
            if started:  # too late for a clean answer; the server closes the connection
                raise
            if isinstance(exc, ObservMLError):
                await send_error(send, exc.http_status, type(exc).__name__, str(exc))
                return
            await send_error(
                send,
                500,
                "InternalServerError",
                f"the server failed to handle {scope.get('method')} {scope.get('path')}"
                f" (incident {incident}). The details are in the server log; please report"
                " them if this repeats.",
            )


class BodyLimitMiddleware:
    """Answer 413 for request bodies larger than ``max_bytes`` before any handler reads them.

    The body is read here (up to the limit) and replayed to the app, so a chunked upload
    without ``Content-Length`` is limited too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or scope["method"] in _METHODS_WITHOUT_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)

    async def _refuse(self, send: Send, declared: int | None) -> None:
        size = f" of {declared} bytes" if declared is not None else ""
        exc = PayloadTooLargeError(
            f"request body{size} is larger than the limit of {self.max_bytes} bytes"
            " (api.max_body_bytes). Send fewer rows per request, or publish them to the"
            " experiment's train queue instead."
        )
        await send_error(
            send, exc.http_status, type(exc).__name__, str(exc), {"connection": "close"}
        )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
