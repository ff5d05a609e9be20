"""How the CLI reaches a hub: in this process, or over HTTP with a small REST API client.

:func:`backend` yields one of two objects with the same methods (``prepare_training``,
``start_train``, ``start_retrain``, ``job``, ``predict``, ``status``, ``summaries``,
``rollback``), so each command is written once:

* :class:`LocalBackend` (default): a hub built from the hub config. It lives as long as the
  command, so an experiment the config does not list is restored from its champion in the MLOps
  store first: the store is what one command leaves for the next.
* :class:`RemoteBackend` (``--url``): a running ``observml serve`` through :class:`ApiClient`.
  Error bodies (``{"error", "message"}``) become the matching :mod:`observml.errors` type, so
  the CLI prints the server's message and exits 2 for a 400 or a ``ConfigError`` (an invalid
  type or config) and 1 otherwise; an unreachable server is a
  :class:`~observml.errors.ServiceUnavailableError` that says what to check.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import click
import pandas as pd

from observml import errors
from observml.errors import (
    AuthenticationError,
    ConfigError,
    DataError,
    ExperimentError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    NotFoundError,
    ObservMLError,
    ServiceUnavailableError,
    UnknownPluginError,
)

if TYPE_CHECKING:
    from observml.hub import ExperimentHub

__all__ = [
    "TOKEN_ENV_VAR",
    "URL_ENV_VAR",
    "ApiClient",
    "LocalBackend",
    "RemoteBackend",
    "backend",
    "json_rows",
    "quiet_driver_logs",
]

#: Bearer token sent to the server when ``--token`` is not given.
TOKEN_ENV_VAR: Final = "OBSERVML_API_TOKEN"
#: Server URL used when ``--url`` is not given (unset: run the hub in-process).
URL_ENV_VAR: Final = "OBSERVML_URL"

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
        """``GET /experiments``: one summary per experiment."""
        return list(self._request("GET", "/experiments"))

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

    # -- transport ------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
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
            return response.json() if response.content else {}
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


# -- the CLI's two backends --------------------------------------------------------------
def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a frame as JSON-ready records (timestamps as ISO text, NaN as null)."""
    if frame.empty:
        return []
    text = frame.to_json(orient="records", date_format="iso", default_handler=str)
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


class LocalBackend:
    """The commands' operations on a hub in this process (see the module docstring)."""

    def __init__(self, hub: ExperimentHub) -> None:
        self.hub = hub

    def ensure(self, name: str, *, restore: bool = True) -> bool:
        """Make ``name`` known to the hub, restoring its champion from the store if needed.

        Returns:
            Whether the experiment is known now.
        """
        if name in self.hub.experiments():
            return True
        if not restore:
            return False
        try:
            self.hub.load(name)
        except NotFoundError:
            return False
        return True

    def prepare_training(
        self, name: str, experiment_type: str | None, config: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """Create or restore ``name``; return the config to train with (``None``: keep)."""
        if not self.ensure(name):
            experiment_type = _need_type(name, experiment_type)
            try:
                self.hub.create_experiment(name, experiment_type, config or {})
            except UnknownPluginError as exc:  # a bad --type is a usage error (exit 2)
                raise ConfigError(str(exc)) from exc
            return None
        _check_type(name, experiment_type, self.hub.status(name)["type"])
        return dict(config) if config is not None else None

    def start_train(
        self, name: str, config: Mapping[str, Any] | None, data: pd.DataFrame | None
    ) -> str:
        """Start training; return the job id."""
        job_id: str = self.hub.train(name, config, data=data).job_id
        return job_id

    def start_retrain(self, name: str, data: pd.DataFrame | None) -> str:
        """Start a retrain; return the job id."""
        self._known(name)
        job_id: str = self.hub.retrain(name, data=data).job_id
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        """Return the job's status."""
        status: dict[str, Any] = self.hub.get_job(job_id).status.to_dict()
        return status

    def predict(self, name: str, data: pd.DataFrame) -> pd.DataFrame:
        """Predict ``data`` with the champion."""
        self._known(name)
        result: pd.DataFrame = self.hub.predict(name, data=data)
        return result

    def status(self, name: str) -> dict[str, Any]:
        """Return the status with ``versions`` and recent ``runs`` from the store."""
        self._known(name)
        status: dict[str, Any] = dict(self.hub.status(name))
        if self.hub.get_plugin("mlops") is not None:
            status["versions"] = self.hub.versions(name)
            status["runs"] = self.hub.runs(name, 5)
        return status

    def summaries(self) -> list[dict[str, Any]]:
        """Return the status of every experiment the hub knows (from the config)."""
        return [self.hub.status(name) for name in self.hub.experiments()]

    def rollback(self, name: str) -> dict[str, Any]:
        """Roll back; return ``{"name", "version", "was"}``."""
        self._known(name)
        was = self.hub.status(name)["champion_version"]
        return {"name": name, "version": self.hub.rollback(name), "was": was}

    def _known(self, name: str) -> None:
        if not self.ensure(name):
            known = ", ".join(self.hub.experiments()) or "none"
            raise ExperimentNotFoundError(
                f"experiment {name!r} is not in the hub config (known: {known}) and has no"
                " champion in the MLOps store. Train it first: observml train"
                f" {name} --type TYPE --config FILE --data FILE"
            )


class RemoteBackend:
    """The commands' operations on a running server (``--url``)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def prepare_training(
        self, name: str, experiment_type: str | None, config: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """Create (or restore on the server) ``name``; return the config to train with."""
        if experiment_type is not None:
            try:
                self.client.create(name, experiment_type, config or {})
                return None
            except ExperimentExistsError:
                pass
        try:
            current = self.client.status(name)
        except NotFoundError:
            try:
                self.client.load(name)
            except NotFoundError:
                self.client.create(name, _need_type(name, experiment_type), config or {})
                return None
            current = self.client.status(name)
        _check_type(name, experiment_type, current.get("type"))
        return dict(config) if config is not None else None

    def start_train(
        self, name: str, config: Mapping[str, Any] | None, data: pd.DataFrame | None
    ) -> str:
        """Start training on the server; return the job id."""
        rows = json_rows(data) if data is not None else None
        return str(self.client.train(name, config=config, rows=rows)["job_id"])

    def start_retrain(self, name: str, data: pd.DataFrame | None) -> str:
        """Start a retrain on the server; return the job id."""
        rows = json_rows(data) if data is not None else None
        job = self._restoring(name, lambda: self.client.retrain(name, rows=rows))
        return str(job["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        """Return the job's status."""
        return self.client.job(job_id)

    def predict(self, name: str, data: pd.DataFrame) -> pd.DataFrame:
        """Predict ``data`` on the server."""
        rows = json_rows(data)
        return pd.DataFrame(self._restoring(name, lambda: self.client.predict(name, rows)))

    def status(self, name: str) -> dict[str, Any]:
        """Return the server's status of ``name`` with ``versions`` and recent ``runs``."""
        status = self.client.status(name)
        status["versions"] = self.client.versions(name)
        status["runs"] = self.client.runs(name, 5)
        return status

    def summaries(self) -> list[dict[str, Any]]:
        """Return the server's experiment list."""
        return self.client.experiments()

    def rollback(self, name: str) -> dict[str, Any]:
        """Roll back on the server; return ``{"name", "version", "was"}``."""
        was = self._restoring(name, lambda: self.client.status(name)).get("champion_version")
        return {**self.client.rollback(name), "was": was}

    def _restoring(self, name: str, call: Callable[[], Any]) -> Any:
        """Run ``call``; if the server does not know ``name``, serve its stored champion first."""
        try:
            return call()
        except ExperimentNotFoundError:
            self.client.load(name)
            return call()


def _need_type(name: str, experiment_type: str | None) -> str:
    if experiment_type is None:
        raise click.UsageError(
            f"experiment {name!r} is new (not in the hub, no champion in the MLOps store):"
            " give its type with --type (fault_detection, fault_isolation, time_series,"
            " process_mining) or 'type:' in the --config file."
        )
    return experiment_type


def _check_type(name: str, wanted: str | None, actual: Any) -> None:
    if wanted is not None and actual is not None and wanted != actual:
        raise ExperimentError(
            f"experiment {name!r} is a {actual} experiment, not {wanted}. Leave out --type,"
            " or train under another name."
        )


def quiet_driver_logs() -> None:
    """Keep pika's own error logs (a traceback per connection attempt) off the terminal.

    The plugins report a failed connection once, as an observml error; ``--debug`` keeps the
    driver's logs.
    """
    if not logging.getLogger("observml").isEnabledFor(logging.DEBUG):
        logging.getLogger("pika").setLevel(logging.CRITICAL)


@contextmanager
def backend(url: str | None, token: str | None, hub_config: str | None) -> Iterator[Any]:
    """Yield the remote backend when ``url`` is set, else an in-process hub's backend."""
    if url:
        with ApiClient(url, token=token) as client:
            yield RemoteBackend(client)
        return
    from observml.hub import ExperimentHub

    # MLflow draws a progress bar on stderr for every model it downloads; not useful here.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    quiet_driver_logs()
    with ExperimentHub.from_config(hub_config, streaming=False) as hub:
        yield LocalBackend(hub)
