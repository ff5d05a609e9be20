"""What people said about rows: the fault library and the normal reference, kept in the store.

Each piece of feedback is one MLOps run of its own in the experiment (``observml.kind:
feedback``) with the rows as a JSON artifact and the label and reason as tags. Runs are only
ever added, never rewritten, so two hub processes can add feedback at once, and a restarted hub
or another process reads the same library. Rows labelled ``fault`` form the fault library that
every challenger must keep detecting; rows labelled ``normal`` join the normal reference; for
fault isolation any other label is a class, and the rows are labelled training data.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from observml.errors import DataError, NotFoundError
from observml.plugins.mlops import tracked_run

if TYPE_CHECKING:
    from observml.plugins.mlops import MLOpsPlugin

__all__ = ["FEEDBACK_KIND", "MAX_FEEDBACK_ROWS", "Evidence", "FeedbackStore"]

logger = logging.getLogger(__name__)

FEEDBACK_KIND: Final = "feedback"
#: The newest rows kept of one piece of feedback (a fault episode is rarely longer).
MAX_FEEDBACK_ROWS: Final = 20_000
_ARTIFACT_DIR: Final = "feedback"
_ROWS_FILE: Final = "rows.json"
_LABEL_TAG: Final = "observml.feedback.label"
_REASON_TAG: Final = "observml.feedback.reason"
_ROWS_TAG: Final = "observml.feedback.rows"
_SOURCE_TAG: Final = "observml.feedback.source"


@dataclass(frozen=True)
class Evidence:
    """One piece of feedback: rows, what they are, why, and the run that keeps them."""

    label: str
    rows: pd.DataFrame
    reason: str
    source: str
    run_id: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        """Return the evidence without its rows, JSON-ready."""
        return {
            "label": self.label,
            "rows": len(self.rows),
            "reason": self.reason,
            "source": self.source,
            "run_id": self.run_id,
            "at": self.at,
        }


class FeedbackStore:
    """Reads and adds feedback runs of one experiment (each run is downloaded once).

    Args:
        mlops: The MLOps plugin.
        name: The experiment.
    """

    def __init__(self, mlops: MLOpsPlugin, name: str) -> None:
        self.mlops = mlops
        self.name = name
        self._lock = threading.Lock()
        self._cache: dict[str, Evidence] = {}

    def add(self, label: str, rows: pd.DataFrame, *, reason: str, source: str) -> Evidence:
        """Store ``rows`` with ``label`` as a new feedback run and return it.

        Raises:
            DataError: ``rows`` is empty.
        """
        if rows.empty:
            raise DataError(
                f"experiment {self.name!r} feedback: no rows to label {label!r}. Give rows, or a"
                " time range that covers rows in the retrain window."
            )
        rows = rows.tail(MAX_FEEDBACK_ROWS).reset_index(drop=True)
        with (
            tracked_run(
                self.mlops,
                self.mlops.create_experiment(self.name),
                run_name=f"feedback-{label}",
                tags={
                    "observml.kind": FEEDBACK_KIND,
                    _LABEL_TAG: str(label),
                    _REASON_TAG: reason[:4000],
                    _ROWS_TAG: str(len(rows)),
                    _SOURCE_TAG: source[:250],
                },
            ) as run_id,
            tempfile.TemporaryDirectory(prefix="observml-feedback-") as tmp,
        ):
            path = Path(tmp) / _ROWS_FILE
            path.write_text(rows.to_json(orient="table", date_format="iso"), "utf-8")
            self.mlops.log_artifact(str(path), _ARTIFACT_DIR, run_id=run_id)
        evidence = Evidence(str(label), rows, reason, source, run_id, time.time())
        with self._lock:
            self._cache[run_id] = evidence
        return evidence

    def load(self) -> list[Evidence]:
        """Return every piece of feedback in the store, oldest first."""
        record = self.mlops.get_experiment_by_name(self.name)
        if record is None:
            return []
        runs = self.mlops.search_runs(
            record.experiment_id, max_results=10_000, tags={"observml.kind": FEEDBACK_KIND}
        )
        found = []
        for run in reversed(runs):  # oldest first
            if run.status != "FINISHED":
                continue
            with self._lock:
                cached = self._cache.get(run.run_id)
            if cached is None:
                cached = self._read(run.run_id, run.tags, run.start_time / 1000)
                if cached is None:
                    continue
                with self._lock:
                    self._cache[run.run_id] = cached
            found.append(cached)
        return found

    def _read(self, run_id: str, tags: Mapping[str, str], at: float) -> Evidence | None:
        try:
            with tempfile.TemporaryDirectory(prefix="observml-feedback-") as tmp:
                local = self.mlops.download_artifacts(run_id, f"{_ARTIFACT_DIR}/{_ROWS_FILE}", tmp)
                text = Path(local).read_text("utf-8")
            rows = pd.read_json(StringIO(text), orient="table")
        except (OSError, ValueError, NotFoundError) as exc:
            logger.warning(
                "%s: feedback run %s is unreadable and ignored: %s", self.name, run_id, exc
            )
            return None
        return Evidence(
            tags.get(_LABEL_TAG, ""),
            rows.reset_index(drop=True),
            tags.get(_REASON_TAG, ""),
            tags.get(_SOURCE_TAG, ""),
            run_id,
            at,
        )
