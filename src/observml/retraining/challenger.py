"""The machine's side of retraining: train a challenger on rows it may learn from, then judge it.

:meth:`Challengers.start` picks the rows (:func:`~observml.retraining.window.select_rows`: in
control, or all but known faults), holds out new rows neither model trained on for the comparison
(:mod:`~observml.retraining.holdout`), refuses to learn during an alarm or from too few new rows,
and starts the training job. When the job has trained the challenger, :meth:`Challengers.evaluate`
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
)
from observml.retraining.holdout import (
    Holdout,
    select_and_hold_out,
    split_unseen,
    too_few,
    unseen,
)
from observml.retraining.shadow import Shadow
from observml.retraining.window import Selection

if TYPE_CHECKING:
    from pathlib import Path

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
        on_success: Path | None = None,
        wait: bool = False,
    ) -> Job:
        """Start the job (``wait``: the caller waits for it) and return it.

        ``on_success``: a spool folder of the rows, deleted once the run stored them.
        """
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
        spool: Path | None = None,
        requested: bool = False,
        wait: bool = False,
    ) -> Job | None:
        """Train a challenger on the window (or on ``data``); the retrain slot must be held.

        ``spool``: the folder holding rows of ``data`` drained from ``<name>.train``, deleted
        once the challenger's run stored them (kept otherwise, for the next drain to adopt).

        Returns the job, or ``None`` when the window holds too few rows to learn from (an
        automatic retrain then records a ``skipped`` decision; a ``requested`` one raises).

        Raises:
            DataError: Too few rows to train on (requested retrains only).
        """
        try:
            selection, holdout = self._select_and_hold_out(managed, data)
        except BaseException:
            self.context.end_slot(managed)
            raise
        managed.last_selection = selection
        refusal = self._refusal(
            managed, selection, given=data is not None, requested=requested, held=holdout
        )
        if refusal is not None:
            self.context.end_slot(managed)
            if requested:
                raise DataError(f"experiment {managed.name!r}: {refusal}")
            self.context.log(managed, Decision("skipped", refusal))
            return None
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
            selection.train,
            decide,
            finally_=lambda: self.context.end_slot(managed),
            on_error=lambda exc: self.failed(managed, f"{type(exc).__name__}: {exc}"),
            on_success=spool,
            wait=wait,
        )
        if wait:
            job.wait()
        return job

    def failed(self, managed: ManagedExperiment, error: str) -> None:
        """A retrain failed: back off (``retrain.failure_backoff``) and say why in the alert."""
        wait = managed.tracker.mark_failed(error)
        failures = (managed.tracker.failure_status() or {}).get("failures", 1)
        self.context.alert(
            managed,
            "retrain_failed",
            f"retrain failed: {error}. Failure {failures} in a row; the next retrain may fire"
            f" in {wait:.0f} s at the earliest (retrain.failure_backoff doubles per failure).",
        )

    def _select_and_hold_out(
        self, managed: ManagedExperiment, data: pd.DataFrame | None
    ) -> tuple[Selection, Holdout]:
        """The challenger's training rows, and the new rows held out of them to compare on.

        The holdout is taken from the new rows (``data`` or the window's) before anything
        else joins them, and never holds a row the champion trained on.
        """
        champion, _ = managed.champion()
        policy = managed.tracker.policy
        least, ordered = policy.gate.min_holdout_rows, managed.template.ORDERED_ROWS
        if data is not None:
            holdout = split_unseen(
                data, champion, self.holdout_fraction, ordered=ordered, min_rows=least
            )
            selection = Selection(train=holdout.train, total=len(data), mode="given")
        else:
            selection, holdout = select_and_hold_out(
                managed.window.snapshot(),
                champion,
                policy,
                after=managed.learnt_through,
                fraction=self.holdout_fraction,
                ordered=ordered,
            )
        if len(holdout.rows):  # rows neither model trains on, to compare them
            excluded = {**selection.excluded, "held_out_to_compare": len(holdout.rows)}
            selection = replace(selection, excluded=excluded)
        if managed.template.GROUND_TRUTH:
            selection = self._with_labelled_feedback(managed, selection)
        elif data is None and champion is not None:
            selection = _moving_window(champion, selection)
        return selection, holdout

    @staticmethod
    def _refusal(
        managed: ManagedExperiment,
        selection: Selection,
        *,
        given: bool,
        requested: bool,
        held: Holdout,
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
        learnt_from = (
            len(selection.train) + held.trainable - (0 if requested else selection.carried)
        )
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
        holdout: Holdout,
    ) -> dict[str, Any]:
        """After training: evaluate the gate, then promote, reject or put in shadow."""
        managed.tracker.mark_succeeded()
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
            "holdout_rows": len(holdout.rows),
        }
        # nothing fair to compare on: a person decides, whatever retrain.promotion says
        if managed.tracker.policy.promotion == "approve" or not gate.compared:
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
        holdout: Holdout,
    ) -> GateResult:
        """The gate's verdict on ``challenger`` against the serving champion.

        Every comparison is on rows neither model trained on; with fewer than
        ``retrain.gate.min_holdout_rows`` of them there is none (``compared`` is false).
        """
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
        least = policy.gate.min_holdout_rows
        if managed.template.GROUND_TRUTH:
            if len(holdout.rows) < least:
                return GateResult(False, note=too_few(holdout.wanted, least), compared=False)
            metric = managed.tracker.metric
            result = compare_on_holdout(
                champion,
                challenger,
                holdout.rows,
                metric=metric,
                higher_better=policy.direction(metric),
            )
            checks = result.checks + check_episodes(champion, challenger, faults, policy.gate)
            return GateResult(all(c.passed for c in checks), checks, result.note)
        confirmed = [e.rows for e in library if e.label == NORMAL and len(e.rows)]
        normal = [holdout.rows]
        if confirmed:  # rows a person confirmed as normal that neither model learnt
            normal.append(unseen(pd.concat(confirmed, ignore_index=True), champion, challenger))
        reference = pd.concat([n for n in normal if len(n)] or [holdout.rows], ignore_index=True)
        if len(reference) < least:
            return GateResult(
                False, note=too_few(len(reference), least, "normal rows"), compared=False
            )
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
            normal=reference,
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
