"""Fixtures for the REST API tests: a memory-backed hub, its app and a test client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.api import ApiSettings, create_app

FD_CONFIG: dict[str, Any] = {
    "create_model": {"model": "iforest", "params": {"n_estimators": 30}},
    "eda": True,
}


def sensor_rows(n: int, *, shift: float = 0.0, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(shift, 1.0, size=(n, 3)), columns=["temp", "pressure", "flow"])
    return frame.to_dict(orient="records")  # type: ignore[return-value]


def stream_of(hub: ExperimentHub) -> InMemoryDataStreamPlugin:
    plugin = hub.get_plugin("datastream")
    assert isinstance(plugin, InMemoryDataStreamPlugin)
    return plugin


def assert_error(response: Any, status: int, error: str, match: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == error
    assert match in body["message"], body["message"]
    assert "Traceback" not in body["message"]
    return body  # type: ignore[no-any-return]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
    return value


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


@pytest.fixture
def client(hub: ExperimentHub) -> Iterator[TestClient]:
    with TestClient(create_app(hub, settings=ApiSettings())) as client:
        yield client


def finish(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a job until it ends and return its final state."""

    def done() -> dict[str, Any] | None:
        state = client.get(f"/jobs/{job['job_id']}").json()
        return state if state["state"] in ("succeeded", "failed", "stopped") else None

    result: dict[str, Any] = wait_for(done)
    return result


@pytest.fixture
def trained(client: TestClient) -> str:
    """Create and train the experiment 'pump' through the API; return its name."""
    created = client.post(
        "/experiments", json={"name": "pump", "type": "fault_detection", "config": FD_CONFIG}
    )
    assert created.status_code == 201, created.text
    job = client.post("/experiments/pump/train", json={"rows": sensor_rows(300)})
    assert job.status_code == 202, job.text
    assert finish(client, job.json())["state"] == "succeeded"
    return "pump"
