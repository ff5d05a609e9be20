"""The demo's HTML report: one self-contained page (plotly.js inline, so it opens offline).

Top: the summary table, the pump's retraining story (each decision, with the shadow overlay a
person looked at) and where to look. Then one section per experiment: what
its stream looked like (built here from the predictions read back from ``<name>.predictions``)
and the champion's own report figures (``hub.plot``).
"""

from __future__ import annotations

import html
import logging
import os
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from observml.demo.setup import LINE, LOAD, ORDERS, PUMP
from observml.demo.summary import DemoSummary, ExperimentOutcome, StoryStep

if TYPE_CHECKING:
    from observml.hub.hub import ExperimentHub

__all__ = ["command_path", "render_report", "stream_figure", "where_to_look", "write_report"]

logger = logging.getLogger(__name__)

_LAYOUT: Final[dict[str, Any]] = {"template": "plotly_white", "height": 380, "margin": {"t": 60}}
_STYLE: Final = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#1f2933;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#52606d;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;width:100%}
th,td{border-bottom:1px solid #d9e2ec;padding:.45rem .6rem;text-align:left;font-size:.95rem}
th{background:#f0f4f8} code{background:#f0f4f8;padding:.1rem .3rem;border-radius:3px}
section{margin-top:2.5rem;border-top:2px solid #d9e2ec;padding-top:.5rem}
.note{background:#f0f9ff;border-left:4px solid #0b69a3;padding:.6rem 1rem;margin:1rem 0}
.skip{color:#8a6d3b}
"""


def write_report(hub: ExperimentHub, summary: DemoSummary) -> None:
    """Render the report of ``summary`` (figures from ``hub``) to ``summary.report``."""
    summary.report.parent.mkdir(parents=True, exist_ok=True)
    summary.report.write_text(render_report(hub, summary), encoding="utf-8")


def render_report(hub: ExperimentHub, summary: DemoSummary) -> str:
    """Return the report page as HTML text."""
    figures = _Figures()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>observml demo report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>observml demo</h1>",
        f"<p class='sub'>{time.strftime('%Y-%m-%d %H:%M:%S')} &middot; MLflow store"
        f" <code>{_e(summary.mlflow_db)}</code> &middot; datastream"
        f" <code>{_e(summary.datastream)}</code></p>",
        _summary_table(summary),
        *_story(summary, figures),
        "<h2>Where to look</h2><ul>",
        *(f"<li>{_e(what)}: <code>{_e(how)}</code></li>" for what, how in where_to_look(summary)),
        "</ul>",
    ]
    for outcome in summary.experiments:
        parts.append(f"<section><h2>{_e(outcome.name)} &middot; {_e(outcome.experiment_type)}</h2>")
        if outcome.skipped:
            parts.append(f"<p class='skip'>Skipped: {_e(outcome.skipped)}</p></section>")
            continue
        parts.append(
            f"<p>Model <b>{_e(outcome.model)}</b>, champion"
            f" <b>v{outcome.champion_version}</b>, {outcome.predictions:,} streamed predictions:"
            f" {_e(outcome.metric)}.</p>"
        )
        stream = stream_figure(outcome, summary)
        if stream is not None:
            parts.append(figures.html(stream))
        for figure in _champion_figures(hub, outcome.name):
            parts.append(figures.html(figure))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def where_to_look(summary: DemoSummary) -> list[tuple[str, str]]:
    """Return ``(what, command or path)`` pairs for the summary and the report.

    Each command works as printed in a new shell opened in the same folder: in a virtual
    environment (``./scripts/demo`` makes ``.venv``) the commands name its ``bin/`` folder,
    which a new shell does not have on its PATH.
    """
    db = _relative(summary.mlflow_db)
    config = _relative(summary.hub_config)
    observml, mlflow = command_path("observml"), command_path("mlflow")
    found = [
        (
            "Runs, metrics and model versions (MLflow UI)",
            f"{mlflow} ui --backend-store-uri sqlite:///{db} --workers 1",
        ),
        ("This report", str(_relative(summary.report))),
        (
            "The dashboard and REST API at http://127.0.0.1:8010/",
            f"{observml} serve --config {config}",
        ),
        (
            "The pump's champion, versions and runs",
            f"{observml} status demo-pump --config {config}",
        ),
    ]
    if summary.sample is not None:
        sample = _relative(summary.sample)
        found.append(
            (
                "Score 50 more pump rows with the champion",
                f"{observml} predict demo-pump --data {sample} --config {config}",
            )
        )
        found.append(
            (
                "Stream them to a running 'observml serve' (from another shell)",
                f"{observml} send demo-pump.predict {sample} --config {config}",
            )
        )
    return found


def command_path(name: str) -> str:
    """How a new shell in this folder runs console script ``name`` of this installation.

    The bare name outside a virtual environment (its scripts are on the PATH). Inside one, the
    path of the environment's ``bin/`` entry, relative when under this folder: the folder this
    command was started from when ``name`` is beside it, else the environment's scripts folder.
    """
    if sys.prefix == sys.base_prefix:
        return name
    launched = Path(os.path.abspath(sys.argv[0])).parent if sys.argv and sys.argv[0] else None
    if launched is not None and (launched / name).is_file():
        script = launched / name
    else:
        script = Path(sysconfig.get_path("scripts")) / name
    try:
        return f"./{script.relative_to(Path.cwd())}"
    except ValueError:
        return str(script)


# -- figures -------------------------------------------------------------------------------
class _Figures:
    """Renders figures as HTML fragments; plotly.js goes inline with the first one only."""

    def __init__(self) -> None:
        self._first = True

    def html(self, figure: go.Figure) -> str:
        text: str = pio.to_html(
            figure, full_html=False, include_plotlyjs=self._first, config={"responsive": True}
        )
        self._first = False
        return text


def _champion_figures(hub: ExperimentHub, name: str) -> Iterator[go.Figure]:
    try:
        names = hub.plot_names(name)
    except Exception:  # the report still shows the rest
        logger.warning("%s: no report figures", name, exc_info=True)
        return
    for plot in names:
        try:
            figure = hub.plot(name, plot)
            # fit the page: the figure's own width would overflow the report's column
            yield figure.update_layout(
                width=None, autosize=True, height=figure.layout.height or 450
            )
        except Exception:  # one broken figure must not lose the report
            logger.warning("%s: figure %s failed", name, plot, exc_info=True)


def stream_figure(outcome: ExperimentOutcome, summary: DemoSummary) -> go.Figure | None:
    """Return the figure of what was streamed to ``outcome`` (``None`` when nothing was)."""
    stream = outcome.stream
    if stream.empty:
        return None
    builders = {PUMP: _pump, LINE: _line, LOAD: _load, ORDERS: _orders}
    builder = builders.get(outcome.name)
    if builder is None:
        return None
    figure = builder(stream, summary.story)
    return figure.update_layout(**_LAYOUT)


def _x(stream: pd.DataFrame) -> Any:
    return pd.to_datetime(stream["ds"]) if "ds" in stream else np.arange(len(stream))


def _pump(stream: pd.DataFrame, story: list[StoryStep]) -> go.Figure:
    figure = go.Figure()
    x = _x(stream)
    for version, rows in stream.groupby("version", sort=True):
        figure.add_scatter(x=x[rows.index], y=rows["score"], mode="lines", name=f"v{version} score")
    flagged = stream[stream["anomaly"].astype(bool)]
    figure.add_scatter(
        x=x[flagged.index],
        y=flagged["score"],
        mode="markers",
        name="flagged",
        marker={"color": "#d64545", "size": 5},
    )
    for step in story:
        if step.step != "promoted":
            continue
        switch = stream.index[stream["version"] == step.version]
        if len(switch):
            at = x[switch[0]]
            figure.add_vline(x=at, line_dash="dash", line_color="#0b69a3")
            figure.add_annotation(
                x=at, y=1, yref="paper", text=f"v{step.version} approved", showarrow=False
            )
    return figure.update_layout(
        title="demo-pump: streamed anomaly scores; a new duty point is approved, a fault is not",
        yaxis={"type": "log", "title": "score (> 1 is flagged)"},
    )


def _line(stream: pd.DataFrame, story: list[StoryStep]) -> go.Figure:
    confidence = stream.filter(like="proba_").max(axis=1)
    figure = go.Figure(
        go.Scatter(
            x=_x(stream),
            y=stream["prediction"],
            mode="markers",
            name="predicted",
            marker={
                "color": confidence,
                "colorscale": "Blues",
                "cmin": 0,
                "cmax": 1,
                "colorbar": {"title": "probability"},
            },
        )
    )
    return figure.update_layout(
        title="demo-line: predicted fault class of each streamed row (colour: its probability)",
        yaxis={"title": "fault class", "type": "category"},
    )


def _load(stream: pd.DataFrame, story: list[StoryStep]) -> go.Figure:
    x = _x(stream)
    figure = go.Figure()
    figure.add_scatter(x=x, y=stream["upper"], mode="lines", line={"width": 0}, showlegend=False)
    figure.add_scatter(
        x=x,
        y=stream["lower"],
        mode="lines",
        fill="tonexty",
        line={"width": 0},
        name="interval",
        fillcolor="rgba(11,105,163,0.15)",
    )
    figure.add_scatter(x=x, y=stream["forecast"], mode="lines", name="forecast")
    figure.add_scatter(x=x, y=stream["actual"], mode="lines", name="actual")
    flagged = stream[stream["anomaly"].astype(bool)]
    figure.add_scatter(
        x=x[flagged.index],
        y=flagged["actual"],
        mode="markers",
        name="anomaly",
        marker={"color": "#d64545", "size": 8},
    )
    return figure.update_layout(
        title="demo-load: one-step forecasts of the streamed hours; outside the interval = anomaly",
        yaxis={"title": "y"},
    )


def _orders(stream: pd.DataFrame, story: list[StoryStep]) -> go.Figure:
    colors = np.where(stream["conformant"].astype(bool), "#3ebd93", "#d64545")
    figure = go.Figure(
        go.Bar(x=stream["case_id"], y=stream["fitness"], marker_color=colors, name="fitness")
    )
    return figure.update_layout(
        title="demo-orders: fitness of each new case (red: does not conform to the process)",
        yaxis={"title": "fitness", "range": [0, 1.05]},
        xaxis={"title": "case", "showticklabels": False},
    )


# -- text ----------------------------------------------------------------------------------
def _summary_table(summary: DemoSummary) -> str:
    head = (
        "<table><tr><th>experiment</th><th>type</th><th>model</th><th>champion</th>"
        "<th>key metric</th><th>predictions streamed</th><th>retrains</th></tr>"
    )
    rows = []
    for o in summary.experiments:
        if o.skipped:
            rows.append(
                f"<tr><td>{_e(o.name)}</td><td>{_e(o.experiment_type)}</td><td>{_e(o.model)}</td>"
                f"<td colspan='4' class='skip'>skipped: {_e(o.skipped)}</td></tr>"
            )
            continue
        rows.append(
            f"<tr><td>{_e(o.name)}</td><td>{_e(o.experiment_type)}</td><td>{_e(o.model)}</td>"
            f"<td>v{o.champion_version}</td><td>{_e(o.metric)}</td>"
            f"<td>{o.predictions:,}</td><td>{o.retrains}</td></tr>"
        )
    return head + "".join(rows) + "</table>"


def _story(summary: DemoSummary, figures: _Figures) -> Iterator[str]:
    """The pump's retraining story: each step, with the overlay a person decided on."""
    if not summary.story:
        return
    yield "<h2>Retraining: a person decides what is normal</h2><ol>"
    for step in summary.story:
        yield f"<li><b>{_e(step.step)}</b>: {_e(step.text)}</li>"
    yield "</ol>"
    for step in summary.story:
        if step.figure is not None:
            figure = go.Figure(step.figure).update_layout(**_LAYOUT)
            title = f"{figure.layout.title.text}, then {step.step}"
            yield figures.html(figure.update_layout(title=title))
    yield (
        "<div class='note'>Promotions are reversible: <code>observml rollback demo-pump</code>"
        " serves the previous version again. The rejected fault stays in the fault library"
        " (<code>observml status demo-pump</code>).</div>"
    )


def _e(value: Any) -> str:
    return html.escape(str(value))


def _relative(path: Any) -> Any:
    from pathlib import Path

    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path
