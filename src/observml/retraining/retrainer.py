"""The retraining flow of a hub, from a fired signal to a decision a person can undo.

1. After each streamed batch, the policy may fire (drift in the scores, or the metric past its
   threshold). That raises an **alert** first (``status()``, ``<name>.alerts``, the dashboard).
2. If retraining is enabled, no challenger waits in shadow and this hub takes the experiment's
   training claim (with several hubs, one trains; docs/deploy.md), a **challenger** is trained on
   the rows :func:`~observml.retraining.window.select_rows` keeps (in control, or all but known
   faults).
3. The **gate** is evaluated (:mod:`observml.retraining.gate`). With ``promotion: auto`` the
   challenger is promoted when it passes and rejected when it fails; with ``approve`` it goes into
   **shadow** beside the champion and the gate's verdict is advice for the person who decides.
4. A person **promotes** or **rejects** it (``as_fault`` keeps the rows the champion flagged in
   the fault library), or labels rows through **feedback**. Every step is a decision in
   ``status()`` and a tag in the MLOps store; ``rollback`` undoes a promotion.

Steps 2 and 3 live in :mod:`~observml.retraining.challenger`, step 4 in
:mod:`~observml.retraining.reviews`; this module wires them to the stream (step 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from observml.retraining.challenger import Challengers, StartJob
from observml.retraining.context import RUNNING_HERE, RetrainContext
from observml.retraining.decisions import Decision
from observml.retraining.reviews import Reviews

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment
    from observml.plugins.datastream import DataStreamPlugin
    from observml.plugins.mlops import MLOpsPlugin
    from observml.retraining.drift import ScoreSample
    from observml.runtime.claims import TrainingClaims

__all__ = ["Retrainer"]

logger = logging.getLogger(__name__)


class Retrainer:
    """Runs alerts, challengers, the gate, the shadow and people's decisions for a hub.

    Args:
        mlops: Returns the MLOps plugin (raises when none is configured).
        datastream: Returns the datastream plugin, or ``None`` (alerts are then not published).
        load_version: Loads a model version of an experiment from the store.
        start_job: Starts a training job (the hub's job machinery).
        holdout_fraction: Share of the window held out for metric comparisons.
        claims: The hub's training claims (with several hubs, one trains an experiment).
        catch_up: Reads what the store says now (champion, challenger in shadow) into an
            experiment; called once the training claim is held, before training.

    Attributes:
        context: What the parts share: plugins, alerts, the fault library.
        challengers: Trains challengers and judges them (the machine's side).
        reviews: Promote, reject, feedback, rollback (the people's side).
    """

    def __init__(
        self,
        *,
        mlops: Callable[[], MLOpsPlugin],
        datastream: Callable[[], DataStreamPlugin | None],
        load_version: Callable[[str, int], Experiment],
        start_job: StartJob,
        holdout_fraction: float,
        claims: TrainingClaims,
        catch_up: Callable[[ManagedExperiment], None],
    ) -> None:
        self.context = RetrainContext(
            mlops=mlops, datastream=datastream, load_version=load_version, claims=claims
        )
        self._catch_up = catch_up
        self.challengers = Challengers(self.context, start_job, holdout_fraction=holdout_fraction)
        self.reviews = Reviews(self.context)

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
        # take the retrain slot first, so whoever sees the alert also sees the retrain
        wanted = (
            decision.retrain
            and managed.active_job() is None
            and managed.shadow is None  # a challenger already waits for a person
        )
        why_not = self._take_slot(managed) if wanted else None
        self.context.alert(managed, _signal_kind(decision.reason), decision.reason, metrics=metrics)
        if not wanted or why_not == RUNNING_HERE:
            return
        why_not = why_not or self._decided_elsewhere(managed)
        if why_not is not None:
            self.context.log(
                managed, Decision("skipped", f"{decision.reason}; not retraining: {why_not}")
            )
            return
        try:
            self.challengers.start(managed, reason=decision.reason)
        except Exception as exc:  # the stream goes on; the reason is told
            self.context.end_slot(managed)
            self.challengers.failed(managed, f"could not start: {type(exc).__name__}: {exc}")

    def _take_slot(self, managed: ManagedExperiment) -> str | None:
        try:
            return self.context.take_slot(managed)
        except Exception as exc:  # the stream goes on; this signal trains nothing
            return f"the training claim could not be taken ({exc})"

    def _decided_elsewhere(self, managed: ManagedExperiment) -> str | None:
        """Catch up with the store once the slot is held: did another hub act meanwhile?

        If it did, the slot is given back and what it did is returned; else ``None``.
        """
        before = managed.champion()[1]
        try:
            self._catch_up(managed)
        except Exception:  # the store is down: train on what this hub knows
            logger.warning("%s: could not catch up with the store", managed.name, exc_info=True)
            return None
        waiting, after = managed.shadow, managed.champion()[1]
        if waiting is not None:
            why = (
                f"challenger v{waiting.version}, trained by another hub process,"
                " awaits a decision in shadow"
            )
        elif after != before:
            why = f"another hub process made v{after} the champion meanwhile"
        else:
            return None
        self.context.end_slot(managed)
        return why


def _signal_kind(reason: str) -> str:
    kinds = [k for k in ("drift", "threshold") if k in reason]
    return "+".join(kinds) or "signal"
