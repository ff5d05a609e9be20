"""MLOpsContract: the behaviour every MLOps plugin must show, run against each implementation.

A subclass supplies an ``mlops`` fixture yielding an initialized plugin (and shutting it down).
Names are unique per test, so a store shared across tests (a tracking server) works too.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from observml.errors import DataError, NotFoundError
from observml.plugins.mlops import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
    ExperimentRecord,
    Metric,
    MLOpsPlugin,
    ModelVersion,
    RunRecord,
    tracked_run,
)
from observml.store.artifacts import ARTIFACT_PATH_TAG, load_artifacts, save_artifacts

MISSING_RUN = "0123456789abcdef0123456789abcdef"
MISSING_EXPERIMENT = "987654321"


def fitted_model_dir(folder: Path, seed: int = 0) -> tuple[Path, LogisticRegression, np.ndarray]:
    """Fit a small classifier, pickle it with a config and a report into ``folder``."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    (folder / "config.yaml").write_text("target: fault\n", encoding="utf-8")
    (folder / "reports").mkdir()
    (folder / "reports" / "metrics.json").write_text('{"accuracy": 0.97}', encoding="utf-8")
    return folder, model, rng.normal(size=(50, 4))


def predictions_after_load(folder: Path, data: np.ndarray) -> np.ndarray:
    model = pickle.loads((folder / "model.pkl").read_bytes())  # our own file
    return np.asarray(model.predict_proba(data))


class MLOpsContract:
    """Behaviour tests for :class:`~observml.plugins.mlops.MLOpsPlugin` implementations."""

    @pytest.fixture
    def name(self) -> str:
        return f"contract-{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def experiment_id(self, mlops: MLOpsPlugin, name: str) -> str:
        return mlops.create_experiment(name)

    @pytest.fixture
    def run_id(self, mlops: MLOpsPlugin, experiment_id: str) -> str:
        return mlops.start_run(experiment_id, run_name="contract-run")

    @pytest.fixture
    def model_dir(self, tmp_path: Path) -> Path:
        folder = tmp_path / "model_src"
        (folder / "reports").mkdir(parents=True)
        (folder / "model.pkl").write_bytes(b"\x80\x04fitted-model")
        (folder / "config.yaml").write_text("alpha: 0.5\n", encoding="utf-8")
        (folder / "reports" / "scores.csv").write_text("a,b\n1,2\n", encoding="utf-8")
        return folder

    # -- the plugin itself ----------------------------------------------------------------
    def test_mlops_satisfies_protocol(self, mlops: MLOpsPlugin) -> None:
        assert isinstance(mlops, MLOpsPlugin)
        assert mlops.plugin_type == "mlops"

    def test_health_check_reports_healthy_without_password(self, mlops: MLOpsPlugin) -> None:
        healthy, details = mlops.health_check()
        assert healthy, details
        assert details["status"] == "connected"
        assert "password" not in str(details).lower()

    # -- experiments ----------------------------------------------------------------------
    def test_create_experiment_returns_existing_id(self, mlops: MLOpsPlugin, name: str) -> None:
        first = mlops.create_experiment(name)
        assert mlops.create_experiment(name) == first
        found = mlops.get_experiment_by_name(name)
        assert isinstance(found, ExperimentRecord)
        assert (found.experiment_id, found.name) == (first, name)

    def test_get_experiment_by_name_missing_returns_none(
        self, mlops: MLOpsPlugin, name: str
    ) -> None:
        assert mlops.get_experiment_by_name(name + "-absent") is None

    def test_start_run_unknown_experiment_raises(self, mlops: MLOpsPlugin) -> None:
        with pytest.raises(NotFoundError, match=f"{MISSING_EXPERIMENT}.*create_experiment"):
            mlops.start_run(MISSING_EXPERIMENT)

    # -- runs -----------------------------------------------------------------------------
    def test_start_run_records_name_tags_and_status(
        self, mlops: MLOpsPlugin, experiment_id: str
    ) -> None:
        run_id = mlops.start_run(experiment_id, run_name="fit-1", tags={"team": "plant"})
        run = mlops.get_run(run_id)
        assert isinstance(run, RunRecord)
        assert (run.run_id, run.experiment_id, run.run_name) == (run_id, experiment_id, "fit-1")
        assert run.status == "RUNNING"
        assert run.end_time is None
        assert run.start_time > 0
        assert run.tags == {"team": "plant"}
        assert run.artifact_uri

    def test_get_run_unknown_raises_naming_the_run(self, mlops: MLOpsPlugin) -> None:
        with pytest.raises(NotFoundError, match=f"run {MISSING_RUN}"):
            mlops.get_run(MISSING_RUN)

    def test_log_batch_records_params_metrics_tags(self, mlops: MLOpsPlugin, run_id: str) -> None:
        mlops.log_batch(
            run_id,
            metrics={"accuracy": 0.9, "loss": 0.25},
            params={"alpha": 0.5, "layers": 3},
            tags={"stage": "train"},
        )
        run = mlops.get_run(run_id)
        assert run.metrics == {"accuracy": pytest.approx(0.9), "loss": pytest.approx(0.25)}
        assert run.params == {"alpha": "0.5", "layers": "3"}
        assert run.tags == {"stage": "train"}

    def test_log_batch_empty_is_a_no_op(self, mlops: MLOpsPlugin, run_id: str) -> None:
        mlops.log_batch(run_id)
        run = mlops.get_run(run_id)
        assert (run.metrics, run.params) == ({}, {})

    def test_log_batch_splits_past_the_store_limits(self, mlops: MLOpsPlugin, run_id: str) -> None:
        metrics = {f"m{i:04d}": float(i) for i in range(2 * MAX_METRICS_PER_BATCH + 500)}
        params = {f"p{i:03d}": i for i in range(2 * MAX_PARAMS_PER_BATCH + 50)}
        tags = {f"t{i:03d}": str(i) for i in range(MAX_TAGS_PER_BATCH + 30)}
        mlops.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        run = mlops.get_run(run_id)
        assert run.metrics == metrics
        assert run.params == {k: str(v) for k, v in params.items()}
        assert run.tags == tags

    def test_log_batch_latest_metric_is_the_highest_step(
        self, mlops: MLOpsPlugin, run_id: str
    ) -> None:
        mlops.log_batch(run_id, metrics=[Metric("loss", 0.5, step=5), Metric("loss", 0.9, step=1)])
        mlops.log_batch(run_id, metrics={"loss": 0.7}, step=2)
        assert mlops.get_run(run_id).metrics == {"loss": pytest.approx(0.5)}

    def test_log_batch_same_param_value_twice_is_accepted(
        self, mlops: MLOpsPlugin, run_id: str
    ) -> None:
        mlops.log_batch(run_id, params={"alpha": 0.5})
        mlops.log_batch(run_id, params={"alpha": 0.5})
        assert mlops.get_run(run_id).params == {"alpha": "0.5"}

    def test_log_batch_changing_a_param_raises(self, mlops: MLOpsPlugin, run_id: str) -> None:
        mlops.log_batch(run_id, params={"alpha": 0.5})
        with pytest.raises(DataError, match=f"run {run_id}.*alpha"):
            mlops.log_batch(run_id, params={"alpha": 0.7})

    def test_log_batch_unknown_run_raises(self, mlops: MLOpsPlugin) -> None:
        with pytest.raises(NotFoundError, match=f"run {MISSING_RUN}"):
            mlops.log_batch(MISSING_RUN, metrics={"a": 1.0})

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            pytest.param("FINISHED", "FINISHED", id="finished"),
            pytest.param("FAILED", "FAILED", id="failed"),
            pytest.param("KILLED", "KILLED", id="killed"),
        ],
    )
    def test_end_run_sets_status_and_end_time(
        self, mlops: MLOpsPlugin, run_id: str, status: str, expected: str
    ) -> None:
        mlops.end_run(run_id, status)  # type: ignore[arg-type]
        run = mlops.get_run(run_id)
        assert run.status == expected
        assert run.end_time is not None
        assert run.end_time >= run.start_time

    def test_kill_run_ends_it_killed(self, mlops: MLOpsPlugin, run_id: str) -> None:
        mlops.kill_run(run_id)
        assert mlops.get_run(run_id).status == "KILLED"

    def test_end_run_unknown_raises(self, mlops: MLOpsPlugin) -> None:
        with pytest.raises(NotFoundError, match=f"run {MISSING_RUN}"):
            mlops.end_run(MISSING_RUN)

    def test_tracked_run_ends_failed_when_the_block_raises(
        self, mlops: MLOpsPlugin, experiment_id: str
    ) -> None:
        started: list[str] = []
        with pytest.raises(RuntimeError, match="training broke"):  # noqa: PT012
            with tracked_run(mlops, experiment_id, run_name="boom") as run_id:
                started.append(run_id)
                raise RuntimeError("training broke")
        assert mlops.get_run(started[0]).status == "FAILED"

    def test_tracked_run_ends_finished(self, mlops: MLOpsPlugin, experiment_id: str) -> None:
        with tracked_run(mlops, experiment_id) as run_id:
            mlops.log_batch(run_id, metrics={"a": 1.0})
        assert mlops.get_run(run_id).status == "FINISHED"

    def test_shutdown_kills_runs_left_open(self, mlops: MLOpsPlugin, run_id: str) -> None:
        mlops.shutdown()
        mlops.initialize()
        assert mlops.get_run(run_id).status == "KILLED"

    def test_search_runs_newest_first(self, mlops: MLOpsPlugin, experiment_id: str) -> None:
        run_ids = [mlops.start_run(experiment_id, run_name=f"r{i}") for i in range(4)]
        found = mlops.search_runs(experiment_id)
        assert [r.run_id for r in found] == run_ids[::-1]
        assert [r.run_id for r in mlops.search_runs(experiment_id, max_results=2)] == [
            run_ids[3],
            run_ids[2],
        ]

    def test_search_runs_of_other_experiment_excluded(
        self, mlops: MLOpsPlugin, experiment_id: str, name: str
    ) -> None:
        mine = mlops.start_run(experiment_id)
        other = mlops.create_experiment(name + "-other")
        mlops.start_run(other)
        assert [r.run_id for r in mlops.search_runs(experiment_id)] == [mine]

    def test_search_runs_by_tags(self, mlops: MLOpsPlugin, experiment_id: str) -> None:
        plain = mlops.start_run(experiment_id, tags={"observml.kind": "train"})
        first = mlops.start_run(
            experiment_id, tags={"observml.kind": "feedback", "label": "it's \\ odd"}
        )
        second = mlops.start_run(experiment_id, tags={"observml.kind": "feedback", "label": "x"})
        found = mlops.search_runs(experiment_id, tags={"observml.kind": "feedback"})
        assert [r.run_id for r in found] == [second, first]
        quoted = mlops.search_runs(
            experiment_id, tags={"observml.kind": "feedback", "label": "it's \\ odd"}
        )
        assert [r.run_id for r in quoted] == [first]
        assert plain not in {r.run_id for r in found}
        assert mlops.search_runs(experiment_id, tags={"observml.kind": "nothing"}) == []
        both = mlops.start_run(experiment_id, tags={"label": 'it\'s "both"'})
        assert [
            r.run_id for r in mlops.search_runs(experiment_id, tags={"label": 'it\'s "both"'})
        ] == [both]

    # -- artifacts ------------------------------------------------------------------------
    def test_log_artifact_defaults_to_the_last_started_run(
        self, mlops: MLOpsPlugin, run_id: str, tmp_path: Path
    ) -> None:
        file = tmp_path / "notes.txt"
        file.write_text("hello", encoding="utf-8")
        mlops.log_artifact(str(file), "docs")
        assert mlops.list_artifacts(run_id) == ["docs/notes.txt"]
        mlops.log_artifact(str(file), run_id=run_id)
        assert mlops.list_artifacts(run_id) == ["docs/notes.txt", "notes.txt"]

    def test_log_artifact_without_active_run_in_thread_raises(
        self, mlops: MLOpsPlugin, run_id: str, tmp_path: Path
    ) -> None:
        file = tmp_path / "notes.txt"
        file.write_text("hello", encoding="utf-8")
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                mlops.log_artifact(str(file))
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert len(errors) == 1
        with pytest.raises(NotFoundError, match="no active run.*start_run"):
            raise errors[0]

    def test_log_artifacts_list_and_download_round_trip(
        self, mlops: MLOpsPlugin, run_id: str, model_dir: Path, tmp_path: Path
    ) -> None:
        mlops.log_artifacts(run_id, str(model_dir), "model")
        assert mlops.list_artifacts(run_id) == [
            "model/config.yaml",
            "model/model.pkl",
            "model/reports/scores.csv",
        ]
        assert mlops.list_artifacts(run_id, "model/reports") == ["model/reports/scores.csv"]
        assert mlops.list_artifacts(run_id, "model/config.yaml") == ["model/config.yaml"]
        local = Path(mlops.download_artifacts(run_id, "model", str(tmp_path / "dl")))
        assert (local / "model.pkl").read_bytes() == (model_dir / "model.pkl").read_bytes()
        assert (local / "reports" / "scores.csv").read_text(encoding="utf-8") == "a,b\n1,2\n"
        single = Path(mlops.download_artifacts(run_id, "model/config.yaml", str(tmp_path / "one")))
        assert single.read_text(encoding="utf-8") == "alpha: 0.5\n"

    def test_list_artifacts_of_empty_run_is_empty(self, mlops: MLOpsPlugin, run_id: str) -> None:
        assert mlops.list_artifacts(run_id) == []
        assert mlops.list_artifacts(run_id, "model") == []

    def test_download_missing_artifact_raises_naming_the_run(
        self, mlops: MLOpsPlugin, run_id: str, tmp_path: Path
    ) -> None:
        with pytest.raises(NotFoundError, match=f"run {run_id}.*'model'.*list_artifacts"):
            mlops.download_artifacts(run_id, "model", str(tmp_path))

    def test_download_from_unknown_run_raises(self, mlops: MLOpsPlugin, tmp_path: Path) -> None:
        with pytest.raises(NotFoundError, match=f"run {MISSING_RUN}"):
            mlops.download_artifacts(MISSING_RUN, "model", str(tmp_path))

    # -- model registry -------------------------------------------------------------------
    def _register(
        self, mlops: MLOpsPlugin, experiment_id: str, model_dir: Path, name: str, count: int
    ) -> list[ModelVersion]:
        versions = []
        for _ in range(count):
            run_id = mlops.start_run(experiment_id)
            mlops.log_artifacts(run_id, str(model_dir), "model")
            versions.append(mlops.register_model(name, run_id, "model"))
        return versions

    def test_register_model_numbers_versions_and_lists_newest_first(
        self, mlops: MLOpsPlugin, experiment_id: str, model_dir: Path, name: str
    ) -> None:
        versions = self._register(mlops, experiment_id, model_dir, name, 3)
        assert [v.version for v in versions] == [1, 2, 3]
        assert all(v.name == name for v in versions)
        assert versions[0].source.endswith("/model")
        listed = mlops.list_versions(name)
        assert [(v.version, v.run_id) for v in listed] == [
            (v.version, v.run_id) for v in reversed(versions)
        ]

    def test_register_model_unknown_run_raises(self, mlops: MLOpsPlugin, name: str) -> None:
        with pytest.raises(NotFoundError, match=f"run {MISSING_RUN}"):
            mlops.register_model(name, MISSING_RUN, "model")

    def test_list_versions_unknown_model_is_empty(self, mlops: MLOpsPlugin, name: str) -> None:
        assert mlops.list_versions(name) == []

    def test_aliases_move_explicitly(
        self, mlops: MLOpsPlugin, experiment_id: str, model_dir: Path, name: str
    ) -> None:
        v1, v2 = self._register(mlops, experiment_id, model_dir, name, 2)
        mlops.set_alias(name, "champion", v1.version)
        mlops.set_alias(name, "challenger", v2.version)
        champion = mlops.get_version_by_alias(name, "champion")
        assert champion is not None
        assert (champion.version, champion.run_id, champion.aliases) == (
            1,
            v1.run_id,
            ("champion",),
        )
        mlops.set_alias(name, "champion", v2.version)  # promote: the alias moves
        champion = mlops.get_version_by_alias(name, "champion")
        assert champion is not None
        assert champion.version == 2
        assert champion.aliases == ("challenger", "champion")
        assert [v.aliases for v in mlops.list_versions(name)] == [("challenger", "champion"), ()]

    def test_delete_alias_and_missing_alias(
        self, mlops: MLOpsPlugin, experiment_id: str, model_dir: Path, name: str
    ) -> None:
        (v1,) = self._register(mlops, experiment_id, model_dir, name, 1)
        mlops.set_alias(name, "champion", v1.version)
        mlops.delete_alias(name, "champion")
        assert mlops.get_version_by_alias(name, "champion") is None
        mlops.delete_alias(name, "champion")  # not set any more: no error
        mlops.delete_alias(name + "-absent", "champion")
        assert mlops.get_version_by_alias(name + "-absent", "champion") is None

    def test_set_alias_unknown_version_raises(
        self, mlops: MLOpsPlugin, experiment_id: str, model_dir: Path, name: str
    ) -> None:
        self._register(mlops, experiment_id, model_dir, name, 1)
        with pytest.raises(NotFoundError, match=f"model '{name}'.*version 7"):
            mlops.set_alias(name, "champion", 7)

    def test_set_version_tag(
        self, mlops: MLOpsPlugin, experiment_id: str, model_dir: Path, name: str
    ) -> None:
        (v1,) = self._register(mlops, experiment_id, model_dir, name, 1)
        mlops.set_alias(name, "champion", v1.version)
        mlops.set_version_tag(name, v1.version, "accuracy", "0.93")
        (listed,) = mlops.list_versions(name)
        assert listed.tags == {"accuracy": "0.93"}
        assert listed.aliases == ("champion",)

    def test_set_version_tag_unknown_version_raises(self, mlops: MLOpsPlugin, name: str) -> None:
        with pytest.raises(NotFoundError, match=f"model '{name}'.*version 3"):
            mlops.set_version_tag(name, 3, "k", "v")

    # -- saving and loading a trained experiment -------------------------------------------
    def test_persistence_round_trip_gives_identical_predictions(
        self, mlops: MLOpsPlugin, tmp_path: Path
    ) -> None:
        """Save a fitted model, load it by alias, version and run: identical predictions."""
        folder, model, data = fitted_model_dir(tmp_path / "trained")
        name = f"persisted-{uuid.uuid4().hex[:10]}"
        run_id = mlops.start_run(mlops.create_experiment(name))
        saved = save_artifacts(mlops, run_id, folder, model_name=name, alias="champion")
        mlops.end_run(run_id)
        assert saved.aliases == ("champion",)
        assert saved.tags[ARTIFACT_PATH_TAG] == "model"
        by_alias = load_artifacts(mlops, model_name=name, alias="champion", dst_dir=tmp_path / "a")
        by_version = load_artifacts(
            mlops, model_name=name, version=saved.version, dst_dir=tmp_path / "v"
        )
        by_run = load_artifacts(mlops, run_id=run_id, dst_dir=tmp_path / "r")
        expected = model.predict_proba(data)
        for loaded in (by_alias, by_version, by_run):
            np.testing.assert_array_equal(predictions_after_load(loaded, data), expected)
            assert (loaded / "config.yaml").read_text(encoding="utf-8") == "target: fault\n"
            assert (loaded / "reports" / "metrics.json").exists()
