"""Sequential association rules over cases (pure Python: mlxtend's FP-growth).

Each case becomes a set of items: the activities it contains and the directly-follows pairs
``a -> b`` it contains. FP-growth finds the itemsets present in at least ``min_support`` of
the cases, and the rules ``X => Y`` among them that hold in at least ``min_confidence`` of the
cases containing ``X``. Rules whose consequent only repeats the ends of an antecedent pair
(``{a -> b} => {b}``) say nothing and are dropped.

A rule *fires* on a case that contains its antecedent, and is *violated* when the case lacks
the consequent. A case's fitness is the share of fired rules that hold (1 when none fires),
so a skipped, swapped or inserted step shows up as violated rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from observml.errors import ConfigError
from observml.experiments._process_models import ProcessModel, Variant
from observml.experiments._rule_verdicts import rule_verdicts

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["SequentialRules", "case_items"]

_ARROW = " -> "


def case_items(variant: Variant) -> set[str]:
    """Return the items of one case: its activities and its directly-follows pairs."""
    items = set(variant)
    items.update(f"{a}{_ARROW}{b}" for a, b in zip(variant, variant[1:], strict=False))
    return items


def _text(items: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(items)) + "}"


class SequentialRules(ProcessModel):
    """Association rules over the activities and directly-follows pairs of each case.

    Args:
        min_support: Share of cases an itemset must appear in.
        min_confidence: Share of cases with the antecedent that must have the consequent.
        max_len: Largest itemset (antecedent plus consequent) mined; 2 gives only "if X then
            Y" rules between single activities or pairs.
        max_rules: Rules kept (highest confidence, then lift, then support).
        fitness_threshold: A case is conformant when its fitness reaches this.
    """

    EXTRA_COLUMNS = ("rules_fired", "rules_violated")
    REPORTS = ("rules",)

    def __init__(
        self,
        min_support: float = 0.05,
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

    def _check(self) -> None:
        for name in ("min_support", "min_confidence"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
                raise ConfigError(
                    f"expected a number in (0, 1], got {value!r}.",
                    key=f"create_model.params.{name}",
                )
        for name, low in (("max_len", 2), ("max_rules", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"expected an integer >= {low}, got {value!r}.",
                    key=f"create_model.params.{name}",
                )

    def _fit(self, log: pd.DataFrame, variants: Sequence[Variant]) -> None:
        """Mine the rules; ``variants`` holds one sequence per case (repeats included)."""
        from mlxtend.frequent_patterns import association_rules, fpgrowth

        self._check()
        unique, counts = _count(variants)
        sets = [case_items(v) for v in unique]
        self.items_ = sorted(set().union(*sets)) if sets else []
        matrix = self._matrix(sets)
        onehot = pd.DataFrame(np.repeat(matrix, counts, axis=0), columns=self.items_)
        frequent = fpgrowth(
            onehot, min_support=float(self.min_support), use_colnames=True, max_len=self.max_len
        )
        if len(frequent) and frequent["itemsets"].map(len).max() > 1:
            found = association_rules(
                frequent,
                num_itemsets=len(onehot),
                metric="confidence",
                min_threshold=float(self.min_confidence),
                return_metrics=["support", "confidence", "lift"],
            )
        else:
            found = pd.DataFrame(
                columns=["antecedents", "consequents", "support", "confidence", "lift"]
            )
        found = found[
            [
                not _trivial(a, c)
                for a, c in zip(found["antecedents"], found["consequents"], strict=True)
            ]
        ]
        found = found.sort_values(
            ["confidence", "lift", "support"], ascending=False, kind="stable"
        ).head(self.max_rules)
        self.rules_ = pd.DataFrame(
            {
                "rule": [
                    f"{_text(a)} => {_text(c)}"
                    for a, c in zip(found["antecedents"], found["consequents"], strict=True)
                ],
                "support": found["support"].to_numpy(dtype="float64"),
                "confidence": found["confidence"].to_numpy(dtype="float64"),
                "lift": found["lift"].to_numpy(dtype="float64"),
            }
        ).reset_index(drop=True)
        self.antecedents_ = self._matrix([set(a) for a in found["antecedents"]])
        self.consequents_ = self._matrix([set(c) for c in found["consequents"]])

    def _matrix(self, sets: Sequence[set[str]]) -> npt.NDArray[np.bool_]:
        column = {item: j for j, item in enumerate(self.items_)}
        matrix = np.zeros((len(sets), len(self.items_)), dtype=bool)
        for i, items in enumerate(sets):
            matrix[i, [column[x] for x in items if x in column]] = True
        return matrix

    def _judge(self, variants: Sequence[Variant]) -> pd.DataFrame:
        cases = self._matrix([case_items(v) for v in variants]).astype(np.int32)
        need_a = self.antecedents_.sum(axis=1)
        need_c = self.consequents_.sum(axis=1)
        fired = cases @ self.antecedents_.T.astype(np.int32) == need_a
        holds = cases @ self.consequents_.T.astype(np.int32) == need_c
        return rule_verdicts(fired, holds, self.rules_["rule"].tolist())

    def figures(self, name: str) -> dict[str, Figure]:
        """Return ``rules``: the most confident rules as a table."""
        from observml.experiments._pattern_reports import rules_table

        return {"rules": rules_table(self.rules_, title=name)}

    def arcs(self) -> set[tuple[str, str]]:
        """Return the directly-follows pairs that appear in some rule."""
        used = np.asarray(self.antecedents_.any(axis=0) | self.consequents_.any(axis=0))
        pairs: set[tuple[str, str]] = set()
        for item, flag in zip(self.items_, used.tolist(), strict=True):
            if flag and _ARROW in item:
                a, _, b = item.partition(_ARROW)
                pairs.add((a, b))
        return pairs


def _count(variants: Sequence[Variant]) -> tuple[list[Variant], npt.NDArray[np.int64]]:
    counts: dict[Variant, int] = {}
    for v in variants:
        counts[v] = counts.get(v, 0) + 1
    return list(counts), np.fromiter(counts.values(), dtype=np.int64, count=len(counts))


def _trivial(antecedent: Any, consequent: Any) -> bool:
    """Whether every consequent item is an end of an antecedent pair (always true)."""
    ends: set[str] = set()
    for item in antecedent:
        if _ARROW in item:
            a, _, b = item.partition(_ARROW)
            ends.update((a, b))
    return all(item in ends for item in consequent)
