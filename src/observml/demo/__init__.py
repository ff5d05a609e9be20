"""``observml demo``: the whole job on synthetic plant data (see :mod:`.scenario`)."""

from __future__ import annotations

from observml.demo.run import run_demo
from observml.demo.setup import DemoOptions, DemoSize, demo_config
from observml.demo.summary import DemoReporter, DemoSummary, ExperimentOutcome

__all__ = [
    "DemoOptions",
    "DemoReporter",
    "DemoSize",
    "DemoSummary",
    "ExperimentOutcome",
    "demo_config",
    "run_demo",
]
