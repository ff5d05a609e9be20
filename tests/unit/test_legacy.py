"""ObservML 1.0 experiment configs: the translation table, its errors, the notice, the CLI."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from observml.config.legacy import LEGACY_MODELS, LEGACY_TYPES, config_type, modernize, translate
from observml.errors import ConfigError
from observml.experiments.fault_detection import FaultDetectionExperiment
from observml.experiments.fault_isolation import FaultIsolationExperiment
from tests.services import require_module
from tests.unit.cli_helpers import MEMORY, run

CORPUS = Path(__file__).resolve().parents[1] / "data" / "legacy"
OLD = "adamipkovich/observml"  # the ObservML 1.0 repository the sources below are in
LOAD = {
    "fault_detection": {"module": "framework.FaultDetection", "name": "FaultDetectionExperiment"},
    "fault_isolation": {"module": "framework.FaultIsolation", "name": "FaultIsolationExperiment"},
    "time_series": {
        "module": "framework.TimeSeriesAnalysis",
        "name": "TimeSeriesAnomalyExperiment",
    },
    "process_mining": {"module": "framework.ProcessMining", "name": "ProcessMiningExperiment"},
}
_DROPPED = object()

#: (type, 1.0 key, 1.0 params, observml key, expected params, file of ObservML 1.0 it came from)
#: ``_DROPPED`` as a value: the parameter must be gone. Parameters the file leaves out get
#: 1.0's default where it differs from observml's.
MAPPINGS: list[tuple[str, str, dict[str, Any], str, dict[str, Any], str]] = [
    (
        "fault_detection",
        "iforest",
        {"n_estimators": 50, "contamination": "auto", "random_state": 3},
        "iforest",
        {"n_estimators": 50, "contamination": None, "random_state": 3},
        "models/fault_detection/IsolationForestAnomaly.py",
    ),
    (
        "fault_detection",
        "iforest",
        {"contamination": 0.02},
        "iforest",
        {"contamination": 0.02},
        "models/fault_detection/IsolationForestAnomaly.py",
    ),
    (
        "fault_detection",
        "iforest",
        {},
        "iforest",
        {"contamination": None},
        "models/fault_detection/IsolationForestAnomaly.py",
    ),
    (
        "fault_detection",
        "ee",
        {},
        "elliptic_envelope",
        {"contamination": 0.1},
        "models/fault_detection/EllipticEnvelopeAnomaly.py",
    ),
    (
        "fault_detection",
        "dbscan",
        {"eps": 1.5, "min_samples": None},
        "dbscan",
        {"eps": 1.5, "min_samples": _DROPPED},
        "models/fault_detection/DBSCANAnomalyDetection.py",
    ),
    (
        "fault_detection",
        "dbscan",
        {"min_samples": 12},
        "dbscan",
        {"eps": 2, "min_samples": 12},
        "models/fault_detection/DBSCANAnomalyDetection.py",
    ),
    (
        "fault_detection",
        "pca",
        {"alpha": 0.01, "n_components": 3, "detect_outliers": ["spe", "ht2"], "normalize": True},
        "pca",
        {"alpha": 0.99, "n_components": 3, "detect_outliers": _DROPPED, "normalize": _DROPPED},
        "models/fault_detection/PCAAnomalyDetection.py",
    ),
    (
        "fault_detection",
        "pca",
        {},
        "pca",
        {"alpha": 0.95, "n_components": 0.95},
        "models/fault_detection/PCAAnomalyDetection.py",
    ),
    ("fault_isolation", "dt", {}, "decision_tree", {}, "models/fault_isolation/DecisionTree.py"),
    ("fault_isolation", "rf", {}, "random_forest", {}, "models/fault_isolation/RandomForest.py"),
    ("fault_isolation", "nb", {}, "naive_bayes", {}, "models/fault_isolation/NaiveBayes.py"),
    (
        "fault_isolation",
        "hmm",
        {"n_iter": 100, "covariance_type": "full", "n_mix": 10},
        "hmm",
        {"n_iter": 100, "covariance_type": "full", "n_mix": _DROPPED},
        "models/fault_isolation/HMM.py",
    ),
    (
        "fault_isolation",
        "hmm",
        {},
        "hmm",
        {"n_iter": 1000, "covariance_type": "diag"},
        "models/fault_isolation/HMM.py",
    ),
    (
        "fault_isolation",
        "mc",
        {"placeholder": None},
        "markov_chain",
        {"placeholder": _DROPPED},
        "models/fault_isolation/MarkovChain.py",
    ),
    (
        "fault_isolation",
        "bn",
        {"placeholder": None},
        "bayes_net",
        {"placeholder": _DROPPED},
        "models/fault_isolation/BayesNet.py",
    ),
    (
        "time_series",
        "arima",
        {
            "start_p": 10,
            "d": None,
            "start_q": 10,
            "max_p": 100,
            "max_q": 100,
            "seasonal": False,
            "threshold_for_anomaly": 3,
        },
        "arima",
        {
            "confidence": 0.99085,
            **dict.fromkeys(("start_p", "d", "start_q", "max_p", "max_q", "seasonal"), _DROPPED),
        },
        "models/time_series_analysis/ARIMA.py",
    ),
    (
        "time_series",
        "es",
        {
            "trend": "multiplicative",
            "seasonal": "add",
            "seasonal_periods": 12,
            "threshold_for_anomaly": 2.5,
            "freq": "D",
        },
        "exponential_smoothing",
        {
            "trend": "mul",
            "seasonal": "add",
            "seasonal_periods": 12,
            "confidence": 0.9788,
            "freq": _DROPPED,
        },
        "models/time_series_analysis/ExponentialSmoothing.py",
    ),
    (
        "time_series",
        "ssa",
        {
            "window_size": 24,
            "lower_frequency_bound": 0.05,
            "lower_frequency_contribution": 0.975,
            "threshold": 2,
        },
        "ssa",
        {
            "window_size": 24,
            "confidence": 0.9545,
            "lower_frequency_bound": _DROPPED,
            "lower_frequency_contribution": _DROPPED,
        },
        "models/time_series_analysis/SSA.py",
    ),
    (
        "time_series",
        "ssa",
        {},
        "ssa",
        {"window_size": 10, "confidence": 0.9973},
        "models/time_series_analysis/SSA.py",
    ),
    (
        "time_series",
        "prophet",
        {"periods": 0, "factor": 1.0, "forecast_window": 100},
        "prophet",
        {"confidence": 0.9896, "periods": _DROPPED, "forecast_window": _DROPPED},
        "models/time_series_analysis/Prophet.py",
    ),
    (
        "time_series",
        "lstm",
        {"seq_length": 12, "layer_no": 2, "threshold_for_anomaly": 2, "shuffle": True},
        "lstm",
        {
            "seq_length": 12,
            "layer_no": 2,
            "cell_no": 6,
            "patience": 10,
            "confidence": 0.9545,
            "shuffle": _DROPPED,
        },
        "models/time_series_analysis/LSTM.py",
    ),
    (
        "time_series",
        "ae",
        {
            "layer_no": 2,
            "window": 50,
            "neuron_no_enc": [16, 4],
            "neuron_no_dec": [4, 16],
            "act_enc": "tanh",
            "act_dec": "tanh",
        },
        "ae",
        {
            "window": 50,
            "epoch_no": 10,
            "batch_size": 64,
            "hidden": [16, 4],
            "activation": "tanh",
            "confidence": 0.99085,
            **dict.fromkeys(("layer_no", "neuron_no_dec", "act_dec"), _DROPPED),
        },
        "models/time_series_analysis/Autoencoder.py",
    ),
    (
        "process_mining",
        "heuristics",
        {"mac": 10},
        "heuristics_miner",
        {"mac": _DROPPED},
        "models/spmf/HeuristicsMiner.py",
    ),
    (
        "process_mining",
        "apriori",
        {"minsup": "20%", "min_conf": "95%"},
        "apriori",
        {"min_support": 0.2, "min_confidence": 0.95, "minsup": _DROPPED, "min_conf": _DROPPED},
        "models/spmf/Apriori.py",
    ),
    (
        "process_mining",
        "apriori",
        {},
        "apriori",
        {"min_support": _DROPPED, "min_confidence": _DROPPED},  # observml's defaults
        "models/spmf/Apriori.py",
    ),
    (
        "process_mining",
        "fpgrowth",
        {"minsup": 0.05, "min_conf": "90%", "min_len": 2, "max_len": 4},
        "fpgrowth",
        {"min_support": 0.05, "min_confidence": 0.9, "min_len": _DROPPED, "max_len": 4},
        "models/spmf/FPGrowth.py",
    ),
    (
        "process_mining",
        "cmspam",
        {"minsup": "10%", "min_len": 2, "max_len": 5, "req_items": [], "max_gap": 1},
        "cmspam",
        {"min_support": 0.1, "min_len": 2, "max_len": 5, "max_gap": 1, "req_items": _DROPPED},
        "models/spmf/CM_SPAM.py",
    ),
    (
        "process_mining",
        "cmspam",
        {"req_items": ["Packing"]},
        "cmspam",
        {"min_support": 0.5, "required_items": ["Packing"]},  # 1.0's default minsup 50%
        "models/spmf/CM_SPAM.py",
    ),
    (
        "process_mining",
        "topk",
        {"k": 20, "minconf_ar": 0.7},
        "topk",
        {"k": 20, "min_confidence": 0.7, "minconf_ar": _DROPPED},
        "models/spmf/TopKRules.py",
    ),
]


def old(kind: str, model: str | None = None, params: Any = None, **rest: Any) -> dict[str, Any]:
    """An ObservML 1.0 config of ``kind`` (``params: null`` unless given)."""
    config: dict[str, Any] = {"load_object": LOAD[kind], **rest}
    if model is not None:
        config["create_model"] = {"model": model, "params": params}
    return config


@pytest.mark.parametrize(
    ("kind", "key", "params", "model", "expected", "source"),
    [pytest.param(*m, id=f"{m[1]}-{i}") for i, m in enumerate(MAPPINGS)],
)
def test_legacy_mapping_table(
    kind: str,
    key: str,
    params: dict[str, Any],
    model: str,
    expected: dict[str, Any],
    source: str,
) -> None:
    assert source.endswith(".py")  # each row names the ObservML 1.0 file it was read from
    result = translate(old(kind, key, params or None))
    section = result.config["create_model"]
    assert result.experiment_type == kind
    assert section["model"] == model
    for name, value in expected.items():
        if value is _DROPPED:
            assert name not in section["params"], name
        else:
            assert section["params"][name] == value, name


def test_legacy_tables_cover_the_old_keys() -> None:
    keys = {k for models in LEGACY_MODELS.values() for k in models}
    assert keys == {
        *("iforest", "ee", "dbscan", "pca", "dt", "rf", "nb", "hmm", "mc", "bn"),
        *("arima", "es", "ssa", "prophet", "lstm", "ae"),
        *("heuristics", "apriori", "fpgrowth", "cmspam", "topk"),
    }
    assert {m[1] for m in MAPPINGS} == keys  # every 1.0 model key has an observml model
    assert set(LEGACY_TYPES.values()) == set(LOAD)


def test_legacy_unknown_class_names_the_four() -> None:
    config = {"load_object": {"module": "framework.X", "name": "TextMiningExperiment"}}
    with pytest.raises(ConfigError, match=r"load_object.name: 'TextMiningExperiment' is not") as e:
        translate(config)
    assert all(name in str(e.value) for name in LEGACY_TYPES)
    with pytest.raises(ConfigError, match=r"Known: FaultDetectionExperiment"):
        config_type(config)


def test_legacy_module_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "legacy_boom.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {
        "load_object": {"module": "legacy_boom", "name": "FaultDetectionExperiment"},
        "create_model": {"model": "pca", "params": None},
    }
    experiment = FaultDetectionExperiment("boom", config)
    experiment.validate_config()
    assert "legacy_boom" not in sys.modules


def test_legacy_type_must_agree_with_the_class() -> None:
    with pytest.raises(ConfigError, match=r"FaultIsolationExperiment is a fault_isolation"):
        FaultDetectionExperiment("x", old("fault_isolation", "dt"))
    with pytest.raises(ConfigError, match=r"experiment, not time_series. Create it as type"):
        translate(old("fault_isolation", "dt", type="time_series"))
    assert translate(old("fault_isolation", "dt", type="fault_isolation")).config["type"] == (
        "fault_isolation"
    )


def test_legacy_setup_eda_and_retrain() -> None:
    config = old(
        "fault_isolation",
        "dt",
        setup={
            "datetime_column": "${.format.index}",
            "datetime_format": "ms",
            "target": "Output (S)",
            "predict_window": 100,
            "format": {"name": "pivot", "id": "rows", "max_level": 1, "index": "date"},
            "retrain": {"retrain_window": 5000, "metric": "Accuracy", "metric_threshold": 0.9},
        },
        eda=None,
    )
    modern = translate(config).config
    assert list(modern) == ["type", "setup", "eda", "create_model", "retrain"]
    assert modern["setup"] == {
        "datetime_column": "date",
        "datetime_format": None,
        "target": "Output (S)",
        "format": {"type": "long", "records_key": "rows", "index": "date"},
    }
    assert modern["eda"] is True
    assert modern["retrain"] == {"metric": "accuracy", "threshold": 0.9, "higher_better": True}
    FaultIsolationExperiment("x", modern).validate_config()


@pytest.mark.parametrize(
    ("metric", "threshold", "new", "converted"),
    [("MAPE", 0.3, "mape", 30.0), ("MSE", 4.0, "rmse", 2.0), ("MAE", 0.5, "mae", 0.5)],
)
def test_legacy_time_series_retrain_metrics(
    metric: str, threshold: float, new: str, converted: float
) -> None:
    retrain = {"metric": metric, "metric_threshold": threshold, "higher_better": False}
    modern = translate(old("time_series", "arima", setup={"retrain": retrain})).config
    assert modern["retrain"] == {"metric": new, "threshold": converted, "higher_better": False}


def test_legacy_untranslatable_values_are_refused_with_the_fix() -> None:
    config = old(
        "fault_detection",
        "pca",
        {"normalize": False, "detect_outliers": ["ht2"], "alpha": 2},
        setup={"datetime_format": "s"},
    )
    with pytest.raises(ConfigError) as exc:
        translate(config)
    keys = [p.key for p in exc.value.problems]
    assert keys == [
        "setup.datetime_format",
        "create_model.params.alpha",
        "create_model.params.detect_outliers",
        "create_model.params.normalize",
    ]
    retrain = {"metric": "F1", "metric_threshold": 0.8}
    with pytest.raises(ConfigError, match=r"setup.retrain.metric: .*binary .* macro-averaged"):
        translate(old("fault_isolation", "dt", setup={"retrain": retrain}))


def test_legacy_pattern_miners_refuse_values_without_a_faithful_form() -> None:
    params = {"minsup": "ten%", "min_conf": 1.5, "min_len": 3}
    with pytest.raises(ConfigError) as exc:
        translate(old("process_mining", "fpgrowth", params))
    problems = {p.key: p.message for p in exc.value.problems}
    assert list(problems) == [
        "create_model.params.minsup",
        "create_model.params.min_conf",
        "create_model.params.min_len",
    ]
    assert "a percentage such as '10%', got 'ten%'" in problems["create_model.params.minsup"]
    assert "got 1.5" in problems["create_model.params.min_conf"]
    assert "Remove min_len" in problems["create_model.params.min_len"]
    with pytest.raises(ConfigError, match=r"req_items: ObservML 1.0 named required items by"):
        translate(old("process_mining", "cmspam", {"req_items": [3, 7]}))


def test_legacy_process_mining_reads_the_pm4py_columns() -> None:
    modern = translate(old("process_mining", "heuristics", setup=None)).config
    assert modern["setup"] == {
        "case_column": "case:concept:name",
        "activity_column": "concept:name",
        "timestamp_column": "time:timestamp",
    }


def test_modernize_leaves_modern_configs_alone(caplog: pytest.LogCaptureFixture) -> None:
    modern = {"create_model": {"model": "pca", "params": {"alpha": 0.05}}}
    assert modernize(modern, "fault_detection", where="x") is modern
    assert caplog.records == []


def test_legacy_notice_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    experiment = FaultDetectionExperiment("pump", old("fault_detection", "ee", eda=None))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "\n" not in message
    assert message.startswith("experiment 'pump': read an ObservML 1.0 config: ")
    assert "create_model.model: ee -> elliptic_envelope" in message
    assert "observml config migrate" in message
    assert experiment.config["create_model"] == {
        "model": "elliptic_envelope",
        "params": {"contamination": 0.1},
    }


def test_hub_keeps_the_translated_config(memory_hub: Any, caplog: pytest.LogCaptureFixture) -> None:
    config = yaml.safe_load((CORPUS / "pca.yaml").read_text(encoding="utf-8"))
    memory_hub.create_experiment("legacy-pca", config_type(config), config)
    assert "load_object" not in memory_hub.get_cfg("legacy-pca")
    rows = pd.DataFrame({"ds": range(60), "a": [float(i % 7) for i in range(60)]})
    rows["b"] = rows["a"] * 2 + [float(i % 3) for i in range(60)]
    memory_hub.train("legacy-pca", data=rows, wait=True)
    assert len(memory_hub.predict("legacy-pca", rows)) == 60
    assert [r.name for r in caplog.records if r.name == "observml.config.legacy"] == [
        "observml.config.legacy"
    ]


# -- the CLI ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.yaml")), ids=lambda p: p.stem)
def test_cli_migrate_output_passes_config_check(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if path.stem == "prophet":
        pytest.importorskip(
            "prophet",
            reason="prophet is not installed: the optional 'prophet' extra is not in 'all', and"
            " CI deliberately does not install it (see CONTRIBUTING.md)",
        )
    if path.stem == "heuristics":
        require_module("pm4py", "process-mining")
    if path.stem in ("lstm", "ae"):
        require_module("torch", "deep")
    code, out, err = run(["config", "check", str(path)], capsys)
    assert code == 0, err
    assert "read an ObservML 1.0 config" in err
    code, out, err = run(["config", "migrate", str(path)], capsys)
    assert (code, err) == (0, "")
    migrated = tmp_path / path.name
    migrated.write_text(out, encoding="utf-8")
    document = yaml.safe_load(out)
    assert "load_object" not in document
    assert list(document)[0] == "type"
    code, out2, err = run(["config", "check", str(migrated)], capsys)
    assert (code, err) == (0, "")
    assert out2.startswith(f"{migrated}: OK ({document['type']} experiment, model ")
    code, again, err = run(["config", "migrate", str(migrated)], capsys)
    assert code == 0
    assert yaml.safe_load(again) == document
    assert err == f"{migrated}: already in the modern form; printed unchanged.\n"


def test_cli_migrate_errors_exit_2(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    hub = write_config(MEMORY)
    code, _, err = run(["config", "migrate", str(hub)], capsys)
    assert code == 2
    assert "this is not an experiment config" in err
    lstm = old("time_series", "lstm", {"threshold_for_anomaly": "high"})
    path = write_config(yaml.safe_dump(lstm), "lstm.yaml")
    code, out, err = run(["config", "migrate", str(path)], capsys)
    assert (code, out) == (2, "")
    assert "create_model.params.threshold_for_anomaly: expected a number, got 'high'" in err


def test_cli_check_experiment_without_type_is_a_usage_error(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config("create_model: {model: pca}\n", "exp.yaml")
    code, _, err = run(["config", "check", str(path)], capsys)
    assert code == 2
    assert "names no type" in err
    code, out, _ = run(["config", "check", str(path), "--type", "fault_detection"], capsys)
    assert code == 0
    assert out == f"{path}: OK (fault_detection experiment, model pca)\n"
    bad = write_config(yaml.safe_dump(old("fault_detection", "ee", {"n_trees": 3})), "bad.yaml")
    code, _, err = run(["config", "check", str(bad)], capsys)
    assert code == 2
    assert (
        f"error: {bad}: create_model.params.n_trees: not a parameter of 'elliptic_envelope'" in err
    )


def test_cli_train_takes_the_type_from_load_object(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = write_config(MEMORY + "global: {job_isolation: thread}\n")
    rows = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=50, freq="h")})
    rows["a"] = [float(i % 5) for i in range(50)]
    rows["b"] = rows["a"] + [float(i % 3) for i in range(50)]
    data = tmp_path / "rows.csv"
    rows.to_csv(data, index=False)
    argv = ["train", "pump", "--experiment-config", str(CORPUS / "ee.yaml"), "--data", str(data)]
    code, out, err = run([*argv, "--hub-config", str(hub)], capsys)
    assert code == 0, err
    assert out.startswith("pump: version 1 is the champion")
