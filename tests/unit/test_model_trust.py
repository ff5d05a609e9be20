"""Model files that cannot run code, and signed model folders checked before anything is read."""

from __future__ import annotations

import importlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.config import GlobalSection, HubConfig
from observml.config.registry import BUILTIN_PLUGINS, PluginRegistry
from observml.errors import ConfigError, UntrustedModelError
from observml.experiments.base import Experiment
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.experiments.fault_isolation import FaultIsolationExperiment
from observml.store.experiments import load_experiment_from_store
from observml.store.folders import load_folder, save_folder
from observml.store.model_files import TRUSTED_TYPES
from observml.store.signing import KEY_ID_TAG, MODEL_KEY_ENV_VAR, SIGNATURE_TAG, ModelSigner

FD_CONFIG = {"create_model": {"model": "iforest", "params": {"n_estimators": 30}}}
KEY_A = "a-key-for-hub-a-0123456789abcdef"
KEY_B = "b-key-for-hub-b-0123456789abcdef"


def sensors(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["temp", "pressure", "flow"])


def hub_with(mlops: InMemoryMLOpsPlugin, key: str | None, *, trust: bool = False) -> ExperimentHub:
    config = HubConfig(
        plugins={}, global_=GlobalSection(model_key=key, trust_unsigned_models=trust)
    )
    hub = ExperimentHub(config=config, job_isolation="thread")
    hub.register_plugin(mlops)
    return hub


@pytest.fixture
def trained_store() -> tuple[InMemoryMLOpsPlugin, pd.DataFrame]:
    """A store whose 'pump' champion hub A (KEY_A) trained; yields it and its predictions."""
    mlops = InMemoryMLOpsPlugin()
    with hub_with(mlops, KEY_A) as hub:
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("pump", "fault_detection", FD_CONFIG)
        hub.train("pump", data=sensors(300), wait=True)
        expected = hub.predict("pump", data=sensors(20, seed=5))
    return mlops, expected


def champion_run(mlops: InMemoryMLOpsPlugin) -> str:
    found = mlops.get_version_by_alias("pump", "champion")
    assert found is not None
    return found.run_id


def overwrite(mlops: InMemoryMLOpsPlugin, run_id: str, name: str, data: bytes, tmp: Path) -> None:
    """What anyone with write access to the store can do: replace one artifact file."""
    local = tmp / Path(name).name
    local.write_bytes(data)
    folder = str(Path("model", name).parent)
    mlops.log_artifact(str(local), folder, run_id=run_id)


def artifact(mlops: InMemoryMLOpsPlugin, run_id: str, name: str, tmp: Path) -> bytes:
    return Path(mlops.download_artifacts(run_id, f"model/{name}", str(tmp))).read_bytes()


# -- the right key restores the champion; skops round trips ---------------------------------
def test_hub_with_the_right_key_restores_its_champion(
    trained_store: tuple[InMemoryMLOpsPlugin, pd.DataFrame],
) -> None:
    mlops, expected = trained_store
    with hub_with(mlops, KEY_A) as hub:
        assert hub.load("pump") == 1
        pd.testing.assert_frame_equal(hub.predict("pump", data=sensors(20, seed=5)), expected)


def test_run_tags_carry_the_key_id_and_signature_never_the_key(
    trained_store: tuple[InMemoryMLOpsPlugin, pd.DataFrame], tmp_path: Path
) -> None:
    mlops, _ = trained_store
    run = mlops.get_run(champion_run(mlops))
    assert run.tags[KEY_ID_TAG] == ModelSigner(KEY_A.encode()).key_id
    signature = json.loads(artifact(mlops, run.run_id, "signature.json", tmp_path))
    assert run.tags[SIGNATURE_TAG] == signature["mac"]
    assert KEY_A not in json.dumps(run.tags) + json.dumps(signature)


@pytest.mark.parametrize(
    ("cls", "config", "data", "files"),
    [
        pytest.param(
            FaultDetectionExperiment,
            {"create_model": {"model": "lof"}},
            "pump",
            {"parts/detector_.skops", "parts/train_data_.parquet"},
            id="lof",
        ),
        pytest.param(
            FaultIsolationExperiment,
            {"setup": {"target": "fault"}, "create_model": {"model": "random_forest"}},
            "faults",
            {"parts/model_.skops", "parts/classes_.skops", "parts/train_data_.parquet"},
            id="random_forest",
        ),
    ],
)
def test_skops_saved_model_round_trips_with_identical_predictions(
    cls: type[Experiment], config: dict[str, Any], data: str, files: set[str], tmp_path: Path
) -> None:
    from observml import datasets

    frame = datasets.pump_sensors(300, 4, seed=1) if data == "pump" else datasets.fault_table(500)
    experiment = cls("x", config).train(frame.iloc[:200])
    root = save_folder(experiment, tmp_path / "saved")
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files <= written
    assert "model.pkl" not in written  # nothing of it needs a pickle
    loaded = load_folder(root, PluginRegistry())
    new_rows = frame.iloc[200:]
    pd.testing.assert_frame_equal(loaded.predict(new_rows), experiment.predict(new_rows))
    pd.testing.assert_frame_equal(loaded.get_train_data(), experiment.get_train_data())


def test_arima_is_saved_as_parameters_and_restored_exactly(tmp_path: Path) -> None:
    from observml import datasets
    from observml.experiments.time_series import TimeSeriesExperiment

    series = datasets.seasonal_series(200, period=24, seed=3)
    config = {
        "setup": {"target": "y", "datetime_column": "ds", "forecast_horizon": 6},
        "create_model": {"model": "arima", "params": {"order": [1, 0, 1]}},
    }
    experiment = TimeSeriesExperiment("ts", config).train(series.iloc[:150])
    experiment.predict(series.iloc[150:170])  # takes the actuals in: a 'known' Kalman state
    root = save_folder(experiment, tmp_path / "arima")
    assert (root / "parts" / "forecaster_.skops").is_file()
    assert not (root / "model.pkl").exists()
    loaded = load_folder(root, PluginRegistry())
    assert isinstance(loaded, TimeSeriesExperiment)
    new_rows = series.iloc[170:]
    expected = experiment.predict(new_rows, update=False)
    pd.testing.assert_frame_equal(loaded.predict(new_rows, update=False), expected)
    pd.testing.assert_frame_equal(loaded.forecast(12), experiment.forecast(12))


def test_trusted_types_cover_every_model_class_of_ours() -> None:
    ours = set()
    for target in BUILTIN_PLUGINS["experiment"].values():
        module, _, name = target.partition(":")
        for spec in getattr(importlib.import_module(module), name).MODELS.values():
            for path in (spec.target, spec.adapter):
                if path and path.startswith("observml."):
                    ours.add(path.replace(":", "."))
    # these hold objects skops cannot express (a Prophet model, pandas tables, the verdicts
    # a process model remembers per variant, keyed by activity tuples): they stay a pickle,
    # which is signed and read only after the signature check
    pickled = {
        "observml.experiments._itemsets.AprioriRules",
        "observml.experiments._itemsets.FPGrowthRules",
        "observml.experiments._prophet.ProphetForecaster",
        "observml.experiments._rules.SequentialRules",
        "observml.experiments._sequences.SequentialPatterns",
        "observml.experiments._topk_rules.TopKSequentialRules",
    }
    assert ours - pickled <= set(TRUSTED_TYPES)
    assert list(TRUSTED_TYPES) == sorted(TRUSTED_TYPES)


# -- refused: altered, another key, unsigned ------------------------------------------------
def test_one_altered_byte_in_the_store_is_refused_naming_the_run(
    trained_store: tuple[InMemoryMLOpsPlugin, pd.DataFrame], tmp_path: Path
) -> None:
    mlops, _ = trained_store
    run_id = champion_run(mlops)
    data = bytearray(artifact(mlops, run_id, "parts/detector_.skops", tmp_path))
    data[len(data) // 2] ^= 0x01
    overwrite(mlops, run_id, "parts/detector_.skops", bytes(data), tmp_path)
    with hub_with(mlops, KEY_A) as hub:
        with pytest.raises(
            UntrustedModelError,
            match=rf"run {run_id} \(pump version 1\): refusing to load the model: the file"
            r" 'parts/detector_.skops' was altered after signing\. .*Train or save the experiment"
            " again",
        ):
            hub.load("pump")
        assert hub.experiments() == []


def test_model_written_by_another_key_is_refused(
    trained_store: tuple[InMemoryMLOpsPlugin, pd.DataFrame],
) -> None:
    mlops, _ = trained_store
    run_id = champion_run(mlops)
    with hub_with(mlops, KEY_B) as hub:
        with pytest.raises(
            UntrustedModelError,
            match=rf"run {run_id} \(pump version 1\): .*signed by another key .*give both the"
            " same key",
        ):
            hub.load("pump")


def test_operator_opt_in_loads_a_foreign_model(
    trained_store: tuple[InMemoryMLOpsPlugin, pd.DataFrame],
) -> None:
    mlops, expected = trained_store
    with hub_with(mlops, KEY_B, trust=True) as hub:
        assert hub.load("pump") == 1
        pd.testing.assert_frame_equal(hub.predict("pump", data=sensors(20, seed=5)), expected)


class Foreign:
    """A class skops does not know: its loader would have to import and build it."""

    def __init__(self) -> None:
        self.value = 1


class _Trap:
    """Unpickling this touches a file: the stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def plant_hostile_champion(mlops: InMemoryMLOpsPlugin, folder: Path, marker: Path) -> str:
    """An MLflow writer's attack: a new version with a code-running pickle, made champion."""
    folder.mkdir()
    (folder / "config.yaml").write_text(
        "type: fault_detection\nname: pump\nconfig: {}\n", encoding="utf-8"
    )
    joblib.dump({"format": 1, "state": {"trained_at_": _Trap(marker)}}, folder / "model.pkl")
    run_id = mlops.start_run(mlops.create_experiment("pump"))
    mlops.log_artifacts(run_id, str(folder), "model")
    version = mlops.register_model("pump", run_id, "model")
    mlops.set_alias("pump", "champion", version.version)
    return run_id


def test_unsigned_pickle_in_the_store_is_refused_before_it_is_read(
    trained_store: tuple[InMemoryMLOpsPlugin, pd.DataFrame], tmp_path: Path
) -> None:
    mlops, _ = trained_store
    marker = tmp_path / "pwned"
    run_id = plant_hostile_champion(mlops, tmp_path / "hostile", marker)
    with hub_with(mlops, KEY_A) as hub:
        with pytest.raises(UntrustedModelError, match=rf"run {run_id} .*it is unsigned"):
            hub.load("pump")
    assert not marker.exists()


def test_a_signed_folder_with_an_untrusted_skops_type_is_refused(tmp_path: Path) -> None:
    import skops.io as sio

    experiment = FaultDetectionExperiment("x", FD_CONFIG).train(sensors(200))
    root = save_folder(experiment, tmp_path / "saved", signer=ModelSigner(KEY_A.encode()))
    (root / "parts" / "detector_.skops").write_bytes(sio.dumps(Foreign()))
    signer = ModelSigner(KEY_A.encode())
    signer.sign(root)  # even a folder signed by our own key is read with skops' allow-list
    with pytest.raises(
        UntrustedModelError, match=r"parts/detector_.skops holds types this hub does not load:"
    ):
        load_folder(root, PluginRegistry(), signer=signer)


def test_unsigned_folder_names_only_registered_types(tmp_path: Path) -> None:
    root = save_folder(FaultDetectionExperiment("x", FD_CONFIG).train(sensors(200)), tmp_path / "m")
    config = (root / "config.yaml").read_text(encoding="utf-8")
    (root / "config.yaml").write_text(config.replace("fault_detection", "os:system"), "utf-8")
    with pytest.raises(UntrustedModelError, match="was altered after signing"):
        load_folder(root, PluginRegistry())
    with pytest.raises(Exception, match="'os:system' is a module path"):
        load_folder(root, PluginRegistry(), trust_unsigned=True)


def test_legacy_pickle_loads_only_with_the_opt_in(tmp_path: Path) -> None:
    experiment = FaultDetectionExperiment("x", FD_CONFIG).train(sensors(200))
    root = tmp_path / "legacy"
    root.mkdir()
    state = {k: v for k, v in vars(experiment).items() if k.endswith("_")}
    joblib.dump({"format": 1, "class": "x", "state": state}, root / "model.pkl")
    (root / "config.yaml").write_text(
        "type: fault_detection\nname: x\nconfig: " + json.dumps(FD_CONFIG) + "\n", "utf-8"
    )
    with pytest.raises(UntrustedModelError, match="it is unsigned.*trust_unsigned_models: true"):
        load_folder(root, PluginRegistry())
    loaded = load_folder(root, PluginRegistry(), trust_unsigned=True)
    pd.testing.assert_frame_equal(loaded.predict(sensors(10)), experiment.predict(sensors(10)))


def test_store_load_by_run_names_the_run(
    trained_store: tuple[InMemoryMLOpsPlugin, pd.DataFrame],
) -> None:
    mlops, _ = trained_store
    run_id = champion_run(mlops)
    with pytest.raises(UntrustedModelError, match=rf"^run {run_id} \(pump\): refusing"):
        load_experiment_from_store(mlops, "pump", run_id=run_id, signer=ModelSigner(b"x" * 32))


# -- the key --------------------------------------------------------------------------------
def test_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = ModelSigner.from_settings()
    path = Path(os.environ["OBSERVML_HOME"]) / "model.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ModelSigner.from_settings().key_id == first.key_id  # a second hub shares it
    assert first.source == str(path)
    assert first.key.decode() not in repr(first)


def test_key_precedence_config_then_env_then_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_KEY_ENV_VAR, KEY_B)
    assert ModelSigner.from_settings(KEY_A).source == "global.model_key"
    assert ModelSigner.from_settings().key == KEY_B.encode()
    assert not (Path(os.environ["OBSERVML_HOME"]) / "model.key").exists()


def test_short_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"global.model_key: the model key from .* at least 16"):
        ModelSigner.from_settings("short")


def test_hub_config_takes_the_key_and_the_opt_in(write_config: Any) -> None:
    from observml.config import load_config

    path = write_config(
        "global:\n  model_key: ${HUB_KEY}\n  trust_unsigned_models: true\nplugins: {}\n"
    )
    os.environ["HUB_KEY"] = KEY_A
    try:
        config = load_config(path)
    finally:
        del os.environ["HUB_KEY"]
    assert config.global_.model_key == KEY_A
    assert config.global_.trust_unsigned_models is True
    assert KEY_A not in repr(config)
