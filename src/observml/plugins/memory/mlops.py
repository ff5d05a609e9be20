"""InMemoryMLOpsPlugin: an MLOps store held in one process's memory.

Experiments, runs (with metric history), artifacts and a model registry, with MLflow's rules
(a param cannot change once logged; a metric's current value is the one at the highest step).
For unit tests and notebooks; all state lives on the instance, so two plugins share nothing.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from observml.errors import DataError, NotFoundError
from observml.plugins.base import HealthReport
from observml.plugins.mlops import (
    ExperimentRecord,
    Metric,
    MetricsArg,
    ModelVersion,
    RunRecord,
    RunStatus,
    as_metrics,
)

__all__ = ["InMemoryMLOpsPlugin"]


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Run:
    record: RunRecord
    history: dict[str, list[Metric]] = field(default_factory=dict)
    latest: dict[str, Metric] = field(default_factory=dict)  # highest (step, timestamp)
    artifacts: dict[str, bytes] = field(default_factory=dict)


class InMemoryMLOpsPlugin:
    """An MLOps store held in memory: experiments, runs, artifacts and a model registry.

    Configuration: none (``name`` only labels the store in health details).

    Usage::

        hub.register_plugin(InMemoryMLOpsPlugin())
    """

    plugin_type = "mlops"

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.tracking_uri = f"memory://{name}"
        self._lock = threading.RLock()
        self._experiments: dict[str, ExperimentRecord] = {}
        self._runs: dict[str, _Run] = {}
        self._versions: dict[str, list[ModelVersion]] = {}
        self._aliases: dict[str, dict[str, int]] = {}
        self._ids = itertools.count(1)
        self._active = threading.local()
        self._initialized = False

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Mark the store ready."""
        self._initialized = True

    def shutdown(self) -> None:
        """End runs left open as ``KILLED`` (as the real plugins do); the data stays readable."""
        with self._lock:
            for run in self._runs.values():
                if run.record.status == "RUNNING":
                    run.record = replace(run.record, status="KILLED", end_time=_now_ms())
            self._initialized = False

    def health_check(self) -> HealthReport:
        """Report the store's size."""
        with self._lock:
            return True, {
                "status": "connected",
                "uri": self.tracking_uri,
                "experiments": len(self._experiments),
                "runs": len(self._runs),
            }

    # -- the spec's methods ---------------------------------------------------------------
    def set_tracking_uri(self, uri: str) -> None:
        """Record the URI (the store stays in memory)."""
        self.tracking_uri = uri

    def create_experiment(self, name: str) -> str:
        """Create an experiment, or return the id of the existing one."""
        with self._lock:
            existing = self.get_experiment_by_name(name)
            if existing is not None:
                return existing.experiment_id
            experiment_id = str(next(self._ids))
            self._experiments[experiment_id] = ExperimentRecord(experiment_id, name)
            return experiment_id

    def start_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Start a run and remember it as this thread's active run."""
        with self._lock:
            if experiment_id not in self._experiments:
                raise NotFoundError(
                    f"memory MLOps store: experiment id {experiment_id!r} does not exist."
                    " Create it with create_experiment(name) first."
                )
            run_id = uuid.uuid4().hex
            record = RunRecord(
                run_id=run_id,
                experiment_id=experiment_id,
                status="RUNNING",
                start_time=_now_ms(),
                run_name=run_name or run_id[:8],
                tags=dict(tags or {}),
                artifact_uri=f"memory://{self.name}/{run_id}/artifacts",
            )
            # Runs started in the same millisecond still sort newest first by insertion.
            self._runs[run_id] = _Run(record)
        self._active.run_id = run_id
        return run_id

    def log_artifact(
        self, path: str, artifact_path: str | None = None, *, run_id: str | None = None
    ) -> None:
        """Copy a local file into the run's artifacts."""
        run = self._run(run_id or self._active_run_id())
        name = Path(path).name
        key = f"{artifact_path.strip('/')}/{name}" if artifact_path else name
        with self._lock:
            run.artifacts[key] = Path(path).read_bytes()

    def get_run(self, run_id: str) -> RunRecord:
        """Return the run's record."""
        return self._run(run_id).record

    def get_experiment_by_name(self, name: str) -> ExperimentRecord | None:
        """Return the experiment named ``name`` or ``None``."""
        with self._lock:
            for record in self._experiments.values():
                if record.name == name:
                    return record
        return None

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
        """Record metrics (with history), params and tags.

        As in MLflow, a param cannot change once logged, and a metric's current value is the
        one at the highest step (then the latest timestamp).
        """
        run = self._run(run_id)
        now = _now_ms()
        points = [replace(p, timestamp=p.timestamp or now) for p in as_metrics(metrics, step)]
        new_params = {str(k): str(v) for k, v in (params or {}).items()}
        with self._lock:
            record = run.record
            for key, value in new_params.items():
                if record.params.get(key, value) != value:
                    raise DataError(
                        f"run {run_id}: param {key!r} is already {record.params[key]!r}; params"
                        f" cannot change (got {value!r}). Log a metric, or start a new run."
                    )
            for point in points:
                run.history.setdefault(point.key, []).append(point)
                best = run.latest.get(point.key)
                if best is None or (point.step, point.timestamp) >= (best.step, best.timestamp):
                    run.latest[point.key] = point
            run.record = replace(
                record,
                params={**record.params, **new_params},
                metrics={key: point.value for key, point in run.latest.items()},
                tags={**record.tags, **{k: str(v) for k, v in (tags or {}).items()}},
            )

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Return every logged point of a metric (for tests and notebooks)."""
        with self._lock:
            return list(self._run(run_id).history.get(key, []))

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """End the run with ``status``."""
        run = self._run(run_id)
        with self._lock:
            run.record = replace(run.record, status=status, end_time=_now_ms())

    def kill_run(self, run_id: str) -> None:
        """End the run as ``KILLED``."""
        self.end_run(run_id, "KILLED")

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Copy every file under ``local_dir`` into the run's artifacts."""
        run = self._run(run_id)
        root = Path(local_dir)
        prefix = artifact_path.strip("/") + "/" if artifact_path else ""
        with self._lock:
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                run.artifacts[prefix + file.relative_to(root).as_posix()] = file.read_bytes()

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """List artifact files under ``path``."""
        run = self._run(run_id)
        prefix = path.strip("/") + "/" if path else ""
        with self._lock:
            return sorted(k for k in run.artifacts if k.startswith(prefix) or k == path)

    def download_artifacts(self, run_id: str, artifact_path: str, dst_dir: str) -> str:
        """Write an artifact file or folder into ``dst_dir`` and return its local path."""
        run = self._run(run_id)
        wanted = artifact_path.strip("/")
        with self._lock:
            files = {
                k: v for k, v in run.artifacts.items() if k == wanted or k.startswith(wanted + "/")
            }
        if not files:
            raise NotFoundError(
                f"run {run_id}: no artifact {artifact_path!r}. It was not saved with this run;"
                " list what exists with list_artifacts(run_id)."
            )
        for key, data in files.items():
            target = Path(dst_dir, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return os.path.join(dst_dir, wanted)

    def search_runs(
        self,
        experiment_id: str,
        max_results: int = 100,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> list[RunRecord]:
        """Return the experiment's runs (those with every tag in ``tags``), newest first."""
        wanted = dict(tags or {})
        with self._lock:
            runs = [
                r.record
                for r in self._runs.values()
                if r.record.experiment_id == experiment_id
                and all(r.record.tags.get(k) == v for k, v in wanted.items())
            ]
        return list(reversed(runs))[:max_results]

    def register_model(self, name: str, run_id: str, artifact_path: str) -> ModelVersion:
        """Add a version of model ``name`` pointing at the run's artifact folder."""
        run = self._run(run_id)
        with self._lock:
            versions = self._versions.setdefault(name, [])
            version = ModelVersion(
                name=name,
                version=len(versions) + 1,
                run_id=run_id,
                source=f"{run.record.artifact_uri}/{artifact_path.strip('/')}",
                creation_time=_now_ms(),
            )
            versions.append(version)
            return version

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        with self._lock:
            self._version(name, version)
            self._aliases.setdefault(name, {})[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` if set."""
        with self._lock:
            self._aliases.get(name, {}).pop(alias, None)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` points at."""
        with self._lock:
            number = self._aliases.get(name, {}).get(alias)
            return None if number is None else self._version(name, number)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Return the model's versions, newest first."""
        with self._lock:
            return [self._version(name, v.version) for v in reversed(self._versions.get(name, []))]

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Tag a model version."""
        with self._lock:
            current = self._version(name, version)
            versions = self._versions[name]
            versions[version - 1] = replace(current, tags={**current.tags, key: value}, aliases=())

    # -- internals ------------------------------------------------------------------------
    def _active_run_id(self) -> str:
        run_id: str | None = getattr(self._active, "run_id", None)
        if run_id is None:
            raise NotFoundError(
                "memory MLOps store: no active run in this thread. Call start_run() first"
                " or pass run_id=."
            )
        return run_id

    def _run(self, run_id: str) -> _Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(
                f"run {run_id}: no such run in the memory MLOps store. Check the run id"
                " (list runs with search_runs(experiment_id))."
            )
        return run

    def _version(self, name: str, version: int) -> ModelVersion:
        versions = self._versions.get(name, [])
        if not 1 <= version <= len(versions):
            raise NotFoundError(
                f"model {name!r}: no version {version}. Known versions:"
                f" {[v.version for v in versions] or 'none'}."
            )
        aliases = tuple(sorted(a for a, v in self._aliases.get(name, {}).items() if v == version))
        return replace(versions[version - 1], aliases=aliases)
