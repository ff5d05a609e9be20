"""Signed model folders through real MLflow: restored with the key, refused when altered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub
from observml.config import HOME_ENV_VAR, GlobalSection, HubConfig
from observml.errors import UntrustedModelError
from observml.store.signing import KEY_ID_TAG, ModelSigner
from tests.services import require_module

require_module("mlflow", "mlflow")

from observml.plugins.mlflow_plugin import MLflowPlugin  # noqa: E402 - after the module check

pytestmark = [pytest.mark.integration, pytest.mark.mlflow]

KEY = "integration-model-key-0123456789"
CONFIG = {"create_model": {"model": "iforest", "params": {"n_estimators": 20}}}


def sensors(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["temp", "pressure", "flow"])


@pytest.fixture
def store(mlflow_sqlite_uri: str, tmp_path: Path) -> tuple[str, Path]:
    """A real MLflow store: SQLite tracking, artifacts in a folder of the test."""
    return mlflow_sqlite_uri, tmp_path / "art"


def hub_on(store: tuple[str, Path], key: str) -> ExperimentHub:
    uri, artifacts = store
    hub = ExperimentHub(
        config=HubConfig(plugins={}, global_=GlobalSection(model_key=key)), job_isolation="thread"
    )
    hub.register_plugin(MLflowPlugin(uri, artifact_location=artifacts.as_uri()))
    return hub


def test_mlflow_store_restores_signed_champion_and_refuses_an_altered_byte(
    store: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each hub restoring the model runs on a machine of its own: a model cache of its own.
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "machine-1"))
    with hub_on(store, KEY) as first:
        first.create_experiment("pump", "fault_detection", CONFIG)
        job = first.train("pump", data=sensors(300), wait=True)
        assert job.status.state == "succeeded", job.status.error
        run_id = job.status.run_id
        expected = first.predict("pump", data=sensors(20, seed=5))
        mlops = first.get_plugin("mlops")
        assert isinstance(mlops, MLflowPlugin)
        assert mlops.get_run(str(run_id)).tags[KEY_ID_TAG] == ModelSigner(KEY.encode()).key_id
    with hub_on(store, KEY) as second:
        assert second.load("pump") == 1
        pd.testing.assert_frame_equal(second.predict("pump", data=sensors(20, seed=5)), expected)
    [skops_file] = store[1].rglob("detector_.skops")  # what an MLflow writer can change
    data = bytearray(skops_file.read_bytes())
    data[-100] ^= 0x01
    skops_file.write_bytes(bytes(data))
    with hub_on(store, KEY) as cached:  # machine 1 checked its copy before the change
        assert cached.load("pump") == 1
        pd.testing.assert_frame_equal(cached.predict("pump", data=sensors(20, seed=5)), expected)
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "machine-2"))
    with hub_on(store, KEY) as third:
        with pytest.raises(
            UntrustedModelError,
            match=rf"run {run_id} \(pump version 1\): refusing to load the model: the file"
            r" 'parts/detector_.skops' was altered after signing",
        ):
            third.load("pump")
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "machine-3"))
    with hub_on(store, "another-key-for-another-hub-0123") as foreign:
        with pytest.raises(UntrustedModelError, match="signed by another key"):
            foreign.load("pump")
