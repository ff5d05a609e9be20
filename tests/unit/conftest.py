"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def quiet_cli_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Set what the CLI sets for MLflow here, so it is undone; restore the loggers it quiets."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("MLFLOW_CONFIGURE_LOGGING", "false")
    loggers = [logging.getLogger(name) for name in ("pika", "mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
