"""The Experiment contract, through a tiny experiment type defined here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import yaml

from observml.config.registry import PluginRegistry
from observml.errors import ConfigError, DataError, ExperimentError, ModelNotTrainedError
from observml.experiments import reports
from observml.experiments.base import Experiment
from observml.experiments.spec import ModelSpec
from observml.retraining.policy import RetrainPolicy
from observml.store.folders import load_folder, report_filename, report_name, save_folder


class ScaledSum(Experiment):
    """Predicts the sum of standardised features times ``factor``."""

    experiment_type: ClassVar[str] = "scaled_sum"
    MODELS: ClassVar[Mapping[str, ModelSpec]] = {
        "scaler": ModelSpec("sklearn.preprocessing:StandardScaler", options={"factor": 1.0}),
        "missing": ModelSpec("not_a_real_package.module:Thing", extra="experiments"),
    }
    DEFAULT_MODEL: ClassVar[str] = "scaler"
    DEFAULT_METRIC: ClassVar[str] = "mae"

    def _fit(self, frame: pd.DataFrame) -> None:
        self.scaler_ = self.settings_.spec.build(self.settings_.params, {}).fit(
            self.feature_matrix(frame, action="train")
        )

    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        z = self.scaler_.transform(self.feature_matrix(frame))
        return pd.DataFrame({"value": z.sum(axis=1) * self.settings_.options["factor"]})

    def _metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        return {"mae": float(np.abs(self._predict(frame)["value"]).mean())}

    def _model_reports(self) -> dict[str, Any]:
        return {
            "means": reports.bar_chart(
                dict(zip(self.features_, self.scaler_.mean_, strict=True)), title="m"
            )
        }

    def _model_report_names(self) -> list[str]:
        return ["means"]


DATA = pd.DataFrame(
    {
        "ds": pd.date_range("2024-01-01", periods=50, freq="h").astype(str),
        "a": np.arange(50.0),
        "b": np.arange(50.0) ** 0.5,
        "label": ["x"] * 50,
        "flag": [1] * 50,
    }
)


def make(config: dict[str, Any] | None = None, name: str = "demo") -> ScaledSum:
    return ScaledSum(name, {"setup": {"datetime_column": "ds"}} if config is None else config)


# -- construction and config ------------------------------------------------------------------
def test_constructor_only_stores() -> None:
    config = {"create_model": {"model": "nope"}, "bogus": 1}
    experiment = ScaledSum("x", config)
    assert experiment.config is config
    assert not experiment.is_trained
    assert experiment.model_name == "nope"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        pytest.param(
            {"create_model": {"model": "scalar"}},
            r"create_model.model: unknown scaled_sum model 'scalar'. Valid: scaler, missing",
            id="unknown-model",
        ),
        pytest.param(
            {"create_model": {"params": {"with_means": True}}},
            r"create_model.params.with_means: not a parameter of 'scaler'. Accepted: factor,"
            r" copy, with_mean, with_std",
            id="unknown-param",
        ),
        pytest.param({"steup": {}}, r"steup: unknown key. Accepted: setup, eda", id="top-key"),
        pytest.param(
            {"setup": {"targte": "x"}}, r"setup.targte: unknown key for scaled_sum", id="setup-key"
        ),
        pytest.param(
            {"setup": {"features": "a"}}, r"setup.features: expected a list", id="features"
        ),
        pytest.param({"eda": "maybe"}, r"eda: expected on/off", id="eda"),
        pytest.param(
            {"retrain": {"treshold": 1}}, r"retrain.treshold: unknown key", id="retrain-key"
        ),
        pytest.param(
            {"retrain": {"window": "x"}}, r"retrain.window: expected an integer", id="retrain-type"
        ),
        pytest.param(
            {"retrain": {"cooldown": -1}}, r"retrain.cooldown: expected a value >= 0", id="neg"
        ),
        pytest.param(
            {"setup": {"format": {"type": "pivot"}}},
            r"setup.format.type: expected one of wide, long",
            id="format",
        ),
        pytest.param({"create_model": "scaler"}, r"create_model: expected a mapping", id="section"),
        pytest.param(
            {"create_model": {"model": "missing"}},
            r"create_model.model: the model needs 'not_a_real_package'.*"
            r"pip install 'observml\[experiments\]'",
            id="missing-extra",
        ),
    ],
)
def test_validate_config_names_key_and_fix(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        make(config).validate_config()
    assert "experiment 'demo'" in str(info.value)
    assert info.value.key


def test_validate_config_reports_every_problem() -> None:
    with pytest.raises(ConfigError, match="model") as info:
        make({"create_model": {"model": "x"}, "eda": 3, "oops": 1}).validate_config()
    assert {p.key for p in info.value.problems} == {"create_model.model", "eda", "oops"}


def test_validate_config_defaults() -> None:
    settings = make(
        {"eda": "on", "create_model": {"params": {"factor": 2, "with_std": False}}}
    ).validate_config()
    assert settings.model == "scaler"
    assert settings.options == {"factor": 2}
    assert settings.params == {"with_std": False}
    assert settings.eda is True
    assert settings.setup["keep_train_rows"] == 10_000
    assert settings.metric == "mae"
    assert settings.retrain == RetrainPolicy(promotion="approve", window_rows="in_control")


# -- train / predict / score --------------------------------------------------------------------
def test_predict_before_train() -> None:
    with pytest.raises(ModelNotTrainedError, match=r"experiment 'demo'.*Call train\(\) first"):
        make().predict(DATA)
    with pytest.raises(ModelNotTrainedError, match="Call train"):
        make().score(DATA)


def test_train_returns_self_and_learns_state() -> None:
    experiment = make({"setup": {"datetime_column": "ds", "keep_train_rows": 20}})
    assert experiment.train(DATA) is experiment
    assert experiment.features_ == ["a", "b", "flag"]  # numeric, not the datetime/text columns
    assert len(experiment.get_train_data()) == 20
    assert experiment.get_train_data()["ds"].dtype.kind == "M"
    assert experiment.metrics_["train_rows"] == 50
    learned = {k for k in vars(experiment) if not k.startswith("_") and k not in ("name", "config")}
    assert all(k.endswith("_") for k in learned)


def test_predict_keeps_rows_order_and_index() -> None:
    experiment = make().train(DATA)
    shuffled = DATA.sample(frac=1.0, random_state=0)
    result = experiment.predict(shuffled)
    assert result.index.tolist() == shuffled.index.tolist()
    np.testing.assert_allclose(result.loc[DATA.index, "value"], experiment.predict(DATA)["value"])


@pytest.mark.parametrize(
    "orient", [pytest.param("records", id="records"), pytest.param("split", id="split")]
)
def test_json_input_equals_frame_input(orient: str) -> None:
    experiment = make().train(DATA)
    from_json = experiment.predict(DATA.to_json(orient=orient))
    np.testing.assert_allclose(from_json["value"], experiment.predict(DATA)["value"])


def test_explicit_features_and_long_format() -> None:
    body = {
        "tsdata": [
            {"target": t, "date": f"2024-01-01T0{h}:00:00", "value": float(h * (i + 1))}
            for h in range(5)
            for i, t in enumerate(("s1", "s2"))
        ]
    }
    config = {"setup": {"features": ["s1", "s2"], "format": {"type": "long"}}}
    experiment = make(config).train(body)
    assert experiment.features_ == ["s1", "s2"]
    assert len(experiment.predict(json.dumps(body))) == 5


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(
            DATA.drop(columns="b"), r"predict data: missing column\(s\) 'b'", id="missing"
        ),
        pytest.param(DATA.assign(a="x"), r"column 'a' must be numeric; row 0 has 'x'", id="type"),
        pytest.param(DATA.assign(a=np.nan), r"column 'a' has 50 missing value", id="nan"),
        pytest.param(DATA.iloc[:0], r"predict data: no rows", id="empty"),
        pytest.param(DATA.assign(ds="soon"), r"column 'ds' is not a datetime", id="datetime"),
        pytest.param(DATA.drop(columns="ds"), r"missing column\(s\) 'ds'", id="no-datetime"),
    ],
)
def test_bad_predict_data_names_the_column(data: pd.DataFrame, match: str) -> None:
    experiment = make().train(DATA)
    with pytest.raises(DataError, match=match):
        experiment.predict(data)


def test_train_without_numeric_features() -> None:
    with pytest.raises(DataError, match="no numeric feature columns"):
        make({}).train(DATA[["label"]])
    with pytest.raises(DataError, match=r"train data: missing column\(s\) 'zz'"):
        make({"setup": {"features": ["zz"]}}).train(DATA)


def test_score_updates_metrics() -> None:
    experiment = make().train(DATA)
    metrics = experiment.score(DATA)
    assert set(metrics) == {"mae"}
    assert experiment.metrics_["mae"] == metrics["mae"]


# -- reports ----------------------------------------------------------------------------------
def test_reports_and_plot_names_with_eda() -> None:
    experiment = make({"setup": {"datetime_column": "ds"}, "eda": True}).train(DATA)
    figures = experiment.reports()
    assert list(figures) == experiment.plot_names()
    assert experiment.plot_names() == [
        "means",
        "histogram_a",
        "histogram_b",
        "histogram_flag",
        "correlation",
    ]
    assert len(figures["histogram_a"].data[0].y) == 30  # binned here, not raw values


def test_reports_without_eda() -> None:
    experiment = make().train(DATA)
    assert experiment.plot_names() == ["means"]
    assert set(experiment.eda_reports()) >= {"histogram_a", "correlation"}


# -- save / load ------------------------------------------------------------------------------
def test_save_writes_the_files_and_load_predicts_the_same(tmp_path: Path) -> None:
    experiment = make({"setup": {"datetime_column": "ds"}, "eda": True}).train(DATA)
    experiment.score(DATA)
    root = save_folder(experiment, tmp_path / "saved")
    assert (root / "state.json").is_file()
    assert (root / "signature.json").is_file()
    assert not (root / "model.pkl").exists()  # a StandardScaler and a DataFrame: no pickle
    document = yaml.safe_load((root / "config.yaml").read_text())
    assert document == {"type": "scaled_sum", "name": "demo", "config": experiment.config}
    assert "mae" in json.loads((root / "metrics.json").read_text())
    assert sorted(p.stem for p in (root / "reports").iterdir()) == sorted(experiment.plot_names())
    loaded = load_folder(root, {"scaled_sum": ScaledSum})
    assert isinstance(loaded, ScaledSum)
    pd.testing.assert_frame_equal(loaded.predict(DATA), experiment.predict(DATA))
    assert loaded.retrain_policy.promotion == "approve"  # usable after load


def test_load_experiment_errors(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="no config.yaml; this is not a saved experiment"):
        load_folder(tmp_path)
    root = save_folder(make().train(DATA), tmp_path / "x")
    with pytest.raises(ExperimentError, match="unknown experiment type 'scaled_sum'. Known: other"):
        load_folder(root, {"other": ScaledSum})
    with pytest.raises(Exception, match="no experiment plugin named 'scaled_sum'"):
        load_folder(root, PluginRegistry())


def test_save_before_train(tmp_path: Path) -> None:
    with pytest.raises(ModelNotTrainedError, match="Call train"):
        save_folder(make(), tmp_path)


def test_report_files_escape_column_names(tmp_path: Path) -> None:
    frame = pd.DataFrame({"flow (m3/h)": np.arange(20.0), "50%": np.arange(20.0) ** 2})
    experiment = make({"eda": True}).train(frame)
    root = save_folder(experiment, tmp_path / "saved")
    files = sorted(p.name for p in (root / "reports").iterdir())
    assert "histogram_flow (m3%2Fh).json" in files
    assert sorted(report_name(f) for f in files) == sorted(experiment.plot_names())
    assert report_filename("histogram_50%") == "histogram_50%25.json"
