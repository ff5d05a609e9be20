"""Sequential patterns of activities (what CM-SPAM mines), and the rules they give.

A case *contains* the pattern ``<a1, ..., an>`` when its activities ``a1 ... an`` occur in
that order at positions ``p1 < ... < pn`` with ``p(i+1) - p(i) <= max_gap`` (1: adjacent
events; ``None``: any distance). A pattern's support is the share of cases containing it.

The patterns are those of CM-SPAM (Fournier-Viger, Gomariz, Campos & Thomas, "Fast Vertical
Mining of Sequential Patterns Using Co-occurrence Information", PAKDD 2014), which ObservML 1.0
ran through SPMF with the same parameters (``minsup``, ``min_len``, ``max_len``, ``max_gap``,
required items). They are found here by prefix projection, PrefixSpan (Pei et al., "PrefixSpan:
Mining Sequential Patterns Efficiently by Prefix-Projected Pattern Growth", ICDE 2001), keeping
every end position of a prefix so that the gap constraint is exact: every complete algorithm
returns the same set, CM-SPAM's co-occurrence map only prunes candidates sooner. (Neither
PyPI's ``prefixspan``, last released in 2018, nor ``gsppy``, whose gap check follows one greedy
match per start, counts supports under a gap constraint exactly.)

Each pattern ``P = <a1, ..., an>`` (n >= 2) gives the rule ``<a1, ..., a(n-1)> => an``: a case
with the prefix continues with ``an`` (within ``max_gap`` events). Its confidence is
``support(P) / support(prefix)``; rules of at least ``min_confidence`` are kept. A case is
judged by these rules as ``sequential_rules`` judges it: a rule fires on a case containing its
prefix and is violated when the case does not contain the whole pattern; fitness is the share
of fired rules that hold. ``patterns_contained`` counts the reported patterns the case contains.

The fitted state is numbers, strings and arrays only.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.utils._param_validation import Interval

from observml.errors import ConfigError
from observml.experiments._process_models import ProcessModel, Variant
from observml.experiments._rule_verdicts import rule_verdicts

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["SequentialPatterns", "extend_ends", "pattern_text"]

IntArray = npt.NDArray[np.int64]


def pattern_text(items: Sequence[str]) -> str:
    """Return ``<a, b, c>``."""
    return "<" + ", ".join(items) + ">"


def extend_ends(positions: IntArray, ends: IntArray, max_gap: int | None) -> IntArray:
    """Return where a pattern extended by one activity can end in a case.

    Args:
        positions: Sorted positions of the new activity in the case.
        ends: Sorted positions where the pattern so far can end.
        max_gap: Largest step from the pattern's last activity to the new one (``None``: any).
    """
    if max_gap is None:
        found: IntArray = positions[positions > ends[0]]
        return found
    before = np.searchsorted(ends, positions, side="left") - 1  # the last end before each
    ok = before >= 0
    ok[ok] = positions[ok] - ends[before[ok]] <= max_gap
    return positions[ok]


class _Database:
    """Distinct variants as activity codes, their case counts and each activity's positions."""

    def __init__(self, variants: Sequence[Variant], items: Sequence[str]) -> None:
        code = {item: i for i, item in enumerate(items)}
        counts: dict[Variant, int] = {}
        for v in variants:
            counts[v] = counts.get(v, 0) + 1
        self.sequences = [np.array([code.get(a, -1) for a in v], dtype=np.int64) for v in counts]
        self.weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        self.positions = [_positions(s) for s in self.sequences]


def _positions(sequence: IntArray) -> dict[int, IntArray]:
    order = np.argsort(sequence, kind="stable")
    values, starts = np.unique(sequence[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {int(v): g.astype(np.int64) for v, g in zip(values, groups, strict=True) if v >= 0}


class SequentialPatterns(ProcessModel):
    """Frequent sequential patterns of activities and the rules they give (module docstring).

    Args:
        min_support: Share of cases a pattern appears in, in (0, 1] (1.0's ``minsup``).
        min_len: Fewest activities in a reported pattern (and a rule's pattern), >= 1.
        max_len: Most activities in a pattern, >= 1.
        max_gap: Largest step between consecutive activities of a pattern in a case: 1 means
            adjacent events; ``None`` allows any distance.
        required_items: Activities every reported pattern and rule must contain (``None``:
            no requirement).
        min_confidence: Share of the cases with a rule's prefix that must continue with its
            last activity, in (0, 1].
        max_rules: Rules kept: the most confident, then the most supported.
        max_patterns: Most patterns mined before training stops with an error (raise
            ``min_support`` or lower ``max_len`` when it does).
        fitness_threshold: A case is conformant when its fitness reaches this.
    """

    EXTRA_COLUMNS = ("patterns_contained", "rules_fired", "rules_violated")
    REPORTS = ("patterns", "rules")
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_support": [Interval(Real, 0, 1, closed="right")],
        "min_len": [Interval(Integral, 1, None, closed="left")],
        "max_len": [Interval(Integral, 1, None, closed="left")],
        "max_gap": [Interval(Integral, 1, None, closed="left"), None],
        "required_items": [list, None],
        "min_confidence": [Interval(Real, 0, 1, closed="right")],
        "max_rules": [Interval(Integral, 1, None, closed="left")],
        "max_patterns": [Interval(Integral, 1, None, closed="left")],
        "fitness_threshold": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        min_support: float = 0.1,
        min_len: int = 1,
        max_len: int = 10,
        max_gap: int | None = 3,
        required_items: list[str] | None = None,
        min_confidence: float = 0.9,
        max_rules: int = 200,
        max_patterns: int = 50_000,
        fitness_threshold: float = 1.0,
    ) -> None:
        super().__init__(fitness_threshold)
        self.min_support = min_support
        self.min_len = min_len
        self.max_len = max_len
        self.max_gap = max_gap
        self.required_items = required_items
        self.min_confidence = min_confidence
        self.max_rules = max_rules
        self.max_patterns = max_patterns

    def _check(self) -> None:
        if self.min_len > self.max_len:
            raise ConfigError(
                f"min_len ({self.min_len}) is larger than max_len ({self.max_len}).",
                key="create_model.params.min_len",
            )
        required = self.required_items or []
        if not all(isinstance(item, str) for item in required):
            raise ConfigError(
                f"expected a list of activity names, got {self.required_items!r}.",
                key="create_model.params.required_items",
            )

    # -- mining ---------------------------------------------------------------------------
    def _fit(self, log: pd.DataFrame, variants: Sequence[Variant]) -> None:
        self._check()
        self.items_: list[str] = sorted({a for v in variants for a in v})
        db = _Database(variants, self.items_)
        total = float(db.weights.sum())
        items: list[int] = []
        parents: list[int] = []
        supports: list[float] = []
        lengths: list[int] = []
        need = float(self.min_support) * total - 1e-9

        def grow(parent: int, length: int, projection: list[tuple[int, IntArray]]) -> None:
            counts = np.zeros(len(self.items_), dtype=np.float64)
            for v, ends in projection:
                reach = np.unique(self._reachable(db.sequences[v], ends))
                counts[reach[reach >= 0]] += db.weights[v]
            for item in np.flatnonzero(counts >= need).tolist():
                extended = []
                for v, ends in projection:
                    positions = db.positions[v].get(item)
                    if positions is not None:
                        found = extend_ends(positions, ends, self.max_gap)
                        if len(found):
                            extended.append((v, found))
                index = record(item, parent, counts[item] / total, length + 1)
                if length + 1 < self.max_len:
                    grow(index, length + 1, extended)

        def record(item: int, parent: int, support: float, length: int) -> int:
            if len(items) >= self.max_patterns:
                raise ValueError(
                    f"more than max_patterns={self.max_patterns} patterns at min_support"
                    f" {self.min_support}; raise min_support or lower max_len"
                )
            items.append(item)
            parents.append(parent)
            supports.append(support)
            lengths.append(length)
            return len(items) - 1

        for item in range(len(self.items_)):
            projection = [
                (v, p[item]) for v, p in enumerate(db.positions) if item in db.positions[v]
            ]
            support = float(sum(db.weights[v] for v, _ in projection))
            if projection and support >= need:
                index = record(item, -1, support / total, 1)
                if self.max_len > 1:
                    grow(index, 1, projection)
        self.pattern_item_ = np.array(items, dtype=np.int64)
        self.pattern_parent_ = np.array(parents, dtype=np.int64)
        self.pattern_support_ = np.array(supports, dtype=np.float64)
        self.pattern_length_ = np.array(lengths, dtype=np.int64)
        self._keep()

    def _reachable(self, sequence: IntArray, ends: IntArray) -> IntArray:
        """The activities at the positions a pattern ending at ``ends`` can extend to."""
        if self.max_gap is None:
            reach: IntArray = sequence[ends[0] + 1 :]
            return reach
        step = np.zeros(len(sequence) + 1, dtype=np.int64)
        np.add.at(step, ends + 1, 1)
        np.add.at(step, np.minimum(ends + self.max_gap + 1, len(sequence)), -1)
        mask = np.cumsum(step)[:-1] > 0
        return sequence[mask]

    def _texts(self) -> list[str]:
        texts: list[str] = []
        for item, parent in zip(
            self.pattern_item_.tolist(), self.pattern_parent_.tolist(), strict=True
        ):
            name = self.items_[item]
            texts.append(pattern_text([name]) if parent < 0 else f"{texts[parent][:-1]}, {name}>")
        return texts

    def _keep(self) -> None:
        """Choose the reported patterns and the rules (see the module docstring)."""
        texts = self._texts()
        self.pattern_text_ = texts
        required = [
            self.items_.index(a) if a in self.items_ else -1 for a in self.required_items or []
        ]
        has: list[set[int]] = []
        for item, parent in zip(
            self.pattern_item_.tolist(), self.pattern_parent_.tolist(), strict=True
        ):
            has.append({item} | (has[parent] if parent >= 0 else set()))
        self.reported_ = np.array(
            [
                length >= self.min_len and all(r in found for r in required)
                for length, found in zip(self.pattern_length_.tolist(), has, strict=True)
            ],
            dtype=bool,
        )
        single = {
            int(item): float(support)
            for item, parent, support in zip(
                self.pattern_item_, self.pattern_parent_, self.pattern_support_, strict=True
            )
            if parent < 0
        }
        rows = []
        for i in np.flatnonzero(self.reported_ & (self.pattern_parent_ >= 0)).tolist():
            parent = int(self.pattern_parent_[i])
            confidence = float(self.pattern_support_[i] / self.pattern_support_[parent])
            if confidence < float(self.min_confidence) - 1e-12:
                continue
            item = int(self.pattern_item_[i])
            text = f"{texts[parent]} => {self.items_[item]}"
            rows.append((i, confidence, confidence / single[item], text))
        rows.sort(key=lambda r: (-r[1], -float(self.pattern_support_[r[0]]), r[3]))
        rows = rows[: self.max_rules]
        self.rule_pattern_ = np.array([r[0] for r in rows], dtype=np.int64)
        self.rule_confidence_ = np.array([r[1] for r in rows], dtype=np.float64)
        self.rule_lift_ = np.array([r[2] for r in rows], dtype=np.float64)
        self.rule_text_ = [r[3] for r in rows]

    # -- judging --------------------------------------------------------------------------
    def contains(self, variants: Sequence[Variant]) -> npt.NDArray[np.bool_]:
        """Return variants x mined patterns: whether each variant contains each pattern."""
        db = _Database(variants, self.items_)
        counts: dict[Variant, int] = {}
        for v in variants:
            counts.setdefault(v, len(counts))
        rows = np.zeros((len(counts), len(self.pattern_item_)), dtype=bool)
        for row, positions in enumerate(db.positions):
            rows[row] = self._contained(positions)
        found: npt.NDArray[np.bool_] = rows[[counts[v] for v in variants]]
        return found

    def _contained(self, positions: dict[int, IntArray]) -> npt.NDArray[np.bool_]:
        ends: list[IntArray | None] = []
        empty = np.zeros(0, dtype=np.int64)
        for item, parent in zip(
            self.pattern_item_.tolist(), self.pattern_parent_.tolist(), strict=True
        ):
            at = positions.get(item, empty)
            if parent < 0:
                ends.append(at if len(at) else None)
                continue
            before = ends[parent]
            found = (
                extend_ends(at, before, self.max_gap) if before is not None and len(at) else empty
            )
            ends.append(found if len(found) else None)
        return np.array([e is not None for e in ends], dtype=bool)

    def _judge(self, variants: Sequence[Variant]) -> pd.DataFrame:
        contained = self.contains(variants)
        fired = contained[:, self.pattern_parent_[self.rule_pattern_]]
        holds = contained[:, self.rule_pattern_]
        judged = rule_verdicts(fired, holds, self.rule_text_)
        judged.insert(1, "patterns_contained", contained[:, self.reported_].sum(axis=1))
        return judged

    # -- what it found --------------------------------------------------------------------
    @property
    def patterns_(self) -> pd.DataFrame:
        """The reported patterns, most frequent first: ``pattern``, ``length``, ``support``."""
        keep = np.flatnonzero(self.reported_)
        frame = pd.DataFrame(
            {
                "pattern": [self.pattern_text_[i] for i in keep],
                "length": self.pattern_length_[keep],
                "support": self.pattern_support_[keep],
            }
        )
        frame = frame.sort_values(["support", "length", "pattern"], ascending=[False, False, True])
        return frame.reset_index(drop=True)

    @property
    def rules_(self) -> pd.DataFrame:
        """The rules, most confident first: ``rule``, ``support``, ``confidence``, ``lift``."""
        return pd.DataFrame(
            {
                "rule": self.rule_text_,
                "support": self.pattern_support_[self.rule_pattern_],
                "confidence": self.rule_confidence_,
                "lift": self.rule_lift_,
            }
        )

    def figures(self, name: str) -> dict[str, Figure]:
        """Return ``patterns`` (support of the most frequent) and ``rules`` (a table)."""
        from observml.experiments._pattern_reports import rules_table, support_bars

        patterns = self.patterns_
        gap = "any gap" if self.max_gap is None else f"max_gap {self.max_gap}"
        return {
            "patterns": support_bars(
                patterns["pattern"].tolist(),
                patterns["support"].to_numpy(),
                title=f"{name}: sequential patterns ({gap})",
                what="patterns",
            ),
            "rules": rules_table(self.rules_, title=name),
        }

    def arcs(self) -> set[tuple[str, str]]:
        """None: patterns allow gaps, so the process map shows the log's arcs only."""
        return set()
