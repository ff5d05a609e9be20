"""What the demo did, and how it says so while it runs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.runtime.jobs import Job

__all__ = ["DemoReporter", "DemoSummary", "ExperimentOutcome", "QuietReporter", "StoryStep"]


@dataclass
class ExperimentOutcome:
    """One experiment's result, a row of the summary table."""

    name: str
    experiment_type: str
    model: str
    champion_version: int | None = None
    metric: str = ""
    predictions: int = 0
    retrains: int = 0
    skipped: str | None = None
    stream: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)


@dataclass(frozen=True)
class StoryStep:
    """One step of the pump's retraining story, for the report and the summary."""

    step: str
    text: str
    version: int | None = None
    figure: Figure | None = field(default=None, repr=False, compare=False)


@dataclass
class DemoSummary:
    """What the demo did and where to look."""

    experiments: list[ExperimentOutcome]
    report: Path
    hub_config: Path
    mlflow_db: Path
    datastream: str
    story: list[StoryStep]
    sample: Path | None = None  # pump rows for ``observml send``
    seconds: float = 0.0

    def outcome(self, name: str) -> ExperimentOutcome:
        """Return the outcome of experiment ``name``."""
        return next(e for e in self.experiments if e.name == name)


class DemoReporter(Protocol):
    """Where the demo says what it does (the CLI renders it with rich)."""

    def step(self, text: str) -> None:
        """Start a stage."""

    def note(self, text: str) -> None:
        """Say something about the current stage."""

    def wait_jobs(self, jobs: Mapping[str, Job], timeout: float) -> None:
        """Return once every job ended (showing progress), or after ``timeout`` seconds."""


class QuietReporter:
    """A reporter that says nothing (the demo used as a library)."""

    def step(self, text: str) -> None:
        """Say nothing."""

    def note(self, text: str) -> None:
        """Say nothing."""

    def wait_jobs(self, jobs: Mapping[str, Job], timeout: float) -> None:
        """Wait for the jobs, silently."""
        deadline = time.monotonic() + timeout
        for job in jobs.values():
            job.wait(max(0.0, deadline - time.monotonic()))
