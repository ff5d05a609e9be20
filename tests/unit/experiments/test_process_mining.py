"""Every process-mining model discovers, checks cases, scores, saves and loads (synthetic log).

The log is :func:`observml.datasets.event_log`: a seven-step production process where some
cases repeat "Grind, Inspect" (allowed rework); deviating cases skip "Inspect", swap two steps
or insert an unknown "Manual fix". Training uses clean cases only.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import datasets
from observml.errors import ConfigError, DataError
from observml.experiments.process_mining import MODELS, ProcessMiningExperiment
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.retraining import RetrainTracker
from observml.store.experiments import load_experiment_from_store, save_experiment
from tests.services import require_module

require_module("pm4py", "process-mining")


def config(model: str, **params: Any) -> dict[str, Any]:
    return {"setup": {}, "create_model": {"model": model, "params": params}}


@pytest.fixture(scope="module")
def train_log() -> pd.DataFrame:
    """150 conforming cases (some with rework)."""
    return datasets.event_log(150, seed=4, deviation_rate=0.0).drop(columns="deviant")


@pytest.fixture(scope="module")
def test_log() -> pd.DataFrame:
    """120 cases, about a fifth deviating."""
    return datasets.event_log(120, seed=5, deviation_rate=0.2)


#: Models that see each case as a set of activities, not a sequence.
ORDER_BLIND = {"apriori", "fpgrowth"}


def deviant_cases(log: pd.DataFrame) -> np.ndarray:
    flags: np.ndarray = log.groupby("case_id", sort=False)["deviant"].first().to_numpy()
    return flags


@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in MODELS])
def test_every_model_round_trip(
    model: str, train_log: pd.DataFrame, test_log: pd.DataFrame, mlops: InMemoryMLOpsPlugin
) -> None:
    experiment = ProcessMiningExperiment(f"pm_{model}", config(model)).train(train_log)
    events = test_log.drop(columns="deviant")

    result = experiment.predict(events)
    cases = list(dict.fromkeys(events["case_id"]))
    assert list(result["case_id"]) == cases  # one row per case, in first-seen order
    assert result["n_events"].tolist() == events.groupby("case_id", sort=False).size().tolist()
    assert result["fitness"].between(0, 1).all()
    assert (result["conformant"] == (result["fitness"] >= 1.0)).all()

    deviant = deviant_cases(test_log)
    flagged = ~result["conformant"].to_numpy()
    if model in ORDER_BLIND:  # a swap keeps the case's set of activities: only it passes
        activity_sets = events.groupby("case_id", sort=False)["activity"].agg(frozenset)
        new_set = ~activity_sets.isin(set(train_log.groupby("case_id")["activity"].agg(frozenset)))
        assert (flagged == new_set.to_numpy()).all()
        assert 0.5 < flagged[deviant].mean() < 0.9
    else:
        assert flagged[deviant].mean() >= 0.9  # skipped, swapped and inserted steps are caught
    if model != "heuristics_miner":  # the heuristics net cannot replay every rework loop
        assert flagged[~deviant].mean() == 0.0
    manual = events.groupby("case_id", sort=False)["activity"].agg(lambda a: "Manual fix" in set(a))
    assert (result["unknown_activities"][manual.to_numpy()] == 1).all()

    metrics = experiment.score(events)
    assert metrics["fitness"] == pytest.approx(result["fitness"].mean())
    assert metrics["conformance_rate"] == pytest.approx(result["conformant"].mean())
    assert metrics["n_cases"] == len(cases)
    if "rules_fired" in result.columns:
        assert "precision" not in metrics
        assert metrics["rules_fired_mean"] == pytest.approx(result["rules_fired"].map(len).mean())
        assert set(result.columns) >= {"rules_fired", "rules_violated"}
        assert all(
            set(v) <= set(f)
            for f, v in zip(result["rules_fired"], result["rules_violated"], strict=True)
        )
    else:
        assert 0.5 < metrics["precision"] <= 1.0
        assert "etc_precision" not in metrics  # opt-in: precision_cases
        assert set(result.columns) >= {"missing_tokens", "remaining_tokens"}

    assert set(experiment.reports()) == set(experiment.plot_names())
    run = mlops.start_run(mlops.create_experiment(experiment.name))
    save_experiment(mlops, experiment, run_id=run, alias="champion")
    loaded = load_experiment_from_store(mlops, experiment.name)
    pd.testing.assert_frame_equal(loaded.predict(events), result)


def test_training_cases_conform_to_the_inductive_model(train_log: pd.DataFrame) -> None:
    experiment = ProcessMiningExperiment("im", config("inductive_miner")).train(train_log)
    assert experiment.predict(train_log)["conformant"].all()
    assert experiment.score(train_log)["fitness"] == 1.0


def test_rules_explain_a_skipped_step(train_log: pd.DataFrame) -> None:
    experiment = ProcessMiningExperiment("rules", config("sequential_rules")).train(train_log)
    steps = list(datasets.PROCESS_STEPS)
    skipped = [s for s in steps if s != "Inspect"]
    events = pd.DataFrame(
        {
            "case_id": "late",
            "activity": skipped,
            "timestamp": pd.date_range("2024-03-01", periods=len(skipped), freq="h"),
        }
    )
    row = experiment.predict(events).iloc[0]
    assert not row["conformant"]
    assert row["fitness"] < 1.0
    assert any("Inspect" in rule for rule in row["rules_violated"])
    assert experiment.model_.rules_["confidence"].min() >= 0.9
    assert experiment.plot_names() == ["process_map", "variants", "fitness", "rules"]


def test_events_are_ordered_by_timestamp_within_a_case(train_log: pd.DataFrame) -> None:
    experiment = ProcessMiningExperiment("order", config("inductive_miner")).train(train_log)
    case = train_log[train_log["case_id"] == train_log["case_id"].iloc[0]]
    shuffled = case.iloc[::-1]  # rows arrive out of order, timestamps say the real order
    assert experiment.predict(shuffled)["conformant"].all()
    no_time = {"setup": {"timestamp_column": None}, "create_model": {"model": "inductive_miner"}}
    by_row = ProcessMiningExperiment("rows", no_time).train(train_log)
    assert not by_row.predict(shuffled)["conformant"].any()  # row order is taken as given


def test_accepts_json_records_and_custom_columns(train_log: pd.DataFrame) -> None:
    renamed = train_log.rename(
        columns={"case_id": "Case ID", "activity": "Activity", "timestamp": "Complete"}
    )
    renamed["Complete"] = renamed["Complete"].dt.strftime("%Y/%m/%d %H:%M:%S.000")
    cfg = {
        "setup": {
            "case_column": "Case ID",
            "activity_column": "Activity",
            "timestamp_column": "Complete",
            "datetime_format": "%Y/%m/%d %H:%M:%S.%f",
        },
        "create_model": {"model": "sequential_rules"},
    }
    records = json.loads(renamed.to_json(orient="records"))
    experiment = ProcessMiningExperiment("json", cfg).train(records)
    result = experiment.predict(records[:14])
    assert list(result.columns[:2]) == ["Case ID", "n_events"]
    assert result["conformant"].all()


def test_eda_adds_activity_and_case_length(train_log: pd.DataFrame) -> None:
    cfg = {**config("sequential_rules"), "eda": True}
    experiment = ProcessMiningExperiment("eda", cfg).train(train_log)
    names = experiment.plot_names()
    assert names[-2:] == ["activity_frequency", "case_length"]
    assert list(experiment.reports()) == names


def test_process_map_draws_model_arcs(train_log: pd.DataFrame) -> None:
    experiment = ProcessMiningExperiment("map", config("inductive_miner")).train(train_log)
    arcs = experiment.model_.arcs()
    steps = datasets.PROCESS_STEPS
    assert ("▶ start", steps[0]) in arcs
    assert (steps[-1], "■ end") in arcs
    assert all((a, b) in arcs for a, b in zip(steps, steps[1:], strict=False) if b != "Inspect")
    figure = experiment.reports()["process_map"]
    assert len(figure.layout.annotations) >= len(steps) + 1
    assert "process map" in figure.layout.title.text


def test_retrain_policy_watches_fitness_and_waits_for_a_person() -> None:
    cfg = {**config("sequential_rules"), "retrain": {"threshold": 0.9}}
    experiment = ProcessMiningExperiment("retrain", cfg)
    settings = experiment.validate_config()
    assert settings.metric == "fitness"
    assert settings.retrain.promotion == "approve"  # conformance has no ground truth
    policy = RetrainTracker(settings.retrain, settings.metric)
    assert policy.decide({"fitness": 0.95}, n_samples=10).fire is False
    assert policy.decide({"fitness": 0.8}, n_samples=10).fire is True


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        pytest.param(
            {"create_model": {"model": "alpha_miner"}},
            r"create_model.model: unknown process_mining model 'alpha_miner'\. Valid:"
            r" heuristics_miner, inductive_miner, sequential_rules, apriori, fpgrowth, cmspam,"
            r" topk",
            id="unknown-model",
        ),
        pytest.param(
            {"create_model": {"model": "inductive_miner", "params": {"noise": 0.1}}},
            r"create_model.params.noise: not a parameter of 'inductive_miner'\. Accepted:"
            r" noise_threshold, fitness_threshold, precision_cases",
            id="unknown-param",
        ),
        pytest.param(
            {"setup": {"target": "y"}},
            r"setup.target: unknown key for process_mining\. Accepted: case_column,",
            id="unknown-setup",
        ),
        pytest.param(
            {"create_model": {"model": "sequential_rules", "params": {"min_support": 2}}},
            r"create_model.params.min_support: expected a number in \(0, 1\]",
            id="support",
        ),
        pytest.param(
            {"create_model": {"model": "heuristics_miner", "params": {"fitness_threshold": 0}}},
            r"create_model.params.fitness_threshold: expected a number in \(0, 1\]",
            id="threshold",
        ),
    ],
)
def test_config_errors_name_the_key(
    cfg: dict[str, Any], match: str, train_log: pd.DataFrame
) -> None:
    with pytest.raises(ConfigError, match=match):
        ProcessMiningExperiment("bad", cfg).train(train_log)


def test_data_errors_name_the_column(train_log: pd.DataFrame) -> None:
    experiment = ProcessMiningExperiment("bad", config("sequential_rules"))
    with pytest.raises(DataError, match=r"missing column\(s\) 'activity'"):
        experiment.train(train_log.drop(columns="activity"))
    gaps = train_log.astype({"case_id": object})
    gaps.loc[3, "case_id"] = None
    with pytest.raises(
        DataError, match=r"column 'case_id' has 1 missing value\(s\) \(first at row 3\)"
    ):
        experiment.train(gaps)
    with pytest.raises(DataError, match=r"column 'timestamp' is not a datetime"):
        experiment.train(train_log.assign(timestamp="soon"))
