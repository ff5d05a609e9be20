"""Reports of the pattern-mining process models: a rule table and a support bar chart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from observml.experiments.reports import styled

__all__ = ["TOP", "rules_table", "support_bars"]

#: Rows a report shows.
TOP = 30


def rules_table(rules: pd.DataFrame, *, title: str, top: int = TOP) -> go.Figure:
    """Draw the first ``top`` rules (``rule``, ``support``, ``confidence``, ``lift``) as a table.

    The title gets " : top N of M rules" appended.
    """
    shown = rules.head(top)
    figure = go.Figure(
        go.Table(
            columnwidth=[6, 1, 1, 1],
            header={"values": ["rule", "support", "confidence", "lift"], "align": "left"},
            cells={
                "values": [
                    shown["rule"],
                    shown["support"].round(3),
                    shown["confidence"].round(3),
                    shown["lift"].round(2),
                ],
                "align": "left",
            },
        )
    )
    return styled(
        figure,
        title=f"{title}: top {len(shown)} of {len(rules)} rules",
        height=int(200 + 28 * max(len(shown), 1)),
        margin={},  # plotly's own margins: a table needs no room for axis titles
    )


def support_bars(
    labels: Sequence[str], support: Sequence[float] | np.ndarray, *, title: str, what: str
) -> go.Figure:
    """Draw one horizontal bar per pattern (the first :data:`TOP`, most frequent on top)."""
    names = list(labels)[:TOP]
    values = np.asarray(support, dtype="float64")[:TOP]
    figure = go.Figure(go.Bar(x=values[::-1], y=names[::-1], orientation="h"))
    styled(
        figure,
        title=f"{title}: top {len(names)} of {len(labels)} {what}",
        xaxis_title="support (share of cases)",
        height=int(200 + 24 * max(len(names), 1)),
        margin={"t": 60, "l": 20},
    )
    figure.update_yaxes(automargin=True)
    return figure
