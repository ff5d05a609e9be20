"""A case judged by rules: which fire on it, which it breaks, and its share of kept rules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["rule_verdicts"]


def rule_verdicts(
    fired: npt.NDArray[np.bool_], holds: npt.NDArray[np.bool_], names: Sequence[str]
) -> pd.DataFrame:
    """Judge variants by rules: ``base_fitness``, ``rules_fired`` and ``rules_violated``.

    Args:
        fired: Variants x rules: the variant has the rule's antecedent.
        holds: Variants x rules: the variant has the rule's consequent where the rule wants it.
        names: The rules' texts.

    A rule is violated where it fires and does not hold; the fitness is the share of fired
    rules that hold (1.0 when none fires).
    """
    violated = fired & ~holds
    n_fired = fired.sum(axis=1)
    fitness = np.where(n_fired > 0, 1 - violated.sum(axis=1) / np.maximum(n_fired, 1), 1.0)
    texts = np.asarray(list(names), dtype=object)
    return pd.DataFrame(
        {
            "base_fitness": fitness.astype("float64"),
            "rules_fired": [list(texts[row]) for row in fired],
            "rules_violated": [list(texts[row]) for row in violated],
        }
    )
