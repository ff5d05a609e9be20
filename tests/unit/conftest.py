"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def quiet_cli_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep MLflow's download bars out of the output; restore the pika logger the CLI quiets."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    pika = logging.getLogger("pika")
    level = pika.level
    yield
    pika.setLevel(level)
