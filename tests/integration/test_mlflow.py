"""MLflowPlugin on real MLflow: SQLite stores, an ``mlflow server`` on PostgreSQL, the embedded
default shared by two processes, and bounded health checks.

Fixtures come from ``tests/fixtures/mlflow.py``.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from observml.config import HOME_ENV_VAR
from observml.errors import ConfigError, ServiceUnavailableError
from observml.plugins.mlops import MLOpsPlugin
from tests.contracts.mlops import MLOpsContract
from tests.services import free_port, require_module

require_module("mlflow", "mlflow")

from observml.plugins.mlflow_plugin import (  # noqa: E402 - after the import check
    EMBEDDED_ARTIFACT_DIR,
    EMBEDDED_DB_FILE,
    MLflowPlugin,
)

pytestmark = [pytest.mark.integration, pytest.mark.mlflow]

RUNS_PER_PROCESS = 200


class TestMLflowSQLite(MLOpsContract):
    """The contract against a SQLite store in the test's temp dir (real MLflow, no server)."""

    @pytest.fixture
    def mlops(self, mlflow_sqlite_uri: str, tmp_path: Path) -> Iterator[MLflowPlugin]:
        plugin = MLflowPlugin(mlflow_sqlite_uri, artifact_location=(tmp_path / "art").as_uri())
        plugin.initialize()
        yield plugin
        plugin.shutdown()


class ReadsFromTheFile:
    """Writes through one plugin (MLflow's client), reads through another that never opens it.

    The second plugin is what a read-only command gets on an existing SQLite store: its reads
    are the SQLite reader's (``observml.plugins._mlflow_sqlite``). Running the whole contract
    through this pair holds the reader to MLflow's own answers, errors included.
    """

    READS = frozenset(
        {
            "get_run",
            "get_experiment_by_name",
            "search_runs",
            "list_artifacts",
            "download_artifacts",
            "get_version_by_alias",
            "list_versions",
            "health_check",
        }
    )

    def __init__(self, writer: MLflowPlugin, reader: MLflowPlugin) -> None:
        self.writer, self.reader = writer, reader

    def __getattr__(self, attribute: str) -> object:
        return getattr(self.reader if attribute in self.READS else self.writer, attribute)


class TestMLflowSQLiteReader(MLOpsContract):
    """The contract with every read answered from the SQLite file, without MLflow's client."""

    @pytest.fixture
    def mlops(self, mlflow_sqlite_uri: str, tmp_path: Path) -> Iterator[ReadsFromTheFile]:
        writer = MLflowPlugin(mlflow_sqlite_uri, artifact_location=(tmp_path / "art").as_uri())
        writer.initialize()
        writer.create_experiment("opens-the-client")  # the writer uses MLflow from here on
        reader = MLflowPlugin(mlflow_sqlite_uri)
        reader.initialize()
        pair = ReadsFromTheFile(writer, reader)
        yield pair
        assert reader._client is None, "a read opened MLflow's client"
        writer.shutdown()
        reader.shutdown()

    def test_mlops_satisfies_protocol(self, mlops: ReadsFromTheFile) -> None:
        assert isinstance(mlops.reader, MLOpsPlugin)
        assert isinstance(mlops.writer, MLOpsPlugin)


def test_reader_declines_a_schema_it_does_not_know(mlflow_sqlite_uri: str) -> None:
    path = Path(mlflow_sqlite_uri.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'from-the-future'")
    connection.close()
    plugin = MLflowPlugin(mlflow_sqlite_uri)
    # The reader declines, so MLflow's own client opens the store, and says what to do.
    with pytest.raises(ConfigError, match="out-of-date database schema.*mlflow db upgrade"):
        plugin.initialize()


def test_a_read_only_command_never_imports_mlflow(tmp_path: Path) -> None:
    home = tmp_path / "home"
    writer = MLflowPlugin(f"sqlite:///{(home / 'mlflow.db').as_posix()}")
    home.mkdir()
    writer.initialize()
    try:
        run_id = writer.start_run(writer.create_experiment("pump"), run_name="train")
        writer.log_batch(run_id, metrics={"rows": 500}, params={"model": "pca"})
        writer.end_run(run_id)
        writer.register_model("pump", run_id, "")
        writer.set_alias("pump", "champion", 1)
    finally:
        writer.shutdown()
    script = textwrap.dedent(
        f"""
        import sys
        from observml.plugins.mlflow_plugin import MLflowPlugin
        plugin = MLflowPlugin("sqlite:///{(home / "mlflow.db").as_posix()}")
        plugin.initialize()
        version = plugin.get_version_by_alias("pump", "champion")
        run = plugin.get_run(version.run_id)
        experiment = plugin.get_experiment_by_name("pump")
        runs = plugin.search_runs(experiment.experiment_id, 10)
        ok, details = plugin.health_check()
        print(version.version, run.metrics["rows"], run.params["model"], len(runs), ok)
        print("mlflow imported:", "mlflow" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.splitlines() == ["1 500.0 pca 1 True", "mlflow imported: False"]


class TestMLflowServer(MLOpsContract):
    """The contract against an ``mlflow server`` process with a PostgreSQL backend store."""

    @pytest.fixture
    def mlops(self, mlflow_server_uri: str) -> Iterator[MLflowPlugin]:
        plugin = MLflowPlugin(mlflow_server_uri)
        plugin.initialize()
        yield plugin
        plugin.shutdown()


# -- the embedded default ---------------------------------------------------------------------
def test_mlflow_registry_setters_do_not_read_the_whole_model(
    mlflow_sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aliases and version tags are one registry call each, not a full model read first."""
    from mlflow import MlflowClient

    plugin = MLflowPlugin(mlflow_sqlite_uri, artifact_location=(tmp_path / "art").as_uri())
    plugin.initialize()
    try:
        run_id = plugin.start_run(plugin.create_experiment("pump"))
        plugin.register_model("pump", run_id, "model")
        plugin.register_model("pump", run_id, "model")

        def refuse(self: MlflowClient, name: str) -> None:
            raise AssertionError(f"read the whole registered model {name!r}")

        monkeypatch.setattr(MlflowClient, "get_registered_model", refuse)
        plugin.set_alias("pump", "champion", 2)
        plugin.set_alias("pump", "previous", 1)
        plugin.set_version_tag("pump", 2, "observml.decision", "trained")
        plugin.delete_alias("pump", "previous")
        plugin.end_run(run_id)
        monkeypatch.undo()
        (v2, v1) = plugin.list_versions("pump")
        assert v2.aliases == ("champion",)
        assert v2.tags == {"observml.decision": "trained"}
        assert v1.aliases == ()
    finally:
        plugin.shutdown()


def test_mlflow_embedded_default_lives_under_observml_home(tmp_path: Path) -> None:
    home = Path(os.environ[HOME_ENV_VAR])  # set per test by the root conftest
    plugin = MLflowPlugin()
    plugin.initialize()
    try:
        run_id = plugin.start_run(plugin.create_experiment("embedded"))
        notes = tmp_path / "notes.txt"
        notes.write_text("hi", encoding="utf-8")
        plugin.log_artifact(str(notes))
        plugin.end_run(run_id)
        artifact_uri = plugin.get_run(run_id).artifact_uri
    finally:
        plugin.shutdown()
    assert (home / EMBEDDED_DB_FILE).is_file()
    assert artifact_uri.startswith((home / EMBEDDED_ARTIFACT_DIR).as_uri())
    assert list((home / EMBEDDED_ARTIFACT_DIR).rglob("notes.txt"))
    with sqlite3.connect(home / EMBEDDED_DB_FILE) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    connection.close()
    assert mode == "wal"


_WORKER = textwrap.dedent(
    """
    import sys
    from observml.plugins.mlflow_plugin import MLflowPlugin

    tag, count = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # start together: both initialize and log at the same time
    plugin = MLflowPlugin()
    plugin.initialize()
    experiment_id = plugin.create_experiment("concurrent")
    for i in range(count):
        run_id = plugin.start_run(experiment_id, run_name=f"{tag}-{i}", tags={"worker": tag})
        plugin.log_batch(run_id, metrics={"i": i, "loss": 1.0 / (i + 1)}, params={"i": i})
        plugin.end_run(run_id)
    plugin.shutdown()
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_mlflow_embedded_two_processes_log_at_once(tmp_path: Path) -> None:
    home = tmp_path / "shared-home"
    env = {**os.environ, HOME_ENV_VAR: str(home)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, tag, str(RUNS_PER_PROCESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outcomes = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, outcomes, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert "done" in out
        assert "database is locked" not in err

    reader = MLflowPlugin(f"sqlite:///{(home / EMBEDDED_DB_FILE).as_posix()}")
    reader.initialize()
    try:
        experiment = reader.get_experiment_by_name("concurrent")
        assert experiment is not None
        runs = reader.search_runs(experiment.experiment_id, max_results=10 * RUNS_PER_PROCESS)
    finally:
        reader.shutdown()
    assert len(runs) == 2 * RUNS_PER_PROCESS
    assert {r.run_name for r in runs} == {
        f"{tag}-{i}" for tag in ("a", "b") for i in range(RUNS_PER_PROCESS)
    }
    assert {r.status for r in runs} == {"FINISHED"}
    assert all(r.metrics["i"] == float(r.params["i"]) for r in runs)


# -- other URIs ---------------------------------------------------------------------------------
def test_mlflow_postgresql_uri_works_without_a_server(
    mlflow_server_uri: str, mlflow_postgres_url: str
) -> None:
    """The server fixture has migrated the database; the plugin can use it directly too."""
    plugin = MLflowPlugin(mlflow_postgres_url)
    plugin.initialize()
    try:
        experiment_id = plugin.create_experiment("direct-postgres")
        assert plugin.create_experiment("direct-postgres") == experiment_id
        healthy, details = plugin.health_check()
        assert healthy, details
    finally:
        plugin.shutdown()


def test_mlflow_file_uri_needs_mlflow_opt_in(tmp_path: Path) -> None:
    plugin = MLflowPlugin((tmp_path / "mlruns").as_uri())
    with pytest.raises(ConfigError, match="mlflow_uri.*MLFLOW_ALLOW_FILE_STORE"):
        plugin.initialize()


def test_mlflow_unsupported_uri_raises_config_error() -> None:
    plugin = MLflowPlugin("bogus://somewhere")
    with pytest.raises(ConfigError, match="mlflow_uri.*bogus"):
        plugin.initialize()


def test_mlflow_not_initialized_raises_on_use() -> None:
    plugin = MLflowPlugin()
    with pytest.raises(ServiceUnavailableError, match="not initialized. Call initialize"):
        plugin.create_experiment("x")
    healthy, details = plugin.health_check()
    assert not healthy
    assert details["status"] == "not_initialized"


# -- health ---------------------------------------------------------------------------------------
@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_mlflow_health_unreachable_server_is_unhealthy_and_masks_the_password() -> None:
    plugin = MLflowPlugin(f"http://observer:s3cret@127.0.0.1:{free_port()}", health_timeout=2.0)
    healthy, details = plugin.health_check()
    assert not healthy
    assert details["status"] in {"unreachable", "timeout"}
    assert "s3cret" not in str(details)
    assert details["uri"].startswith("http://observer:****@127.0.0.1:")


def test_mlflow_health_of_a_server_that_never_answers_gives_up_at_health_timeout(
    silent_server: int,
) -> None:
    plugin = MLflowPlugin(f"http://127.0.0.1:{silent_server}", health_timeout=0.5)
    healthy, details = plugin.health_check()
    assert not healthy
    assert details["status"] == "timeout"
    assert details["message"] == "no answer within 0.5 s."


def test_mlflow_initialize_unreachable_server_fails_with_what_to_check() -> None:
    plugin = MLflowPlugin(f"http://observer:s3cret@127.0.0.1:{free_port()}", health_timeout=2.0)
    with pytest.raises(ServiceUnavailableError, match="unreachable.*Is the server running") as err:
        plugin.initialize()
    assert "s3cret" not in str(err.value)


def test_mlflow_initialize_against_a_server_that_never_answers_gives_up_at_health_timeout(
    silent_server: int,
) -> None:
    plugin = MLflowPlugin(f"http://127.0.0.1:{silent_server}", health_timeout=0.5)
    with pytest.raises(ServiceUnavailableError, match=r"no answer within 0\.5 s\. Is the server"):
        plugin.initialize()


def test_mlflow_health_of_server_reports_latency(mlflow_server_uri: str) -> None:
    plugin = MLflowPlugin(mlflow_server_uri)
    plugin.initialize()
    try:
        healthy, details = plugin.health_check()
    finally:
        plugin.shutdown()
    assert healthy, details
    assert details["uri"] == mlflow_server_uri
    assert details["latency_ms"] >= 0


def test_mlflow_set_tracking_uri_reconnects(
    mlflow_sqlite_uri: str, mlflow_sqlite_template: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(mlflow_sqlite_template.read_bytes())
    plugin = MLflowPlugin(mlflow_sqlite_uri, artifact_location=(tmp_path / "art").as_uri())
    plugin.initialize()
    try:
        plugin.create_experiment("first-store")
        plugin.set_tracking_uri(f"sqlite:///{other.as_posix()}")
        assert plugin.get_experiment_by_name("first-store") is None
        plugin.create_experiment("second-store")
        healthy, details = plugin.health_check()
        assert healthy, details
        assert details["uri"].endswith("other.db")
    finally:
        plugin.shutdown()
