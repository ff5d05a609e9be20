"""Every ObservML 1.0 experiment file in ``tests/data/legacy`` trains and predicts on real data.

One old-style file per old model key observml has (``load_object``, the short key, the old
parameter names, ``params:`` left empty, ``eda:`` empty), read with ``yaml.safe_load`` and
handed to the experiment type its ``load_object.name`` names, exactly as the hub does. Each
case also checks that the file's parameters reached the model in their translated form.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from observml.config.legacy import LEGACY_MODELS, config_type
from observml.config.registry import PluginRegistry
from tests.services import read_dataset, require_module

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "data" / "legacy"
HAS_PROPHET = importlib.util.find_spec("prophet") is not None
#: sklearn's MinCovDet warns on the three phase currents, which sum to zero (collinear).
_MCD_WARNINGS = [
    pytest.mark.filterwarnings("ignore:Determinant has increased:RuntimeWarning"),
    pytest.mark.filterwarnings(
        "ignore:The covariance matrix associated to your dataset:UserWarning"
    ),
]

#: File stem (the 1.0 key) -> (type, observml model, params/options the file must have set).
EXPECTED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "iforest": ("fault_detection", "iforest", {"contamination": None, "n_estimators": 100}),
    "ee": ("fault_detection", "elliptic_envelope", {"contamination": 0.1}),
    "dbscan": ("fault_detection", "dbscan", {"eps": 2, "min_samples": 10}),
    "pca": ("fault_detection", "pca", {"alpha": 0.95, "n_components": 0.95}),
    "dt": ("fault_isolation", "decision_tree", {}),
    "rf": ("fault_isolation", "random_forest", {}),
    "nb": ("fault_isolation", "naive_bayes", {}),
    "hmm": ("fault_isolation", "hmm", {"covariance_type": "diag", "n_iter": 1000}),
    "mc": ("fault_isolation", "markov_chain", {}),
    "bn": ("fault_isolation", "bayes_net", {}),
    "arima": ("time_series", "arima", {"confidence": 0.99085}),
    "es": ("time_series", "exponential_smoothing", {"trend": "mul", "confidence": 0.9788}),
    "ssa": ("time_series", "ssa", {"window_size": 10, "confidence": 0.9973}),
    "prophet": ("time_series", "prophet", {"confidence": 0.9896}),
    "lstm": ("time_series", "lstm", {"seq_length": 1, "cell_no": 6, "confidence": 0.9973}),
    "ae": ("time_series", "ae", {"window": 250, "hidden": [30, 25, 20, 15, 10, 5]}),
    "heuristics": ("process_mining", "heuristics_miner", {}),
    "apriori": ("process_mining", "apriori", {}),
    "fpgrowth": ("process_mining", "fpgrowth", {"min_support": 0.1, "min_confidence": 0.9}),
    "cmspam": ("process_mining", "cmspam", {"min_support": 0.5}),
    "topk": ("process_mining", "topk", {}),
}


def _params(key: str) -> Any:
    marks = []
    if key == "ee":
        marks.extend(_MCD_WARNINGS)
    if key == "prophet":
        marks.append(pytest.mark.skipif(not HAS_PROPHET, reason="the 'prophet' extra"))
    if key == "heuristics" and importlib.util.find_spec("pm4py") is None:
        marks.append(pytest.mark.skip(reason="the 'process-mining' extra"))
    return pytest.param(key, id=key, marks=marks)


def test_legacy_corpus_has_one_file_per_old_key_observml_has() -> None:
    have = {k for models in LEGACY_MODELS.values() for k, m in models.items() if m.model}
    assert {p.stem for p in CORPUS.glob("*.yaml")} == have == set(EXPECTED)


def _event_log() -> pd.DataFrame:
    """The production log in the pm4py column names ObservML 1.0's process mining read."""
    log = read_dataset("production_event_log_4cols.csv").rename(
        columns={
            "Case ID": "case:concept:name",
            "Activity": "concept:name",
            "Complete Timestamp": "time:timestamp",
        }
    )
    log["time:timestamp"] = pd.to_datetime(log["time:timestamp"], format="%Y/%m/%d %H:%M:%S.%f")
    return log


def _data(key: str, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if kind == "fault_detection":  # train on normal operation, predict a window with faults
        train = read_dataset("detect_train_4h.csv")
        return train[train["Output (S)"] == 0].drop(columns="Output (S)"), read_dataset(
            "detect_test_0.csv"
        )
    if key in ("hmm", "mc"):
        states = read_dataset("hmm_train.csv")
        return states.iloc[:700], states.iloc[700:]
    if kind == "fault_isolation":
        return read_dataset("detect_train_4h.csv"), read_dataset("detect_test_0.csv")
    if kind == "time_series":
        return read_dataset("time_series_train_tail.csv").iloc[-5000:], read_dataset(
            "time_series_test_0.csv"
        )
    log = _event_log()
    cases = list(dict.fromkeys(log["case:concept:name"]))
    early = log["case:concept:name"].isin(cases[: int(len(cases) * 0.7)])
    return log[early], log[~early]


@pytest.mark.parametrize("key", [_params(k) for k in EXPECTED])
def test_legacy_file_trains_and_predicts_on_real_data(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    if key in ("lstm", "ae"):
        require_module("torch", "deep")
    config = yaml.safe_load((CORPUS / f"{key}.yaml").read_text(encoding="utf-8"))
    kind, model, expected = EXPECTED[key]
    assert "load_object" in config
    assert config_type(config) == kind
    cls = PluginRegistry().resolve("experiment", kind)
    experiment = cls(f"legacy-{key}", config)
    assert [r.name for r in caplog.records] == ["observml.config.legacy"]  # one notice per file
    assert "load_object" not in experiment.config
    train, test = _data(key, kind)
    experiment.train(train)
    settings = experiment.settings_
    assert settings.model == model
    assert {**settings.params, **settings.options} | expected == {
        **settings.params,
        **settings.options,
    }
    assert settings.eda is ("eda" in config)  # 1.0 ran the EDA whenever the key was there
    if kind == "fault_detection":
        labels = test.pop("Output (S)") == 1
        result = experiment.predict(test)
        assert len(result) == len(test)
        assert result["anomaly"][labels].mean() > 0.9  # the faults of detect_test_0
        if key != "iforest":  # 1.0's contamination 'auto' flags half of this data
            assert result["anomaly"][~labels].mean() < 0.2
    elif kind == "fault_isolation":
        result = experiment.predict(test)
        assert len(result) == len(test)
        assert experiment.score(test)["accuracy"] > 0.9
    elif kind == "time_series":
        result = experiment.predict(test)
        assert len(result) == len(test)
        assert result["forecast"].notna().all()
        assert result["anomaly"].mean() < 0.05
    else:
        result = experiment.predict(test)
        assert len(result) == test["case:concept:name"].nunique()
        assert 0.5 < result["fitness"].mean() <= 1.0
