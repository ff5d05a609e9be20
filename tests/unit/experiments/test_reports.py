"""The report builders draw the same figures as plotly's own, validated, template assignment."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from plotly.subplots import make_subplots

from observml.experiments import reports

RNG = np.random.default_rng(0)
SCORES = RNG.normal(size=300)
BUILDERS: dict[str, Callable[[], go.Figure]] = {
    "line_chart": lambda: reports.line_chart(
        {"score": SCORES}, title="t", limits={"threshold": 1.5}, marks=SCORES > 1.5
    ),
    "control_chart": lambda: reports.control_chart(
        {"T2": (SCORES, 1.0), "SPE": (SCORES**2, 2.0)}, title="c"
    ),
    "bar_chart": lambda: reports.bar_chart({"a": 1.0, "b": 2.0}, title="b", y_title="y"),
    "heatmap": lambda: reports.heatmap(np.eye(3), x=["a", "b", "c"], y=["a", "b", "c"], title="h"),
    "histogram": lambda: reports.histogram(SCORES, title="h", x_title="x"),
}


def plotly_styled(figure: go.Figure) -> dict[str, Any]:
    """The figure's JSON with the template set through plotly's validated ``update_layout``."""
    document: dict[str, Any] = json.loads(figure.to_json())
    del document["layout"]["template"]
    again = go.Figure(document)
    again.update_layout(template=reports.TEMPLATE)
    return dict(json.loads(again.to_json()))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_report_builders_match_plotly_template_assignment(name: str) -> None:
    figure = BUILDERS[name]()
    drawn = json.loads(figure.to_json())
    assert drawn == plotly_styled(figure)
    assert drawn["layout"]["template"]["layout"]["plot_bgcolor"] == "white"  # plotly_white's
    assert drawn["layout"]["margin"] == {"t": 60}


def test_styled_leaves_the_registered_template_and_validation_alone() -> None:
    registered = pio.templates[reports.TEMPLATE].to_plotly_json()
    figure = reports.styled(go.Figure(), title="x")
    figure.layout.template.layout.font.color = "red"  # the figure's copy, not plotly's
    assert pio.templates[reports.TEMPLATE].to_plotly_json() == registered
    with pytest.raises(ValueError, match="not_a_property"):
        figure.update_layout(not_a_property=1)  # validation is back on for the layout


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("left", [False, True])
def test_limit_lines_draw_what_add_hline_draws(rows: int, left: bool) -> None:
    def base() -> go.Figure:
        figure = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=["a"] * rows)
        for row in range(1, rows + 1):
            figure.add_scatter(x=[0, 1, 2], y=[row, 2.0, 0.5], row=row, col=1)
        return figure

    lines = [(1.5 * row, f"limit {row}", row) for row in range(1, rows + 1)] + [(-1.0, "low", 1)]
    expected = base()
    for y, label, row in lines:
        expected.add_hline(
            y=y,
            line_dash="dash",
            line_color="red",
            annotation_text=label,
            annotation_position="top left" if left else "top right",
            row=row,
            col=1,
        )
    drawn = base()
    reports.limit_lines(drawn, lines, left=left)
    assert json.loads(drawn.to_json()) == json.loads(expected.to_json())
