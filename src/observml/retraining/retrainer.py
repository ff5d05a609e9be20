"""The retraining flow of a hub, from a fired signal to a decision a person can undo.

1. After each streamed batch, the policy may fire (drift in the scores, or the metric past its
   threshold). That raises an **alert** first (``status()``, ``<name>.alerts``, the dashboard).
2. If retraining is enabled and no challenger waits in shadow, a **challenger** is trained on the
   rows :func:`~observml.retraining.window.select_rows` keeps (in control, or all but known faults).
3. The **gate** is evaluated (:mod:`observml.retraining.gate`). With ``promotion: auto`` the
   challenger is promoted when it passes and rejected when it fails; with ``approve`` it goes into
   **shadow** beside the champion and the gate's verdict is advice for the person who decides.
4. A person **promotes** or **rejects** it (``as_fault`` keeps the rows the champion flagged in
   the fault library), or labels rows through **feedback**. Every step is a decision in
   ``status()`` and a tag in the MLOps store; ``rollback`` undoes a promotion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from observml.errors import DataError, NotFoundError
from observml.io.queues import alerts_queue
from observml.retraining.decisions import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    SHADOW_TAG,
    Decision,
    tag_in_store,
)
from observml.retraining.feedback import Evidence, FeedbackStore
from observml.retraining.gate import (
    Episode,
    GateResult,
    check_episodes,
    compare_on_holdout,
    gate_unsupervised,
    split_holdout,
)
from observml.retraining.shadow import Shadow
from observml.retraining.window import Selection, alarm_episodes, select_rows

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment
    from observml.plugins.datastream import DataStreamPlugin
    from observml.plugins.mlops import MLOpsPlugin, ModelVersion
    from observml.retraining.drift import ScoreSample
    from observml.runtime.jobs import Job

__all__ = ["FAULT", "NORMAL", "Retrainer", "StartJob", "log_decision", "promote"]

logger = logging.getLogger(__name__)

FAULT = "fault"
NORMAL = "normal"


def promote(
    mlops: MLOpsPlugin,
    managed: ManagedExperiment,
    experiment: Experiment,
    version: int,
    *,
    learnt_through: int = -1,
) -> None:
    """Move ``champion`` to ``version`` (old champion -> ``previous``) and swap it in.

    ``learnt_through`` is the newest streamed row (window sequence number) it learnt from.
    """
    _, old = managed.champion()
    if old is not None and old != version:
        mlops.set_alias(managed.name, PREVIOUS, old)
    mlops.set_alias(managed.name, CHAMPION, version)
    managed.swap(experiment, version, learnt_through=learnt_through)


def log_decision(
    mlops: MLOpsPlugin | None,
    managed: ManagedExperiment,
    decision: Decision,
    *,
    run_id: str | None = None,
) -> None:
    """Record ``decision`` on the experiment, log it, and tag it in the store (never raises)."""
    managed.record(decision)
    version = f" v{decision.version}" if decision.version is not None else ""
    logger.info("%s%s: %s: %s", managed.name, version, decision.kind, decision.reason)
    if mlops is not None:
        tag_in_store(mlops, managed.name, decision, run_id=run_id)


class StartJob(Protocol):
    """How the retrainer asks the hub to train a challenger as a job."""

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


class Retrainer:
    """Runs alerts, challengers, the gate, the shadow and people's decisions for a hub.

    Args:
        mlops: Returns the MLOps plugin (raises when none is configured).
        datastream: Returns the datastream plugin, or ``None`` (alerts are then not published).
        load_version: Loads a model version of an experiment from the store.
        start_job: Starts a training job (the hub's job machinery).
        holdout_fraction: Share of the window held out for metric comparisons.
    """

    def __init__(
        self,
        *,
        mlops: Callable[[], MLOpsPlugin],
        datastream: Callable[[], DataStreamPlugin | None],
        load_version: Callable[[str, int], Experiment],
        start_job: StartJob,
        holdout_fraction: float,
    ) -> None:
        self._mlops = mlops
        self._datastream = datastream
        self._load_version = load_version
        self._start_job = start_job
        self.holdout_fraction = holdout_fraction
        self._stores: dict[str, FeedbackStore] = {}

    # -- signals --------------------------------------------------------------------------
    def after_batch(
        self,
        managed: ManagedExperiment,
        metrics: Mapping[str, float],
        rows: int,
        scores: ScoreSample | None = None,
    ) -> None:
        """Stream hook: feed the policy; raise an alert and start a challenger when it fires."""
        decision = managed.tracker.decide(metrics, n_samples=rows, scores=scores)
        if not decision.fire:
            return
        # claim the retrain slot first, so whoever sees the alert also sees the retrain
        retrain = (
            decision.retrain
            and managed.active_job() is None
            and managed.shadow is None  # a challenger already waits for a person
            and managed.tracker.mark_started()
        )
        self.alert(managed, _signal_kind(decision.reason), decision.reason, metrics=metrics)
        if not retrain:
            return
        try:
            self.start(managed, reason=decision.reason)
        except Exception as exc:  # the stream goes on; the reason is told
            managed.tracker.mark_finished()
            self.alert(managed, "retrain_failed", f"retrain could not start: {exc}")

    def alert(
        self,
        managed: ManagedExperiment,
        kind: str,
        reason: str,
        *,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Raise (or update) the experiment's alert; a new one is logged and published."""
        version = managed.champion()[1]
        alert, opened = managed.alerts.raise_(kind, reason, version=version)
        managed.count("alerts")
        if not opened:
            return
        waiting = managed.shadow
        note = f"; challenger v{waiting.version} awaits a decision in shadow" if waiting else ""
        log_decision(
            self._mlops_or_none(),
            managed,
            Decision("alert", f"{reason}{note}", version, dict(metrics or {})),
        )
        self._publish_alert(managed, alert.to_dict())

    # -- challengers ----------------------------------------------------------------------
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
            selection = self._with_labelled_feedback(managed, selection)
        elif data is None and champion is not None:
            selection = _moving_window(champion, selection)
        managed.last_selection = selection
        if (
            data is None
            and policy.promotion == "auto"
            and policy.window_rows == "in_control"
            and selection.alarm_now
        ):
            message = (
                f"the monitor is alarming now (an alarm episode in the newest"
                f" {selection.recent_rows} rows): an automatic challenger is not trained during"
                " an alarm, since rows it missed may belong to a fault. It waits until the"
                " alarm clears; or label the rows (feedback) and retrain."
            )
            managed.tracker.mark_finished()
            if requested:
                raise DataError(f"experiment {managed.name!r}: {message}")
            log_decision(self._mlops_or_none(), managed, Decision("skipped", message))
            return None
        # an automatic retrain needs new rows to learn from; one a person asked for may
        # carry mostly the champion's rows
        learnt_from = len(selection.train) - (0 if requested else selection.carried)
        if learnt_from < policy.min_rows:
            message = (
                f"only {selection.summary}: fewer new rows than retrain.min_rows"
                f" {policy.min_rows}."
                " A persistent fault leaves nothing in control to learn from, and the alarm"
                " stands. If this is a new normal, label its rows normal (feedback) and retrain."
            )
            managed.tracker.mark_finished()
            if requested:
                raise DataError(f"experiment {managed.name!r}: {message}")
            log_decision(self._mlops_or_none(), managed, Decision("skipped", message))
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
        log_decision(
            self._mlops_or_none(),
            managed,
            Decision("fired", f"{reason}; training a challenger on {selection.summary}"),
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
            on_error=lambda exc: self.alert(
                managed, "retrain_failed", f"retrain failed: {type(exc).__name__}: {exc}"
            ),
            wait=wait,
        )
        if wait:
            job.wait()
        return job

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
        mlops = self._mlops()
        log_decision(
            mlops,
            managed,
            Decision("trained", f"challenger trained on {selection.summary}", version),
            run_id=run_id,
        )
        gate = self.evaluate(managed, challenger, selection, holdout)
        managed.last_gate = gate
        policy = managed.tracker.policy
        result: dict[str, Any] = {
            "promoted": False,
            "shadow": False,
            "reason": gate.reason,
            "gate": gate.to_dict(),
            "window": selection.to_dict(),
            "holdout_metrics": gate.metrics(),
        }
        if policy.promotion == "approve":
            waiting = managed.shadow
            if waiting is not None:  # a newer challenger replaces the one nobody decided on
                self._end_shadow(managed, "superseded")
                log_decision(
                    mlops,
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
            log_decision(
                mlops,
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
            log_decision(
                mlops,
                managed,
                Decision("promoted", gate.reason, version, gate.metrics()),
                run_id=run_id,
            )
            return {**result, "promoted": True}
        log_decision(
            mlops,
            managed,
            Decision("rejected", gate.reason, version, gate.metrics()),
            run_id=run_id,
        )
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
        library = self.library(managed)
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

    # -- people's decisions ---------------------------------------------------------------
    def promote(
        self,
        managed: ManagedExperiment,
        version: int | None = None,
        *,
        reason: str = "",
        by: str = "a person",
    ) -> int:
        """Make the challenger in shadow (or ``version``) the champion.

        Raises:
            NotFoundError: No challenger in shadow and no version given, or no such version.
        """
        mlops = self._mlops()
        shadow = managed.shadow
        if version is None:
            if shadow is None:
                raise NotFoundError(
                    f"experiment {managed.name!r}: no challenger in shadow to promote. Retrain"
                    " first, or name a version: promote(name, version=N)."
                )
            version = shadow.version
        learnt = -1
        if shadow is not None and shadow.version == version:
            experiment, learnt = shadow.experiment, shadow.learnt_through
        else:
            experiment = self._load_version(managed.name, version)
        promote(mlops, managed, experiment, version, learnt_through=learnt)
        if shadow is not None and shadow.version == version:
            self._end_shadow(managed, "promoted")
            managed.count("retrains")
        why = reason or f"promoted by {by}"
        self._acknowledge(managed, f"{by}: promoted v{version}")
        log_decision(mlops, managed, Decision("promoted", why, version))
        return version

    def reject(
        self,
        managed: ManagedExperiment,
        *,
        reason: str = "",
        as_fault: bool = False,
        by: str = "a person",
    ) -> dict[str, Any]:
        """Reject the challenger in shadow; ``as_fault`` keeps the alarm's rows as a fault.

        Raises:
            NotFoundError: No challenger in shadow.
        """
        shadow = managed.shadow
        if shadow is None:
            raise NotFoundError(
                f"experiment {managed.name!r}: no challenger in shadow to reject."
                " To label rows as a fault without one, use feedback(name, label='fault')."
            )
        why = reason or f"rejected by {by}"
        out: dict[str, Any] = {"version": shadow.version, "as_fault": as_fault, "fault_rows": 0}
        if as_fault:  # first: when there is nothing to keep, the challenger still waits
            evidence = self._store_alarm_as_fault(managed, why, by)
            out["fault_rows"] = len(evidence.rows)
            out["feedback_run"] = evidence.run_id
            why += f"; {len(evidence.rows)} rows the champion flagged kept as a known fault"
        self._end_shadow(managed, "rejected")
        self._acknowledge(managed, f"{by}: rejected v{shadow.version}")
        log_decision(self._mlops(), managed, Decision("rejected", why, shadow.version))
        return out

    def feedback(
        self,
        managed: ManagedExperiment,
        label: str,
        *,
        rows: pd.DataFrame | None = None,
        start: Any = None,
        end: Any = None,
        reason: str = "",
        by: str = "a person",
    ) -> dict[str, Any]:
        """Label rows (given, or the window's between ``start`` and ``end``) and store them.

        Raises:
            DataError: The label does not fit the type, or no rows were given or matched.
        """
        label = str(label).strip()
        setup = managed.template.validate_config().setup
        # a type that learns classes from a label column takes any class as the label
        classes = setup.get("target") if managed.template.LABELLED_CLASSES else None
        if classes is None and label not in (FAULT, NORMAL):
            raise DataError(
                f"experiment {managed.name!r} feedback: label {label!r} is not 'fault' or"
                " 'normal'. Say whether the rows show a fault or normal operation."
            )
        if not label:
            raise DataError(
                f"experiment {managed.name!r} feedback: the label is empty. Give the class of"
                " the rows."
            )
        time_column = setup.get("datetime_column")
        if rows is not None:
            frame = rows.reset_index(drop=True)
        elif label in (FAULT, NORMAL):
            frame = managed.window.label(label, start=start, end=end, time_column=time_column)
        else:
            frame = managed.window.rows(start=start, end=end, time_column=time_column)
        if classes is not None and len(frame):
            frame = frame.assign(**{classes: label})
        evidence = self._store(managed).add(label, frame, reason=reason, source=by)
        self._acknowledge(managed, f"{by}: {len(frame)} rows labelled {label}")
        log_decision(
            self._mlops(),
            managed,
            Decision(
                "feedback",
                f"{len(frame)} rows labelled {label} by {by}" + (f": {reason}" if reason else ""),
                managed.champion()[1],
                details={"run_id": evidence.run_id, "label": label, "rows": len(frame)},
            ),
        )
        return evidence.to_dict()

    def library(self, managed: ManagedExperiment) -> list[Evidence]:
        """Every piece of feedback kept for the experiment, oldest first."""
        return self._store(managed).load()

    def library_status(self, managed: ManagedExperiment) -> dict[str, Any]:
        """Counts of the fault library and the normal reference, for the status."""
        try:
            library = self.library(managed)
        except Exception as exc:  # the store may be down; the status still answers
            return {"error": f"{type(exc).__name__}: {exc}"}
        faults = [e for e in library if e.label == FAULT]
        normal = [e for e in library if e.label == NORMAL]
        return {
            "faults": len(faults),
            "fault_rows": int(sum(len(e.rows) for e in faults)),
            "normal": len(normal),
            "normal_rows": int(sum(len(e.rows) for e in normal)),
            "labelled": len(library) - len(faults) - len(normal),
            "recent": [e.to_dict() for e in library[-10:][::-1]],
        }

    def champion_trained(
        self, managed: ManagedExperiment, experiment: Experiment, version: int, run_id: str
    ) -> dict[str, Any]:
        """A training a person started (``hub.train``) serves at once: they chose its data."""
        mlops = self._mlops()
        promote(mlops, managed, experiment, version)
        trained = Decision("trained", f"trained on {experiment.n_train_rows_} rows", version)
        log_decision(mlops, managed, trained, run_id=run_id)
        return {"promoted": True}

    def rollback(self, managed: ManagedExperiment) -> int:
        """Serve the previous champion again and move ``champion`` back to it.

        Raises:
            NotFoundError: There is no previous version.
        """
        mlops = self._mlops()
        previous = managed.previous_version
        if previous is None:
            found = mlops.get_version_by_alias(managed.name, PREVIOUS)
            previous = found.version if found else None
        if previous is None:
            raise NotFoundError(
                f"experiment {managed.name!r}: no previous version to roll back to. A rollback"
                " needs a promotion or a second training first."
            )
        experiment = self._load_version(managed.name, previous)
        promote(mlops, managed, experiment, previous)
        log_decision(
            mlops, managed, Decision("rolled_back", f"rolled back to version {previous}", previous)
        )
        return previous

    # -- restart and other hubs -----------------------------------------------------------
    def restore_shadow(self, managed: ManagedExperiment) -> bool:
        """Resume a challenger left in shadow (by this hub before a restart, or another hub).

        Returns whether the shadow changed.
        """
        found = self._mlops().get_version_by_alias(managed.name, CHALLENGER)
        pending = found is not None and found.tags.get(SHADOW_TAG) == "pending"
        current = managed.shadow
        if not pending:
            if current is None:
                return False
            managed.set_shadow(None)
            managed.alerts.acknowledge("decided in another hub process")
            managed.record(Decision("restored", "the challenger was decided elsewhere"))
            return True
        assert found is not None
        if current is not None and current.version == found.version:
            return False
        experiment = self._load_version(managed.name, found.version)
        managed.set_shadow(Shadow(experiment, found.version, reason="resumed from the store"))
        managed.record(
            Decision("restored", f"challenger v{found.version} resumed in shadow", found.version)
        )
        return True

    # -- internals ------------------------------------------------------------------------
    def _end_shadow(self, managed: ManagedExperiment, outcome: str) -> None:
        shadow = managed.shadow
        managed.set_shadow(None)
        if shadow is None:
            return
        mlops = self._mlops()
        mlops.delete_alias(managed.name, CHALLENGER)
        mlops.set_version_tag(managed.name, shadow.version, SHADOW_TAG, outcome)

    def _store_alarm_as_fault(self, managed: ManagedExperiment, reason: str, by: str) -> Evidence:
        """Keep the rows the champion flagged in the window's alarm episodes as a fault."""
        snapshot = managed.window.snapshot()
        rule = managed.tracker.policy.alarm_episode
        inside = alarm_episodes(snapshot.flags, rule) & snapshot.flags
        if not inside.any():
            inside = snapshot.flags
        rows = snapshot.frame[inside & (snapshot.labels != NORMAL)]
        managed.window.label(FAULT, flagged_only=True)
        return self._store(managed).add(FAULT, rows, reason=reason, source=by)

    def _with_labelled_feedback(
        self, managed: ManagedExperiment, selection: Selection
    ) -> Selection:
        """Add the rows people labelled with a class (fault isolation) to the training rows."""
        labelled = [e.rows for e in self.library(managed) if e.label not in (FAULT, NORMAL)]
        if not labelled:
            return selection
        train = pd.concat([selection.train, *labelled], ignore_index=True)
        return replace(
            selection, train=train, mode=f"{selection.mode} + {sum(map(len, labelled))} labelled"
        )

    def _store(self, managed: ManagedExperiment) -> FeedbackStore:
        store = self._stores.get(managed.name)
        mlops = self._mlops()
        if store is None or store.mlops is not mlops:
            store = self._stores[managed.name] = FeedbackStore(mlops, managed.name)
        return store

    def _mlops_or_none(self) -> MLOpsPlugin | None:
        try:
            return self._mlops()
        except Exception:  # decisions are still kept in status() without a store
            return None

    def _acknowledge(self, managed: ManagedExperiment, by: str) -> None:
        """Close the open alert (a person answered it) and publish that it closed."""
        closed = managed.alerts.acknowledge(by)
        if closed is not None:
            self._publish_alert(managed, closed.to_dict())

    def _publish_alert(self, managed: ManagedExperiment, body: Mapping[str, Any]) -> None:
        stream = self._datastream()
        if stream is None:
            return
        try:
            stream.publish(
                alerts_queue(managed.name),
                json.dumps(dict(body)),
                content_type="application/json",
            )
        except Exception:  # the alert stays in status(); the broker may be briefly down
            logger.warning("%s: could not publish the alert", managed.name, exc_info=True)


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


def _signal_kind(reason: str) -> str:
    kinds = [k for k in ("drift", "threshold") if k in reason]
    return "+".join(kinds) or "signal"


def _when(at: float) -> str:
    return str(pd.Timestamp(at, unit="s").strftime("%Y-%m-%d %H:%M"))
