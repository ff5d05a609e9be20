"""Where an MLflowPlugin keeps its data, and whether that store answers.

``mlflow_uri`` resolves to a :class:`Store`: ``"local"`` is the embedded SQLite file
``$OBSERVML_HOME/mlflow.db`` with artifacts under ``$OBSERVML_HOME/mlruns-artifacts``; a
``sqlite:///`` URI is a SQLite file too; anything else is MLflow's to interpret. A SQLite file is
switched to WAL mode (several processes log at once) and created under a file lock (MLflow's
schema migrations must run once). The health probes answer within a bound and never raise.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from observml.config import HOME_ENV_VAR
from observml.config.redact import mask_uri
from observml.errors import ConfigError, ObservMLError, ServiceUnavailableError
from observml.plugins._mlflow_errors import first_line, is_unreachable, translate
from observml.plugins.base import HealthReport

if TYPE_CHECKING:  # importing MLflow takes seconds: only a client that is opened pays it
    from mlflow import MlflowClient

__all__ = [
    "EMBEDDED_ARTIFACT_DIR",
    "EMBEDDED_DB_FILE",
    "SQLITE_BUSY_TIMEOUT",
    "Store",
    "bounded",
    "embedded_home",
    "enable_wal",
    "init_lock",
    "open_client",
    "pool_settings",
    "probe_http",
    "resolve_store",
]

logger = logging.getLogger(__name__)

#: File name of the embedded SQLite store inside ``$OBSERVML_HOME``.
EMBEDDED_DB_FILE: Final = "mlflow.db"
#: Folder of the embedded artifact store inside ``$OBSERVML_HOME``.
EMBEDDED_ARTIFACT_DIR: Final = "mlruns-artifacts"
#: Seconds a SQLite writer waits for the lock before "database is locked".
SQLITE_BUSY_TIMEOUT: Final = 30
_LOCAL_URIS: Final = ("", "local")
_HEALTH_ENDPOINT: Final = "/api/2.0/mlflow/experiments/search"
_ENV_LOCK = threading.Lock()


def embedded_home() -> Path:
    """Return the folder of the embedded stores: ``$OBSERVML_HOME`` or ``./.observml``."""
    return Path(os.environ.get(HOME_ENV_VAR) or ".observml").resolve()


@dataclass(frozen=True)
class Store:
    """Where the plugin's data lives, resolved from ``mlflow_uri`` at ``initialize()``."""

    tracking_uri: str
    registry_uri: str
    artifact_root: str | None  # None: the store's own default
    sqlite_path: Path | None  # set for SQLite file stores (WAL is switched on)

    @property
    def is_http(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def experiment_location(self, experiment_name: str) -> str | None:
        """Return a fresh artifact folder for a new experiment under the artifact root."""
        if self.artifact_root is None:
            return None
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment_name)[:60]
        return f"{self.artifact_root.rstrip('/')}/{slug}-{uuid.uuid4().hex[:8]}"


def resolve_store(
    mlflow_uri: str, artifact_location: str | None, registry_uri: str | None
) -> Store:
    """Return the :class:`Store` the plugin's settings name."""
    uri = mlflow_uri.strip()
    artifact_root = artifact_location
    sqlite_path: Path | None = None
    if uri.lower() in _LOCAL_URIS:
        home = embedded_home()
        sqlite_path = home / EMBEDDED_DB_FILE
        uri = f"sqlite:///{sqlite_path.as_posix()}?timeout={SQLITE_BUSY_TIMEOUT}"
        artifact_root = artifact_root or (home / EMBEDDED_ARTIFACT_DIR).as_uri()
    elif uri.startswith("sqlite:///"):
        file = uri.removeprefix("sqlite:///").split("?", 1)[0]
        if file and file != ":memory:":
            sqlite_path = Path(file)
    return Store(uri, registry_uri or uri, artifact_root, sqlite_path)


@contextmanager
def pool_settings(store: Store, callers: int) -> Iterator[None]:
    """Size the SQLAlchemy pool MLflow creates inside the block for ``callers`` at once.

    MLflow builds one engine per database URI and process, reading
    ``MLFLOW_SQLALCHEMYSTORE_POOL_SIZE`` and ``MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW`` when it
    does; SQLAlchemy's default (5 + 10 overflow) runs out under more callers than that. The
    variables are set only while the engine is built, and never where the user set them.
    """
    if store.is_http or not callers:
        yield
        return
    wanted = {
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(max(5, callers)),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(max(10, callers)),
    }
    added = {key: value for key, value in wanted.items() if key not in os.environ}
    with _ENV_LOCK:
        os.environ.update(added)
        try:
            yield
        finally:
            for key in added:
                os.environ.pop(key, None)


#: MLflow draws a tqdm bar for every artifact download from a server unless this is "false".
_PROGRESS_BAR: Final = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def open_client(store: Store, health_timeout: float, callers: int = 0) -> MlflowClient:
    """Return a client of ``store``, its schema created (once, under a lock) and SQLite in WAL.

    ``callers``: how many threads may call the store at once (sizes the connection pool, see
    :func:`pool_settings`); 0 keeps MLflow's default.

    Raises:
        ServiceUnavailableError: A tracking server does not answer within ``health_timeout``
            seconds.
        ConfigError: MLflow rejects the URI.
    """
    if store.sqlite_path is not None:
        store.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    if store.is_http:
        ok, details = probe_http(store, health_timeout)
        if not ok:
            raise ServiceUnavailableError(
                f"MLflow tracking server at {mask_uri(store.tracking_uri)} is unreachable:"
                f" {details['message']} Is the server running? Check"
                " plugins.mlops.config.mlflow_uri."
            )
    from mlflow import MlflowClient

    # A hub downloads models in the background: a progress bar per download on a server's or
    # service's stderr is noise. Where the user set the variable, theirs stands.
    os.environ.setdefault(_PROGRESS_BAR, "false")
    try:
        with init_lock(store.sqlite_path), pool_settings(store, callers):
            if store.sqlite_path is not None:
                enable_wal(store.sqlite_path)
            client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.registry_uri)
            # Build both stores now, under the lock, so the schema is created once.
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
    except Exception as exc:  # MLflow raises its own and plain errors for unusable URIs
        uri = mask_uri(store.tracking_uri)
        if is_unreachable(exc):
            raise translate(exc, "plugins.mlops.config.mlflow_uri", uri) from exc
        raise ConfigError(
            f"MLflow cannot open the store {uri}: {first_line(exc)} Use 'local', an http(s)://"
            " tracking server or a sqlite:///, postgresql+psycopg2:// or file: URI.",
            key="plugins.mlops.config.mlflow_uri",
        ) from exc
    return client


def enable_wal(path: Path) -> None:
    """Create the SQLite file if needed and switch it to WAL (persistent, per database)."""
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT) as connection:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()
    connection.close()
    if mode and str(mode[0]).lower() != "wal":
        logger.warning("SQLite store %s stays in %s journal mode", path, mode[0])


@contextmanager
def init_lock(sqlite_path: Path | None) -> Iterator[None]:
    """Serialise store creation across processes (schema migrations must run once)."""
    if sqlite_path is None or sys.platform == "win32":
        yield
        return
    import fcntl

    lock_file = sqlite_path.with_name(sqlite_path.name + ".lock")
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def probe_http(store: Store, timeout: float) -> HealthReport:
    """Ask a tracking server for one experiment; report within ``timeout`` seconds."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(store.tracking_uri)  # type: ignore[no-untyped-call]

    def probe() -> None:
        response = http_request(  # type: ignore[no-untyped-call]
            creds,
            _HEALTH_ENDPOINT,
            "GET",
            max_retries=0,
            timeout=timeout,
            params={"max_results": 1},
        )
        if response.status_code != 200:
            raise ObservMLError(f"HTTP {response.status_code} from {_HEALTH_ENDPOINT}.")

    return bounded(probe, timeout)


def bounded(probe: Callable[[], object], timeout: float) -> HealthReport:
    """Run ``probe`` in a daemon thread and report on it within ``timeout`` seconds."""
    outcome: list[BaseException | None] = []
    started = time.monotonic()

    def target() -> None:
        try:
            probe()
        except BaseException as exc:  # reported, never raised
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=target, name="mlflow-health", daemon=True)
    worker.start()
    worker.join(timeout)
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    if not outcome:
        return False, {
            "status": "timeout",
            "message": f"no answer within {timeout:g} s.",
            "latency_ms": latency_ms,
        }
    error = outcome[0]
    if error is None:
        return True, {"status": "connected", "latency_ms": latency_ms}
    return False, {
        "status": "unreachable" if is_unreachable(error) else "error",
        "message": f"{type(error).__name__}: {first_line(error)}",
        "latency_ms": latency_ms,
    }
