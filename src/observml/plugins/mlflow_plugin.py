"""MLflowPlugin: the MLOps plugin on MLflow, with an embedded SQLite store by default.

It talks to MLflow through its own ``MlflowClient`` (never the global tracking URI or the fluent
active-run API), so two plugins in one process share nothing, and it turns every MLflow object
into the dataclasses of :mod:`observml.plugins.mlops` and every MLflow error into an
:mod:`observml.errors` type. ``mlflow`` is imported only by this module and the private
``_mlflow_*`` modules beside it: :mod:`._mlflow_store` (where the store is, SQLite set-up,
health probes), :mod:`._mlflow_records` (MLflow objects to records, batching, filter quoting)
and :mod:`._mlflow_errors` (MLflow's errors in observml's terms).

Where the store is, from ``mlflow_uri``:

- ``"local"`` (the default): ``$OBSERVML_HOME/mlflow.db`` (default ``./.observml``) in WAL mode,
  artifacts under ``$OBSERVML_HOME/mlruns-artifacts``. Several processes may log at once.
- ``http(s)://host:port``: an MLflow tracking server.
- ``sqlite:///``, ``postgresql[+driver]://``, ``mysql://``, ``file:``: as MLflow defines them.

Why this module is long: it is one class implementing the whole MLOps protocol (the spec's six
methods, the hub's thirteen for batches, artifacts, runs, model versions and aliases, and the
lifecycle) against one ``MlflowClient``, each method a few lines calling MLflow inside one error
boundary. What is not that protocol (the store, the records, the errors) lives in the modules
named above; splitting the methods themselves would scatter one protocol over several files.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from observml.config.redact import mask_uri
from observml.errors import (
    DataError,
    NotFoundError,
    ObservMLError,
    ServiceUnavailableError,
)
from observml.plugins._mlflow_errors import translate
from observml.plugins._mlflow_records import (
    aliases_by_version,
    batches,
    filter_literal,
    model_version,
    run_record,
    user_tags,
)
from observml.plugins._mlflow_sqlite import NotInStore, SQLiteReader
from observml.plugins._mlflow_store import (
    EMBEDDED_ARTIFACT_DIR,
    EMBEDDED_DB_FILE,
    SQLITE_BUSY_TIMEOUT,
    Store,
    bounded,
    embedded_home,
    open_client,
    probe_http,
    resolve_store,
)
from observml.plugins.base import HealthReport
from observml.plugins.mlops import (
    ExperimentRecord,
    MetricsArg,
    MLOpsPlugin,
    ModelVersion,
    RunRecord,
    RunStatus,
    as_metrics,
)

if TYPE_CHECKING:  # MLflow is imported when the client is opened (see _require_client)
    from mlflow import MlflowClient

__all__ = [
    "EMBEDDED_ARTIFACT_DIR",
    "EMBEDDED_DB_FILE",
    "SQLITE_BUSY_TIMEOUT",
    "MLflowPlugin",
    "embedded_home",
]

logger = logging.getLogger(__name__)

_SEARCH_PAGE: Final = 1000
#: Store callers beside the jobs: stream workers, champion refreshes, API requests.
_OTHER_CALLERS: Final = 8


class MLflowPlugin(MLOpsPlugin):
    """MLOps plugin on MLflow: tracking, artifacts and the model registry.

    Configuration (the keys of ``plugins.mlops.config``):
        mlflow_uri: ``"local"`` for the embedded SQLite store, or an MLflow tracking URI.
        artifact_location: Root under which each new experiment gets its artifact folder;
            ``None`` keeps the store's default (for ``local``: ``$OBSERVML_HOME/mlruns-artifacts``).
        registry_uri: Model registry URI; ``None`` uses the tracking store.
        health_timeout: Seconds ``health_check()`` and the start-up probe wait at most.
        pool_size: Connections to a database store (SQLite, PostgreSQL, MySQL) kept open;
            ``None``: room for the hub's jobs plus its other callers (``global.max_jobs`` + 8,
            at least MLflow's 5). The environment variable ``MLFLOW_SQLALCHEMYSTORE_POOL_SIZE``
            wins where set. Ignored for a tracking server.

    Usage::

        plugin = MLflowPlugin(mlflow_uri="http://mlflow.plant.local:5000")
        hub.register_plugin(plugin)
    """

    plugin_type = "mlops"

    def __init__(
        self,
        mlflow_uri: str | None = "local",
        *,
        artifact_location: str | None = None,
        registry_uri: str | None = None,
        health_timeout: float = 5.0,
        pool_size: int | None = None,
    ) -> None:
        self.mlflow_uri = mlflow_uri or "local"
        self.pool_size = pool_size
        #: Jobs the hub runs at once (set by the hub before ``initialize``; see ``expect_jobs``).
        self._jobs = 0
        self.artifact_location = artifact_location
        self.registry_uri = registry_uri
        self.health_timeout = health_timeout
        self._client: MlflowClient | None = None
        self._reader: SQLiteReader | None = None
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._active = threading.local()
        self._open_runs: set[str] = set()
        #: ``artifact_uri`` of the runs this plugin started and has not ended: registering a
        #: model of such a run needs no ``get_run`` round trip.
        self._artifact_uris: dict[str, str] = {}
        #: Registered models known to exist: a new version needs no ``create_registered_model``.
        self._models: set[str] = set()
        self._last_start_ms = 0

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Resolve the store, prepare SQLite (WAL, schema) and connect (see ``open_client``).

        An existing SQLite store whose schema :class:`SQLiteReader` knows is read without
        MLflow until the first write (or a read the reader cannot answer) opens the client:
        a command that only reads never pays MLflow's start-up (see :mod:`._mlflow_sqlite`).

        Raises:
            ServiceUnavailableError: A tracking server does not answer within
                ``health_timeout`` seconds.
            ConfigError: MLflow rejects the URI.
        """
        store = self._resolve_store()
        reader = _reader_of(store)
        client = None if reader is not None else self._open(store)
        with self._lock:
            self._store, self._client, self._reader = store, client, reader
        logger.info("MLflow store ready at %s", mask_uri(store.tracking_uri))

    def expect_jobs(self, jobs: int) -> None:
        """Size the store's connection pool for ``jobs`` jobs at once (the hub calls it)."""
        self._jobs = jobs

    def shutdown(self) -> None:
        """End runs this plugin started and left open (as ``KILLED``), then drop the client."""
        with self._lock:
            open_runs = sorted(self._open_runs)
        for run_id in open_runs:
            logger.warning("run %s was still running at shutdown; ending it as KILLED", run_id)
            try:
                self.end_run(run_id, "KILLED")
            except ObservMLError:
                logger.warning("could not end run %s", run_id, exc_info=True)
        with self._lock:
            self._open_runs.clear()
            self._client = self._reader = None

    def health_check(self) -> HealthReport:
        """Read one experiment, bounded by ``health_timeout``; never raises."""
        store = self._store or self._resolve_store()
        base: dict[str, Any] = {"uri": mask_uri(store.tracking_uri)}
        if store.is_http:
            ok, details = probe_http(store, self.health_timeout)
            return ok, {**base, **details}
        client, reader = self._client, self._reader
        if self._store is None or (client is None and reader is None):
            return False, {
                **base,
                "status": "not_initialized",
                "message": "the plugin is not initialized. Call initialize() or register it"
                " with a hub.",
            }
        if client is not None:
            ok, details = bounded(
                lambda: client.search_experiments(max_results=1), self.health_timeout
            )
        else:
            assert reader is not None
            ok, details = bounded(reader.revision, self.health_timeout)  # the file answers
        return ok, {**base, **details}

    # -- the spec's methods ---------------------------------------------------------------
    def set_tracking_uri(self, uri: str) -> None:
        """Point the plugin at another store; reconnects if it was initialized."""
        self.mlflow_uri = uri or "local"
        if self._client is not None or self._reader is not None:
            self.initialize()

    def create_experiment(self, name: str) -> str:
        """Create an experiment and return its id; return the existing id if the name exists."""
        from mlflow.exceptions import MlflowException

        client = self._require_client()
        with self._boundary(f"experiment {name!r}"):
            existing = client.get_experiment_by_name(name)
            if existing is not None:
                if existing.lifecycle_stage == "deleted":
                    client.restore_experiment(existing.experiment_id)
                return str(existing.experiment_id)
            try:
                return str(client.create_experiment(name, artifact_location=self._location(name)))
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                # Another process created it between our read and our write.
                created = client.get_experiment_by_name(name)
                if created is None:
                    raise
                return str(created.experiment_id)

    def start_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Start a run and remember it as this thread's active run."""
        client = self._require_client()
        with self._lock:  # strictly increasing start times: newest-first order is creation order
            start_ms = max(_now_ms(), self._last_start_ms + 1)
            self._last_start_ms = start_ms
        with self._boundary(
            f"experiment id {experiment_id!r}", hint="Create it with create_experiment(name) first."
        ):
            run = client.create_run(
                experiment_id,
                start_time=start_ms,
                tags={k: str(v) for k, v in (tags or {}).items()},
                run_name=run_name,
            )
        run_id = str(run.info.run_id)
        with self._lock:
            self._open_runs.add(run_id)
            self._artifact_uris[run_id] = str(run.info.artifact_uri)
        self._active.run_id = run_id
        return run_id

    def log_artifact(
        self, path: str, artifact_path: str | None = None, *, run_id: str | None = None
    ) -> None:
        """Upload one local file to ``artifact_path`` of a run (default: this thread's run)."""
        run_id = run_id or self._active_run_id()
        with self._boundary(f"run {run_id}"):
            self._require_client().log_artifact(run_id, path, artifact_path or None)

    def get_run(self, run_id: str) -> RunRecord:
        """Return a run with its latest metric values."""
        with self._boundary(f"run {run_id}"):
            reader = self._fast_reader()
            if reader is None:
                return run_record(self._require_client().get_run(run_id))
            found = reader.get_run(run_id)
            if found is None:
                raise NotInStore(f"Run with id={run_id} not found")
            return found

    def get_experiment_by_name(self, name: str) -> ExperimentRecord | None:
        """Return the (active) experiment named ``name`` or ``None``."""
        with self._boundary(f"experiment {name!r}"):
            reader = self._fast_reader()
            if reader is not None:
                return reader.get_experiment_by_name(name)
            found = self._require_client().get_experiment_by_name(name)
        if found is None or found.lifecycle_stage == "deleted":
            return None
        return ExperimentRecord(str(found.experiment_id), found.name, user_tags(found.tags))

    # -- what the hub needs ---------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: MetricsArg | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        """Log metrics, params and tags, split at MLflow's per-call limits."""
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param, RunTag

        client = self._require_client()
        now = _now_ms()
        points = [
            MlflowMetric(m.key, float(m.value), m.timestamp or now, m.step)
            for m in as_metrics(metrics, step)
        ]
        param_list = [Param(str(k), str(v)) for k, v in (params or {}).items()]
        tag_list = [RunTag(str(k), str(v)) for k, v in (tags or {}).items()]
        with self._boundary(f"run {run_id}"):
            for chunk in batches(points, param_list, tag_list):
                client.log_batch(run_id, metrics=chunk[0], params=chunk[1], tags=chunk[2])

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """Mark a run as ended with ``status``."""
        from mlflow.entities import RunStatus as MlflowRunStatus

        client = self._require_client()
        with self._boundary(f"run {run_id}"):
            store = getattr(getattr(client, "_tracking_client", None), "store", None)
            update_run_info = getattr(store, "update_run_info", None)
            if update_run_info is not None:
                # MlflowClient.set_terminated would also re-read the run and, on a tracking
                # server, print its URL to stdout: one request and two lines per run more.
                update_run_info(
                    run_id,
                    run_status=MlflowRunStatus.from_string(status),
                    end_time=_now_ms(),
                    run_name=None,
                )
            else:
                client.set_terminated(run_id, status=status)
        with self._lock:
            self._open_runs.discard(run_id)
            self._artifact_uris.pop(run_id, None)

    def kill_run(self, run_id: str) -> None:
        """End a run as ``KILLED``."""
        self.end_run(run_id, "KILLED")

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Upload every file under ``local_dir`` to ``artifact_path`` of the run."""
        with self._boundary(f"run {run_id}"):
            self._require_client().log_artifacts(run_id, local_dir, artifact_path or None)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """List artifact files under ``path`` of a run, recursively."""
        reader, root = self._local_artifacts(run_id)
        if reader is not None and root is not None:
            return reader.list_artifacts(root, path)
        client = self._require_client()
        wanted = path.strip("/") if path else None
        files: list[str] = []
        with self._boundary(f"run {run_id}"):
            pending = [wanted]
            while pending:
                for info in client.list_artifacts(run_id, pending.pop()):
                    (pending if info.is_dir else files).append(info.path)
            if not files and wanted:  # ``path`` may name a single file
                parent = wanted.rpartition("/")[0] or None
                files = [i.path for i in client.list_artifacts(run_id, parent) if i.path == wanted]
        return sorted(files)

    def download_artifacts(self, run_id: str, artifact_path: str, dst_dir: str) -> str:
        """Download an artifact file or folder into ``dst_dir`` and return its local path."""
        hint = "It was not saved with this run; list what exists with list_artifacts(run_id)."
        with self._boundary(f"run {run_id}", hint=hint):
            if not self.list_artifacts(run_id, artifact_path):
                raise NotFoundError(f"run {run_id}: no artifact {artifact_path!r}. {hint}")
            Path(dst_dir).mkdir(parents=True, exist_ok=True)
            reader, root = self._local_artifacts(run_id)
            if reader is not None and root is not None:
                return reader.download_artifacts(root, artifact_path, dst_dir)
            client = self._require_client()
            return str(client.download_artifacts(run_id, artifact_path.strip("/"), dst_dir))

    def search_runs(
        self,
        experiment_id: str,
        max_results: int = 100,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> list[RunRecord]:
        """Return the runs of an experiment (those with every tag in ``tags``), newest first.

        MLflow's filter has no escapes: a value holding both quote characters is compared
        here, after the search, instead of in the query.
        """
        reader = self._fast_reader()
        if reader is not None:
            with self._boundary(f"experiment id {experiment_id!r}"):
                return reader.search_runs(experiment_id, max_results, tags)
        client = self._require_client()
        runs: list[RunRecord] = []
        token: str | None = None
        wanted = dict(tags or {})
        literals = {key: filter_literal(value) for key, value in wanted.items()}
        query = " and ".join(f"tags.`{k}` = {v}" for k, v in literals.items() if v is not None)
        with self._boundary(f"experiment id {experiment_id!r}"):
            while len(runs) < max_results:
                page = client.search_runs(
                    [experiment_id],
                    filter_string=query,
                    max_results=min(max_results - len(runs), _SEARCH_PAGE),
                    order_by=["attributes.start_time DESC"],
                    page_token=token,
                )
                found = (run_record(r) for r in page)
                runs.extend(r for r in found if all(r.tags.get(k) == v for k, v in wanted.items()))
                token = page.token
                if not token:
                    break
        return runs[:max_results]

    def register_model(self, name: str, run_id: str, artifact_path: str) -> ModelVersion:
        """Register the run's artifact folder as a new version of model ``name``."""
        from mlflow.exceptions import MlflowException

        client = self._require_client()
        with self._lock:
            artifact_uri = self._artifact_uris.get(run_id)
            known = name in self._models
        if artifact_uri is None:  # a run another process (or an earlier plugin) started
            with self._boundary(f"run {run_id}"):
                artifact_uri = str(client.get_run(run_id).info.artifact_uri)
        source = f"{artifact_uri}/{artifact_path.strip('/')}"
        with self._boundary(f"model {name!r}"):
            if not known:
                try:
                    client.create_registered_model(name)
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
            try:
                version = client.create_model_version(name, source=source, run_id=run_id)
            except MlflowException as exc:
                if not known or exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                client.create_registered_model(name)  # deleted since we last saw it
                version = client.create_model_version(name, source=source, run_id=run_id)
        with self._lock:
            self._models.add(name)
        return model_version(version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (moving it if it existed)."""
        with self._boundary(f"model {name!r} version {version}"):
            self._registry().set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from model ``name``; no error if it was not set."""
        try:
            with self._boundary(f"model {name!r}"):
                self._registry().delete_registered_model_alias(name, alias)
        except (NotFoundError, DataError):
            logger.debug("alias %s of model %s was not set", alias, name)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` points at, or ``None``."""
        reader = self._fast_reader()
        if reader is not None:
            with self._boundary(f"model {name!r}"):
                return reader.get_version_by_alias(name, alias)
        try:
            with self._boundary(f"model {name!r}"):
                return model_version(self._require_client().get_model_version_by_alias(name, alias))
        except (NotFoundError, DataError):  # unknown model, or alias not set
            return None

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Return every version of model ``name``, newest first (empty if unknown)."""
        reader = self._fast_reader()
        if reader is not None:
            with self._boundary(f"model {name!r}"):
                return reader.list_versions(name)
        from mlflow.exceptions import MlflowException

        client = self._require_client()
        quote = '"' if "'" in name else "'"
        versions: list[ModelVersion] = []
        token: str | None = None
        with self._boundary(f"model {name!r}"):
            try:
                aliases = aliases_by_version(client.get_registered_model(name).aliases)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return []
                raise
            while True:
                page = client.search_model_versions(
                    f"name={quote}{name}{quote}",
                    max_results=_SEARCH_PAGE,
                    order_by=["version_number DESC"],
                    page_token=token,
                )
                # Search results carry no aliases; the registered model knows them.
                versions.extend(model_version(v, aliases.get(int(v.version), ())) for v in page)
                token = page.token
                if not token:
                    return versions

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set a tag on a model version."""
        with self._boundary(f"model {name!r} version {version}"):
            self._registry().set_model_version_tag(name, str(version), key, value)

    # -- internals ------------------------------------------------------------------------
    def _resolve_store(self) -> Store:
        return resolve_store(self.mlflow_uri, self.artifact_location, self.registry_uri)

    def _location(self, experiment_name: str) -> str | None:
        """Return a fresh artifact folder for a new experiment under the configured root."""
        return self._store.experiment_location(experiment_name) if self._store else None

    def _require_client(self) -> MlflowClient:
        """Return MLflow's client, opening it now if the store was read without it so far."""
        with self._lock:
            client, store = self._client, self._store
        if client is not None:
            return client
        if store is None:
            raise ServiceUnavailableError(
                f"MLflow plugin ({mask_uri(self.mlflow_uri)}): not initialized. Call"
                " initialize() or register the plugin with a hub first."
            )
        opened = self._open(store)
        with self._lock:
            if self._client is None:
                self._client = opened
            return self._client

    def _registry(self) -> Any:
        """MLflow's model registry client behind the ``MlflowClient``, or the client itself.

        ``MlflowClient``'s alias and version-tag setters first read the whole registered model,
        every version with its tags and aliases, to refuse MLflow prompts (which share the
        registry), then make the same registry call as this: two store calls per setter, the
        first growing with the model's versions. A training job sets two aliases and two
        version tags (issue 13). MLflow's store validates names, aliases and versions itself.
        """
        client = self._require_client()
        registry = getattr(client, "_get_registry_client", None)
        return client if registry is None else registry()

    def _open(self, store: Store) -> MlflowClient:
        """Open MLflow's client of ``store``, its connection pool sized for the hub's jobs."""
        callers = self.pool_size or (self._jobs + _OTHER_CALLERS if self._jobs else 0)
        return open_client(store, self.health_timeout, callers)

    def _fast_reader(self) -> SQLiteReader | None:
        """The SQLite reader while MLflow's client is not open (then the client answers)."""
        with self._lock:
            return self._reader if self._client is None else None

    def _local_artifacts(self, run_id: str) -> tuple[SQLiteReader | None, Path | None]:
        """The reader and the run's local artifact folder, when the reader can serve them."""
        reader = self._fast_reader()
        if reader is None:
            return None, None
        with self._boundary(f"run {run_id}"):
            return reader, reader.artifact_root(run_id)

    def _active_run_id(self) -> str:
        run_id: str | None = getattr(self._active, "run_id", None)
        if run_id is None:
            raise NotFoundError(
                "MLflow plugin: no active run in this thread. Call start_run() first or pass"
                " run_id=."
            )
        return run_id

    @contextmanager
    def _boundary(self, what: str, *, hint: str | None = None) -> Iterator[None]:
        """Turn MLflow errors raised inside the block into observml errors naming ``what``."""
        try:
            yield
        except (NotInStore, sqlite3.Error) as exc:
            raise self._translate(exc, what, self._store, hint) from exc
        except Exception as exc:
            if not _is_mlflow_error(exc):
                raise
            raise self._translate(exc, what, self._store, hint) from exc

    def _translate(
        self, exc: Exception, what: str, store: Store | None, hint: str | None = None
    ) -> ObservMLError:
        return translate(
            exc, what, mask_uri(store.tracking_uri if store else self.mlflow_uri), hint
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_mlflow_error(exc: Exception) -> bool:
    """Whether ``exc`` is MLflow's (only possible once MLflow has been imported)."""
    module = sys.modules.get("mlflow.exceptions")
    return module is not None and isinstance(exc, module.MlflowException)


def _reader_of(store: Store) -> SQLiteReader | None:
    """A reader of ``store`` when it is one SQLite file (tracking and registry) it knows."""
    if store.registry_uri != store.tracking_uri:
        return None
    return SQLiteReader.open(store.sqlite_path, SQLITE_BUSY_TIMEOUT)
