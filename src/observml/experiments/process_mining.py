"""Process mining: discover a process model from an event log and check each case against it.

Config::

    setup: {case_column: case_id, activity_column: activity, timestamp_column: timestamp,
            datetime_format: null}
    create_model: {model: heuristics_miner, params: {dependency_threshold: 0.5}}

The input is an event log: one row per event, with the case it belongs to, the activity and
(optionally) when it happened; events of a case are ordered by ``timestamp_column`` (or by row
order when it is null). This type works **per case**: ``predict`` returns one row per case, in
the order cases first appear, with the case column, ``n_events``, ``fitness`` (0..1),
``conformant`` and ``unknown_activities``; the Petri-net models add ``missing_tokens`` and
``remaining_tokens``; the rule models add ``rules_fired`` and ``rules_violated`` (lists of rule
texts), ``apriori``/``fpgrowth`` also ``itemsets_contained`` and ``cmspam``
``patterns_contained``. A case split over several calls is judged on the events of each call.

``heuristics_miner`` and ``inductive_miner`` use pm4py, which is AGPL-3.0: install the
``process-mining`` extra. ``sequential_rules``, ``apriori`` and ``fpgrowth`` need only mlxtend;
``cmspam`` and ``topk`` only numpy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np
import pandas as pd

from observml.errors import ConfigProblem, DataError
from observml.experiments._process_models import ACTIVITY, CASE, TIME, ProcessModel, Variant
from observml.experiments.base import Experiment
from observml.experiments.spec import ExperimentSettings, ModelSpec
from observml.io.rows import DataLike, parse_datetime, require_columns
from observml.retraining.drift import FloatArray

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.experiments._process_map import LogStatistics

__all__ = ["MODELS", "ProcessMiningExperiment"]

_PM: Final = "observml.experiments._process_models"

MODELS: Final[Mapping[str, ModelSpec]] = {
    "heuristics_miner": ModelSpec(
        f"{_PM}:HeuristicsMiner",
        extra="process-mining",
        requires=("pm4py",),
        summary="pm4py Heuristics Miner Petri net; token-based replay per case",
    ),
    "inductive_miner": ModelSpec(
        f"{_PM}:InductiveMiner",
        extra="process-mining",
        requires=("pm4py",),
        summary="pm4py Inductive Miner Petri net; token-based replay per case",
    ),
    "sequential_rules": ModelSpec(
        "observml.experiments._rules:SequentialRules",
        requires=("mlxtend",),
        summary="association rules over activities and directly-follows pairs (mlxtend)",
    ),
    "apriori": ModelSpec(
        "observml.experiments._itemsets:AprioriRules",
        extra="process-mining",
        requires=("mlxtend",),
        summary="frequent activity sets per case and their association rules (mlxtend Apriori)",
    ),
    "fpgrowth": ModelSpec(
        "observml.experiments._itemsets:FPGrowthRules",
        extra="process-mining",
        requires=("mlxtend",),
        summary="frequent activity sets per case and their association rules (mlxtend FP-growth)",
    ),
    "cmspam": ModelSpec(
        "observml.experiments._sequences:SequentialPatterns",
        summary="frequent sequential patterns of activities (CM-SPAM's) and their prefix rules",
    ),
    "topk": ModelSpec(
        "observml.experiments._topk_rules:TopKSequentialRules",
        summary="the k sequential rules 'X before Y' of highest support (TopSeqRules)",
    ),
}


class ProcessMiningExperiment(Experiment):
    """Discover a process model and judge each case against it (see the module docstring)."""

    experiment_type: ClassVar[str] = "process_mining"
    MODELS: ClassVar[Mapping[str, ModelSpec]] = MODELS
    DEFAULT_MODEL: ClassVar[str] = "heuristics_miner"
    DEFAULT_METRIC: ClassVar[str] = "fitness"
    SETUP_DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "case_column": "case_id",
        "activity_column": "activity",
        "timestamp_column": "timestamp",
        "datetime_format": None,
        "format": None,
        "keep_train_rows": 10_000,
    }

    def _check_setup(self, raw: Mapping[str, Any], problems: list[ConfigProblem]) -> dict[str, Any]:
        setup = super()._check_setup(raw, problems)
        for key in ("case_column", "activity_column"):
            if not isinstance(setup.get(key), str) or not setup[key]:
                problems.append(
                    ConfigProblem(f"setup.{key}", f"expected a column name. Add '{key}: <column>'.")
                )
        stamp = setup.get("timestamp_column")
        if stamp is not None and not isinstance(stamp, str):
            problems.append(
                ConfigProblem("setup.timestamp_column", "expected a column name or null.")
            )
        return setup

    def _select_features(self, frame: pd.DataFrame, settings: Any) -> list[str]:
        return []

    # -- the event log --------------------------------------------------------------------
    def event_log(self, frame: pd.DataFrame, action: str = "predict") -> pd.DataFrame:
        """Return the events in pm4py's column names, ordered by case (first seen) and time.

        Raises:
            DataError: A column is missing, has missing values, or a timestamp is invalid.
        """
        return self._cases(frame, action)[0]

    def _cases(
        self, frame: pd.DataFrame, action: str
    ) -> tuple[pd.DataFrame, np.ndarray, list[Variant]]:
        """Return the pm4py log, the case ids (first seen first) and each case's activities."""
        setup = self.settings_.setup
        where = self.where(action)
        case, activity, stamp = (
            setup["case_column"],
            setup["activity_column"],
            setup["timestamp_column"],
        )
        require_columns(frame, [case, activity] + ([stamp] if stamp else []), where)
        for column in (case, activity):
            empty = frame[column].isna().to_numpy()
            if empty.any():
                raise DataError(
                    f"{where}: column {column!r} has {int(empty.sum())} missing value(s) (first"
                    f" at row {int(np.flatnonzero(empty)[0])}); every event needs one."
                )
        if stamp:
            times = parse_datetime(frame[stamp], setup["datetime_format"], where, column=stamp)
        else:
            times = pd.Series(pd.Timestamp(0) + pd.to_timedelta(np.arange(len(frame)), "s"))
        case_values, activity_values = _as_text(frame[case]), _as_text(frame[activity])
        stamps = np.asarray(times)
        codes, _ = pd.factorize(case_values)
        log = pd.DataFrame({CASE: case_values, ACTIVITY: activity_values, TIME: stamps})
        step = np.diff(codes)
        ordered = bool(np.all(step >= 0)) and bool(np.all((step > 0) | (np.diff(stamps) >= 0)))
        if not ordered:  # group the cases (first seen first) and order each by time
            order = np.lexsort((stamps, codes))
            log = log.iloc[order].reset_index(drop=True)
            codes = codes[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else codes
        return (log, *_traces(log, starts))

    # -- fitting and predicting -----------------------------------------------------------
    def _numeric_columns(self, frame: pd.DataFrame, settings: ExperimentSettings) -> list[str]:
        """None: an event log holds ids, activities and times, which stay as they are sent."""
        return []

    def _fit(self, frame: pd.DataFrame) -> None:
        settings = self.settings_
        log, _, traces = self._cases(frame, "train")
        model: ProcessModel = settings.spec.build(settings.params, {})
        try:
            model.fit(log, traces)
        except (ValueError, KeyError, IndexError) as exc:
            raise DataError(
                f"{self.where('train')}: {settings.model} could not discover a model from"
                f" {len(traces)} cases: {type(exc).__name__}: {exc}"
            ) from exc
        self.model_ = model
        self.variant_counts_ = _count(traces)
        self.n_events_ = len(log)
        keep = int(settings.setup["keep_train_rows"])
        sizes = np.fromiter(map(len, traces), dtype=np.int64, count=len(traces))
        n_kept = max(1, int((sizes[::-1].cumsum() <= keep).sum()))  # whole cases, newest last
        self.train_log_ = log.iloc[len(log) - int(sizes[-n_kept:].sum()) :].reset_index(drop=True)

    @property
    def stats_(self) -> LogStatistics:
        """Counts of the training log (activities, arcs, variants), built from its variants."""
        from observml.experiments._process_map import variant_statistics

        cached: LogStatistics | None = self.__dict__.get("_stats")
        if cached is None:
            cached = variant_statistics(self.variant_counts_)
            self.__dict__["_stats"] = cached
        return cached

    def _judge(self, case_ids: np.ndarray, traces: list[Variant]) -> pd.DataFrame:
        """Return one row per case: case, n_events and the model's verdict."""
        codes, unique = pd.factorize(pd.Series(traces, dtype=object))
        judged = self.model_.conformance(list(unique)).iloc[codes].reset_index(drop=True)
        column = self.settings_.setup["case_column"]
        sizes = np.fromiter(map(len, traces), dtype=np.int64, count=len(traces))
        head = pd.DataFrame({column: case_ids, "n_events": sizes})
        return pd.concat([head, judged], axis=1)

    def predict(self, data: DataLike) -> pd.DataFrame:
        """Judge each case of an event log (one output row per case, see the module docstring).

        Raises:
            ModelNotTrainedError: Called before :meth:`train`.
            DataError: A column is missing or has missing values, or a timestamp is invalid.
        """
        self._check_trained()
        return self._predict(self.prepare(data, action="predict"))

    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        _, case_ids, traces = self._cases(frame, "predict")
        return self._judge(case_ids, traces)

    def alarms(self, frame: pd.DataFrame, result: pd.DataFrame) -> np.ndarray:
        """Flag every event of each case the model judged non-conformant."""
        column = self.settings_.setup["case_column"]
        if column not in frame.columns or "conformant" not in result.columns:
            return np.zeros(len(frame), dtype=bool)
        deviant = result.loc[~result["conformant"].astype(bool), column]
        return np.asarray(frame[column].isin(set(deviant)), dtype=bool)

    def keep_whole(self, frame: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
        """Keep a case only with all of its events (a partial trace would teach a wrong path)."""
        column = self.settings_.setup["case_column"]
        if column not in frame.columns:
            return keep
        whole = pd.Series(keep, index=frame.index).groupby(frame[column]).transform("all")
        return np.asarray(whole, dtype=bool)

    def _drift_scores(self, result: pd.DataFrame) -> FloatArray:
        """Each case's fitness to the discovered model."""
        return np.asarray(result["fitness"], dtype="float64")

    def _reference_scores(self, frame: pd.DataFrame, size: int) -> FloatArray:
        """Fitness of the newest ``size`` whole training cases."""
        return self.drift_scores(self._predict(frame)).ravel()[-size:]

    def _metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        log, case_ids, traces = self._cases(frame, "score")
        judged = self._judge(case_ids, traces)
        metrics = {
            "fitness": float(judged["fitness"].mean()),
            "conformance_rate": float(judged["conformant"].mean()),
            "n_cases": float(len(judged)),
            "n_samples": float(len(log)),
        }
        metrics.update(self.model_.precision(log))
        if "rules_fired" in judged:
            metrics["rules_fired_mean"] = float(judged["rules_fired"].map(len).mean())
        return metrics

    # -- reports --------------------------------------------------------------------------
    def _model_report_names(self) -> list[str]:
        return ["process_map", "variants", "fitness", *self.model_.REPORTS]

    def _model_reports(self) -> dict[str, Figure]:
        from observml.experiments import _process_map, reports

        model = self.settings_.model
        stats = self.stats_
        log = self.train_log_
        codes, _ = pd.factorize(log[CASE])
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else codes
        judged = self._judge(*_traces(log, starts))
        rate = float(judged["conformant"].mean())
        figures: dict[str, Figure] = {
            "process_map": _process_map.process_map_figure(
                stats,
                self.model_.arcs(),
                title=f"{self.name}: process map ({model}) of {stats.n_cases} training cases",
            ),
            "variants": _process_map.variants_figure(
                stats,
                title=f"{self.name}: most frequent of {len(stats.variants)} variants",
            ),
            "fitness": reports.histogram(
                judged["fitness"].to_numpy(dtype="float64"),
                title=f"{self.name}: fitness of {len(judged)} training cases ({model});"
                f" {rate:.1%} conformant",
                x_title="fitness",
                bins=20,
            ),
        }
        figures.update(self.model_.figures(self.name))
        return figures

    def eda_reports(self) -> dict[str, Figure]:
        """Return ``activity_frequency`` and ``case_length`` of the training log."""
        from observml.experiments import reports

        self._check_trained()
        stats = self.stats_
        top = stats.activity_counts.head(40)
        return {
            "activity_frequency": reports.bar_chart(
                {str(k): float(v) for k, v in top.items()},
                title=f"{self.name}: events per activity (top {len(top)})",
                y_title="events",
            ),
            "case_length": reports.histogram(
                np.repeat(
                    np.array([len(v) for v in stats.variants.index], dtype="float64"),
                    stats.variants.to_numpy(),
                ),
                title=f"{self.name}: events per case",
                x_title="events",
                bins=30,
            ),
        }

    def plot_names(self) -> list[str]:
        """Return the names :meth:`reports` produces."""
        self._check_trained()
        names = self._model_report_names()
        return [*names, "activity_frequency", "case_length"] if self.settings_.eda else names


def _traces(log: pd.DataFrame, starts: np.ndarray) -> tuple[np.ndarray, list[Variant]]:
    """Return the case ids and activity tuples of a log grouped by case (``starts``: firsts)."""
    activities = log[ACTIVITY].tolist()
    ends = [*starts[1:].tolist(), len(activities)]
    traces = [tuple(activities[a:b]) for a, b in zip(starts.tolist(), ends, strict=True)]
    return log[CASE].iloc[starts].to_numpy(), traces


def _count(traces: list[Variant]) -> pd.Series:
    """Return variant -> number of cases, most frequent first (an index of tuples)."""
    counts = Counter(traces).most_common()
    index = pd.Index([v for v, _ in counts], dtype=object, tupleize_cols=False)
    return pd.Series([n for _, n in counts], index=index, dtype="int64")


def _as_text(values: pd.Series) -> pd.Series:
    """Return the column as strings with a fresh index (no copy when it already is text)."""
    text = values if pd.api.types.is_string_dtype(values.dtype) else values.astype(str)
    return text.reset_index(drop=True)
