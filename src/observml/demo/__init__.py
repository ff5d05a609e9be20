"""``observml demo``: the whole job on synthetic plant data (see :mod:`.scenario`)."""

from __future__ import annotations

from observml.demo.scenario import (
    DemoOptions,
    DemoReporter,
    DemoSize,
    DemoSummary,
    ExperimentOutcome,
    demo_config,
    run_demo,
)

__all__ = [
    "DemoOptions",
    "DemoReporter",
    "DemoSize",
    "DemoSummary",
    "ExperimentOutcome",
    "demo_config",
    "run_demo",
]
