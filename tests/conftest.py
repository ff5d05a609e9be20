"""Fixtures shared by every test: memory-backed hubs and a YAML config writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin

#: Real-service fixtures (RabbitMQ broker, MLflow stores and server), shared by all suites.
pytest_plugins = ["tests.fixtures.mlflow", "tests.fixtures.rabbitmq"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep embedded stores and config lookups inside the test's temp dir."""
    monkeypatch.setenv("OBSERVML_HOME", str(tmp_path / ".observml"))
    monkeypatch.delenv("OBSERVML_CONFIG", raising=False)
    monkeypatch.delenv("OBSERVML_MODEL_KEY", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def memory_hub() -> Iterator[ExperimentHub]:
    """A hub with the in-memory MLOps and datastream plugins registered."""
    with ExperimentHub() as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text to ``hub_config.yaml`` in a temp dir and return its path."""

    def write(text: str, name: str = "hub_config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
