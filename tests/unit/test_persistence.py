"""save_artifacts / load_artifacts through the MLOps protocol (memory plugin).

The save/load round trip with identical predictions is part of the MLOps contract, so it runs
against every plugin; this file covers the resolution rules and the errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from observml.errors import ConfigError, NotFoundError
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.store.artifacts import load_artifacts, save_artifacts
from tests.contracts.mlops import fitted_model_dir

MODEL = "pump-detector"


@pytest.fixture
def mlops() -> Iterator[InMemoryMLOpsPlugin]:
    plugin = InMemoryMLOpsPlugin()
    plugin.initialize()
    yield plugin
    plugin.shutdown()


def test_save_artifacts_challenger_then_promote(mlops: InMemoryMLOpsPlugin, tmp_path: Path) -> None:
    experiment_id = mlops.create_experiment("promote")
    first, _, _ = fitted_model_dir(tmp_path / "one", seed=1)
    second, _, _ = fitted_model_dir(tmp_path / "two", seed=2)
    run_1 = mlops.start_run(experiment_id)
    v1 = save_artifacts(mlops, run_1, first, model_name=MODEL, alias="champion")
    run_2 = mlops.start_run(experiment_id)
    v2 = save_artifacts(mlops, run_2, second, model_name=MODEL, alias="challenger")
    assert (v1.version, v2.version) == (1, 2)
    mlops.set_alias(MODEL, "champion", v2.version)
    champion = mlops.get_version_by_alias(MODEL, "champion")
    assert champion is not None
    assert champion.run_id == run_2
    loaded = load_artifacts(mlops, model_name=MODEL, alias="champion", dst_dir=tmp_path / "dl")
    assert (loaded / "model.pkl").read_bytes() == (second / "model.pkl").read_bytes()


def test_save_artifacts_custom_path_is_found_by_version(
    mlops: InMemoryMLOpsPlugin, tmp_path: Path
) -> None:
    folder, _, _ = fitted_model_dir(tmp_path / "trained")
    run_id = mlops.start_run(mlops.create_experiment("custom"))
    saved = save_artifacts(mlops, run_id, folder, model_name=MODEL, artifact_path="exp/v1")
    loaded = load_artifacts(mlops, model_name=MODEL, version=saved.version, dst_dir=tmp_path / "d")
    assert (loaded / "model.pkl").exists()


def test_save_artifacts_missing_folder_raises(mlops: InMemoryMLOpsPlugin, tmp_path: Path) -> None:
    run_id = mlops.start_run(mlops.create_experiment("missing-folder"))
    with pytest.raises(NotFoundError, match="not a folder.*Write the model file"):
        save_artifacts(mlops, run_id, tmp_path / "absent", model_name=MODEL)


def test_load_artifacts_unknown_run_raises_naming_it(
    mlops: InMemoryMLOpsPlugin, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="run deadbeef"):
        load_artifacts(mlops, run_id="deadbeef", dst_dir=tmp_path)


def test_load_artifacts_run_without_artifacts_raises_naming_it(
    mlops: InMemoryMLOpsPlugin, tmp_path: Path
) -> None:
    run_id = mlops.start_run(mlops.create_experiment("empty"))
    with pytest.raises(NotFoundError, match=f"run {run_id}: no artifacts under 'model'.*save"):
        load_artifacts(mlops, run_id=run_id, dst_dir=tmp_path)


def test_load_artifacts_alias_not_set_raises(mlops: InMemoryMLOpsPlugin, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=f"model '{MODEL}': alias 'champion' is not set"):
        load_artifacts(mlops, model_name=MODEL, alias="champion", dst_dir=tmp_path)


def test_load_artifacts_unknown_version_raises(mlops: InMemoryMLOpsPlugin, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=f"model '{MODEL}': no version 4"):
        load_artifacts(mlops, model_name=MODEL, version=4, dst_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"model_name": MODEL}, id="name-only"),
        pytest.param({"model_name": MODEL, "alias": "champion", "version": 1}, id="both"),
        pytest.param({"run_id": "abc", "model_name": MODEL}, id="run-and-name"),
    ],
)
def test_load_artifacts_ambiguous_arguments_raise(
    mlops: InMemoryMLOpsPlugin, tmp_path: Path, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ConfigError, match="load_artifacts: give"):
        load_artifacts(mlops, dst_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
