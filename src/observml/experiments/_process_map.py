"""Directly-follows statistics of an event log and the ``process_map`` figure, drawn with plotly.

The map needs no graphviz: activities are placed left to right by their mean relative
position in the cases (binned into columns), arcs are drawn as arrows whose width follows how
often one activity directly follows another, and arcs of the discovered model are coloured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from observml.experiments import reports
from observml.experiments._process_models import END, START

__all__ = ["LogStatistics", "process_map_figure", "variant_statistics", "variants_figure"]

_MAX_COLUMNS: Final = 12
_MODEL: Final = "rgba(31,119,180,0.75)"
_LOG_ONLY: Final = "rgba(150,150,150,0.55)"
_MODEL_ONLY: Final = "rgba(255,127,14,0.8)"


@dataclass(frozen=True)
class LogStatistics:
    """What the map and the variant chart need from a training log."""

    activity_counts: pd.Series
    arcs: pd.Series  # (source, target) -> directly-follows count, START/END included
    position: pd.Series  # activity -> mean relative position in its cases (0..1)
    variants: pd.Series  # variant tuple -> number of cases
    n_cases: int


def variant_statistics(variants: pd.Series) -> LogStatistics:
    """Count activities, directly-follows arcs and mean positions from variant counts.

    Args:
        variants: Activity tuple -> number of cases (``Series.value_counts()`` of the traces).
    """
    arcs: dict[tuple[str, str], int] = {}
    activity: dict[str, int] = {}
    position: dict[str, float] = {}
    for trace, count in variants.items():
        steps = (START, *trace, END)
        n = int(count)
        for pair in zip(steps, steps[1:], strict=False):
            arcs[pair] = arcs.get(pair, 0) + n
        for i, name in enumerate(trace):
            activity[name] = activity.get(name, 0) + n
            relative = i / (len(trace) - 1) if len(trace) > 1 else 0.5
            position[name] = position.get(name, 0.0) + n * relative
    arc_counts = pd.Series(
        list(arcs.values()),
        index=pd.MultiIndex.from_tuples(list(arcs), names=["source", "target"]),
        dtype="int64",
    ).sort_values(ascending=False, kind="stable")
    counts = pd.Series(activity, dtype="int64").sort_values(ascending=False, kind="stable")
    mean = pd.Series({k: v / activity[k] for k, v in position.items()}, dtype="float64")
    return LogStatistics(
        activity_counts=counts,
        arcs=arc_counts,
        position=mean,
        variants=variants,
        n_cases=int(variants.sum()),
    )


def _layout(stats: LogStatistics, shown: set[str]) -> dict[str, tuple[float, float]]:
    """Place START left, END right, activities in columns by their mean position."""
    position = stats.position[[str(n) in shown for n in stats.position.index]]
    position = position.sort_values(kind="stable")
    columns = min(_MAX_COLUMNS, max(1, len(position)))
    slot = np.minimum((position.to_numpy() * columns).astype(int), columns - 1)
    placed: dict[str, tuple[float, float]] = {}
    for column in range(columns):
        names = [str(n) for n in position.index[slot == column]]
        names.sort(key=lambda n: -int(stats.activity_counts.get(n, 0)))
        for row, name in enumerate(names):  # most frequent in the middle, then alternating
            y = (row + 1) // 2 * (1 if row % 2 else -1)
            placed[name] = (float(column + 1), float(y))
    placed[START] = (0.0, 0.0)
    placed[END] = (float(columns + 1), 0.0)
    return placed


def process_map_figure(
    stats: LogStatistics,
    model_arcs: Iterable[tuple[str, str]],
    *,
    title: str,
    max_arcs: int = 80,
    max_model_only: int = 40,
    max_activities: int = 30,
) -> go.Figure:
    """Draw the directly-follows graph of the log, colouring the discovered model's arcs.

    Args:
        stats: The training log's counts.
        model_arcs: Arcs of the discovered model (activity names, START/END).
        title: Figure title.
        max_arcs: The most frequent log arcs drawn (model arcs the log shows are drawn too).
        max_model_only: Model arcs the log never shows directly that are drawn at most.
        max_activities: The most frequent activities drawn (with their arcs).
    """
    shown = {str(n) for n in stats.activity_counts.index[:max_activities]}
    places = _layout(stats, shown)
    model = {(a, b) for a, b in model_arcs if a in places and b in places and a != b}
    keep = [s != t and s in places and t in places for s, t in stats.arcs.index]
    observed = stats.arcs[keep]
    top = list(observed.index[:max_arcs])
    unseen = sorted(model - set(observed.index))
    chosen = set(top)
    drawn = top + [arc for arc in sorted(model) if arc not in chosen and arc in observed]
    drawn += unseen[:max_model_only]
    hidden = len(model) - sum(arc in model for arc in drawn)
    both = set(drawn)
    peak = max(1, int(observed.max()) if len(observed) else 1)
    figure = go.Figure()
    for label, color in (
        ("in model and log", _MODEL),
        ("log only", _LOG_ONLY),
        ("model only", _MODEL_ONLY),
    ):
        figure.add_scatter(x=[None], y=[None], mode="lines", line={"color": color}, name=label)
    annotations: list[dict[str, Any]] = []
    for source, target in drawn:
        count = int(observed.get((source, target), 0))
        in_model = (source, target) in model
        color = _MODEL if in_model and count else _MODEL_ONLY if in_model else _LOG_ONLY
        width = 1 + 5 * np.log1p(count) / np.log1p(peak) if count else 1
        (x0, y0), (x1, y1) = _ends(places, source, target, (target, source) in both)
        annotations.append(
            {
                "x": x1,
                "y": y1,
                "ax": x0,
                "ay": y0,
                "xref": "x",
                "yref": "y",
                "axref": "x",
                "ayref": "y",
                "showarrow": True,
                "arrowhead": 2,
                "arrowsize": 0.8,
                "arrowwidth": float(width),
                "arrowcolor": color,
                "standoff": 12,
                "startstandoff": 12,
                "text": "",
            }
        )
    for source, target in top[:30]:  # counts on the most frequent arcs
        (x0, y0), (x1, y1) = _ends(places, source, target, (target, source) in both)
        annotations.append(
            {
                "x": (x0 + x1) / 2,
                "y": (y0 + y1) / 2,
                "text": str(int(observed[(source, target)])),
                "showarrow": False,
                "font": {"size": 9, "color": "#444"},
                "bgcolor": "rgba(255,255,255,0.7)",
            }
        )
    if hidden:
        title += f"; {hidden} more model arcs not drawn"
    if len(stats.activity_counts) > len(shown):
        title += f"; {len(stats.activity_counts) - len(shown)} rare activities not drawn"
    names = list(places)
    counts = [int(stats.activity_counts.get(n, stats.n_cases)) for n in names]
    loops = {s: int(c) for (s, t), c in stats.arcs.items() if s == t}
    figure.add_scatter(
        x=[places[n][0] for n in names],
        y=[places[n][1] for n in names],
        mode="markers+text",
        text=[_wrap(n) for n in names],
        textposition="top center",
        textfont={"size": 10},
        marker={
            "size": [10 + 20 * np.sqrt(c / max(counts)) for c in counts],
            "color": [
                "#2ca02c" if n == START else "#d62728" if n == END else "#9ecae1" for n in names
            ],
            "line": {"width": 1, "color": "#333"},
        },
        hovertext=[
            f"{n}<br>{c} events" + (f"<br>{loops[n]} direct repeats" if n in loops else "")
            for n, c in zip(names, counts, strict=True)
        ],
        hoverinfo="text",
        name="activity",
        showlegend=False,
    )
    ys = [y for _, y in places.values()]
    rows = max(ys) - min(ys) + 1
    return reports.styled(
        figure,
        title=title,
        annotations=annotations,
        xaxis={"visible": False},
        yaxis={"visible": False, "range": [min(ys) - 0.8, max(ys) + 0.8]},
        height=int(min(1400, 250 + 90 * rows)),
        width=int(min(2000, 300 + 140 * (len(set(x for x, _ in places.values()))))),
        legend={"orientation": "h", "y": -0.05},
    )


def _ends(
    places: Mapping[str, tuple[float, float]], source: str, target: str, paired: bool
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return an arc's end points; an arc drawn both ways is shifted to its left side."""
    (x0, y0), (x1, y1) = places[source], places[target]
    if not paired:
        return (x0, y0), (x1, y1)
    length = float(np.hypot(x1 - x0, y1 - y0)) or 1.0
    dx, dy = -(y1 - y0) / length * 0.12, (x1 - x0) / length * 0.12
    return (x0 + dx, y0 + dy), (x1 + dx, y1 + dy)


def _wrap(name: str, width: int = 18) -> str:
    words, lines, line = name.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines)


def variants_figure(stats: LogStatistics, *, title: str, top: int = 15) -> go.Figure:
    """Bar chart of the most frequent variants (activity sequences)."""
    variants = stats.variants.head(top)[::-1]
    labels = [
        (" → ".join(v) if len(" → ".join(v)) <= 90 else " → ".join(v)[:87] + "...")
        for v in variants.index
    ]
    figure = go.Figure(
        go.Bar(
            x=variants.to_numpy(),
            y=[f"#{len(variants) - i}" for i in range(len(variants))],
            orientation="h",
            hovertext=labels,
            text=labels,
            textposition="auto",
        )
    )
    return reports.styled(
        figure,
        title=title,
        xaxis_title="cases",
        yaxis_title="variant",
        height=int(200 + 40 * len(variants)),
    )
