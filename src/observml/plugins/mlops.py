"""The MLOps plugin protocol: experiment tracking, artifacts and a model registry.

The first six methods are the spec's, with their meaning kept. The rest are what the hub needs
to log in batches, end runs, store trained experiments and move the ``champion`` alias. Records
returned are plain dataclasses of this module, so nothing above the plugin sees a driver type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeAlias, runtime_checkable

from observml.plugins.base import HealthReport, Plugin

__all__ = [
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_PER_BATCH",
    "MAX_TAGS_PER_BATCH",
    "ExperimentRecord",
    "MLOpsPlugin",
    "Metric",
    "MetricsArg",
    "ModelVersion",
    "RunRecord",
    "RunStatus",
    "tracked_run",
]

logger = logging.getLogger(__name__)

#: MLflow's limits for one ``log_batch`` call; other plugins split at the same sizes.
MAX_METRICS_PER_BATCH: Final = 1000
MAX_PARAMS_PER_BATCH: Final = 100
MAX_TAGS_PER_BATCH: Final = 100

RunStatus: TypeAlias = Literal["RUNNING", "FINISHED", "FAILED", "KILLED"]


@dataclass(frozen=True)
class Metric:
    """One metric value; ``timestamp`` is epoch milliseconds (0 = now)."""

    key: str
    value: float
    step: int = 0
    timestamp: int = 0


#: Metrics as ``{key: value}`` (logged at one step) or as explicit :class:`Metric` points.
MetricsArg: TypeAlias = Mapping[str, float] | Iterable[Metric]


def as_metrics(metrics: MetricsArg | None, step: int = 0) -> list[Metric]:
    """Return ``metrics`` as :class:`Metric` points (a mapping is logged at ``step``)."""
    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        return [Metric(str(k), float(v), step) for k, v in metrics.items()]
    return list(metrics)


@dataclass(frozen=True)
class ExperimentRecord:
    """An experiment in the MLOps store."""

    experiment_id: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """A run with its latest metric values; times are epoch milliseconds."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None = None
    run_name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifact_uri: str = ""


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version."""

    name: str
    version: int
    run_id: str
    source: str = ""
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int = 0


@runtime_checkable
class MLOpsPlugin(Plugin, Protocol):
    """Interface for MLOps plugins (tracking, artifacts, model registry)."""

    plugin_type: str  # "mlops"

    # -- the spec's methods ---------------------------------------------------------------
    def set_tracking_uri(self, uri: str) -> None:
        """Point the plugin at another tracking store."""
        ...

    def create_experiment(self, name: str) -> str:
        """Create an experiment and return its id; return the existing id if the name exists."""
        ...

    def start_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Start a run in the experiment and return its id."""
        ...

    def log_artifact(
        self, path: str, artifact_path: str | None = None, *, run_id: str | None = None
    ) -> None:
        """Upload one local file to ``artifact_path`` of a run.

        Args:
            path: Local file.
            artifact_path: Folder inside the run's artifacts (``None`` = root).
            run_id: The run; ``None`` means the last run this plugin started in this thread.
        """
        ...

    def get_run(self, run_id: str) -> RunRecord:
        """Return a run; raise :class:`~observml.errors.NotFoundError` naming it if missing."""
        ...

    def get_experiment_by_name(self, name: str) -> ExperimentRecord | None:
        """Return the experiment of that name, or ``None``."""
        ...

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
        """Log metrics, params and tags in as few calls as the store allows."""
        ...

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """Mark a run as ended with ``status``."""
        ...

    def kill_run(self, run_id: str) -> None:
        """End a run as ``KILLED``."""
        ...

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Upload every file under ``local_dir`` to ``artifact_path`` of the run."""
        ...

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """List artifact paths (files, recursively) under ``path`` of a run."""
        ...

    def download_artifacts(self, run_id: str, artifact_path: str, dst_dir: str) -> str:
        """Download an artifact file or folder into ``dst_dir`` and return its local path.

        Raises :class:`~observml.errors.NotFoundError` naming the run when it is missing.
        """
        ...

    def search_runs(
        self,
        experiment_id: str,
        max_results: int = 100,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> list[RunRecord]:
        """Return the runs of an experiment, newest first (with ``tags``: those carrying each)."""
        ...

    def register_model(self, name: str, run_id: str, artifact_path: str) -> ModelVersion:
        """Register the run's artifact folder as a new version of model ``name``."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (moving it if it existed)."""
        ...

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from model ``name``; no error if it was not set."""
        ...

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` points at, or ``None``."""
        ...

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Return every version of model ``name``, newest first (empty if unknown)."""
        ...

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set a tag on a model version."""
        ...

    def health_check(self) -> HealthReport:
        """Cheap read of the store, bounded in time."""
        ...


@contextmanager
def tracked_run(
    mlops: MLOpsPlugin,
    experiment_id: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    killed_by: tuple[type[BaseException], ...] = (KeyboardInterrupt,),
) -> Iterator[str]:
    """Start a run and always end it, whatever happens inside the block.

    The run ends ``FINISHED`` when the block completes, ``KILLED`` on an exception in
    ``killed_by`` (someone stopped it) and ``FAILED`` on any other exception, which is then
    re-raised unchanged. Every run the hub writes goes through here.

    Args:
        mlops: The MLOps plugin.
        experiment_id: Experiment of the new run.
        run_name: Name shown in the tracking UI.
        tags: Tags set when the run starts.
        killed_by: Exceptions that mean "stopped on purpose" rather than "failed".

    Yields:
        The run id.
    """
    run_id = mlops.start_run(experiment_id, run_name=run_name, tags=tags)
    try:
        yield run_id
    except BaseException as exc:
        status: RunStatus = "KILLED" if isinstance(exc, killed_by) else "FAILED"
        try:
            mlops.end_run(run_id, status)
        except Exception:
            logger.warning("could not end run %s as %s", run_id, status, exc_info=True)
        raise
    mlops.end_run(run_id, "FINISHED")
