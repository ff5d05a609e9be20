"""What the browser tests share: Debian's Chromium through Playwright, and a served hub."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.api import ApiSettings, create_app
from tests.services import free_port, require_chromium, require_module

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def sensors(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, size=(n, 1))
    data = np.hstack([base, 0.8 * base, -0.5 * base]) + rng.normal(0, 0.4, size=(n, 3)) + shift
    return pd.DataFrame(data, columns=["temp", "pressure", "flow"])


@contextlib.contextmanager
def serving(hub: ExperimentHub, settings: ApiSettings) -> Iterator[str]:
    """Serve ``hub`` with uvicorn in a thread on a free port; yield the base URL."""
    uvicorn = require_module("uvicorn", "api")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(hub, settings=settings, owns_hub=True),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during startup"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        hub.shutdown()


def new_memory_hub() -> ExperimentHub:
    """A hub on the in-memory plugins, training in threads (the caller shuts it down)."""
    hub = ExperimentHub(job_isolation="thread")
    hub.register_plugin(InMemoryMLOpsPlugin())
    hub.register_plugin(InMemoryDataStreamPlugin())
    return hub


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium (or what ``BROWSER_PATH`` names), headless, driven by Playwright.

    Never Playwright's own browser download.
    """
    chromium = require_chromium()
    sync_api = require_module("playwright.sync_api", "dev")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def publish(hub: ExperimentHub, rows: pd.DataFrame, *, pause: float = 0.0) -> None:
    """Publish one message per row to ``pump.predict`` (``pause`` seconds apart)."""
    stream = hub.get_plugin("datastream")
    assert isinstance(stream, InMemoryDataStreamPlugin)
    for row in rows.to_dict(orient="records"):
        stream.publish("pump.predict", json.dumps(row))
        if pause:
            time.sleep(pause)


def watch(page: Any) -> list[str]:
    """Collect the page's script errors and failed requests."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    return problems
