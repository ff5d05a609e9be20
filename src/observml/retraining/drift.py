"""The drift test on the scores: has the model's score distribution moved since training?

The ``retrain.drift`` block of an experiment config maps onto :class:`DriftTest`. A
:class:`DriftMonitor` collects the scores the champion gives streamed rows and, each time
``window`` new ones have arrived, compares them with a reference sample in a two-sample
Kolmogorov–Smirnov test (:func:`scipy.stats.ks_2samp`). It reports drift when the test rejects
"same distribution" at ``p_value`` *and* the KS statistic (the largest gap between the two
empirical distribution functions, 0..1) is at least ``min_statistic``, so a huge window does not
fire on a shift too small to matter.

Windows do not overlap: with no drift, a test fires falsely with probability ``p_value`` per
window, not per batch.

The reference is either the scores the model gave the newest rows of its own training data
(``reference: training``; computed when it is trained and saved with it, so a restarted hub and a
second hub process test against the same sample) or the first ``window`` streamed scores after a
champion is swapped in (``reference: stream``). The default, ``auto``, takes the training scores
unless the model's scores on its own training rows are known not to look like its scores on new
rows of the same process (:attr:`ModelSpec.in_sample_scores`: a random forest is surer of the
rows it was grown on; LOF and DBSCAN count each training row as its own neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from observml.errors import ConfigProblem

__all__ = ["DriftMonitor", "DriftResult", "DriftTest", "ScoreSample", "check_drift_test"]

FloatArray = npt.NDArray[np.float64]

REFERENCES: Final = ("auto", "training", "stream")
_MIN_WINDOW: Final = 20


@dataclass(frozen=True)
class DriftTest:
    """How to test the scores for drift (the ``retrain.drift`` config block).

    Attributes:
        p_value: Drift when the KS test's p-value is below this (0 < p_value < 1).
        min_statistic: ... and the KS statistic is at least this (0..1).
        window: How many streamed scores each test compares (the tests do not overlap).
        column: Result column holding the score; ``None`` = the experiment type's own score
            (fault detection ``score``, fault isolation the top class probability, time series
            the standardized forecast residual, process mining ``fitness``).
        reference: ``training`` (scores of the training rows, saved with the model),
            ``stream`` (the first ``window`` streamed scores of each champion) or ``auto``
            (``training`` where the model's in-sample scores are representative).
        reference_size: How many training rows' scores are kept as the reference.
    """

    p_value: float = 0.01
    min_statistic: float = 0.1
    window: int = 500
    column: str | None = None
    reference: str = "auto"
    reference_size: int = 1000


@dataclass(frozen=True)
class ScoreSample:
    """The scores of one streamed batch, with what they are tested against.

    Attributes:
        values: The batch's scores (NaN and infinities are dropped).
        reference: The champion's training reference, if it has one.
        model: The champion's version: a new one starts a new reference and window.
    """

    values: FloatArray
    reference: FloatArray | None = None
    model: Any = None


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one test."""

    drifted: bool
    statistic: float
    p_value: float
    n_reference: int
    n_recent: int
    reference: str

    @property
    def reason(self) -> str:
        """One line for logs, ``status()`` and the ``fired`` decision."""
        verdict = "drift" if self.drifted else "no drift"
        return (
            f"{verdict} in the scores: KS statistic {self.statistic:.3f}, p-value"
            f" {self.p_value:.3g} ({self.n_recent} streamed vs {self.n_reference}"
            f" {self.reference} scores)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return {
            "drifted": self.drifted,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "n_reference": self.n_reference,
            "n_recent": self.n_recent,
            "reference": self.reference,
        }


class DriftMonitor:
    """Collects streamed scores and tests each full window (not thread-safe: the tracker locks).

    Args:
        test: The ``retrain.drift`` settings.
    """

    def __init__(self, test: DriftTest) -> None:
        self.test = test
        self._model: Any = None
        self._stream_reference: list[FloatArray] = []
        self._stream_reference_size = 0
        self._recent: list[FloatArray] = []
        self._recent_size = 0
        self.last: DriftResult | None = None

    def add(self, sample: ScoreSample) -> DriftResult | None:
        """Take one batch's scores; return a result when a window was full and tested."""
        if sample.model != self._model:
            self._model = sample.model
            self._stream_reference, self._stream_reference_size = [], 0
            self.last = None  # a result about the old champion would mislead
            self.reset()
        values = np.asarray(sample.values, dtype="float64").ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return None
        reference, source = self._reference(sample)
        if reference is None:
            self._stream_reference.append(values)
            self._stream_reference_size += values.size
            return None
        self._recent.append(values)
        self._recent_size += values.size
        if self._recent_size < self.test.window:
            return None
        recent = np.concatenate(self._recent)
        self._recent, self._recent_size = [], 0
        self.last = self._compare(reference, recent, source)
        return self.last

    def progress(self) -> str:
        """Where the next test stands, for ``status()`` between tests."""
        if self._recent_size == 0 and self._stream_reference_size < self.test.window:
            if self._stream_reference_size or self.test.reference == "stream":
                return (
                    f"drift test: {self._stream_reference_size} of {self.test.window} reference"
                    " scores collected from the stream"
                )
        return f"drift test: {self._recent_size} of {self.test.window} scores collected"

    def reset(self) -> None:
        """Drop the scores collected so far (after a retrain, the window starts again)."""
        self._recent, self._recent_size = [], 0

    def _reference(self, sample: ScoreSample) -> tuple[FloatArray | None, str]:
        """The reference to test against, or ``None`` while the stream reference fills."""
        if self.test.reference != "stream" and sample.reference is not None:
            kept = np.asarray(sample.reference, dtype="float64")
            kept = kept[np.isfinite(kept)]
            if kept.size >= _MIN_WINDOW:
                return kept, "training"
        # the stream reference (also the fallback for a model saved without one)
        if self._stream_reference_size < self.test.window:
            return None, "stream"
        if len(self._stream_reference) > 1:  # joined once, when it has filled
            self._stream_reference = [np.concatenate(self._stream_reference)]
        return self._stream_reference[0], "stream"

    def _compare(self, reference: FloatArray, recent: FloatArray, source: str) -> DriftResult:
        from scipy.stats import ks_2samp

        outcome = ks_2samp(reference, recent)
        statistic, p_value = float(outcome.statistic), float(outcome.pvalue)
        drifted = p_value < self.test.p_value and statistic >= self.test.min_statistic
        return DriftResult(drifted, statistic, p_value, reference.size, recent.size, source)


def check_drift_test(raw: Any, problems: list[ConfigProblem]) -> DriftTest | None:
    """Validate the ``retrain.drift`` block; ``None``/``false`` means no drift test.

    ``drift: true`` takes every default.
    """
    from observml.config.validation import check_arguments

    if raw is None or raw is False:
        return None
    if raw is True:
        return DriftTest()
    if not isinstance(raw, dict):
        problems.append(
            ConfigProblem(
                "retrain.drift", f"expected a mapping (or true for the defaults), got {raw!r}."
            )
        )
        return None
    before = len(problems)
    kwargs = check_arguments(DriftTest, raw, "retrain.drift", problems)
    if len(problems) > before:
        return None
    test = DriftTest(**kwargs)
    checks = [
        ("p_value", 0 < test.p_value < 1, "expected a value between 0 and 1."),
        ("min_statistic", 0 <= test.min_statistic <= 1, "expected a value from 0 to 1."),
        ("window", test.window >= _MIN_WINDOW, f"expected at least {_MIN_WINDOW} scores."),
        (
            "reference_size",
            test.reference_size >= _MIN_WINDOW,
            f"expected at least {_MIN_WINDOW} rows.",
        ),
        (
            "reference",
            test.reference in REFERENCES,
            f"expected one of {', '.join(REFERENCES)}, got {test.reference!r}.",
        ),
    ]
    for key, ok, message in checks:
        if not ok:
            problems.append(ConfigProblem(f"retrain.drift.{key}", message))
    return test if len(problems) == before else None
