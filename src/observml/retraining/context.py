"""What every part of retraining shares: the store, the alert channel and the fault library.

:class:`RetrainContext` is handed to the machine's side of retraining
(:mod:`~observml.retraining.challenger`) and to the people's side
(:mod:`~observml.retraining.reviews`), so both tell an alert, record a decision and read the
fault library the same way. :func:`promote` is the one way a version becomes the champion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

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
from observml.retraining.history import store_decision

if TYPE_CHECKING:
    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment
    from observml.plugins.datastream import DataStreamPlugin
    from observml.plugins.mlops import MLOpsPlugin
    from observml.runtime.claims import TrainingClaims

__all__ = [
    "CLAIMED_ELSEWHERE",
    "FAULT",
    "NORMAL",
    "RUNNING_HERE",
    "RetrainContext",
    "log_decision",
    "promote",
]

logger = logging.getLogger(__name__)

#: The two labels every type takes in feedback (fault isolation also takes its classes).
FAULT: Final = "fault"
NORMAL: Final = "normal"
#: Alerts recorded as a decision each time they fire, also while an alert is already open
#: (an open drift alert would otherwise hide why every retrain after it failed).
_ALWAYS_RECORDED: Final = frozenset({"retrain_failed"})
#: :meth:`RetrainContext.take_slot`'s answer when this hub already retrains the experiment.
RUNNING_HERE: Final = "a retrain is already running in this hub"
#: Its answer (and ``train``'s) when another hub process holds the experiment's training claim.
CLAIMED_ELSEWHERE: Final = "another hub process sharing the datastream is training it now"


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
    """Record ``decision`` on the experiment, log it, and keep it in the store (never raises).

    This is the one path of every decision retraining takes: :meth:`ManagedExperiment.record`
    logs it on ``observml.events``; :func:`tag_in_store` tags the run and the version;
    :func:`~observml.retraining.history.store_decision` keeps it for a restarted hub.
    """
    managed.record(decision)
    if mlops is not None:
        tag_in_store(mlops, managed.name, decision, run_id=run_id)
        store_decision(mlops, managed.name, decision)


class RetrainContext:
    """The plugins and the per-experiment fault libraries of one hub's retraining.

    Args:
        mlops: Returns the MLOps plugin (raises when none is configured).
        datastream: Returns the datastream plugin, or ``None`` (alerts are then not published).
        load_version: Loads a model version of an experiment from the store.
        claims: The hub's training claims (one hub at a time trains an experiment).
    """

    def __init__(
        self,
        *,
        mlops: Callable[[], MLOpsPlugin],
        datastream: Callable[[], DataStreamPlugin | None],
        load_version: Callable[[str, int], Experiment],
        claims: TrainingClaims,
    ) -> None:
        self.mlops = mlops
        self.load_version = load_version
        self.claims = claims
        self._datastream = datastream
        self._stores: dict[str, FeedbackStore] = {}

    def mlops_or_none(self) -> MLOpsPlugin | None:
        """The MLOps plugin, or ``None``: decisions are still kept in ``status()`` without one."""
        try:
            return self.mlops()
        except Exception:
            return None

    def log(
        self, managed: ManagedExperiment, decision: Decision, *, run_id: str | None = None
    ) -> None:
        """Record, log and tag ``decision`` (see :func:`log_decision`)."""
        log_decision(self.mlops_or_none(), managed, decision, run_id=run_id)

    # -- the retrain slot -----------------------------------------------------------------
    def take_slot(self, managed: ManagedExperiment) -> str | None:
        """Take the retrain slot here and the training claim among hubs; else return why not.

        Raises:
            ServiceUnavailableError: The datastream could not be asked for the claim.
        """
        if not managed.tracker.mark_started():
            return RUNNING_HERE
        try:
            claimed = self.claims.take(managed.name)
        except BaseException:
            managed.tracker.abandon()
            raise
        if not claimed:
            managed.tracker.mark_finished()  # the cooldown starts here too
            return CLAIMED_ELSEWHERE
        return None

    def end_slot(self, managed: ManagedExperiment, *, cooldown: bool = True) -> None:
        """Give the training claim up and release the retrain slot.

        ``cooldown``: start the policy's cooldown (a retrain ran or was judged); ``False`` for a
        request refused before anything was tried.
        """
        self.claims.release(managed.name)
        if cooldown:
            managed.tracker.mark_finished()
        else:
            managed.tracker.abandon()

    # -- alerts ---------------------------------------------------------------------------
    def alert(
        self,
        managed: ManagedExperiment,
        kind: str,
        reason: str,
        *,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Raise (or update) the experiment's alert; a new one is logged and published.

        A failed retrain is a decision of its own (``retrain_failed``, with the error) each
        time, also while an alert is already open; any other signal is an ``alert`` decision
        when it opens the alert.
        """
        version = managed.champion()[1]
        alert, opened = managed.alerts.raise_(kind, reason, version=version)
        managed.count("alerts")
        waiting = managed.shadow
        note = f"; challenger v{waiting.version} awaits a decision in shadow" if waiting else ""
        if kind in _ALWAYS_RECORDED:
            self.log(managed, Decision(kind, reason, version, dict(metrics or {})))
        elif opened:
            self.log(managed, Decision("alert", f"{reason}{note}", version, dict(metrics or {})))
        if opened:
            self._publish_alert(managed, alert.to_dict())

    def acknowledge(self, managed: ManagedExperiment, by: str) -> None:
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

    # -- the shadow and the fault library -------------------------------------------------
    def end_shadow(self, managed: ManagedExperiment, outcome: str) -> None:
        """Take the challenger out of shadow and tag its version with ``outcome``."""
        shadow = managed.shadow
        managed.set_shadow(None)
        if shadow is None:
            return
        mlops = self.mlops()
        mlops.delete_alias(managed.name, CHALLENGER)
        mlops.set_version_tag(managed.name, shadow.version, SHADOW_TAG, outcome)

    def feedback_store(self, managed: ManagedExperiment) -> FeedbackStore:
        """The experiment's fault library and normal reference, kept in the MLOps store."""
        store = self._stores.get(managed.name)
        mlops = self.mlops()
        if store is None or store.mlops is not mlops:
            store = self._stores[managed.name] = FeedbackStore(mlops, managed.name)
        return store

    def library(self, managed: ManagedExperiment) -> list[Evidence]:
        """Every piece of feedback kept for the experiment, oldest first."""
        return self.feedback_store(managed).load()
