"""``observml serve``: settings from config and flags, the bind check, and shutdown."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.cli_helpers import MEMORY, run


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """Undo what each CLI run does to the root logger's handlers (serve lowers their level)."""
    root = logging.getLogger()
    before = [(handler, handler.level, handler.formatter) for handler in root.handlers]
    yield
    kept = {handler for handler, _, _ in before}
    for handler in [h for h in root.handlers if h not in kept]:
        root.removeHandler(handler)
    for handler, level, formatter in before:
        handler.setLevel(level)
        handler.setFormatter(formatter)


@pytest.fixture
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace uvicorn.run: record the call and exercise the app once instead of serving."""
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, app=app)
        with TestClient(app) as client:
            seen["livez"] = client.get("/livez").status_code
            seen["health"] = client.get("/health").status_code
            seen["anonymous"] = client.get("/experiments").status_code
        seen["hub"] = app.state.hub

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("OBSERVML_API_TOKEN", raising=False)
    return seen


def test_serve_uses_the_api_section_and_shuts_the_hub_down(
    write_config: Callable[[str], Path],
    fake_uvicorn: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(MEMORY + "api: {port: 8123}\n")
    code, _, err = run(["serve", "--config", str(path)], capsys)
    assert code == 0, err
    assert fake_uvicorn["host"] == "127.0.0.1"
    assert fake_uvicorn["port"] == 8123
    assert (fake_uvicorn["livez"], fake_uvicorn["health"], fake_uvicorn["anonymous"]) == (
        200,
        200,
        200,
    )
    assert fake_uvicorn["hub"].plugins == {}
    assert "observml API on http://127.0.0.1:8123 (no token)" in err


def test_serve_flags_override_and_token_from_env(
    write_config: Callable[[str], Path],
    fake_uvicorn: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OBSERVML_API_TOKEN", "tok")
    path = write_config(MEMORY)
    code, _, err = run(["serve", "--config", str(path), "--host", "0.0.0.0", "--port", "9"], capsys)
    assert code == 0, err
    assert (fake_uvicorn["host"], fake_uvicorn["port"]) == ("0.0.0.0", 9)
    assert fake_uvicorn["livez"] == 200
    assert fake_uvicorn["anonymous"] == 401
    assert "token required" in err


def test_serve_refuses_a_public_bind_without_a_token(
    write_config: Callable[[str], Path],
    fake_uvicorn: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(MEMORY)
    code, _, err = run(["serve", "--config", str(path), "--host", "0.0.0.0"], capsys)
    assert code == 2
    assert "api.host: binding the API to 0.0.0.0 without a token" in err
    assert "--token" in err
    assert "app" not in fake_uvicorn  # never started


def test_serve_reports_a_bad_api_section(
    write_config: Callable[[str], Path],
    fake_uvicorn: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(MEMORY + "api: {port: 0, tokn: x}\n")
    code, _, err = run(["serve", "--config", str(path)], capsys)
    assert code == 2
    assert "api.tokn: unknown key" in err
    assert "app" not in fake_uvicorn


def test_serve_log_format_json_prints_events_as_one_object_per_line(
    write_config: Callable[[str], Path],
    fake_uvicorn: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    from observml.retraining.events import emit

    def fake_run(app: Any, **kwargs: Any) -> None:
        fake_uvicorn.update(kwargs)
        emit("promoted", "pump", 2, "gate passed")

    monkeypatch.setattr(uvicorn, "run", fake_run)
    path = write_config(MEMORY)
    code, _, err = run(["serve", "--config", str(path), "--log-format", "json"], capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert {x["logger"] for x in lines} >= {"observml.events", "observml.hub.plugin_host"}
    line = next(x for x in lines if x["logger"] == "observml.events")
    assert (line["kind"], line["experiment"], line["version"]) == ("promoted", "pump", 2)
    assert line["message"] == "pump v2: promoted: gate passed"
    formatters = fake_uvicorn["log_config"]["formatters"]
    assert formatters["json"]["()"] == "observml.retraining.events.JsonFormatter"


def test_serve_shows_events_at_info_as_text_by_default(
    write_config: Callable[[str], Path],
    fake_uvicorn: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    from observml.retraining.events import emit

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: emit("fired", "pump", 1, "drift"))
    path = write_config(MEMORY)
    code, _, err = run(["serve", "--config", str(path)], capsys)
    assert code == 0, err
    assert "INFO observml.events: pump v1: fired: drift" in err
