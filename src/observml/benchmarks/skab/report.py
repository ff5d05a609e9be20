"""The benchmark's HTML report: one self-contained page (plotly.js inline, so it opens offline).

Top: the pooled table (each config beside the published leaderboard) and a bar chart of each
file's F1 per config. Then one figure per file: each config's anomaly score over the predicted
rows (each config's score divided by its largest value, so several fit one axis), its alarms as
markers, and the labelled anomalous rows shaded.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from observml.benchmarks.skab.leaderboard import LEADERBOARD
from observml.benchmarks.skab.protocol import ConfigResult, FileResult

__all__ = ["file_figure", "render_report", "scores_figure", "write_report"]

_LAYOUT: Final[dict[str, Any]] = {"template": "plotly_white", "height": 340, "margin": {"t": 50}}
_STYLE: Final = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#1f2933;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;width:100%}
th,td{border-bottom:1px solid #d9e2ec;padding:.4rem .6rem;text-align:left;font-size:.95rem}
th{background:#f0f4f8} .published{color:#52606d}
"""


def write_report(path: str | Path, results: Sequence[ConfigResult], title: str) -> Path:
    """Write the report of ``results`` to ``path`` (folders created); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(results, title), encoding="utf-8")
    return target


def render_report(results: Sequence[ConfigResult], title: str) -> str:
    """Return the report page as HTML text."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table(results),
    ]
    first = True
    figures = [scores_figure(results)]
    if results:
        figures += [file_figure(results, n) for n in range(len(results[0].files))]
    for figure in figures:
        parts.append(
            pio.to_html(figure, full_html=False, include_plotlyjs="inline" if first else False)
        )
        first = False
    parts.append("</body></html>")
    return "\n".join(parts)


def scores_figure(results: Sequence[ConfigResult]) -> go.Figure:
    """Bar chart: each file's F1 (its own confusion counts) per config."""
    figure = go.Figure()
    for result in results:
        figure.add_bar(
            name=result.config.name,
            x=[f.name for f in result.files],
            y=[f.confusion.f1 for f in result.files],
        )
    figure.update_layout(
        **_LAYOUT, title="F1 per file", yaxis_title="F1", barmode="group", xaxis_tickangle=-60
    )
    return figure


def file_figure(results: Sequence[ConfigResult], index: int) -> go.Figure:
    """One file: each config's scaled score and alarms; the labelled anomaly shaded."""
    base: FileResult = results[0].files[index]
    figure = go.Figure()
    for start, end in _segments(base.anomaly):
        figure.add_vrect(
            x0=base.time[start], x1=base.time[end], fillcolor="#f4a261", opacity=0.25, line_width=0
        )
    for level, result in enumerate(results):
        one = result.files[index]
        if one.score is not None:
            top = float(np.nanmax(np.abs(one.score))) or 1.0
            figure.add_scatter(
                x=one.time, y=one.score / top, mode="lines", name=f"{result.config.name} score"
            )
        marks = np.flatnonzero(one.alarm)
        figure.add_scatter(
            x=one.time[marks],
            y=np.full(len(marks), -0.05 * (level + 1)),
            mode="markers",
            marker={"size": 3},
            name=f"{result.config.name} alarms (F1 {one.confusion.f1:.2f})",
        )
    figure.update_layout(
        **_LAYOUT,
        title=f"{base.name}: score / its max, alarms below; labelled anomaly shaded",
        yaxis_title="score (scaled)",
    )
    return figure


def _table(results: Sequence[ConfigResult]) -> str:
    rows = [
        "<table><tr><th>method</th><th>F1</th><th>FAR %</th><th>MAR %</th><th>NAB</th>"
        "<th>seconds</th></tr>"
    ]
    for result in results:
        s = result.summary()
        rows.append(
            f"<tr><td><b>{html.escape(s['config'])}</b> (observml)</td><td>{s['f1']:.3f}</td>"
            f"<td>{s['far']:.2f}</td><td>{s['mar']:.2f}</td><td>{s['nab']:.2f}</td>"
            f"<td>{s['seconds']:.1f}</td></tr>"
        )
    for row in LEADERBOARD:
        nab = "" if row.nab is None else f"{row.nab:.2f}"
        rows.append(
            f"<tr class='published'><td>{html.escape(row.method)} (published)</td>"
            f"<td>{row.f1:.2f}</td><td>{row.far:.2f}</td><td>{row.mar:.2f}</td><td>{nab}</td>"
            "<td></td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _segments(flags: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` positions of each run of True."""
    padded = np.concatenate([[0], np.asarray(flags, dtype=int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]
