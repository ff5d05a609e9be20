"""The SKAB outlier-detection protocol, run through the hub like a user's experiment.

For each labelled file: create the experiment from the config, train it on the file's first
400 rows, predict the rest, delete it. The alarms are the prediction's ``anomaly`` column; the
confusion counts are pooled over all files (:class:`~observml.benchmarks.scores.Confusion`).
The changepoint track scores the alarm's changes (each row where ``anomaly`` switches on or
off, as SKAB's notebooks do) with NAB (:mod:`observml.benchmarks.scores`) against a 60 s
window to the right of each labelled changepoint in the predicted rows.

The hub is an ordinary :class:`~observml.hub.hub.ExperimentHub` with the in-memory MLOps
plugin (every model is saved and versioned as usual, in memory) and a key made for the run,
so nothing is written to disk and no server is needed. BLAS runs one thread meanwhile (the
fits are small and sequential; see :func:`run_config`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import yaml

from observml.benchmarks.scores import Confusion, NabScore, nab_raw, nab_score
from observml.benchmarks.skab.data import TIME, SkabFile
from observml.errors import ConfigError, DataError

__all__ = [
    "CONFIG_DIR",
    "NAB_WINDOW",
    "TRAIN_ROWS",
    "BenchmarkConfig",
    "ConfigResult",
    "FileResult",
    "changepoint_windows",
    "default_configs",
    "load_config",
    "run_benchmark",
    "run_config",
]

#: Rows each experiment is trained on (the start of every file).
TRAIN_ROWS: Final = 400
#: NAB window to the right of each changepoint.
NAB_WINDOW: Final = pd.Timedelta(seconds=60)
#: The configs docs/benchmarks.md reports.
CONFIG_DIR: Final = Path(__file__).with_name("configs")

#: ``progress(config_name, done_files, total_files)`` after each file.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchmarkConfig:
    """An experiment config to benchmark: the shape of a hub config's ``experiments:`` entry.

    Attributes:
        name: Label in the table and the JSON output.
        type: The experiment type (default ``fault_detection``).
        config: The ``setup``/``eda``/``create_model`` mapping, as for ``create_experiment``.
        description: One line for the report.
    """

    name: str
    type: str = "fault_detection"
    config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class FileResult:
    """One file's outcome: confusion counts, NAB parts and the traces for the report."""

    name: str
    confusion: Confusion
    nab: NabScore
    time: np.ndarray
    score: np.ndarray | None
    alarm: np.ndarray
    anomaly: np.ndarray


@dataclass(frozen=True)
class ConfigResult:
    """A config's pooled scores over all files."""

    config: BenchmarkConfig
    files: tuple[FileResult, ...]
    seconds: float

    @property
    def confusion(self) -> Confusion:
        """The counts summed over every file."""
        total = Confusion()
        for result in self.files:
            total = total + result.confusion
        return total

    @property
    def nab(self) -> float:
        """The NAB standard score of all files pooled."""
        return nab_score(result.nab for result in self.files)

    def summary(self) -> dict[str, Any]:
        """``config``, ``f1``, ``far`` and ``mar`` (in %), ``nab``, ``seconds``."""
        pooled = self.confusion
        return {
            "config": self.config.name,
            "f1": round(pooled.f1, 4),
            "far": round(100 * pooled.far, 2),
            "mar": round(100 * pooled.mar, 2),
            "nab": round(self.nab, 2),
            "seconds": round(self.seconds, 1),
        }


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read a config file: ``name`` (default: the file's stem), ``type``, ``config``.

    Raises:
        ConfigError: The file is not a mapping of that shape.
    """
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: cannot read the benchmark config: {exc}") from exc
    if not isinstance(raw, Mapping) or not isinstance(raw.get("config", {}), Mapping):
        raise ConfigError(
            f"{source}: a benchmark config is a mapping with 'type' and 'config' (the"
            " setup/create_model mapping), as an experiments: entry of hub_config.yaml."
        )
    unknown = sorted(set(raw) - {"name", "type", "config", "description"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; use name, type, config, description."
        )
    return BenchmarkConfig(
        name=str(raw.get("name") or source.stem),
        type=str(raw.get("type") or "fault_detection"),
        config=dict(raw.get("config") or {}),
        description=str(raw.get("description") or ""),
    )


def default_configs() -> list[BenchmarkConfig]:
    """The shipped configs (``configs/*.yaml``), in file-name order."""
    return [load_config(p) for p in sorted(CONFIG_DIR.glob("*.yaml"))]


def changepoint_windows(times: pd.Series, changepoints: np.ndarray) -> list[tuple[int, int]]:
    """Row windows ``[cp, cp + 60 s]`` of each changepoint; a window is cut where the next starts.

    Args:
        times: The rows' times (increasing).
        changepoints: One boolean per row.
    """
    stamps = pd.to_datetime(times).to_numpy()
    starts = np.flatnonzero(np.asarray(changepoints, dtype=bool))
    windows: list[tuple[int, int]] = []
    for n, first in enumerate(starts):
        last = int(np.searchsorted(stamps, stamps[first] + NAB_WINDOW.to_timedelta64(), "right"))
        last -= 1
        if n + 1 < len(starts):
            last = min(last, int(starts[n + 1]) - 1)
        windows.append((int(first), last))
    return windows


def run_config(
    files: Sequence[SkabFile], config: BenchmarkConfig, progress: Progress | None = None
) -> ConfigResult:
    """Run ``config`` on every file through a fresh hub; return the pooled result.

    Raises:
        ConfigError: The config does not fit its experiment type.
        DataError: A prediction has no ``anomaly`` column.
    """
    from threadpoolctl import threadpool_limits

    from observml.config.sections import GlobalSection, HubConfig
    from observml.hub.hub import ExperimentHub
    from observml.plugins.memory.mlops import InMemoryMLOpsPlugin

    settings = _with_time_column(config.config)
    hub_config = HubConfig(plugins={}, global_=GlobalSection(model_key=secrets.token_hex(32)))
    started = time.perf_counter()
    results: list[FileResult] = []
    # one BLAS thread: the fits are small (400 rows) and sequential, and BLAS threads spinning
    # on a busy machine made one 400 x 48 SVD take 0.7 s instead of 1 ms
    with (
        threadpool_limits(limits=1, user_api="blas"),
        ExperimentHub(config=hub_config, job_isolation="thread") as hub,
    ):
        hub.register_plugin(InMemoryMLOpsPlugin(name="skab"))
        for n, skab_file in enumerate(files):
            name = "skab-" + skab_file.name.replace("/", "-")
            hub.create_experiment(name, config.type, settings)
            try:
                rows = skab_file.sensors
                status = hub.train(name, data=rows.iloc[:TRAIN_ROWS], wait=True).status
                if status.state != "succeeded":
                    raise DataError(
                        f"benchmark config {config.name!r}: training on {skab_file.name} failed:"
                        f" {status.error}"
                    )
                predicted = hub.predict(name, rows.iloc[TRAIN_ROWS:])
            finally:
                hub.delete_experiment(name)
            results.append(_score_file(skab_file, predicted, config.name))
            if progress is not None:
                progress(config.name, n + 1, len(files))
    return ConfigResult(config, tuple(results), time.perf_counter() - started)


def run_benchmark(
    files: Sequence[SkabFile],
    configs: Sequence[BenchmarkConfig],
    progress: Progress | None = None,
) -> list[ConfigResult]:
    """Run every config in turn (see :func:`run_config`)."""
    return [run_config(files, config, progress) for config in configs]


def _with_time_column(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with ``setup.datetime_column: datetime`` unless it names one."""
    result = dict(config)
    setup = dict(result.get("setup") or {})
    setup.setdefault("datetime_column", TIME)
    result["setup"] = setup
    return result


def _score_file(skab_file: SkabFile, predicted: pd.DataFrame, config: str) -> FileResult:
    if "anomaly" not in predicted.columns:
        raise DataError(
            f"benchmark config {config!r}: the predictions of {skab_file.name} have no 'anomaly'"
            " column; the benchmark scores an experiment type whose predictions flag rows."
        )
    test = skab_file.frame.iloc[TRAIN_ROWS:]
    alarm = predicted["anomaly"].fillna(False).to_numpy(dtype=bool)
    anomaly = test["anomaly"].to_numpy(dtype=bool)
    changes = np.abs(np.diff(alarm.astype(int), prepend=0)).astype(bool)
    windows = changepoint_windows(test[TIME], test["changepoint"].to_numpy(dtype=bool))
    score = predicted["score"].to_numpy(dtype=float) if "score" in predicted.columns else None
    return FileResult(
        name=skab_file.name,
        confusion=Confusion.of(anomaly, alarm),
        nab=nab_raw(changes, windows),
        time=test[TIME].to_numpy(),
        score=score,
        alarm=alarm,
        anomaly=anomaly,
    )
