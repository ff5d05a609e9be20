"""The REST API client of the CLI's ``--url`` mode: one method per route the commands use.

Error bodies (``{"error", "message"}``) become the matching :mod:`observml.errors` type, so the
CLI prints the server's message and exits 2 for a 400 (an invalid config or type) and 1
otherwise; an unreachable server is a :class:`~observml.errors.ServiceUnavailableError` that
says what to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

from observml import errors
from observml.errors import (
    AuthenticationError,
    ConfigError,
    DataError,
    ExperimentError,
    NotFoundError,
    ObservMLError,
    ServiceUnavailableError,
)

__all__ = ["TOKEN_ENV_VAR", "URL_ENV_VAR", "ApiClient"]

#: Bearer token sent to the server when ``--token`` is not given.
TOKEN_ENV_VAR: Final = "OBSERVML_API_TOKEN"
#: Server URL used when ``--url`` is not given (unset: run the hub in-process).
URL_ENV_VAR: Final = "OBSERVML_URL"
#: The header of ``GET /experiments`` with how many experiments pass its filters
#: (``observml.api.routes.TOTAL_HEADER``; the CLI does not import the API).
TOTAL_HEADER: Final = "X-Total-Count"
_BY_STATUS: Final[Mapping[int, type[ObservMLError]]] = {
    400: ConfigError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ExperimentError,
    413: DataError,
    422: DataError,
    503: ServiceUnavailableError,
}


class ApiClient:
    """Talk to a running observml server.

    Args:
        url: The server's base URL, e.g. ``http://127.0.0.1:8010``.
        token: Bearer token (the server's ``api.token``), or ``None``.
        timeout: Seconds per request.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 60.0) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise ServiceUnavailableError(
                "--url: talking to a server needs httpx, which is not installed. Install it"
                " with: pip install 'observml[cli]'."
            ) from exc
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._httpx = httpx
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    # -- experiments ----------------------------------------------------------------------
    def experiments(self) -> list[dict[str, Any]]:
        """``GET /experiments``: one summary per experiment, all of them."""
        return list(self._request("GET", "/experiments"))

    def experiment_page(self, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """``GET /experiments`` with a query: a page of summaries, and the ``X-Total-Count``."""
        response = self._send("GET", "/experiments", params=dict(query))
        rows = list(response.json())
        return rows, int(response.headers.get(TOTAL_HEADER, len(rows)))

    def experiment_summary(self) -> dict[str, Any]:
        """``GET /experiments/summary``: the experiments counted by state and type, ..."""
        return dict(self._request("GET", "/experiments/summary"))

    def status(self, name: str) -> dict[str, Any]:
        """``GET /experiments/{name}``."""
        return dict(self._request("GET", f"/experiments/{name}"))

    def versions(self, name: str) -> list[dict[str, Any]]:
        """``GET /experiments/{name}/versions``, newest first."""
        return list(self._request("GET", f"/experiments/{name}/versions"))

    def runs(self, name: str, max_results: int = 5) -> list[dict[str, Any]]:
        """``GET /experiments/{name}/runs``, newest first."""
        return list(
            self._request("GET", f"/experiments/{name}/runs", params={"max_results": max_results})
        )

    def create(self, name: str, experiment_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /experiments``."""
        body = {"name": name, "type": experiment_type, "config": dict(config)}
        return dict(self._request("POST", "/experiments", json=body))

    def load(self, name: str) -> dict[str, Any]:
        """``POST /experiments/{name}/load``: serve the stored champion."""
        return dict(self._request("POST", f"/experiments/{name}/load", json={}))

    # -- training -------------------------------------------------------------------------
    def train(
        self,
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        rows: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``POST /experiments/{name}/train``: start a job and return it."""
        body: dict[str, Any] = {}
        if config is not None:
            body["config"] = dict(config)
        if rows is not None:
            body["rows"] = rows
        return dict(self._request("POST", f"/experiments/{name}/train", json=body))

    def retrain(self, name: str, *, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """``POST /experiments/{name}/retrain``: start a challenger job and return it."""
        body = {"rows": rows} if rows is not None else {}
        return dict(self._request("POST", f"/experiments/{name}/retrain", json=body))

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{job_id}``."""
        return dict(self._request("GET", f"/jobs/{job_id}"))

    # -- models and prediction ------------------------------------------------------------
    def predict(self, name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /experiments/{name}/predict``: one result row per input row."""
        answer = self._request("POST", f"/experiments/{name}/predict", json={"rows": rows})
        return list(answer["rows"])

    def rollback(self, name: str) -> dict[str, Any]:
        """``POST /experiments/{name}/rollback``: ``{"name", "version"}``."""
        return dict(self._request("POST", f"/experiments/{name}/rollback", json={}))

    # -- decisions ------------------------------------------------------------------------
    def promote(self, name: str, version: int | None, reason: str) -> dict[str, Any]:
        """``POST /experiments/{name}/promote``: ``{"name", "version"}``."""
        body: dict[str, Any] = {"reason": reason}
        if version is not None:
            body["version"] = version
        return dict(self._request("POST", f"/experiments/{name}/promote", json=body))

    def reject(self, name: str, reason: str, as_fault: bool) -> dict[str, Any]:
        """``POST /experiments/{name}/reject``: the version, and what was kept as a fault."""
        body = {"reason": reason, "as_fault": as_fault}
        return dict(self._request("POST", f"/experiments/{name}/reject", json=body))

    def feedback(
        self,
        name: str,
        *,
        label: str,
        rows: list[dict[str, Any]] | None = None,
        start: str | None = None,
        end: str | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """``POST /experiments/{name}/feedback``: the stored feedback."""
        given = {"label": label, "rows": rows, "start": start, "end": end, "reason": reason}
        body = {k: v for k, v in given.items() if v is not None}
        return dict(self._request("POST", f"/experiments/{name}/feedback", json=body))

    def library(self, name: str) -> dict[str, Any]:
        """``GET /experiments/{name}/feedback``: the fault library and normal reference."""
        return dict(self._request("GET", f"/experiments/{name}/feedback"))

    def decisions(self, name: str, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        """``GET /experiments/{name}/decisions``: a page of decisions, newest first."""
        params = {"offset": offset, "limit": limit}
        return dict(self._request("GET", f"/experiments/{name}/decisions", params=params))

    # -- queues ---------------------------------------------------------------------------
    def browse(self, queue: str, limit: int = 10) -> list[dict[str, Any]]:
        """``GET /queues/{queue}/messages``: the oldest waiting messages; they stay there."""
        return list(self._request("GET", f"/queues/{queue}/messages", params={"limit": limit}))

    # -- transport ------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else {}

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the successful response, else raise the server's error."""
        httpx = self._httpx
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServiceUnavailableError(
                f"{self.url}: {method} {path} timed out ({type(exc).__name__})."
                " The server is busy or stuck; try again or check its log."
            ) from exc
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"{self.url}: cannot connect ({exc}). Is 'observml serve' running there?"
                " Start it, or leave out --url to run the hub in this process."
            ) from exc
        if response.is_success:
            return response
        raise self._error(response, method, path)

    def _error(self, response: Any, method: str, path: str) -> ObservMLError:
        status = int(response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "message" in body:
            message = str(body["message"])
        elif isinstance(body, dict) and "detail" in body:
            message = str(body["detail"])
        else:
            message = f"{method} {path} answered {status} {response.reason_phrase}"
        if status == 401:
            message += f" Pass --token or set {TOKEN_ENV_VAR}."
        text = f"{self.url}: {message}"
        if status == 400:  # an invalid config or experiment type: exit code 2, as in-process
            return ConfigError(text)
        named = (
            getattr(errors, str(body.get("error", "")), None) if isinstance(body, dict) else None
        )
        if isinstance(named, type) and issubclass(named, ObservMLError):
            cls: type[ObservMLError] = named
        else:
            cls = _BY_STATUS.get(status, ObservMLError)
        if issubclass(cls, ConfigError):
            return ConfigError(text)
        return cls(text)
