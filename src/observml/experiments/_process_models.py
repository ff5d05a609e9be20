"""Process models of the ``process_mining`` experiment: discovery and per-variant conformance.

Every model works on an event log already in pm4py's column names (``case:concept:name``,
``concept:name``, ``time:timestamp``; see :data:`CASE`, :data:`ACTIVITY`, :data:`TIME`) and
judges *variants* (a case's sequence of activities), so each distinct sequence is checked once.

* :class:`HeuristicsMiner` and :class:`InductiveMiner` discover a Petri net with pm4py
  (AGPL-3.0, the ``process-mining`` extra, imported only here and only when used) and check
  conformance by token-based replay.
* :class:`SequentialRules` (``_rules.py``) mines association rules over cases, pure Python.
* ``_itemsets.py`` (``apriori``, ``fpgrowth``), ``_sequences.py`` (``cmspam``) and
  ``_topk_rules.py`` (``topk``) mine frequent patterns and judge cases by the rules they break
  (:func:`~observml.experiments._rule_verdicts.rule_verdicts`).

A case's ``fitness`` is pm4py's trace fitness times the share of its events whose activity the
model knows (pm4py skips unknown activities); it is ``conformant`` when the fitness reaches
``fitness_threshold`` (1.0 by default: the case replays without missing or remaining tokens and
has no unknown activity).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from observml.errors import ConfigError

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = [
    "ACTIVITY",
    "CASE",
    "TIME",
    "HeuristicsMiner",
    "InductiveMiner",
    "PetriNetMiner",
    "ProcessModel",
    "Variant",
]

CASE: Final = "case:concept:name"
ACTIVITY: Final = "concept:name"
TIME: Final = "time:timestamp"
#: Marks the start and end of every case in the model's arcs.
START: Final = "▶ start"
END: Final = "■ end"

Variant = tuple[str, ...]
#: Variants whose verdict a model remembers (see :meth:`ProcessModel.conformance`).
MAX_REMEMBERED: Final = 20_000


class ProcessModel(abc.ABC):
    """A model discovered from an event log that judges how well each variant fits it.

    Args:
        fitness_threshold: A case is conformant when its fitness reaches this (0..1].
    """

    #: Columns :meth:`conformance` adds after the common ones.
    EXTRA_COLUMNS: tuple[str, ...] = ()
    #: Names of the reports :meth:`figures` draws, after the ones every model has.
    REPORTS: tuple[str, ...] = ()

    def __init__(self, fitness_threshold: float = 1.0) -> None:
        self.fitness_threshold = fitness_threshold

    def _check_threshold(self) -> None:
        value = self.fitness_threshold
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
            raise ConfigError(
                f"expected a number in (0, 1], got {value!r}.",
                key="create_model.params.fitness_threshold",
            )

    def fit(self, log: pd.DataFrame, variants: Sequence[Variant]) -> None:
        """Discover the model from ``log`` (its ``variants`` are given for convenience)."""
        self._check_threshold()
        self.activities_ = frozenset(log[ACTIVITY].unique())
        self._fit(log, variants)

    @abc.abstractmethod
    def _fit(self, log: pd.DataFrame, variants: Sequence[Variant]) -> None:
        """Discover the model."""

    @abc.abstractmethod
    def _judge(self, variants: Sequence[Variant]) -> pd.DataFrame:
        """Return per variant ``base_fitness`` (before the unknown-activity share) and more."""

    def conformance(self, variants: Sequence[Variant]) -> pd.DataFrame:
        """Return one row per variant: ``fitness``, ``conformant``, ``unknown_activities``...

        Verdicts are remembered per variant (up to :data:`MAX_REMEMBERED`): a variant seen
        before is not replayed again, and keeps its verdict across save and load. This also
        pins pm4py's token replay, whose choice among silent transitions follows the memory
        order of the net's objects and so may differ in a freshly loaded copy.
        """
        remembered: dict[Variant, dict[str, Any]] = self.__dict__.setdefault("verdicts_", {})
        todo = [v for v in dict.fromkeys(variants) if v not in remembered]
        fresh: dict[Variant, dict[str, Any]] = {}
        if todo:
            for variant, row in zip(todo, self._verdicts(todo).to_dict("records"), strict=True):
                fresh[variant] = row
                if len(remembered) < MAX_REMEMBERED:
                    remembered[variant] = row
        rows = [remembered[v] if v in remembered else fresh[v] for v in variants]
        return pd.DataFrame.from_records(rows, columns=self._columns())

    def _columns(self) -> list[str]:
        return ["fitness", "conformant", "unknown_activities", *self.EXTRA_COLUMNS]

    def _verdicts(self, variants: Sequence[Variant]) -> pd.DataFrame:
        judged = self._judge(variants)
        unknown = np.array([sum(a not in self.activities_ for a in v) for v in variants])
        length = np.array([max(len(v), 1) for v in variants])
        fitness = judged.pop("base_fitness").to_numpy(dtype="float64") * (1 - unknown / length)
        out = pd.DataFrame(
            {
                "fitness": fitness,
                "conformant": fitness >= self.fitness_threshold - 1e-12,
                "unknown_activities": unknown,
            }
        )
        for column in judged.columns:
            out[column] = judged[column].to_numpy()
        return out

    def precision(self, log: pd.DataFrame) -> dict[str, float]:
        """Return the model's precision metrics on ``log`` (none by default)."""
        return {}

    def figures(self, name: str) -> dict[str, Figure]:
        """Return the model's own reports (:data:`REPORTS`), titled after experiment ``name``."""
        return {}

    @abc.abstractmethod
    def arcs(self) -> set[tuple[str, str]]:
        """Return the activity-to-activity arcs of the model (with :data:`START`/:data:`END`)."""


def markov_precision(log: pd.DataFrame, arcs: set[tuple[str, str]]) -> float:
    """First-order Markovian precision of a model's ``arcs`` against a sorted event log.

    For every activity (and the case start) that the model knows, the share of its model
    successors (activities or the case end) that the log shows directly after it, weighted
    by how often it occurs in the log. 1.0 means the model allows nothing the log does not
    show; a "flower" model that allows anything after anything scores low.
    """
    allowed: dict[str, set[str]] = {}
    for source, target in arcs:
        allowed.setdefault(source, set()).add(target)
    case = log[CASE].to_numpy()
    activity = log[ACTIVITY].to_numpy().astype(str)
    first = np.r_[True, case[1:] != case[:-1]] if len(case) else np.zeros(0, dtype=bool)
    last = np.r_[case[1:] != case[:-1], True] if len(case) else np.zeros(0, dtype=bool)
    sources = np.concatenate([activity, np.full(int(first.sum()), START)])
    targets = np.concatenate(
        [np.where(last, END, np.r_[activity[1:], [END]][: len(activity)]), activity[first]]
    )
    pairs = pd.DataFrame({"source": sources, "target": targets})
    weights = pairs.groupby("source").size()
    seen = pairs.groupby("source")["target"].agg(set)
    total = score = 0.0
    for source, weight in weights.items():
        options = allowed.get(str(source))
        if not options:
            continue
        total += float(weight)
        score += float(weight) * len(options & seen[source]) / len(options)
    return score / total if total else float("nan")


def _pm4py(what: str) -> Any:
    try:
        import pm4py
    except ImportError as exc:  # pragma: no cover - the ModelSpec checks this first
        raise ConfigError(
            f"{what} needs pm4py (AGPL-3.0), which is not installed."
            " Install it with: pip install 'observml[process-mining]'",
            key="create_model.model",
        ) from exc
    return pm4py


class PetriNetMiner(ProcessModel):
    """A Petri net discovered with pm4py, checked by token-based replay.

    Args:
        fitness_threshold: A case is conformant when its fitness reaches this.
        precision_cases: Cases used for pm4py's ETConformance precision in ``score`` (the
            first ones); 0 (the default) skips it, as it replays every prefix and is slow.
    """

    EXTRA_COLUMNS = ("missing_tokens", "remaining_tokens")

    def __init__(self, fitness_threshold: float = 1.0, precision_cases: int = 0) -> None:
        super().__init__(fitness_threshold)
        self.precision_cases = precision_cases

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the net as PNML text (pm4py's object graph is too deep for pickle)."""
        state = dict(vars(self))
        if "net_" in state:
            from pm4py.objects.petri_net.exporter.variants import pnml

            state["pnml_"] = pnml.export_petri_as_string(
                state.pop("net_"), state.pop("initial_marking_"), state.pop("final_marking_")
            )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        text = state.pop("pnml_", None)
        vars(self).update(state)
        if text is not None:
            from pm4py.objects.petri_net.importer.variants import pnml

            net, initial, final = pnml.import_net_from_string(text)
            self.net_, self.initial_marking_, self.final_marking_ = net, initial, final

    @abc.abstractmethod
    def _discover(self, log: pd.DataFrame) -> tuple[Any, Any, Any]:
        """Return pm4py's ``(net, initial_marking, final_marking)``."""

    def _fit(self, log: pd.DataFrame, variants: Sequence[Variant]) -> None:
        if not isinstance(self.precision_cases, int) or self.precision_cases < 0:
            raise ConfigError(
                f"expected an integer >= 0, got {self.precision_cases!r}.",
                key="create_model.params.precision_cases",
            )
        self.net_, self.initial_marking_, self.final_marking_ = self._discover(log)
        self.arcs_ = self._arcs()

    def _judge(self, variants: Sequence[Variant]) -> pd.DataFrame:
        from pm4py.algo.conformance.tokenreplay.variants import token_replay

        parameters = {token_replay.Parameters.SHOW_PROGRESS_BAR: False}
        replayed = token_replay.apply_variants_list(
            [(v, 1) for v in variants],
            self.net_,
            self.initial_marking_,
            self.final_marking_,
            parameters=parameters,
        )
        return pd.DataFrame(
            {
                "base_fitness": [float(r["trace_fitness"]) for r in replayed],
                "missing_tokens": [int(r["missing_tokens"]) for r in replayed],
                "remaining_tokens": [int(r["remaining_tokens"]) for r in replayed],
            }
        )

    def precision(self, log: pd.DataFrame) -> dict[str, float]:
        """Return ``precision`` (first-order) and, with ``precision_cases``, ``etc_precision``.

        ``precision`` is ETConformance with the state abstracted to the last activity
        (Markovian precision of order 1): after each activity, the share of the successors
        the model allows (:meth:`arcs`) that the log shows, weighted by how often the
        activity occurs. It is cheap. ``etc_precision`` is pm4py's token-based ETConformance
        on the first ``precision_cases`` cases; it replays every prefix and can take minutes
        on nets with many silent transitions.
        """
        out = {"precision": markov_precision(log, self.arcs_)}
        if self.precision_cases:
            from pm4py.algo.evaluation.precision.variants import etconformance_token

            cases = log[CASE].unique()[: self.precision_cases]
            subset = log[log[CASE].isin(cases)]
            parameters = {etconformance_token.Parameters.SHOW_PROGRESS_BAR: False}
            value = etconformance_token.apply(
                subset, self.net_, self.initial_marking_, self.final_marking_, parameters=parameters
            )
            out["etc_precision"] = float(value)
        return out

    def arcs(self) -> set[tuple[str, str]]:
        """Return ``a -> b`` when a token from ``a`` can reach ``b`` through silent steps."""
        return set(self.arcs_)

    def _arcs(self) -> set[tuple[str, str]]:
        net, initial, final = self.net_, self.initial_marking_, self.final_marking_
        finals = set(final)
        arcs: set[tuple[str, str]] = set()

        def reach(places: list[Any]) -> tuple[set[str], bool]:
            labels: set[str] = set()
            ends = False
            seen_places: set[Any] = set()
            seen_silent: set[Any] = set()
            stack = list(places)
            while stack:
                place = stack.pop()
                if place in seen_places:
                    continue
                seen_places.add(place)
                ends = ends or place in finals
                for arc in place.out_arcs:
                    transition = arc.target
                    if transition.label is not None:
                        labels.add(str(transition.label))
                    elif transition not in seen_silent:
                        seen_silent.add(transition)
                        stack.extend(a.target for a in transition.out_arcs)
            return labels, ends

        labels, _ = reach(list(initial))
        arcs.update((START, b) for b in labels)
        for transition in net.transitions:
            if transition.label is None:
                continue
            labels, ends = reach([a.target for a in transition.out_arcs])
            arcs.update((str(transition.label), b) for b in labels)
            if ends:
                arcs.add((str(transition.label), END))
        return arcs


class HeuristicsMiner(PetriNetMiner):
    """pm4py's Heuristics Miner (dependency graph from directly-follows counts).

    Args:
        dependency_threshold: Minimum dependency measure of an arc.
        and_threshold: Minimum AND measure for parallel splits/joins.
        loop_two_threshold: Minimum measure of length-two loops.
        fitness_threshold: A case is conformant when its fitness reaches this.
        precision_cases: Cases for pm4py's ETConformance in ``score`` (0 skips it).
    """

    def __init__(
        self,
        dependency_threshold: float = 0.5,
        and_threshold: float = 0.65,
        loop_two_threshold: float = 0.5,
        fitness_threshold: float = 1.0,
        precision_cases: int = 0,
    ) -> None:
        super().__init__(fitness_threshold, precision_cases)
        self.dependency_threshold = dependency_threshold
        self.and_threshold = and_threshold
        self.loop_two_threshold = loop_two_threshold

    def _discover(self, log: pd.DataFrame) -> tuple[Any, Any, Any]:
        pm4py = _pm4py("heuristics_miner")
        found: tuple[Any, Any, Any] = pm4py.discover_petri_net_heuristics(
            log,
            dependency_threshold=self.dependency_threshold,
            and_threshold=self.and_threshold,
            loop_two_threshold=self.loop_two_threshold,
        )
        return found


class InductiveMiner(PetriNetMiner):
    """pm4py's Inductive Miner (a block-structured, sound model).

    Args:
        noise_threshold: Share of infrequent behaviour filtered out (pm4py's default 0 keeps
            everything: every training case fits; raise it when the training log is noisy).
        fitness_threshold: A case is conformant when its fitness reaches this.
        precision_cases: Cases for pm4py's ETConformance in ``score`` (0 skips it).
    """

    def __init__(
        self,
        noise_threshold: float = 0.0,
        fitness_threshold: float = 1.0,
        precision_cases: int = 0,
    ) -> None:
        super().__init__(fitness_threshold, precision_cases)
        self.noise_threshold = noise_threshold

    def _discover(self, log: pd.DataFrame) -> tuple[Any, Any, Any]:
        pm4py = _pm4py("inductive_miner")
        found: tuple[Any, Any, Any] = pm4py.discover_petri_net_inductive(
            log, noise_threshold=self.noise_threshold
        )
        return found
