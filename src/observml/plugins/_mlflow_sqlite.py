"""Read an MLflow SQLite store without importing MLflow: what a read-only command needs, fast.

Importing MLflow and opening its SQLAlchemy store costs about two seconds of CPU before the
first query (``mlflow`` itself, its GenAI modules, SQLAlchemy, alembic's schema check). A
command that only reads (``observml status``, ``predict``, ``health``) needs a handful of
queries. :class:`SQLiteReader` answers those straight from the SQLite file with the standard
library, read-only, and only for a schema it knows: the file's ``alembic_version`` must be one
of :data:`KNOWN_REVISIONS`, the revisions of the MLflow release observml pins, whose tables
``tests/unit/plugins/test_mlflow_sqlite.py`` checks the reader against MLflow's own answers. A
file MLflow migrated further, or artifacts that are not local files, make the reader decline
(``None``), and the plugin opens MLflow's client as usual.

It returns the same records as :mod:`._mlflow_records` builds from MLflow's objects, with the
same rules: active experiments and runs only, the latest value of each metric, MLflow's own
``mlflow.*`` run tags left out, runs newest first, model versions newest first with their
aliases, deleted versions left out.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from observml.plugins._mlflow_records import aliases_by_version, user_tags
from observml.plugins.mlops import ExperimentRecord, ModelVersion, RunRecord

__all__ = ["KNOWN_REVISIONS", "NotInStore", "SQLiteReader"]

#: ``alembic_version`` of the schemas this reader knows: MLflow 3.17's head.
KNOWN_REVISIONS: Final = frozenset({"dc11669786a5"})
#: MLflow's workspace for stores that do not use workspaces.
_WORKSPACE: Final = "default"
#: MLflow marks a deleted model version with this stage before it purges it.
_DELETED_STAGE: Final = "Deleted_Internal"


class NotInStore(LookupError):
    """What the reader did not find, with MLflow's error code for the plugin's translation."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


class SQLiteReader:
    """Read-only queries on an MLflow SQLite store of a known schema (see the module docstring).

    Args:
        path: The SQLite file.
        timeout: Seconds to wait for a writer's lock.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    @classmethod
    def open(cls, path: Path | None, timeout: float) -> SQLiteReader | None:
        """Return a reader of ``path`` if it holds a schema this reader knows, else ``None``."""
        if path is None or not path.is_file():
            return None
        reader = cls(path, timeout)
        try:
            revision = reader.revision()
        except sqlite3.Error:
            return None
        return reader if revision in KNOWN_REVISIONS else None

    def revision(self) -> str | None:
        """Return the schema revision MLflow recorded in the file."""
        with self._connect() as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])

    # -- experiments and runs -------------------------------------------------------------
    def get_experiment_by_name(self, name: str) -> ExperimentRecord | None:
        """Return the active experiment called ``name``, or ``None``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT experiment_id, name FROM experiments"
                " WHERE name = ? AND workspace = ? AND lifecycle_stage = 'active'",
                (name, _WORKSPACE),
            ).fetchone()
            if row is None:
                return None
            tags = _pairs(
                db, "SELECT key, value FROM experiment_tags WHERE experiment_id = ?", row[0]
            )
        return ExperimentRecord(str(row[0]), str(row[1]), user_tags(tags))

    def get_run(self, run_id: str) -> RunRecord | None:
        """Return the run ``run_id`` (deleted or not, as MLflow's ``get_run``), or ``None``."""
        with self._connect() as db:
            row = db.execute(f"{_RUN_COLUMNS} WHERE run_uuid = ?", (run_id,)).fetchone()
            return None if row is None else _run(db, row)

    def search_runs(
        self, experiment_id: str, max_results: int, tags: Mapping[str, str] | None = None
    ) -> list[RunRecord]:
        """Return the experiment's active runs carrying every tag in ``tags``, newest first."""
        clauses = ["experiment_id = ?", "lifecycle_stage = 'active'"]
        args: list[object] = [_int_id(experiment_id)]
        for key, value in (tags or {}).items():
            clauses.append("run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)")
            args += [key, value]
        query = (
            f"{_RUN_COLUMNS} WHERE {' AND '.join(clauses)}"
            " ORDER BY start_time DESC, run_uuid LIMIT ?"
        )
        with self._connect() as db:
            rows = db.execute(query, (*args, max_results)).fetchall()
            return [_run(db, row) for row in rows]

    # -- the model registry ---------------------------------------------------------------
    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` of model ``name`` points at, or ``None``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT version FROM registered_model_aliases"
                " WHERE workspace = ? AND name = ? AND alias = ?",
                (_WORKSPACE, name, alias),
            ).fetchone()
            if row is None:
                return None
            versions = self._versions(db, name, int(row[0]))
        return versions[0] if versions else None

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Return every version of model ``name``, newest first (empty if unknown)."""
        with self._connect() as db:
            return self._versions(db, name, None)

    # -- artifacts ------------------------------------------------------------------------
    def artifact_root(self, run_id: str) -> Path | None:
        """Return the local folder of the run's artifacts; ``None`` if not a local folder.

        Raises:
            NotInStore: There is no such run.
        """
        with self._connect() as db:  # the run's artifact URI only, not its params and tags
            row = db.execute(
                "SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise NotInStore(f"Run with id={run_id} not found")
        parsed = urlparse(str(row[0] or ""))
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            return None
        return Path(url2pathname(unquote(parsed.path)))

    def list_artifacts(self, root: Path, path: str | None) -> list[str]:
        """List the files under ``path`` of the artifact folder ``root``, recursively, sorted."""
        wanted = path.strip("/") if path else ""
        start = root / wanted if wanted else root
        if start.is_file():
            return [wanted]
        if not start.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in start.rglob("*") if p.is_file())

    def download_artifacts(self, root: Path, artifact_path: str, dst_dir: str) -> str:
        """Copy the artifact file or folder into ``dst_dir``; return its local path there."""
        relative = artifact_path.strip("/")
        source, target = root / relative, Path(dst_dir) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        return str(target)

    # -- internals ------------------------------------------------------------------------
    def _versions(self, db: sqlite3.Connection, name: str, only: int | None) -> list[ModelVersion]:
        query = (
            "SELECT version, run_id, source, creation_time FROM model_versions"
            " WHERE workspace = ? AND name = ? AND current_stage != ?"
        )
        args: list[object] = [_WORKSPACE, name, _DELETED_STAGE]
        if only is not None:
            query += " AND version = ?"
            args.append(only)
        rows = db.execute(f"{query} ORDER BY version DESC", args).fetchall()
        alias_rows = db.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?",
            (_WORKSPACE, name),
        ).fetchall()
        aliases = aliases_by_version({str(alias): int(v) for alias, v in alias_rows})
        versions = []
        for version, run_id, source, created in rows:
            tags = _pairs(
                db,
                "SELECT key, value FROM model_version_tags"
                " WHERE workspace = ? AND name = ? AND version = ?",
                _WORKSPACE,
                name,
                version,
            )
            versions.append(
                ModelVersion(
                    name=name,
                    version=int(version),
                    run_id=str(run_id or ""),
                    source=str(source or ""),
                    aliases=aliases.get(int(version), ()),
                    tags=tags,
                    creation_time=int(created or 0),
                )
            )
        return versions

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=self.timeout)) as db:
            yield db


_RUN_COLUMNS: Final = (
    "SELECT run_uuid, experiment_id, status, start_time, end_time, name, artifact_uri FROM runs"
)


def _run(db: sqlite3.Connection, row: tuple[object, ...]) -> RunRecord:
    run_id, experiment_id, status, start, end, name, artifact_uri = row
    params = _pairs(db, "SELECT key, value FROM params WHERE run_uuid = ?", run_id)
    tags = _pairs(db, "SELECT key, value FROM tags WHERE run_uuid = ?", run_id)
    metrics = {
        str(key): math.nan if is_nan else float(value)
        for key, value, is_nan in db.execute(
            "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,)
        )
    }
    return RunRecord(
        run_id=str(run_id),
        experiment_id=str(experiment_id),
        status=str(status),
        start_time=int(start or 0),  # type: ignore[call-overload]
        end_time=int(end) if end else None,  # type: ignore[call-overload]
        run_name=str(name or ""),
        params=params,
        metrics=metrics,
        tags=user_tags(tags),
        artifact_uri=str(artifact_uri or ""),
    )


def _pairs(db: sqlite3.Connection, query: str, *args: object) -> dict[str, str]:
    return {str(key): str(value) for key, value in db.execute(query, args)}


def _int_id(experiment_id: str) -> int | str:
    return int(experiment_id) if experiment_id.isdigit() else experiment_id
