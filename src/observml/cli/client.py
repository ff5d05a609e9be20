"""How the CLI reaches a hub: in this process, or over HTTP with a small REST API client.

:func:`backend` yields one of two objects with the same methods (``prepare_training``,
``start_train``, ``start_retrain``, ``job``, ``predict``, ``status``, ``experiments``,
``summary``, ``rollback``, ``promote``, ``reject``, ``feedback``, ``library``, ``decisions``,
``browse``), so each command is written once:

* :class:`LocalBackend` (default): a hub built from the hub config. It lives as long as the
  command, so an experiment the config does not list is restored from its champion in the MLOps
  store first: the store is what one command leaves for the next.
* :class:`RemoteBackend` (``--url``): a running ``observml serve`` through
  :class:`~observml.cli.api_client.ApiClient`, whose errors are the server's, as observml
  errors.

Why this module is long: it is the two backends of one protocol, method for method; read side
by side they show what each command does in-process and over HTTP, and a method added to one
is seen missing from the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import click
import pandas as pd

from observml.cli.api_client import TOKEN_ENV_VAR, URL_ENV_VAR, ApiClient
from observml.cli.listing import ListRequest
from observml.errors import (
    ConfigError,
    DataError,
    ExperimentError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    NotFoundError,
    ServiceUnavailableError,
    UnknownPluginError,
)

if TYPE_CHECKING:
    from observml.hub.hub import ExperimentHub

__all__ = [
    "BY",
    "TOKEN_ENV_VAR",
    "URL_ENV_VAR",
    "ApiClient",
    "LocalBackend",
    "RemoteBackend",
    "backend",
    "json_rows",
]

#: Who acted, recorded with the decisions an in-process command takes (``api`` with ``--url``).
BY: Final = "cli"


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

        The hub config's experiments are started (created, champion restored) only when a
        command names one (see :func:`backend`).

        Returns:
            Whether the experiment is known now.
        """
        if name in self.hub.experiments():
            return True
        if name in self.hub.configured():
            self.hub.start_configured(name, streaming=False)
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
            status["library"] = self.hub.library(name)
        return status

    def champion_version(self, name: str) -> int | None:
        """Return the version of the champion."""
        version: int | None = self.hub.status(name)["champion_version"]
        return version

    def experiments(self, request: ListRequest) -> dict[str, Any]:
        """Return a page of the hub's experiments: ``{"experiments", "total"}``."""
        from observml.hub import overview

        self._restore_all()
        where = overview.ExperimentFilter(request.state, request.experiment_type, request.match)
        found = overview.page(self.hub, offset=request.offset, limit=request.limit, where=where)
        return {"experiments": found.statuses, "total": found.total}

    def summary(self) -> dict[str, Any]:
        """Count the hub's experiments by state and type, streaming, alerts, in shadow."""
        from observml.hub import overview

        self._restore_all()
        return overview.summarize(self.hub)

    def _restore_all(self) -> None:
        """Restore the champion of every configured experiment (a list shows them all)."""
        for name in self.hub.configured():
            self.ensure(name)

    def rollback(self, name: str) -> dict[str, Any]:
        """Roll back; return ``{"name", "version", "was"}``."""
        self._known(name)
        was = self.hub.status(name)["champion_version"]
        return {"name": name, "version": self.hub.rollback(name), "was": was}

    def promote(self, name: str, version: int | None, reason: str) -> dict[str, Any]:
        """Promote the challenger in shadow (or ``version``); return name, version and ``was``."""
        self._known(name)  # restores the champion and the challenger waiting in shadow
        was = self.hub.status(name)["champion_version"]
        promoted = self.hub.promote(name, version, reason=reason, by=BY)
        return {"name": name, "version": promoted, "was": was}

    def reject(self, name: str, reason: str, as_fault: bool) -> dict[str, Any]:
        """Reject the challenger in shadow; return the hub's answer with the champion."""
        self._known(name)
        status = self.hub.status(name)
        if as_fault and status["shadow"] is not None and not status["retrain_window_rows"]:
            raise DataError(
                f"experiment {name!r}: --as-fault keeps the rows the champion flagged while"
                " streaming, and those are held by the process that streams, not by this one."
                f" Run it there with --url, or label the rows from a file: observml feedback"
                f" {name} --label fault --file ROWS, then reject without --as-fault."
            )
        result = self.hub.reject(name, reason=reason, as_fault=as_fault, by=BY)
        return {"name": name, **result, "champion": status["champion_version"]}

    def feedback(
        self,
        name: str,
        *,
        label: str,
        data: pd.DataFrame | None,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
        reason: str,
    ) -> dict[str, Any]:
        """Label rows (``data``, or streamed rows between ``start`` and ``end``)."""
        self._known(name)
        if data is None and not self.hub.status(name)["retrain_window_rows"]:
            raise DataError(
                f"experiment {name!r}: there are no streamed rows in this process to label."
                " The rows of a time range are held by the process that streams: run the"
                " command there with --url, or give the rows with --file."
            )
        evidence = self.hub.feedback(
            name, label=label, data=data, start=start, end=end, reason=reason, by=BY
        )
        return {"name": name, **evidence}

    def library(self, name: str) -> dict[str, Any]:
        """Return the fault library and normal reference (``{"error"}`` if unreadable)."""
        self._known(name)
        return self.hub.library(name)

    def decisions(self, name: str, offset: int, limit: int) -> dict[str, Any]:
        """Return a page of ``name``'s decisions, newest first, from the MLOps store."""
        self._known(name)
        return self.hub.decisions(name, offset=offset, limit=limit)

    def browse(self, queue: str, limit: int) -> list[dict[str, Any]]:
        """Return the oldest ``limit`` messages waiting in ``queue``; they stay there."""
        return self.hub.browse(queue, limit)

    def _known(self, name: str) -> None:
        if not self.ensure(name):
            known = ", ".join(sorted({*self.hub.experiments(), *self.hub.configured()})) or "none"
            raise ExperimentNotFoundError(
                f"experiment {name!r} is not in the hub config (known: {known}) and has no"
                " champion in the MLOps store. Train it first: observml train"
                f" {name} --type TYPE --experiment-config FILE --data FILE"
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
        status["library"] = self.library(name)
        return status

    def champion_version(self, name: str) -> int | None:
        """Return the version of the server's champion."""
        version: int | None = self.client.status(name).get("champion_version")
        return version

    def experiments(self, request: ListRequest) -> dict[str, Any]:
        """Return a page of the server's experiment list: ``{"experiments", "total"}``."""
        rows, total = self.client.experiment_page(request.query())
        return {"experiments": rows, "total": total}

    def summary(self) -> dict[str, Any]:
        """Return the server's counts of its experiments."""
        return self.client.experiment_summary()

    def rollback(self, name: str) -> dict[str, Any]:
        """Roll back on the server; return ``{"name", "version", "was"}``."""
        was = self._restoring(name, lambda: self.client.status(name)).get("champion_version")
        return {**self.client.rollback(name), "was": was}

    def promote(self, name: str, version: int | None, reason: str) -> dict[str, Any]:
        """Promote on the server; return ``{"name", "version", "was"}``."""
        was = self._restoring(name, lambda: self.client.status(name)).get("champion_version")
        return {**self.client.promote(name, version, reason), "was": was}

    def reject(self, name: str, reason: str, as_fault: bool) -> dict[str, Any]:
        """Reject on the server; return its answer with the champion."""
        status = self._restoring(name, lambda: self.client.status(name))
        result = self.client.reject(name, reason, as_fault)
        return {**result, "champion": status.get("champion_version")}

    def feedback(
        self,
        name: str,
        *,
        label: str,
        data: pd.DataFrame | None,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
        reason: str,
    ) -> dict[str, Any]:
        """Label rows on the server (times are sent as ISO 8601)."""
        answer: dict[str, Any] = self._restoring(
            name,
            lambda: self.client.feedback(
                name,
                label=label,
                rows=json_rows(data) if data is not None else None,
                start=start.isoformat() if start is not None else None,
                end=end.isoformat() if end is not None else None,
                reason=reason,
            ),
        )
        return answer

    def library(self, name: str) -> dict[str, Any]:
        """Return the server's fault library (``{"error"}`` when its store is unreadable)."""
        try:
            found: dict[str, Any] = self._restoring(name, lambda: self.client.library(name))
        except ServiceUnavailableError as exc:
            return {"error": str(exc)}
        return found

    def decisions(self, name: str, offset: int, limit: int) -> dict[str, Any]:
        """Return a page of the server's decisions of ``name``, newest first."""
        page: dict[str, Any] = self._restoring(
            name, lambda: self.client.decisions(name, offset, limit)
        )
        return page

    def browse(self, queue: str, limit: int) -> list[dict[str, Any]]:
        """Return the oldest ``limit`` messages waiting in ``queue`` on the server's broker."""
        return self.client.browse(queue, limit)

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
            " process_mining) or 'type:' in the --experiment-config file."
        )
    return experiment_type


def _check_type(name: str, wanted: str | None, actual: Any) -> None:
    if wanted is not None and actual is not None and wanted != actual:
        raise ExperimentError(
            f"experiment {name!r} is a {actual} experiment, not {wanted}. Leave out --type,"
            " or train under another name."
        )


@contextmanager
def backend(url: str | None, token: str | None, hub_config: str | None) -> Iterator[Any]:
    """Yield the remote backend when ``url`` is set, else an in-process hub's backend."""
    if url:
        with ApiClient(url, token=token) as client:
            yield RemoteBackend(client)
        return
    from observml.hub.hub import ExperimentHub

    # the configured experiments' champions are restored when a command names them (ensure)
    with ExperimentHub.from_config(hub_config, streaming=False, start=False) as hub:
        yield LocalBackend(hub)
