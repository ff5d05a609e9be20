"""The k sequential rules of highest support (TopSeqRules), and cases judged by them.

A sequential rule ``X => Y`` (``X``, ``Y`` disjoint sets of activities) *occurs* in a case when
every activity of ``X`` appears before every activity of ``Y``: the last first occurrence of
``X``'s activities comes before the first last occurrence of ``Y``'s. Its support is the share
of cases it occurs in; its confidence is that count over the cases containing all of ``X``.

The rules are those of TopSeqRules (Fournier-Viger & Tseng, "Mining Top-K Sequential Rules",
ADMA 2011), which searches like RuleGrowth (Fournier-Viger, Nkambou & Tseng, SAC 2011): start
from every rule ``{a} => {b}``, grow rules by adding one activity to the left or right side
(activities in increasing order, and a rule grown on the left is only grown on the left again,
so each rule is reached once), always expanding the candidate of highest support first, keep
the ``k`` best rules whose confidence reaches ``min_confidence``, and raise the minimum support
to the k-th best as they come in; support only falls as a rule grows, so any rule below it is
pruned with all its expansions. Where TopSeqRules keeps every rule tied with the k-th, this
keeps exactly ``k``: ties go to the higher confidence, then the fewer activities, then the
rule's text. ``max_antecedent`` and ``max_consequent`` bound the sides (SPMF's optional
parameters of the same meaning). No library on PyPI mines top-k sequential rules.

A case is judged as ``sequential_rules`` judges it: a rule fires on a case containing all of
``X`` and is violated when the rule does not occur in it; fitness is the share of fired rules
that hold.

The fitted state is numbers, strings and arrays only.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.utils._param_validation import Interval

from observml.experiments._itemsets import itemset_text
from observml.experiments._process_models import ProcessModel, Variant
from observml.experiments._rule_verdicts import rule_verdicts

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["TopKSequentialRules", "first_last"]

FloatArray = npt.NDArray[np.float64]


def first_last(variants: Sequence[Variant], items: Sequence[str]) -> tuple[FloatArray, FloatArray]:
    """Return variants x items: each item's first and last position (``inf``/``-inf``: absent)."""
    code = {item: j for j, item in enumerate(items)}
    first = np.full((len(variants), len(items)), np.inf)
    last = np.full((len(variants), len(items)), -np.inf)
    for i, variant in enumerate(variants):
        for position, activity in enumerate(variant):
            j = code.get(activity)
            if j is not None:
                last[i, j] = position
                if first[i, j] == np.inf:
                    first[i, j] = position
    return first, last


class _Rule:
    """A rule during the search: its sides, the per-variant bounds and its counts."""

    __slots__ = ("antecedent", "consequent", "count", "first", "last", "left_only", "size_x")

    def __init__(
        self,
        antecedent: tuple[int, ...],
        consequent: tuple[int, ...],
        first: FloatArray,
        last: FloatArray,
        count: float,
        size_x: float,
        left_only: bool,
    ) -> None:
        self.antecedent = antecedent
        self.consequent = consequent
        self.first = first  # per variant: the last first-occurrence of X's items
        self.last = last  # per variant: the first last-occurrence of Y's items
        self.count = count  # cases the rule occurs in
        self.size_x = size_x  # cases containing all of X
        self.left_only = left_only


class TopKSequentialRules(ProcessModel):
    """The ``k`` sequential rules of highest support (see the module docstring).

    Args:
        k: Rules kept (1.0's ``k``).
        min_confidence: Share of the cases with all of a rule's antecedent in which the rule
            occurs, in (0, 1] (1.0's ``minconf_ar``).
        max_antecedent: Most activities on a rule's left side, >= 1.
        max_consequent: Most activities on a rule's right side, >= 1.
        fitness_threshold: A case is conformant when its fitness reaches this.
    """

    EXTRA_COLUMNS = ("rules_fired", "rules_violated")
    REPORTS = ("rules",)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "k": [Interval(Integral, 1, None, closed="left")],
        "min_confidence": [Interval(Real, 0, 1, closed="right")],
        "max_antecedent": [Interval(Integral, 1, None, closed="left")],
        "max_consequent": [Interval(Integral, 1, None, closed="left")],
        "fitness_threshold": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        k: int = 10,
        min_confidence: float = 0.8,
        max_antecedent: int = 3,
        max_consequent: int = 1,
        fitness_threshold: float = 1.0,
    ) -> None:
        super().__init__(fitness_threshold)
        self.k = k
        self.min_confidence = min_confidence
        self.max_antecedent = max_antecedent
        self.max_consequent = max_consequent

    # -- mining ---------------------------------------------------------------------------
    def _fit(self, log: pd.DataFrame, variants: Sequence[Variant]) -> None:
        counts: dict[Variant, int] = {}
        for v in variants:
            counts[v] = counts.get(v, 0) + 1
        self.items_: list[str] = sorted({a for v in counts for a in v})
        first, last = first_last(list(counts), self.items_)
        weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        total = float(weights.sum())
        present = np.isfinite(first)
        best = self._search(first, last, present, weights)
        n_items = len(self.items_)
        self.antecedents_ = np.zeros((len(best), n_items), dtype=bool)
        self.consequents_ = np.zeros((len(best), n_items), dtype=bool)
        for r, rule in enumerate(best):
            self.antecedents_[r, list(rule.antecedent)] = True
            self.consequents_[r, list(rule.consequent)] = True
        self.rule_support_ = np.array([r.count / total for r in best], dtype=np.float64)
        self.rule_confidence_ = np.array([r.count / r.size_x for r in best], dtype=np.float64)
        y_share = [
            float(weights[present[:, list(r.consequent)].all(axis=1)].sum()) / total for r in best
        ]
        self.rule_lift_ = self.rule_confidence_ / np.maximum(np.array(y_share), 1e-300)
        self.rule_text_ = [self._text(r.antecedent, r.consequent) for r in best]

    def _text(self, antecedent: Sequence[int], consequent: Sequence[int]) -> str:
        return (
            f"{itemset_text([self.items_[i] for i in antecedent])} =>"
            f" {itemset_text([self.items_[i] for i in consequent])}"
        )

    def _search(
        self,
        first: FloatArray,
        last: FloatArray,
        present: npt.NDArray[np.bool_],
        weights: FloatArray,
    ) -> list[_Rule]:
        """TopSeqRules: return the ``k`` best rules, best first."""
        min_conf = float(self.min_confidence) - 1e-12
        top: list[tuple[tuple[Any, ...], int, _Rule]] = []  # min-heap: the worst kept on top
        candidates: list[tuple[float, int, _Rule]] = []  # max-heap by count
        minimum = 1e-12  # a rule must occur in some case
        serial = 0

        def rank(rule: _Rule) -> tuple[Any, ...]:
            """Larger is better: support, confidence, fewer items, then earlier text."""
            text = self._text(rule.antecedent, rule.consequent)
            size = len(rule.antecedent) + len(rule.consequent)
            return (rule.count, rule.count / rule.size_x, -size, _Reversed(text))

        def consider(rule: _Rule) -> None:
            nonlocal minimum, serial
            if rule.count < minimum:
                return
            serial += 1
            if rule.count / rule.size_x >= min_conf:
                heapq.heappush(top, (rank(rule), serial, rule))
                if len(top) > self.k:
                    heapq.heappop(top)
                if len(top) == self.k:
                    minimum = max(minimum, top[0][2].count)
            heapq.heappush(candidates, (-rule.count, serial, rule))

        n_items = first.shape[1]
        for a in range(n_items):
            has_a = present[:, a]
            size_x = float(weights[has_a].sum())
            if size_x <= 0:
                continue
            for b in range(n_items):
                if a == b:
                    continue
                occurs = first[:, a] < last[:, b]
                count = float(weights[occurs].sum())
                if count > 0:
                    consider(_Rule((a,), (b,), first[:, a], last[:, b], count, size_x, False))
        while candidates:
            count, _, rule = heapq.heappop(candidates)
            if -count < minimum:
                break
            if len(rule.antecedent) < self.max_antecedent:
                used = set(rule.consequent)
                for c in range(rule.antecedent[-1] + 1, n_items):
                    if c in used:
                        continue
                    bound = np.maximum(rule.first, first[:, c])
                    occurs = bound < rule.last
                    new = float(weights[occurs].sum())
                    if new >= minimum and new > 0:
                        size_x = float(weights[np.isfinite(bound)].sum())
                        antecedent = (*rule.antecedent, c)
                        consider(
                            _Rule(antecedent, rule.consequent, bound, rule.last, new, size_x, True)
                        )
            if not rule.left_only and len(rule.consequent) < self.max_consequent:
                used = set(rule.antecedent)
                for c in range(rule.consequent[-1] + 1, n_items):
                    if c in used:
                        continue
                    bound = np.minimum(rule.last, last[:, c])
                    occurs = rule.first < bound
                    new = float(weights[occurs].sum())
                    if new >= minimum and new > 0:
                        consequent = (*rule.consequent, c)
                        consider(
                            _Rule(
                                rule.antecedent,
                                consequent,
                                rule.first,
                                bound,
                                new,
                                rule.size_x,
                                False,
                            )
                        )
        return [rule for _, _, rule in sorted(top, key=lambda t: t[0], reverse=True)]

    # -- judging --------------------------------------------------------------------------
    def _judge(self, variants: Sequence[Variant]) -> pd.DataFrame:
        first, last = first_last(variants, self.items_)
        n = len(variants)
        fired = np.zeros((n, len(self.rule_text_)), dtype=bool)
        holds = np.zeros_like(fired)
        for r, (x, y) in enumerate(zip(self.antecedents_, self.consequents_, strict=True)):
            bound = first[:, x].max(axis=1) if n else np.zeros(0)
            fired[:, r] = np.isfinite(bound)
            holds[:, r] = bound < last[:, y].min(axis=1) if n else np.zeros(0, dtype=bool)
        return rule_verdicts(fired, holds, self.rule_text_)

    # -- what it found --------------------------------------------------------------------
    @property
    def rules_(self) -> pd.DataFrame:
        """The rules, highest support first: ``rule``, ``support``, ``confidence``, ``lift``."""
        return pd.DataFrame(
            {
                "rule": self.rule_text_,
                "support": self.rule_support_,
                "confidence": self.rule_confidence_,
                "lift": self.rule_lift_,
            }
        )

    def figures(self, name: str) -> dict[str, Figure]:
        """Return ``rules``: the k rules as a table."""
        from observml.experiments._pattern_reports import rules_table

        return {"rules": rules_table(self.rules_, title=f"{name}: top-{self.k} sequential rules")}

    def arcs(self) -> set[tuple[str, str]]:
        """None: a rule's sides may be far apart, so the process map shows the log's arcs."""
        return set()


class _Reversed:
    """Orders text backwards, so that in a "larger is better" rank the earlier text wins."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __lt__(self, other: _Reversed) -> bool:
        return self.text > other.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.text == other.text

    def __hash__(self) -> int:
        return hash(self.text)
