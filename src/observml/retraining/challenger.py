"""The machine's side of retraining: train a challenger on rows it may learn from, then judge it.

:meth:`Challengers.start` picks the rows (:func:`~observml.retraining.window.select_rows`: in
control, or all but known faults), refuses to learn during an alarm or from too few new rows, and
starts the training job. When the job has trained the challenger, :meth:`Challengers.evaluate`
runs the gate (:mod:`observml.retraining.gate`) and the ``retrain.promotion`` mode decides: with
``approve`` the challenger goes into shadow for a person, with ``auto`` it is promoted when it
passes and rejected when it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from observml.errors import DataError
from observml.retraining.context import FAULT, NORMAL, RetrainContext, promote
from observml.retraining.decisions import CHALLENGER, SHADOW_TAG, Decision
from observml.retraining.gate import (
    Episode,
    GateResult,
    check_episodes,
    compare_on_holdout,
    gate_unsupervised,
    split_holdout,
)
from observml.retraining.shadow import Shadow
from observml.retraining.window import Selection, select_rows

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment
    from observml.plugins.mlops import ModelVersion
    from observml.runtime.jobs import Job

__all__ = ["Challengers", "StartJob"]


class StartJob(Protocol):
    """How retraining asks the hub to train a challenger as a job."""

    def __call__(
        self,
        managed: ManagedExperiment,
        kind: str,
        frame: pd.DataFrame,
        on_trained: Callable[[ManagedExperiment, Experiment, ModelVersion, str], dict[str, Any]],
        *,
        finally_: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        wait: bool = False,
    ) -> Job:
        """Start the job (``wait``: the caller waits for it) and return it."""
        ...


class Challengers:
    """Trains challengers and decides, by the gate and the promotion mode, what they become.

    Args:
        context: The plugins, alerts and fault library retraining shares.
        start_job: Starts a training job (the hub's job machinery).
        holdout_fraction: Share of the window held out for metric comparisons.
    """

    def __init__(
        self, context: RetrainContext, start_job: StartJob, *, holdout_fraction: float
    ) -> None:
        self.context = context
        self._start_job = start_job
        self.holdout_fraction = holdout_fraction

    def start(
        self,
        managed: ManagedExperiment,
        *,
        reason: str,
        data: pd.DataFrame | None = None,
        requested: bool = False,
        wait: bool = False,
    ) -> Job | None:
        """Train a challenger on the window (or on ``data``); the retrain slot must be held.

        Returns the job, or ``None`` when the window holds too few rows to learn from (an
        automatic retrain then records a ``skipped`` decision; a ``requested`` one raises).

        Raises:
            DataError: Too few rows to train on (requested retrains only).
        """
        selection = self._select(managed, data)
        managed.last_selection = selection
        refusal = self._refusal(managed, selection, given=data is not None, requested=requested)
        if refusal is not None:
            managed.tracker.mark_finished()
            if requested:
                raise DataError(f"experiment {managed.name!r}: {refusal}")
            self.context.log(managed, Decision("skipped", refusal))
            return None
        train, holdout = selection.train, None
        if managed.template.GROUND_TRUTH:
            try:
                train, holdout = split_holdout(
                    selection.train,
                    self.holdout_fraction,
                    ordered=managed.template.ORDERED_ROWS,
                )
            except DataError:
                managed.tracker.mark_finished()
                raise
        self.context.log(
            managed, Decision("fired", f"{reason}; training a challenger on {selection.summary}")
        )

        def decide(
            managed: ManagedExperiment,
            challenger: Experiment,
            version: ModelVersion,
            run_id: str,
        ) -> dict[str, Any]:
            return self._decide(managed, challenger, version.version, run_id, selection, holdout)

        job = self._start_job(
            managed,
            "retrain",
            train,
            decide,
            finally_=managed.tracker.mark_finished,
            on_error=lambda exc: self.context.alert(
                managed, "retrain_failed", f"retrain failed: {type(exc).__name__}: {exc}"
            ),
            wait=wait,
        )
        if wait:
            job.wait()
        return job

    def _select(self, managed: ManagedExperiment, data: pd.DataFrame | None) -> Selection:
        """The rows a challenger learns from: ``data``, else what the window may teach."""
        policy = managed.tracker.policy
        champion, _ = managed.champion()
        if data is not None:
            selection = Selection(train=data.reset_index(drop=True), total=len(data), mode="given")
        else:
            selection = select_rows(
                managed.window.snapshot(),
                mode=policy.window_rows or "in_control",
                rule=policy.alarm_episode,
                whole_units=champion.keep_whole if champion is not None else None,
                after=managed.learnt_through,
            )
        if managed.template.GROUND_TRUTH:
            return self._with_labelled_feedback(managed, selection)
        if data is None and champion is not None:
            return _moving_window(champion, selection)
        return selection

    @staticmethod
    def _refusal(
        managed: ManagedExperiment, selection: Selection, *, given: bool, requested: bool
    ) -> str | None:
        """Why no challenger may learn from ``selection`` now, or ``None``."""
        policy = managed.tracker.policy
        if (
            not given
            and policy.promotion == "auto"
            and policy.window_rows == "in_control"
            and selection.alarm_now
        ):
            return (
                f"the monitor is alarming now (an alarm episode in the newest"
                f" {selection.recent_rows} rows): an automatic challenger is not trained during"
                " an alarm, since rows it missed may belong to a fault. It waits until the"
                " alarm clears; or label the rows (feedback) and retrain."
            )
        # an automatic retrain needs new rows to learn from; one a person asked for may
        # carry mostly the champion's rows
        learnt_from = len(selection.train) - (0 if requested else selection.carried)
        if learnt_from < policy.min_rows:
            return (
                f"only {selection.summary}: fewer new rows than retrain.min_rows"
                f" {policy.min_rows}."
                " A persistent fault leaves nothing in control to learn from, and the alarm"
                " stands. If this is a new normal, label its rows normal (feedback) and retrain."
            )
        return None

    def _decide(
        self,
        managed: ManagedExperiment,
        challenger: Experiment,
        version: int,
        run_id: str,
        selection: Selection,
        holdout: pd.DataFrame | None,
    ) -> dict[str, Any]:
        """After training: evaluate the gate, then promote, reject or put in shadow."""
        mlops = self.context.mlops()
        log = self.context.log
        log(
            managed,
            Decision("trained", f"challenger trained on {selection.summary}", version),
            run_id=run_id,
        )
        gate = self.evaluate(managed, challenger, selection, holdout)
        managed.last_gate = gate
        result: dict[str, Any] = {
            "promoted": False,
            "shadow": False,
            "reason": gate.reason,
            "gate": gate.to_dict(),
            "window": selection.to_dict(),
            "holdout_metrics": gate.metrics(),
        }
        if managed.tracker.policy.promotion == "approve":
            waiting = managed.shadow
            if waiting is not None:  # a newer challenger replaces the one nobody decided on
                self.context.end_shadow(managed, "superseded")
                log(
                    managed,
                    Decision(
                        "rejected",
                        f"challenger v{waiting.version} superseded by v{version} before a decision",
                        waiting.version,
                    ),
                )
            mlops.set_alias(managed.name, CHALLENGER, version)
            mlops.set_version_tag(managed.name, version, SHADOW_TAG, "pending")
            champion_version = managed.champion()[1]
            managed.set_shadow(
                Shadow(
                    challenger,
                    version,
                    gate=gate,
                    reason=selection.summary,
                    learnt_through=selection.through,
                )
            )
            log(
                managed,
                Decision(
                    "shadow",
                    f"challenger v{version} scores beside champion v{champion_version} until a"
                    f" person promotes or rejects it ({gate.reason})",
                    version,
                    gate.metrics(),
                ),
                run_id=run_id,
            )
            return {**result, "shadow": True}
        if gate.passed:
            promote(mlops, managed, challenger, version, learnt_through=selection.through)
            managed.count("retrains")
            log(managed, Decision("promoted", gate.reason, version, gate.metrics()), run_id=run_id)
            return {**result, "promoted": True}
        log(managed, Decision("rejected", gate.reason, version, gate.metrics()), run_id=run_id)
        return result

    def evaluate(
        self,
        managed: ManagedExperiment,
        challenger: Experiment,
        selection: Selection,
        holdout: pd.DataFrame | None,
    ) -> GateResult:
        """The gate's verdict on ``challenger`` against the serving champion."""
        champion, _ = managed.champion()
        if champion is None:
            return GateResult(True, note="gate passed: no champion to compare with")
        policy = managed.tracker.policy
        library = self.context.library(managed)
        faults = [
            Episode(e.rows, f"labelled {_when(e.at)} ({e.reason or 'feedback'})")
            for e in library
            if e.label == FAULT
        ]
        if managed.template.GROUND_TRUTH and holdout is not None:
            metric = managed.tracker.metric
            result = compare_on_holdout(
                champion,
                challenger,
                holdout,
                metric=metric,
                higher_better=policy.direction(metric),
            )
            checks = result.checks + check_episodes(champion, challenger, faults, policy.gate)
            return GateResult(all(c.passed for c in checks), checks, result.note)
        normal = [champion.get_train_data(), *(e.rows for e in library if e.label == NORMAL)]
        # a challenger trained on alarm episodes nobody confirmed must still flag them
        # (with window_rows: in_control it never saw them: the rows are left out)
        provisional = [
            Episode(rows, "alarm episode in the window, not confirmed by a person")
            for rows in selection.episodes
            if selection.mode != "in_control"
        ]
        return gate_unsupervised(
            champion,
            challenger,
            normal=pd.concat([n for n in normal if len(n)], ignore_index=True),
            faults=faults + provisional,
            settings=policy.gate,
        )

    def _with_labelled_feedback(
        self, managed: ManagedExperiment, selection: Selection
    ) -> Selection:
        """Add the rows people labelled with a class (fault isolation) to the training rows."""
        labelled = [e.rows for e in self.context.library(managed) if e.label not in (FAULT, NORMAL)]
        if not labelled:
            return selection
        train = pd.concat([selection.train, *labelled], ignore_index=True)
        return replace(
            selection, train=train, mode=f"{selection.mode} + {sum(map(len, labelled))} labelled"
        )


def _moving_window(champion: Experiment, selection: Selection) -> Selection:
    """Put the window's new rows after the champion's training rows; keep the newest of them.

    An unsupervised model then follows the process step by step: it keeps what it knew and
    adds what is new and in control, forgetting the oldest rows only beyond
    ``setup.keep_train_rows``. One retrain moves it only as far as the rows in control moved.
    """
    kept = champion.get_train_data()
    new = champion.prepare(selection.train, action="train") if len(selection.train) else kept[:0]
    limit = int(champion.settings_.setup["keep_train_rows"]) or len(kept) + len(new)
    size = max(min(len(kept) + len(new), limit), len(new))
    frame = pd.concat([kept, new], ignore_index=True)
    keep = np.arange(len(frame)) >= len(frame) - size
    frame = frame[champion.keep_whole(frame, keep)].reset_index(drop=True)
    return replace(selection, train=frame, carried=len(frame) - len(new))


def _when(at: float) -> str:
    return str(pd.Timestamp(at, unit="s").strftime("%Y-%m-%d %H:%M"))
