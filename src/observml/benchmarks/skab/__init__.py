"""The SKAB benchmark (Skoltech Anomaly Benchmark): protocol, leaderboard and shipped configs.

* :mod:`.data`: reading the labelled files of a SKAB ``data/`` folder.
* :mod:`.protocol`: running experiment configs under the outlier-detection protocol.
* :mod:`.leaderboard`: the published results the table is printed beside.
* :mod:`.report`: the plotly HTML report (per-file scores and traces).
* ``configs/*.yaml``: the configs docs/benchmarks.md reports (run when no ``--config`` is given).
"""

from __future__ import annotations

from observml.benchmarks.skab.data import SkabFile, load_skab
from observml.benchmarks.skab.leaderboard import LEADERBOARD, LeaderboardRow
from observml.benchmarks.skab.protocol import (
    BenchmarkConfig,
    ConfigResult,
    FileResult,
    default_configs,
    load_config,
    run_benchmark,
    run_config,
)

__all__ = [
    "LEADERBOARD",
    "BenchmarkConfig",
    "ConfigResult",
    "FileResult",
    "LeaderboardRow",
    "SkabFile",
    "default_configs",
    "load_config",
    "load_skab",
    "run_benchmark",
    "run_config",
]
