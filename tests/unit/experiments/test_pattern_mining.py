"""The pattern miners of process mining: apriori, fpgrowth, cmspam and topk.

Known answers on logs small enough to count by hand, brute-force cross-checks of the two
miners written here (cmspam, topk) on random logs, and the production event log
(``tests/data/production_event_log_4cols.csv``: 225 cases, 55 activities): discovery on the
157 cases that start first, conformance of the other 68, and a save/load round trip. The
figures were measured on this data with mlxtend 0.25 (fitness / conformant cases):

==========  ============================  ============================
model       training cases                later cases
==========  ============================  ============================
apriori     0.892 / 73.9% (180 rules)     0.592 / 45.6%
fpgrowth    0.892 / 73.9% (180 rules)     0.592 / 45.6%
cmspam      0.951 / 87.9% (27 rules)      0.854 / 63.2%
topk        0.884 / 80.9% (10 rules)      0.630 / 54.4%
==========  ============================  ============================
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml.errors import ConfigError, DataError
from observml.experiments._process_models import ACTIVITY, CASE, ProcessModel
from observml.experiments._sequences import SequentialPatterns, extend_ends
from observml.experiments._topk_rules import TopKSequentialRules
from observml.experiments.process_mining import ProcessMiningExperiment
from observml.plugins.memory import InMemoryMLOpsPlugin
from observml.store.experiments import load_experiment_from_store, save_experiment
from tests.services import read_dataset, require_module

ITEMSETS = ("apriori", "fpgrowth")


def events(cases: dict[str, str]) -> pd.DataFrame:
    """One event per letter: ``{"c1": "ABC"}`` is case c1 doing A, then B, then C."""
    rows = [(case, activity) for case, acts in cases.items() for activity in acts]
    return pd.DataFrame(rows, columns=["case_id", "activity"])


def experiment_on(cases: dict[str, str], model: str, **params: Any) -> ProcessMiningExperiment:
    config = {
        "setup": {"timestamp_column": None},
        "create_model": {"model": model, "params": params},
    }
    return ProcessMiningExperiment(model, config).train(events(cases))


def fit(model: ProcessModel, variants: list[str]) -> ProcessModel:
    """Fit a model directly on variants (one case each)."""
    log = pd.DataFrame(
        [(i, a) for i, v in enumerate(variants) for a in v], columns=[CASE, ACTIVITY]
    )
    model.fit(log, [tuple(v) for v in variants])
    return model


# -- apriori and fpgrowth: hand-counted ------------------------------------------------------
#: A in c1-c4 (4/5), B in c1 c2 c3 c5 (4/5), C in c1 c2 c4, D in c1 c3 c5 (3/5 each);
#: AB, AC and BD 3/5; AD, BC, ABC and ABD 2/5; CD and ACD... 1/5 or less.
BASKETS = {"c1": "ABCD", "c2": "ABC", "c3": "ABD", "c4": "AC", "c5": "BD"}


@pytest.mark.parametrize("model", ITEMSETS)
def test_itemsets_and_rules_counted_by_hand(model: str) -> None:
    require_module("mlxtend", "process-mining")
    experiment = experiment_on(BASKETS, model, min_support=0.4, min_confidence=1.0)
    itemsets = experiment.model_.frequent_itemsets_
    assert dict(zip(itemsets["itemset"], itemsets["support"], strict=True)) == pytest.approx(
        {
            "{A}": 0.8,
            "{B}": 0.8,
            "{A, B}": 0.6,
            "{A, C}": 0.6,
            "{B, D}": 0.6,
            "{C}": 0.6,
            "{D}": 0.6,
            "{A, B, C}": 0.4,
            "{A, B, D}": 0.4,
            "{A, D}": 0.4,
            "{B, C}": 0.4,
        }
    )
    assert list(itemsets["itemset"][:2]) == ["{A}", "{B}"]  # most frequent first
    rules = experiment.model_.rules_
    # C is always with A (3/3), D always with B (3/3); AD => B 2/2, BC => A 2/2; lift 1/0.8
    assert rules["rule"].tolist() == ["{C} => {A}", "{D} => {B}", "{A, D} => {B}", "{B, C} => {A}"]
    assert rules["support"].tolist() == pytest.approx([0.6, 0.6, 0.4, 0.4])
    assert rules["confidence"].tolist() == [1.0] * 4
    assert rules["lift"].tolist() == pytest.approx([1.25] * 4)

    new = events({"n1": "CB", "n2": "AD", "n3": "DCBA", "n4": "CA"})  # order does not matter
    result = experiment.predict(new)
    assert result["fitness"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert result["conformant"].tolist() == [False, False, True, True]
    assert result["rules_violated"][0] == ["{C} => {A}", "{B, C} => {A}"]
    assert result["rules_violated"][1] == ["{D} => {B}", "{A, D} => {B}"]
    assert result["rules_fired"][2] == rules["rule"].tolist()
    # n1 holds {B}, {C}, {B, C}; n3 all 11 itemsets
    assert result["itemsets_contained"].tolist() == [3, 3, 11, 3]


def test_apriori_and_fpgrowth_find_the_same_on_the_production_log() -> None:
    require_module("mlxtend", "process-mining")
    log = production()
    apriori, fpgrowth = (
        ProcessMiningExperiment(m, production_config(m)).train(log) for m in ITEMSETS
    )
    pd.testing.assert_frame_equal(
        apriori.model_.frequent_itemsets_, fpgrowth.model_.frequent_itemsets_
    )
    pd.testing.assert_frame_equal(apriori.model_.rules_, fpgrowth.model_.rules_)


# -- cmspam: hand-counted --------------------------------------------------------------------
#: <A> and <B> in all four; <C> in c1, c2; <A, B> in c1, c2, c3 (with gaps 1, 2, 2); <A, C> in
#: c1, c2 (gaps 2, 1); <B, A>, <B, C>, <C, B> and <X> in one case each.
SEQUENCES = {"c1": "ABC", "c2": "ACB", "c3": "AXB", "c4": "BA"}


@pytest.mark.parametrize(
    ("max_gap", "patterns"),
    [
        pytest.param(
            None,
            {"<A>": 1.0, "<B>": 1.0, "<A, B>": 0.75, "<A, C>": 0.5, "<C>": 0.5},
            id="any-gap",
        ),
        pytest.param(
            2, {"<A>": 1.0, "<B>": 1.0, "<A, B>": 0.75, "<A, C>": 0.5, "<C>": 0.5}, id="gap-2"
        ),
        pytest.param(1, {"<A>": 1.0, "<B>": 1.0, "<C>": 0.5}, id="adjacent"),
    ],
)
def test_sequential_patterns_counted_by_hand(
    max_gap: int | None, patterns: dict[str, float]
) -> None:
    experiment = experiment_on(
        SEQUENCES, "cmspam", min_support=0.5, max_gap=max_gap, min_confidence=0.5
    )
    found = experiment.model_.patterns_
    assert dict(zip(found["pattern"], found["support"], strict=True)) == pytest.approx(patterns)
    rules = experiment.model_.rules_
    if max_gap == 1:
        assert rules.empty
        return
    # <A> => B: 0.75 / 1.0; <A> => C: 0.5 / 1.0, lift 0.5 / 0.5
    assert rules["rule"].tolist() == ["<A> => B", "<A> => C"]
    assert rules["confidence"].tolist() == pytest.approx([0.75, 0.5])
    assert rules["lift"].tolist() == pytest.approx([0.75, 1.0])
    result = experiment.predict(events({"n1": "BC", "n2": "AC", "n3": "ACXB"}))
    assert result["rules_fired"][0] == []  # no A: nothing to follow
    assert result["fitness"][0] == 1.0
    assert result["rules_violated"][1] == ["<A> => B"]
    assert result["fitness"][1] == 0.5
    # B is 3 steps after A: too far for gap 2
    assert result["rules_violated"][2] == ([] if max_gap is None else ["<A> => B"])
    assert result["patterns_contained"].tolist() == [
        2,
        3,
        5 if max_gap is None else 4,
    ]


def test_gap_is_checked_on_every_match_not_the_first() -> None:
    # <A, B, C> with gap 2 in A B B X C: only A(0) B(2) C(4) fits; the first B (1) leaves C 3
    # steps away, which a greedy first match would take and reject
    assert extend_ends(np.array([1, 2]), np.array([0]), 2).tolist() == [1, 2]
    assert extend_ends(np.array([4]), np.array([1, 2]), 2).tolist() == [4]
    assert extend_ends(np.array([4]), np.array([1]), 2).tolist() == []
    assert extend_ends(np.array([0, 4]), np.array([1]), None).tolist() == [4]
    model = fit(SequentialPatterns(min_support=1.0, max_gap=2), ["ABBXC"])
    assert "<A, B, C>" in model.patterns_["pattern"].tolist()
    assert "<A, C>" not in model.patterns_["pattern"].tolist()  # 4 steps apart


def test_required_items_and_lengths_filter_the_patterns() -> None:
    model = fit(
        SequentialPatterns(min_support=0.5, max_gap=None, min_len=2, required_items=["C"]),
        list(SEQUENCES.values()),
    )
    assert model.patterns_["pattern"].tolist() == ["<A, C>"]
    assert fit(SequentialPatterns(min_support=0.5, max_len=1), ["AB", "AB"]).patterns_[
        "pattern"
    ].tolist() == ["<A>", "<B>"]


def brute_patterns(
    variants: list[str], items: str, max_len: int, max_gap: int | None, min_support: float
) -> dict[str, float]:
    """Every pattern up to ``max_len`` by trying every choice of positions."""
    found = {}
    for length in range(1, max_len + 1):
        for pattern in itertools.product(items, repeat=length):
            count = 0
            for v in variants:
                for at in itertools.combinations(range(len(v)), length):
                    gaps_ok = max_gap is None or all(
                        b - a <= max_gap for a, b in itertools.pairwise(at)
                    )
                    if gaps_ok and all(v[p] == x for p, x in zip(at, pattern, strict=True)):
                        count += 1
                        break
            if count / len(variants) >= min_support:
                found["<" + ", ".join(pattern) + ">"] = count / len(variants)
    return found


@pytest.mark.parametrize("max_gap", [None, 1, 2], ids=["any", "1", "2"])
def test_sequential_patterns_match_brute_force(max_gap: int | None) -> None:
    rng = np.random.default_rng(7)
    variants = ["".join(rng.choice(list("ABCD"), size=rng.integers(2, 8))) for _ in range(30)]
    model = fit(SequentialPatterns(min_support=0.1, max_len=3, max_gap=max_gap), variants)
    mined = dict(zip(model.patterns_["pattern"], model.patterns_["support"], strict=True))
    expected = brute_patterns(variants, "ABCD", 3, max_gap, 0.1)
    assert len(expected) > 20
    assert mined == pytest.approx(expected)
    # what predict checks agrees with what training counted, pattern by pattern
    contained = model.contains([tuple(v) for v in variants])
    assert contained.mean(axis=0) == pytest.approx(model.pattern_support_)


def test_too_many_patterns_is_a_data_error_saying_what_to_change() -> None:
    with pytest.raises(
        DataError,
        match=r"more than max_patterns=5 patterns at min_support 0.1;"
        r" raise min_support or lower max_len",
    ):
        experiment_on(SEQUENCES, "cmspam", max_patterns=5)


# -- topk: hand-counted ----------------------------------------------------------------------
#: {A} => {B} occurs in c1 c2 c3 (A before B), not c4: 3/4, confidence 3/4; {A} => {C} 2/4,
#: 2/4; {A} => {B, C} 2/4, 2/4; {X} => {B} 1/4, 1/1; {A, X} => {B} 1/4, 1/1; {C} => {B} 1/4,
#: 1/2; {A, C} => {B} 1/4, 1/2. Every other rule has confidence 1/4 or does not occur.
@pytest.mark.parametrize(
    ("k", "max_consequent", "expected"),
    [
        pytest.param(2, 1, ["{A} => {B}", "{A} => {C}"], id="k2"),
        # ties at support 1/4: the higher confidence, then the fewer activities
        pytest.param(3, 1, ["{A} => {B}", "{A} => {C}", "{X} => {B}"], id="k3"),
        pytest.param(3, 2, ["{A} => {B}", "{A} => {C}", "{A} => {B, C}"], id="k3-two-right"),
        pytest.param(
            20,
            2,
            [
                "{A} => {B}",
                "{A} => {C}",
                "{A} => {B, C}",
                "{X} => {B}",
                "{A, X} => {B}",
                "{C} => {B}",
                "{A, C} => {B}",
            ],
            id="all",
        ),
    ],
)
def test_topk_rules_counted_by_hand(k: int, max_consequent: int, expected: list[str]) -> None:
    experiment = experiment_on(
        SEQUENCES, "topk", k=k, min_confidence=0.5, max_consequent=max_consequent
    )
    rules = experiment.model_.rules_
    assert rules["rule"].tolist() == expected
    support = {"{A} => {B}": 0.75, "{A} => {C}": 0.5, "{A} => {B, C}": 0.5}
    confidence = {"{A} => {B}": 0.75, "{X} => {B}": 1.0, "{C} => {B}": 0.5}
    for rule, value in support.items():
        if rule in expected:
            assert rules.set_index("rule").loc[rule, "support"] == pytest.approx(value)
    for rule, value in confidence.items():
        if rule in expected:
            assert rules.set_index("rule").loc[rule, "confidence"] == pytest.approx(value)
    if k == 2:
        result = experiment.predict(events({"n1": "BA", "n2": "ACB", "n3": "CAB", "n4": "CB"}))
        assert result["rules_violated"].tolist() == [
            ["{A} => {B}", "{A} => {C}"],  # A comes last
            [],
            ["{A} => {C}"],  # C before A
            [],  # no A: no rule fires
        ]
        assert result["fitness"].tolist() == [0.0, 1.0, 0.5, 1.0]


def brute_rules(
    variants: list[str], items: str, max_x: int, max_y: int, min_conf: float
) -> list[tuple[str, float, float]]:
    """Every rule by its definition: X all before Y at some split of the case."""

    def side(chars: tuple[str, ...]) -> str:
        return "{" + ", ".join(sorted(chars)) + "}"

    rules: list[tuple[str, float, float, int]] = []
    n = len(variants)
    for size_x in range(1, max_x + 1):
        for x in itertools.combinations(items, size_x):
            has_x = sum(all(a in v for a in x) for v in variants)
            rest = [i for i in items if i not in x]
            for size_y in range(1, max_y + 1):
                for y in itertools.combinations(rest, size_y):
                    count = sum(
                        any(
                            all(a in v[:t] for a in x) and all(b in v[t:] for b in y)
                            for t in range(1, len(v))
                        )
                        for v in variants
                    )
                    if count and count / has_x >= min_conf:
                        text = f"{side(x)} => {side(y)}"
                        rules.append((text, count / n, count / has_x, size_x + size_y))
    rules.sort(key=lambda r: (-r[1], -r[2], r[3], r[0]))  # ties: fewer activities, then text
    return [(text, support, confidence) for text, support, confidence, _ in rules]


@pytest.mark.parametrize("k", [1, 5, 25])
def test_topk_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(11)
    variants = ["".join(rng.choice(list("ABCDE"), size=rng.integers(2, 7))) for _ in range(40)]
    model = fit(
        TopKSequentialRules(k=k, min_confidence=0.2, max_antecedent=2, max_consequent=2),
        variants,
    )
    expected = brute_rules(variants, "ABCDE", 2, 2, 0.2)
    assert len(expected) > 40
    got = list(
        zip(model.rules_["rule"], model.rules_["support"], model.rules_["confidence"], strict=True)
    )
    assert len(got) == k
    # the same supports and confidences as the k best; ties at the k-th broken alike
    assert [(r, pytest.approx(s), pytest.approx(c)) for r, s, c in expected[:k]] == got


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "params", "match"),
    [
        pytest.param(
            "apriori",
            {"min_support": 0},
            r"params.min_support: The 'min_support' parameter",
            id="support",
        ),
        pytest.param(
            "fpgrowth", {"max_len": 1}, r"params.max_len: The 'max_len' parameter", id="max-len"
        ),
        pytest.param(
            "cmspam", {"max_gap": 0}, r"params.max_gap: The 'max_gap' parameter", id="gap"
        ),
        pytest.param("topk", {"k": 0}, r"params.k: The 'k' parameter", id="k"),
        pytest.param(
            "topk", {"top": 3}, r"params.top: not a parameter of 'topk'\. Accepted: k,", id="name"
        ),
    ],
)
def test_parameters_are_checked_before_training(
    model: str, params: dict[str, Any], match: str
) -> None:
    config = {"create_model": {"model": model, "params": params}}
    with pytest.raises(ConfigError, match=match):
        ProcessMiningExperiment("bad", config).validate_config()


def test_cmspam_lengths_and_required_items_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"params.min_len: min_len \(3\) is larger than max_len"):
        experiment_on(SEQUENCES, "cmspam", min_len=3, max_len=2)
    with pytest.raises(ConfigError, match=r"params.required_items: expected a list of activity"):
        experiment_on(SEQUENCES, "cmspam", required_items=[1])


# -- the production event log ----------------------------------------------------------------
def production() -> pd.DataFrame:
    return read_dataset("production_event_log_4cols.csv")


def production_config(model: str) -> dict[str, Any]:
    return {
        "setup": {
            "case_column": "Case ID",
            "activity_column": "Activity",
            "timestamp_column": "Complete Timestamp",
            "datetime_format": "%Y/%m/%d %H:%M:%S.%f",
        },
        "create_model": {"model": model},
    }


#: (fitness, conformance rate) on the training cases, then on the later cases; rules kept;
#: the model's own reports.
PRODUCTION: dict[str, tuple[tuple[float, float], tuple[float, float], int, list[str]]] = {
    "apriori": ((0.8921, 0.7389), (0.5921, 0.4559), 180, ["itemsets", "rules"]),
    "fpgrowth": ((0.8921, 0.7389), (0.5921, 0.4559), 180, ["itemsets", "rules"]),
    "cmspam": ((0.9505, 0.8790), (0.8540, 0.6324), 27, ["patterns", "rules"]),
    "topk": ((0.8842, 0.8089), (0.6298, 0.5441), 10, ["rules"]),
}


@pytest.mark.parametrize("model", list(PRODUCTION))
def test_production_log_train_predict_save_load(model: str, mlops: InMemoryMLOpsPlugin) -> None:
    if model in ITEMSETS:
        require_module("mlxtend", "process-mining")
    log = production()
    start = pd.to_datetime(log["Start Timestamp"], format="%Y/%m/%d %H:%M:%S.%f")
    first = start.groupby(log["Case ID"]).min().sort_values(kind="stable")
    early = set(first.index[: int(len(first) * 0.7)])
    train, later = log[log["Case ID"].isin(early)], log[~log["Case ID"].isin(early)]
    experiment = ProcessMiningExperiment(f"production_{model}", production_config(model))
    experiment.train(train)
    (fit_train, rate_train), (fit_later, rate_later), n_rules, reports = PRODUCTION[model]
    for data, fitness, rate in ((train, fit_train, rate_train), (later, fit_later, rate_later)):
        scores = experiment.score(data)
        assert scores["n_cases"] == data["Case ID"].nunique()
        assert scores["fitness"] == pytest.approx(fitness, abs=0.001)
        assert scores["conformance_rate"] == pytest.approx(rate, abs=0.001)
    assert len(experiment.model_.rules_) == n_rules
    assert experiment.plot_names() == ["process_map", "variants", "fitness", *reports]
    figures = experiment.reports()
    assert list(figures) == experiment.plot_names()
    assert f"of {n_rules} rules" in figures["rules"].layout.title.text

    result = experiment.predict(later)
    assert list(result["Case ID"]) == list(dict.fromkeys(later["Case ID"]))
    broken = (result["rules_violated"].map(len) > 0) | (result["unknown_activities"] > 0)
    assert (broken == ~result["conformant"]).all()  # threshold 1.0: one broken rule is enough
    run = mlops.start_run(mlops.create_experiment(experiment.name))
    save_experiment(mlops, experiment, run_id=run, alias="champion")
    loaded = load_experiment_from_store(mlops, experiment.name)
    pd.testing.assert_frame_equal(loaded.predict(later), result)
    pd.testing.assert_frame_equal(loaded.model_.rules_, experiment.model_.rules_)
