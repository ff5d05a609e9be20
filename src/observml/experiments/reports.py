"""Plotly figure builders shared by the experiment types (names are chosen by the callers).

Every builder returns a :class:`plotly.graph_objects.Figure` small enough to store as JSON:
long series are thinned to :data:`MAX_POINTS` points and histograms are binned here, not in the
browser. Titles name what is shown; axes carry units where known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from observml.errors import NotFoundError

__all__ = [
    "MAX_POINTS",
    "TEMPLATE",
    "bar_chart",
    "control_chart",
    "eda_figures",
    "heatmap",
    "histogram",
    "limit_lines",
    "line_chart",
    "pick_figure",
    "styled",
    "thin",
]

#: Longest series drawn; longer ones are thinned by a fixed stride (anomalies always kept).
MAX_POINTS: Final = 5000
#: The registered plotly template every report is drawn with.
TEMPLATE: Final = "plotly_white"
_LAYOUT: Final[Mapping[str, Any]] = {"margin": {"t": 60}}


def styled(figure: go.Figure, **layout: Any) -> go.Figure:
    """Update ``figure``'s layout with the reports' margin, ``layout``, and the template.

    The template is assigned the way plotly assigns its default one: the registered template
    was validated when plotly built it, so this one assignment skips validation, and the
    layout keeps a copy of the template's properties. Through ``update_layout(template=...)``
    plotly deep-copies the whole template object and validates it again, about 10 ms a figure:
    most of what a small report costs, paid by every training job (issue 13). The figure and
    its JSON are the same either way (tests/unit/experiments/test_reports.py checks).
    """
    figure.update_layout({**_LAYOUT, **layout})
    target = figure.layout
    validate = getattr(target, "_validate", None)
    if not isinstance(validate, bool):  # a plotly without the flag: its own (slower) way
        figure.update_layout(template=TEMPLATE)
        return figure
    target._validate = False
    try:
        target.template = pio.templates[TEMPLATE]
    finally:
        target._validate = validate
    return figure


def pick_figure(
    figures: Mapping[str, go.Figure], name: str, *, where: str, what: str = "report"
) -> go.Figure:
    """Return ``figures[name]``, or say which names there are.

    Raises:
        NotFoundError: ``"<where>: no <what> '<name>'. <What>s: ..."``.
    """
    if name not in figures:
        raise NotFoundError(
            f"{where}: no {what} {name!r}. {what[0].upper()}{what[1:]}s:"
            f" {', '.join(sorted(figures)) or 'none'}."
        )
    return figures[name]


def limit_lines(
    figure: go.Figure, lines: Sequence[tuple[float, str, int]], *, left: bool = False
) -> None:
    """Draw each ``(y, label, row)`` as a dashed red line across subplot ``row`` (of one column).

    The label sits above the line's right end (``left``: its left end). It is what
    ``figure.add_hline(y, line_dash="dash", line_color="red", annotation_text=label,
    row=row, col=1)`` draws, in one layout update: ``add_hline`` validates the figure's shapes
    and annotations again for each line, about 5 ms a line in a training job (issue 13).
    tests/unit/experiments/test_reports.py compares the two.
    """
    shapes, notes = [], []
    for y, label, row in lines:
        axis = "" if row == 1 else str(row)
        where = {"xref": f"x{axis} domain", "yref": f"y{axis}"}
        shapes.append(
            {"type": "line", "x0": 0, "x1": 1, "y0": y, "y1": y, **where}
            | {"line": {"color": "red", "dash": "dash"}}
        )
        notes.append(
            {"text": label, "showarrow": False, "x": 0 if left else 1, "y": y, **where}
            | {"xanchor": "left" if left else "right", "yanchor": "bottom"}
        )
    if shapes:  # appended, so plotly validates only the new ones
        figure.layout.shapes += tuple(shapes)
        figure.layout.annotations += tuple(notes)


def thin(n: int, keep: np.ndarray | None = None, max_points: int = MAX_POINTS) -> np.ndarray:
    """Return the row positions to draw out of ``n``: a stride plus every ``keep`` position."""
    if n <= max_points:
        return np.arange(n)
    positions = np.arange(0, n, int(np.ceil(n / max_points)))
    if keep is not None and keep.any():
        positions = np.union1d(positions, np.flatnonzero(keep)[:max_points])
    return positions


def _axis(x: Sequence[Any] | pd.Series | np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n) if x is None else np.asarray(x)


def line_chart(
    series: Mapping[str, np.ndarray | pd.Series],
    *,
    title: str,
    x: Sequence[Any] | pd.Series | np.ndarray | None = None,
    y_title: str = "",
    limits: Mapping[str, float] | None = None,
    marks: np.ndarray | None = None,
    marks_name: str = "anomaly",
    bands: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> go.Figure:
    """Draw lines over a shared x axis, with horizontal limits, marked points and bands.

    Args:
        series: Name -> values (all the same length).
        title: Figure title.
        x: Shared x values (times); ``None`` uses the row number.
        y_title: Label of the y axis.
        limits: Name -> a horizontal line (e.g. the anomaly threshold).
        marks: Boolean mask; the first series' points there are drawn as red markers.
        marks_name: Legend name of the marked points.
        bands: Name -> (lower, upper) filled between.
    """
    first = np.asarray(next(iter(series.values())))
    n = len(first)
    keep = thin(n, marks)
    xs = _axis(x, n)[keep]
    figure = go.Figure()
    for name, (lower, upper) in (bands or {}).items():
        figure.add_scatter(
            x=xs,
            y=np.asarray(upper)[keep],
            mode="lines",
            line={"width": 0},
            showlegend=False,
            name=f"{name} upper",
        )
        figure.add_scatter(
            x=xs,
            y=np.asarray(lower)[keep],
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(99,110,250,0.2)",
            name=name,
        )
    for name, values in series.items():
        figure.add_scatter(x=xs, y=np.asarray(values)[keep], mode="lines", name=name)
    limit_lines(
        figure, [(float(value), name, 1) for name, value in (limits or {}).items()], left=True
    )
    if marks is not None and marks.any():
        where = np.flatnonzero(marks)[:MAX_POINTS]
        figure.add_scatter(
            x=_axis(x, n)[where],
            y=first[where],
            mode="markers",
            marker={"color": "red", "size": 6},
            name=marks_name,
        )
    return styled(
        figure, title=title, xaxis_title="time" if x is not None else "row", yaxis_title=y_title
    )


def control_chart(
    statistics: Mapping[str, tuple[np.ndarray, float]],
    *,
    title: str,
    x: Sequence[Any] | pd.Series | np.ndarray | None = None,
) -> go.Figure:
    """Draw one panel per statistic with its control limit; points above it in red."""
    names = list(statistics)
    figure = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names)
    lines: list[tuple[float, str, int]] = []
    for row, name in enumerate(names, start=1):
        values, limit = statistics[name]
        values = np.asarray(values)
        above = values > limit
        keep = thin(len(values), above)
        xs = _axis(x, len(values))
        figure.add_scatter(x=xs[keep], y=values[keep], mode="lines", name=name, row=row, col=1)
        lines.append((float(limit), f"{name} limit {limit:.3g}", row))
        out = np.flatnonzero(above)[:MAX_POINTS]
        figure.add_scatter(
            x=xs[out],
            y=values[out],
            mode="markers",
            name=f"{name} > limit",
            marker={"color": "red", "size": 5},
            row=row,
            col=1,
        )
    limit_lines(figure, lines)
    figure.update_xaxes(title_text="time" if x is not None else "row", row=len(names), col=1)
    return styled(figure, title=title, height=300 * len(names) + 100)


def bar_chart(
    values: Mapping[str, float], *, title: str, x_title: str = "", y_title: str = ""
) -> go.Figure:
    """Draw one bar per name, in the order given."""
    figure = go.Figure(go.Bar(x=list(values), y=[float(v) for v in values.values()]))
    return styled(figure, title=title, xaxis_title=x_title, yaxis_title=y_title)


def heatmap(
    z: np.ndarray,
    *,
    x: Sequence[str],
    y: Sequence[str],
    title: str,
    x_title: str = "",
    y_title: str = "",
    text: bool = True,
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = "Blues",
) -> go.Figure:
    """Draw a labelled matrix (confusion matrix, correlation), values written in the cells."""
    z = np.asarray(z)
    labels = np.vectorize(lambda v: f"{v:.3g}")(z) if text and z.size <= 900 else None
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=list(x),
            y=list(y),
            text=labels,
            texttemplate="%{text}" if labels is not None else None,
            colorscale=colorscale,
            zmin=zmin,
            zmax=zmax,
        )
    )
    styled(figure, title=title, xaxis_title=x_title, yaxis_title=y_title)
    figure.update_yaxes(autorange="reversed")
    return figure


def histogram(values: np.ndarray, *, title: str, x_title: str, bins: int = 30) -> go.Figure:
    """Draw a histogram binned here (the JSON holds counts, not the raw values)."""
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(finite, bins=bins) if finite.size else (np.zeros(1), np.zeros(2))
    centres = (edges[:-1] + edges[1:]) / 2
    figure = go.Figure(go.Bar(x=centres, y=counts, width=np.diff(edges), name=x_title))
    return styled(figure, title=title, xaxis_title=x_title, yaxis_title="count", bargap=0.02)


def eda_figures(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, go.Figure]:
    """Return ``histogram_<col>`` per numeric column and ``correlation`` when there are two+."""
    figures: dict[str, go.Figure] = {}
    numeric = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
        numeric[column] = values
        figures[f"histogram_{column}"] = histogram(
            values, title=f"Distribution of {column}", x_title=column
        )
    if len(numeric) > 1:
        corr = pd.DataFrame(numeric).corr().fillna(0.0).to_numpy()
        figures["correlation"] = heatmap(
            corr,
            x=list(numeric),
            y=list(numeric),
            title="Correlation between features",
            text=len(numeric) <= 15,
            zmin=-1,
            zmax=1,
            colorscale="RdBu",
        )
    return figures
