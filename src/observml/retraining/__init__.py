"""Retraining: when a model may be replaced, on which rows, by what test, and who decides.

One home for the whole flow (:mod:`observml.retraining.retrainer` runs it for the hub):

* :mod:`~observml.retraining.policy` — the ``retrain:`` block: signals, limits, promotion mode;
* :mod:`~observml.retraining.tracker` — the policy applied to a stream over time, with backoff;
* :mod:`~observml.retraining.drift` — the drift test on the scores;
* :mod:`~observml.retraining.alerts` — a signal is told to people first;
* :mod:`~observml.retraining.window` — the streamed rows a challenger may learn from;
* :mod:`~observml.retraining.gate` — what a challenger must pass without a person;
* :mod:`~observml.retraining.holdout` — the rows neither model trained on, for comparisons;
* :mod:`~observml.retraining.shadow` — a challenger scoring beside the champion until decided;
* :mod:`~observml.retraining.feedback` — the fault library and normal reference people build;
* :mod:`~observml.retraining.decisions` — every decision, logged and tagged; the aliases.

Importing this package imports only the policy, its tracker and the drift test (experiments
validate their ``retrain:`` block with them); the rest loads where it is used.
"""

from __future__ import annotations

from observml.retraining.drift import DriftTest, ScoreSample
from observml.retraining.policy import AlarmEpisode, GateSettings, RetrainPolicy
from observml.retraining.tracker import RetrainDecision, RetrainTracker

__all__ = [
    "AlarmEpisode",
    "DriftTest",
    "GateSettings",
    "RetrainDecision",
    "RetrainPolicy",
    "RetrainTracker",
    "ScoreSample",
]
