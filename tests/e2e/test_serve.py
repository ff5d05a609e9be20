"""``observml serve`` as a process on a real RabbitMQ broker and a real MLflow server, over HTTP.

One experiment (a unique name per run) goes through the whole API: create, train, predict
inline and from the queue, stream, metrics, runs and versions (checked against the MLflow
server itself), save and rollback, then the server is stopped with SIGTERM and must exit
cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.services import free_port, require_module

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.mlflow]

httpx = require_module("httpx", "cli")

TOKEN = "e2e-token"
CONFIG: dict[str, Any] = {
    "create_model": {"model": "iforest", "params": {"n_estimators": 50}},
    "eda": True,
}
START_TIMEOUT = 180.0


def sensors(n: int, *, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["temp", "pressure", "flow"])
    return frame.to_dict(orient="records")  # type: ignore[return-value]


@pytest.fixture
def name(rabbitmq_drop_queues: Callable[[list[str]], None]) -> Iterator[str]:
    value = f"api{uuid.uuid4().hex[:8]}"
    yield value
    queues = [f"{value}.{q}" for q in ("train", "predict", "predictions")]
    rabbitmq_drop_queues(queues + [f"{q}.dead" for q in queues])


@pytest.fixture
def server(
    tmp_path: Path, rabbitmq_config: dict[str, Any], mlflow_server_uri: str
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """Run ``observml serve`` on a free port; yield its URL, the process and its log."""
    port = free_port()
    config = {
        "plugins": {
            "mlops": {"type": "mlflow", "config": {"mlflow_uri": mlflow_server_uri}},
            "datastream": {"type": "rabbitmq", "config": dict(rabbitmq_config)},
        },
        "streaming": {"batch_size": 50, "max_wait": 0.2, "log_interval": 1.0},
        "api": {"port": port, "token": TOKEN},
    }
    path = tmp_path / "hub_config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    script = Path(sys.executable).with_name("observml")
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from observml.cli import main; main()"]
    )
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "OBSERVML_API_TOKEN"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*command, "serve", "--config", str(path), "--log-level", "info"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"observml serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"observml serve did not answer in {START_TIMEOUT:g} s:\n{log.read_text()}"
                )
            time.sleep(0.25)  # polling a starting process
        yield url, process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


class Results:
    """Consumes ``<name>.predictions`` on a plugin of its own."""

    def __init__(self, rabbitmq_config: dict[str, Any], queue: str) -> None:
        from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

        self.plugin = RabbitMQPlugin(**rabbitmq_config)
        self.plugin.initialize()
        self.ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(queue,), daemon=True)
        self._thread.start()

    def _run(self, queue: str) -> None:
        def take(message: Any) -> None:
            with self._lock:
                self.ids.add(json.loads(message.body)["message_id"])

        self.plugin.consume(queue, take, stop=self._stop)

    def seen(self) -> set[str]:
        with self._lock:
            return set(self.ids)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.plugin.shutdown()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g} s")
        time.sleep(0.25)
    return value


def test_serve_end_to_end_over_http(
    server: tuple[str, subprocess.Popen[bytes], Path],
    name: str,
    rabbitmq_config: dict[str, Any],
    mlflow_server_uri: str,
) -> None:
    url, process, log = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    anonymous = httpx.get(f"{url}/experiments", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "UnauthorizedError"

    with httpx.Client(base_url=url, headers=auth, timeout=60) as api:
        health = api.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["datastream"]["healthy"] is True
        assert health.json()["mlops"]["healthy"] is True

        created = api.post(
            "/experiments", json={"name": name, "type": "fault_detection", "config": CONFIG}
        )
        assert created.status_code == 201, created.text

        started = api.post(f"/experiments/{name}/train", json={"rows": sensors(400)})
        assert started.status_code == 202, started.text
        job_url = started.headers["location"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = api.get(job_url).json()
            return job if job["state"] in ("succeeded", "failed", "stopped") else None

        job = wait_until(finished, 180, "training")
        assert job["state"] == "succeeded", job["error"]
        assert job["version"] == 1

        inline = api.post(f"/experiments/{name}/predict", json={"rows": sensors(5, seed=1)})
        assert inline.status_code == 200, inline.text
        assert inline.json()["count"] == 5

        from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

        producer = RabbitMQPlugin(**rabbitmq_config)
        producer.initialize()
        results = Results(rabbitmq_config, f"{name}.predictions")
        try:
            queued = {
                producer.publish(f"{name}.predict", json.dumps(sensors(2, seed=10 + i)))
                for i in range(3)
            }
            drained = api.post(f"/experiments/{name}/predict")
            assert drained.status_code == 200, drained.text
            assert {row["message_id"] for row in drained.json()["rows"]} == queued

            assert api.post(f"/experiments/{name}/stream").json()["streaming"] is True
            streamed = {
                producer.publish(f"{name}.predict", json.dumps(row)) for row in sensors(60, seed=20)
            }
            wait_until(lambda: (queued | streamed) <= results.seen(), 60, "published results")

            def live() -> dict[str, Any] | None:
                status: dict[str, Any] = api.get(f"/experiments/{name}").json()
                return status if len(status["last_predictions"]) >= 60 else None

            status = wait_until(live, 30, "live predictions in the status")
            assert status["streaming"] is True
            assert status["counters"]["predicted_messages"] >= 63
        finally:
            results.close()
            producer.shutdown()

        metrics = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(api.get("/metrics").text)
            for sample in family.samples
        }
        # 60 streamed rows and the 6 rows POST .../predict drained: both take the batch path
        assert metrics[("observml_predictions_total", (("experiment", name),))] == 66
        assert metrics[("observml_predicted_messages_total", (("experiment", name),))] == 63
        assert metrics[("observml_queue_depth", (("queue", f"{name}.predict"),))] == 0
        assert metrics[("observml_plugin_healthy", (("plugin_type", "datastream"),))] == 1

        plots = api.get(f"/experiments/{name}/plots").json()
        assert "scores" in plots["reports"]
        figure = api.get(f"/experiments/{name}/eda/{plots['eda'][0]}")
        assert figure.json()["data"]

        assert api.post(f"/experiments/{name}/save").json()["version"] == 2
        assert api.post(f"/experiments/{name}/rollback").json()["version"] == 1
        versions = api.get(f"/experiments/{name}/versions").json()
        assert [v["version"] for v in versions] == [2, 1]
        assert "champion" in versions[1]["aliases"]
        runs = api.get(f"/experiments/{name}/runs").json()
        assert {r["status"] for r in runs} >= {"FINISHED"}
        assert api.delete(f"/experiments/{name}/stream").json()["streaming"] is False

    # the MLflow server itself holds the runs and the registered model
    found = httpx.get(
        f"{mlflow_server_uri}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        timeout=30,
    )
    assert found.status_code == 200, found.text
    model = httpx.get(
        f"{mlflow_server_uri}/api/2.0/mlflow/registered-models/alias",
        params={"name": name, "alias": "champion"},
        timeout=30,
    )
    assert model.json()["model_version"]["version"] == "1"

    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down (the lifespan stops streams and plugins), then re-raises SIGTERM
    assert process.wait(60) in (0, -signal.SIGTERM), log.read_text()
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert "Traceback" not in text
