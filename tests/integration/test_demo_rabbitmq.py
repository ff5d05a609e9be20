"""``observml demo --rabbitmq --quick`` against the broker on 127.0.0.1:5672."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from observml.cli import main
from observml.config import load_config
from tests.services import port_open, require_module, service_missing

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


@pytest.fixture(autouse=True)
def _restore_pika_logging() -> Iterator[None]:
    """The demo quiets pika's own logger for the process; put it back afterwards."""
    pika = logging.getLogger("pika")
    level = pika.level
    yield
    pika.setLevel(level)


def test_demo_runs_on_rabbitmq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not port_open("127.0.0.1", 5672):
        service_missing("RabbitMQ is not reachable at 127.0.0.1:5672")
    require_module("pika", "rabbitmq")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.delenv("RABBITMQ_PASSWORD", raising=False)
    try:
        main(["demo", "--rabbitmq", "--quick", "--report", "report.html"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "RabbitMQ" in out
    assert "confirmed normal; challenger" in out
    assert "promoted: v" in out
    assert "rejected as a fault: challenger" in out
    for name in ("demo-pump", "demo-line", "demo-load", "demo-orders"):
        assert name in out
    assert (tmp_path / "report.html").stat().st_size > 1_000_000
    config = load_config(tmp_path / ".observml" / "demo" / "hub_config.yaml")
    assert config.plugins["datastream"].type == "rabbitmq"
    assert config.plugins["datastream"].config["password"] == "guest"
