"""The people's side of retraining: promote, reject, label rows, roll back.

A challenger in shadow waits here for a person (:meth:`Reviews.promote`, :meth:`Reviews.reject`,
``as_fault`` keeping the rows the champion flagged in the fault library); rows are labelled
through :meth:`Reviews.feedback`; :meth:`Reviews.rollback` undoes a promotion. Each acknowledges
the open alert and is recorded as a decision. :meth:`Reviews.restore_shadow` picks up a shadow
left by this hub before a restart or decided by another hub process.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pandas as pd

from observml.errors import DataError, NotFoundError
from observml.retraining.context import FAULT, NORMAL, RetrainContext, promote
from observml.retraining.decisions import CHALLENGER, PREVIOUS, SHADOW_TAG, Decision
from observml.retraining.shadow import Shadow
from observml.retraining.window import alarm_episodes

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.experiments.base import Experiment
    from observml.hub.managed import ManagedExperiment
    from observml.retraining.feedback import Evidence

__all__ = ["Reviews"]


class Reviews:
    """Decisions people take about an experiment's models and rows.

    Args:
        context: The plugins, alerts and fault library retraining shares.
    """

    def __init__(self, context: RetrainContext) -> None:
        self.context = context

    # -- the challenger in shadow ---------------------------------------------------------
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
        mlops = self.context.mlops()
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
            experiment = self.context.load_version(managed.name, version)
        promote(mlops, managed, experiment, version, learnt_through=learnt)
        if shadow is not None and shadow.version == version:
            self.context.end_shadow(managed, "promoted")
            managed.count("retrains")
        why = reason or f"promoted by {by}"
        self.context.acknowledge(managed, f"{by}: promoted v{version}")
        self.context.log(managed, Decision("promoted", why, version))
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
        self.context.end_shadow(managed, "rejected")
        self.context.acknowledge(managed, f"{by}: rejected v{shadow.version}")
        self.context.log(managed, Decision("rejected", why, shadow.version))
        return out

    def shadow_figure(self, managed: ManagedExperiment) -> Figure:
        """Champion and challenger-in-shadow scores over the same rows, both limits drawn.

        Raises:
            NotFoundError: No challenger in shadow.
        """
        shadow = managed.shadow
        champion, version = managed.champion()
        if shadow is None or champion is None:
            raise NotFoundError(
                f"experiment {managed.name!r}: no challenger in shadow. A retrain with"
                " retrain.promotion: approve puts one there."
            )
        return shadow.figure(champion, version, name=managed.name)

    # -- rows -----------------------------------------------------------------------------
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
            DataError: The label does not fit the type, no rows were given or matched, or the
                champion cannot score the given rows (the gate scores every kept episode).
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
            _check_scorable(managed, rows)
            frame = rows.reset_index(drop=True)
        elif label in (FAULT, NORMAL):
            frame = managed.window.label(label, start=start, end=end, time_column=time_column)
        else:
            frame = managed.window.rows(start=start, end=end, time_column=time_column)
        if classes is not None and len(frame):
            frame = frame.assign(**{classes: label})
        evidence = self.context.feedback_store(managed).add(label, frame, reason=reason, source=by)
        self.context.acknowledge(managed, f"{by}: {len(frame)} rows labelled {label}")
        self.context.log(
            managed,
            Decision(
                "feedback",
                f"{len(frame)} rows labelled {label} by {by}" + (f": {reason}" if reason else ""),
                managed.champion()[1],
                details={"run_id": evidence.run_id, "label": label, "rows": len(frame)},
            ),
        )
        return evidence.to_dict()

    def library_status(self, managed: ManagedExperiment) -> dict[str, Any]:
        """Counts of the fault library and the normal reference, for the status."""
        try:
            library = self.context.library(managed)
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

    # -- versions -------------------------------------------------------------------------
    def champion_trained(
        self, managed: ManagedExperiment, experiment: Experiment, version: int, run_id: str
    ) -> dict[str, Any]:
        """A training a person started (``hub.train``) serves at once: they chose its data."""
        mlops = self.context.mlops()
        promote(mlops, managed, experiment, version)
        trained = Decision("trained", f"trained on {experiment.n_train_rows_} rows", version)
        self.context.log(managed, trained, run_id=run_id)
        return {"promoted": True}

    def rollback(self, managed: ManagedExperiment) -> int:
        """Serve the previous champion again and move ``champion`` back to it.

        Raises:
            NotFoundError: There is no previous version.
        """
        mlops = self.context.mlops()
        previous = managed.previous_version
        if previous is None:
            found = mlops.get_version_by_alias(managed.name, PREVIOUS)
            previous = found.version if found else None
        if previous is None:
            raise NotFoundError(
                f"experiment {managed.name!r}: no previous version to roll back to. A rollback"
                " needs a promotion or a second training first."
            )
        experiment = self.context.load_version(managed.name, previous)
        promote(mlops, managed, experiment, previous)
        self.context.log(
            managed, Decision("rolled_back", f"rolled back to version {previous}", previous)
        )
        return previous

    def restore_shadow(self, managed: ManagedExperiment) -> bool:
        """Resume a challenger left in shadow (by this hub before a restart, or another hub).

        Returns whether the shadow changed.
        """
        found = self.context.mlops().get_version_by_alias(managed.name, CHALLENGER)
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
        experiment = self.context.load_version(managed.name, found.version)
        managed.set_shadow(Shadow(experiment, found.version, reason="resumed from the store"))
        managed.record(
            Decision("restored", f"challenger v{found.version} resumed in shadow", found.version)
        )
        return True

    def _store_alarm_as_fault(self, managed: ManagedExperiment, reason: str, by: str) -> Evidence:
        """Keep the rows the champion flagged in the window's alarm episodes as a fault."""
        snapshot = managed.window.snapshot()
        rule = managed.tracker.policy.alarm_episode
        inside = alarm_episodes(snapshot.flags, rule) & snapshot.flags
        if not inside.any():
            inside = snapshot.flags
        rows = snapshot.frame[inside & (snapshot.labels != NORMAL)]
        managed.window.label(FAULT, flagged_only=True)
        return self.context.feedback_store(managed).add(FAULT, rows, reason=reason, source=by)


def _check_scorable(managed: ManagedExperiment, rows: pd.DataFrame) -> None:
    """The gate scores every kept row with the champion: rows it cannot score would block it."""
    champion = managed.champion()[0]
    if champion is None:
        return
    try:
        copy.deepcopy(champion).predict(rows)
    except DataError as exc:
        raise DataError(
            f"experiment {managed.name!r} feedback: the champion cannot score these rows"
            f" ({exc}) Give rows with the columns it was trained on."
        ) from exc
