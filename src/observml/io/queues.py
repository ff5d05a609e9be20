"""The queues of an experiment: one name each, the contract producers and consumers share.

For an experiment ``pump``: rows to train on arrive on ``pump.train``, rows to score on
``pump.predict``; results go to ``pump.predictions``, a challenger in shadow's results to
``pump.shadow``, alerts to ``pump.alerts``. Each queue ``q`` has its dead letters on ``q.dead``
(:func:`observml.plugins.datastream.dead_letter_queue`).
"""

from __future__ import annotations

__all__ = [
    "alerts_queue",
    "experiment_queues",
    "is_input_queue",
    "predict_queue",
    "predictions_queue",
    "shadow_queue",
    "train_queue",
]


def train_queue(name: str) -> str:
    """The queue training data for experiment ``name`` is read from."""
    return f"{name}.train"


def predict_queue(name: str) -> str:
    """The queue rows to predict for experiment ``name`` arrive on."""
    return f"{name}.predict"


def predictions_queue(name: str) -> str:
    """The queue results for experiment ``name`` are published to."""
    return f"{name}.predictions"


def shadow_queue(name: str) -> str:
    """The queue a challenger in shadow publishes its results to."""
    return f"{name}.shadow"


def alerts_queue(name: str) -> str:
    """The queue an experiment's alerts are published to."""
    return f"{name}.alerts"


def experiment_queues(name: str) -> tuple[str, ...]:
    """Every queue the hub declares for experiment ``name`` (each with its ``.dead`` queue)."""
    return (
        train_queue(name),
        predict_queue(name),
        predictions_queue(name),
        shadow_queue(name),
        alerts_queue(name),
    )


def is_input_queue(queue: str) -> bool:
    """Whether ``queue`` is one a hub consumes (``NAME.train``, ``NAME.predict``), not a result."""
    return queue.endswith((train_queue(""), predict_queue("")))
