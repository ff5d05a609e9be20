"""Frequent itemsets of activities per case, and the association rules among them (mlxtend).

Each case becomes the *set* of activities it contains (order and repeats left aside). Apriori
(Agrawal & Srikant 1994) or FP-growth (Han, Pei & Yin 2000), both from mlxtend, find the
itemsets present in at least ``min_support`` of the cases (up to ``max_len`` activities); the
association rules ``X => Y`` among them that hold in at least ``min_confidence`` of the cases
containing ``X`` are kept (the ``max_rules`` most confident). The two algorithms find the same
itemsets; FP-growth is faster on many cases.

A case is judged like ``sequential_rules`` judges it: a rule *fires* on a case that contains
``X`` and is *violated* when the case lacks ``Y``; the case's fitness is the share of fired
rules that hold (1 when none fires). ``itemsets_contained`` counts the frequent itemsets the
case contains (a case with few of them is unlike the training cases).

The fitted state is numbers, strings and boolean arrays only.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.utils._param_validation import Interval

from observml.experiments._process_models import ProcessModel, Variant
from observml.experiments._rule_verdicts import rule_verdicts

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["AprioriRules", "FPGrowthRules", "FrequentItemsetRules", "itemset_text"]

BoolMatrix = npt.NDArray[np.bool_]


def itemset_text(items: Sequence[str]) -> str:
    """Return ``{a, b}`` with the items sorted."""
    return "{" + ", ".join(sorted(items)) + "}"


class FrequentItemsetRules(ProcessModel):
    """Association rules over the set of activities of each case (see the module docstring).

    Args:
        min_support: Share of cases a frequent itemset appears in, in (0, 1].
        min_confidence: Share of the cases with a rule's antecedent that must have its
            consequent, in (0, 1].
        max_len: Most activities in an itemset (antecedent plus consequent of a rule), >= 2.
        max_rules: Rules kept: the most confident, then highest lift, then support.
        fitness_threshold: A case is conformant when its fitness reaches this.
    """

    EXTRA_COLUMNS = ("itemsets_contained", "rules_fired", "rules_violated")
    REPORTS = ("itemsets", "rules")
    #: ``mlxtend.frequent_patterns`` function that mines the itemsets.
    ALGORITHM: ClassVar[str] = "fpgrowth"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_support": [Interval(Real, 0, 1, closed="right")],
        "min_confidence": [Interval(Real, 0, 1, closed="right")],
        "max_len": [Interval(Integral, 2, None, closed="left")],
        "max_rules": [Interval(Integral, 1, None, closed="left")],
        "fitness_threshold": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        min_support: float = 0.1,
        min_confidence: float = 0.9,
        max_len: int = 3,
        max_rules: int = 200,
        fitness_threshold: float = 1.0,
    ) -> None:
        super().__init__(fitness_threshold)
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.max_len = max_len
        self.max_rules = max_rules

    # -- mining ---------------------------------------------------------------------------
    def _fit(self, log: pd.DataFrame, variants: Sequence[Variant]) -> None:
        from mlxtend import frequent_patterns

        counts: dict[frozenset[str], int] = {}
        for variant in variants:
            key = frozenset(variant)
            counts[key] = counts.get(key, 0) + 1
        self.items_: list[str] = sorted(set().union(*counts)) if counts else []
        matrix = self._matrix(list(counts))
        onehot = pd.DataFrame(
            np.repeat(matrix, np.fromiter(counts.values(), dtype=np.int64), axis=0),
            columns=self.items_,
        )
        mine = getattr(frequent_patterns, self.ALGORITHM)
        frequent = mine(
            onehot, min_support=float(self.min_support), use_colnames=True, max_len=self.max_len
        )
        frequent = self._ordered(frequent)
        self.itemsets_ = self._matrix([set(s) for s in frequent["itemsets"]])
        self.itemset_support_ = frequent["support"].to_numpy(dtype="float64")
        self.itemset_text_ = [itemset_text(s) for s in frequent["itemsets"]]
        found = self._rules(frequent, len(onehot))
        self.antecedents_ = self._matrix([set(a) for a in found["antecedents"]])
        self.consequents_ = self._matrix([set(c) for c in found["consequents"]])
        self.rule_support_ = found["support"].to_numpy(dtype="float64")
        self.rule_confidence_ = found["confidence"].to_numpy(dtype="float64")
        self.rule_lift_ = found["lift"].to_numpy(dtype="float64")
        self.rule_text_ = [
            f"{itemset_text(a)} => {itemset_text(c)}"
            for a, c in zip(found["antecedents"], found["consequents"], strict=True)
        ]

    @staticmethod
    def _ordered(frequent: pd.DataFrame) -> pd.DataFrame:
        """Most frequent first; ties: larger itemsets, then by text (a stable, known order)."""
        frame = frequent.assign(
            size=frequent["itemsets"].map(len),
            text=frequent["itemsets"].map(itemset_text),
        )
        frame = frame.sort_values(["support", "size", "text"], ascending=[False, False, True])
        return frame.reset_index(drop=True)

    def _rules(self, frequent: pd.DataFrame, n_cases: int) -> pd.DataFrame:
        from mlxtend.frequent_patterns import association_rules

        columns = ["antecedents", "consequents", "support", "confidence", "lift"]
        if not len(frequent) or frequent["size"].max() < 2:
            return pd.DataFrame(columns=columns)
        found = association_rules(
            frequent[["support", "itemsets"]],
            num_itemsets=n_cases,
            metric="confidence",
            min_threshold=float(self.min_confidence),
            return_metrics=["support", "confidence", "lift"],
        )
        found = found.assign(
            text=[
                f"{itemset_text(a)} => {itemset_text(c)}"
                for a, c in zip(found["antecedents"], found["consequents"], strict=True)
            ]
        )
        found = found.sort_values(
            ["confidence", "lift", "support", "text"], ascending=[False, False, False, True]
        )
        return found[columns].head(self.max_rules).reset_index(drop=True)

    def _matrix(self, sets: Sequence[set[str] | frozenset[str]]) -> BoolMatrix:
        column = {item: j for j, item in enumerate(self.items_)}
        matrix = np.zeros((len(sets), len(self.items_)), dtype=bool)
        for i, items in enumerate(sets):
            matrix[i, [column[x] for x in items if x in column]] = True
        return matrix

    # -- judging --------------------------------------------------------------------------
    def _judge(self, variants: Sequence[Variant]) -> pd.DataFrame:
        cases = self._matrix([set(v) for v in variants]).astype(np.int32)

        def contains(sets: BoolMatrix) -> BoolMatrix:
            found: BoolMatrix = cases @ sets.T.astype(np.int32) == sets.sum(axis=1)
            return found

        judged = rule_verdicts(
            contains(self.antecedents_), contains(self.consequents_), self.rule_text_
        )
        judged.insert(1, "itemsets_contained", contains(self.itemsets_).sum(axis=1))
        return judged

    # -- what it found --------------------------------------------------------------------
    @property
    def rules_(self) -> pd.DataFrame:
        """The rules, most confident first: ``rule``, ``support``, ``confidence``, ``lift``."""
        return pd.DataFrame(
            {
                "rule": self.rule_text_,
                "support": self.rule_support_,
                "confidence": self.rule_confidence_,
                "lift": self.rule_lift_,
            }
        )

    @property
    def frequent_itemsets_(self) -> pd.DataFrame:
        """The frequent itemsets, most frequent first: ``itemset``, ``size``, ``support``."""
        return pd.DataFrame(
            {
                "itemset": self.itemset_text_,
                "size": self.itemsets_.sum(axis=1).astype("int64"),
                "support": self.itemset_support_,
            }
        )

    def figures(self, name: str) -> dict[str, Figure]:
        """Return ``itemsets`` (support of the most frequent) and ``rules`` (a table)."""
        from observml.experiments._pattern_reports import rules_table, support_bars

        return {
            "itemsets": support_bars(
                self.itemset_text_,
                self.itemset_support_,
                title=f"{name}: frequent itemsets ({self.ALGORITHM})",
                what="itemsets",
            ),
            "rules": rules_table(self.rules_, title=name),
        }

    def arcs(self) -> set[tuple[str, str]]:
        """None: itemsets have no order, so the process map shows the log's arcs only."""
        return set()


class AprioriRules(FrequentItemsetRules):
    """Frequent itemsets found with mlxtend's Apriori (Agrawal & Srikant 1994).

    Args:
        min_support: Share of cases a frequent itemset appears in, in (0, 1].
        min_confidence: Share of the cases with a rule's antecedent that must have its
            consequent, in (0, 1].
        max_len: Most activities in an itemset (antecedent plus consequent of a rule), >= 2.
        max_rules: Rules kept: the most confident, then highest lift, then support.
        fitness_threshold: A case is conformant when its fitness reaches this.
    """

    ALGORITHM = "apriori"


class FPGrowthRules(FrequentItemsetRules):
    """Frequent itemsets found with mlxtend's FP-growth (Han, Pei & Yin 2000).

    Args:
        min_support: Share of cases a frequent itemset appears in, in (0, 1].
        min_confidence: Share of the cases with a rule's antecedent that must have its
            consequent, in (0, 1].
        max_len: Most activities in an itemset (antecedent plus consequent of a rule), >= 2.
        max_rules: Rules kept: the most confident, then highest lift, then support.
        fitness_threshold: A case is conformant when its fitness reaches this.
    """

    ALGORITHM = "fpgrowth"
