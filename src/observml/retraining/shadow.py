"""A challenger in shadow: it scores every live batch beside the champion, changing nothing.

While a person decides, the challenger predicts the same rows as the champion; its results go to
``<name>.shadow`` (consumers of ``<name>.predictions`` see nothing change), and the shadow keeps
counters (rows, share flagged by each model, agreement) and the newest scores of both models
over the same rows, drawn by :meth:`Shadow.figure` with both models' limits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from observml.errors import ObservMLError

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.experiments.base import Experiment
    from observml.retraining.gate import GateResult

__all__ = ["Shadow"]

_RECENT: Final = 2000
_CHAMPION_COLOUR: Final = "#2f6fdb"
_CHALLENGER_COLOUR: Final = "#d9822b"
_LIMIT_COLOUR: Final = "#d64545"


@dataclass(frozen=True)
class _Point:
    x: Any
    champion: float
    challenger: float


class Shadow:
    """The challenger in shadow and what it has said so far (thread-safe).

    Args:
        experiment: The challenger.
        version: Its model version.
        gate: The gate's verdict when it was trained (advice for the person who decides).
        reason: Why it was trained (the alert or request), for the status.
        since: When it went into shadow.
        learnt_through: Newest streamed row (window sequence number) it learnt from.
    """

    def __init__(
        self,
        experiment: Experiment,
        version: int,
        *,
        gate: GateResult | None = None,
        reason: str = "",
        since: float | None = None,
        learnt_through: int = -1,
    ) -> None:
        self.experiment = experiment
        self.version = version
        self.gate = gate
        self.reason = reason
        self.learnt_through = learnt_through
        self.since = time.time() if since is None else since
        self._lock = threading.Lock()
        self._recent: deque[_Point] = deque(maxlen=_RECENT)
        self.rows = 0
        self.champion_flagged = 0
        self.challenger_flagged = 0
        self.agreed = 0
        self.errors = 0
        self.last_error: str | None = None

    def observe(
        self,
        frame: pd.DataFrame,
        champion: Experiment,
        champion_result: pd.DataFrame,
        challenger_result: pd.DataFrame,
        *,
        x: Sequence[Any] | np.ndarray | None = None,
    ) -> None:
        """Record both models' verdicts on the same rows (``x`` labels them in the plot)."""
        new_flags = np.asarray(self.experiment.alarms(frame, challenger_result), dtype=bool)
        old_flags = np.asarray(champion.alarms(frame, champion_result), dtype=bool)
        new_scores = _scores(self.experiment, challenger_result)
        old_scores = _scores(champion, champion_result)
        n = min(len(new_scores), len(old_scores))
        xs = list(x) if x is not None and len(x) >= n else [None] * n
        with self._lock:
            start = self.rows
            self.rows += len(frame)
            self.champion_flagged += int(old_flags.sum())
            self.challenger_flagged += int(new_flags.sum())
            self.agreed += int(np.sum(old_flags == new_flags))
            for i in range(n):
                at = xs[i] if xs[i] is not None else start + i
                self._recent.append(_Point(at, float(old_scores[i]), float(new_scores[i])))

    def failed(self, reason: str) -> None:
        """Count rows the challenger could not score (the champion's results are unaffected)."""
        with self._lock:
            self.errors += 1
            self.last_error = reason

    def status(self) -> dict[str, Any]:
        """Counters, the gate's advice and the newest score pairs, JSON-ready."""
        with self._lock:
            rows = self.rows
            recent = list(self._recent)[-20:]
            return {
                "version": self.version,
                "since": self.since,
                "reason": self.reason,
                "rows": rows,
                "champion_flagged": self.champion_flagged,
                "challenger_flagged": self.challenger_flagged,
                "champion_flag_rate": self.champion_flagged / rows if rows else None,
                "challenger_flag_rate": self.challenger_flagged / rows if rows else None,
                "agreement": self.agreed / rows if rows else None,
                "errors": self.errors,
                "last_error": self.last_error,
                "gate": self.gate.to_dict() if self.gate else None,
                "recent": [
                    {
                        "x": _plain(p.x),
                        "champion": _num(p.champion),
                        "challenger": _num(p.challenger),
                    }
                    for p in recent
                ],
            }

    def figure(self, champion: Experiment, champion_version: int | None, *, name: str) -> Figure:
        """Champion and challenger scores over the same rows, with both models' limits."""
        import plotly.graph_objects as go

        with self._lock:
            points = list(self._recent)
            rows, old_flagged, new_flagged = (
                self.rows,
                self.champion_flagged,
                self.challenger_flagged,
            )
        figure = go.Figure()
        xs = [p.x for p in points]
        old_name = f"champion v{champion_version}" if champion_version is not None else "champion"
        new_name = f"challenger v{self.version}"
        old_line, new_line = {"color": _CHAMPION_COLOUR}, {"color": _CHALLENGER_COLOUR}
        figure.add_scatter(
            x=xs, y=[p.champion for p in points], mode="lines", name=old_name, line=old_line
        )
        figure.add_scatter(
            x=xs, y=[p.challenger for p in points], mode="lines", name=new_name, line=new_line
        )
        old_limits, new_limits = champion.score_limits(), self.experiment.score_limits()
        limits = [
            (old_name, old_limits, "dash", _CHAMPION_COLOUR, "left"),
            (new_name, new_limits, "dot", _CHALLENGER_COLOUR, "right"),
        ]
        if np.allclose(old_limits, new_limits) and len(old_limits) == len(new_limits):
            limits = [("both models", old_limits, "dash", _LIMIT_COLOUR, "left")]
        # each model's limit in its colour, labelled at opposite ends (close limits would
        # print their labels over each other); one line when both models share it
        for label, values, dash, colour, side in limits:
            for limit in values:
                figure.add_hline(
                    y=limit,
                    line={"dash": dash, "width": 1.5, "color": colour},
                    annotation_text=(
                        f"limit {limit:.3g} (both models)"
                        if label == "both models"
                        else f"{label} limit {limit:.3g}"
                    ),
                    annotation_position=f"top {side}",
                    annotation_font_color=colour,
                )
        flagged = (
            f"champion flags {old_flagged / rows:.1%}, challenger {new_flagged / rows:.1%}"
            f" of {rows} rows"
            if rows
            else "no rows scored yet"
        )
        timed = bool(xs) and not isinstance(xs[0], int | float)
        figure.update_layout(
            title=f"{name}: champion vs challenger in shadow ({flagged})",
            xaxis_title="time" if timed else "row",
            yaxis_title="score (higher = more anomalous)" if limits else "score",
            legend={"orientation": "h", "y": -0.2},
        )
        return figure


def _scores(experiment: Experiment, result: pd.DataFrame) -> np.ndarray:
    try:
        return np.asarray(experiment.drift_scores(result), dtype="float64")
    except ObservMLError:  # a type without a score column: NaN keeps the counters going
        return np.full(len(result), np.nan)


def _num(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value
