"""The REST API takes ObservML 1.0 experiment configs as they are."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi.testclient import TestClient

CORPUS = Path(__file__).resolve().parents[2] / "data" / "legacy"


def test_api_creates_an_experiment_from_an_observml_1_config(client: TestClient) -> None:
    config = yaml.safe_load((CORPUS / "ee.yaml").read_text(encoding="utf-8"))
    body = {"name": "pump", "type": "fault_detection", "config": config}
    assert client.post("/experiments", json=body).status_code == 201
    stored = client.get("/experiments/pump/config").json()
    assert "load_object" not in stored
    assert stored["create_model"] == {
        "model": "elliptic_envelope",
        "params": {"contamination": 0.1},
    }


def test_api_refuses_an_observml_1_model_it_lacks_naming_the_closest(client: TestClient) -> None:
    config = {
        "load_object": {
            "module": "framework.TimeSeriesAnalysis",
            "name": "TimeSeriesAnomalyExperiment",
        },
        "create_model": {"model": "ae", "params": None},
    }
    body = {"name": "line", "type": "time_series", "config": config}
    response = client.post("/experiments", json=body)
    assert response.status_code == 422  # a ConfigError: the config does not fit its type
    assert response.json()["error"] == "ConfigError"
    assert "The closest time_series model is 'ssa'" in response.json()["message"]


def test_api_creates_a_topk_experiment_from_an_observml_1_config(client: TestClient) -> None:
    config = yaml.safe_load((CORPUS / "topk.yaml").read_text(encoding="utf-8"))
    body = {"name": "orders", "type": "process_mining", "config": config}
    assert client.post("/experiments", json=body).status_code == 201
    stored = client.get("/experiments/orders/config").json()
    assert stored["create_model"] == {"model": "topk", "params": {}}  # 1.0's defaults are ours
