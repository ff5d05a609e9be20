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


def test_api_creates_a_topk_experiment_from_an_observml_1_config(client: TestClient) -> None:
    config = yaml.safe_load((CORPUS / "topk.yaml").read_text(encoding="utf-8"))
    body = {"name": "orders", "type": "process_mining", "config": config}
    assert client.post("/experiments", json=body).status_code == 201
    stored = client.get("/experiments/orders/config").json()
    assert stored["create_model"] == {"model": "topk", "params": {}}  # 1.0's defaults are ours
