"""MLflow's objects as observml records, and observml's values as MLflow's.

Runs and model versions become the dataclasses of :mod:`observml.plugins.mlops` (MLflow's own
``mlflow.*`` tags left out), metrics/params/tags are cut into ``log_batch`` calls within MLflow's
limits, and tag values are quoted for MLflow's search filters, which have no escapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from observml.plugins.mlops import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
    ModelVersion,
    RunRecord,
)

if TYPE_CHECKING:  # MLflow is imported only when the plugin opens its client
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param, RunTag

__all__ = [
    "aliases_by_version",
    "batches",
    "filter_literal",
    "model_version",
    "run_record",
    "user_tags",
]

_MAX_ENTITIES_PER_BATCH: Final = 1000  # MLflow's cap on metrics + params + tags in one call
_SYSTEM_TAG_PREFIX: Final = "mlflow."


def batches(
    metrics: list[MlflowMetric], params: list[Param], tags: list[RunTag]
) -> Iterator[tuple[list[MlflowMetric], list[Param], list[RunTag]]]:
    """Split into calls of at most 1000 metrics, 100 params, 100 tags and 1000 entities."""
    m = p = t = 0
    while m < len(metrics) or p < len(params) or t < len(tags):
        param_chunk = params[p : p + MAX_PARAMS_PER_BATCH]
        tag_chunk = tags[t : t + MAX_TAGS_PER_BATCH]
        room = min(
            MAX_METRICS_PER_BATCH, _MAX_ENTITIES_PER_BATCH - len(param_chunk) - len(tag_chunk)
        )
        metric_chunk = metrics[m : m + room]
        yield metric_chunk, param_chunk, tag_chunk
        m, p, t = m + len(metric_chunk), p + len(param_chunk), t + len(tag_chunk)


def filter_literal(value: str) -> str | None:
    """Quote a value for an MLflow filter (no escapes there); ``None`` if it holds both quotes."""
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return None


def user_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Return ``tags`` without MLflow's own (``mlflow.*``)."""
    return {k: v for k, v in (tags or {}).items() if not k.startswith(_SYSTEM_TAG_PREFIX)}


def run_record(run: Any) -> RunRecord:
    """Return an MLflow run as a :class:`RunRecord` with its latest metric values."""
    info, data = run.info, run.data
    return RunRecord(
        run_id=str(info.run_id),
        experiment_id=str(info.experiment_id),
        status=str(info.status),
        start_time=int(info.start_time or 0),
        end_time=int(info.end_time) if info.end_time else None,
        run_name=str(info.run_name or ""),
        params=dict(data.params),
        metrics={k: float(v) for k, v in data.metrics.items()},
        tags=user_tags(data.tags),
        artifact_uri=str(info.artifact_uri or ""),
    )


def model_version(version: Any, aliases: tuple[str, ...] | None = None) -> ModelVersion:
    """Return an MLflow model version as a :class:`ModelVersion` (``aliases`` if given)."""
    return ModelVersion(
        name=str(version.name),
        version=int(version.version),
        run_id=str(version.run_id or ""),
        source=str(version.source or ""),
        aliases=tuple(sorted(version.aliases or ())) if aliases is None else aliases,
        tags=dict(version.tags or {}),
        creation_time=int(version.creation_timestamp or 0),
    )


def aliases_by_version(aliases: Mapping[str, Any] | None) -> dict[int, tuple[str, ...]]:
    """Turn a registered model's ``{alias: version}`` into ``{version: (alias, ...)}``."""
    found: dict[int, list[str]] = {}
    for alias, version in (aliases or {}).items():
        found.setdefault(int(version), []).append(alias)
    return {version: tuple(sorted(names)) for version, names in found.items()}
