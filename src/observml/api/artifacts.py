"""Routes over what training produced: model versions and runs, training rows, figures.

Figures (reports, EDA, the shadow overlay) answer as plotly JSON, an HTML page or a PNG.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Body, Path, Query, Request, Response

from observml.api.deps import Hub, Name, errors, make_router, objs, records
from observml.api.figures import FigureFormat, figure_response
from observml.api.schemas import (
    ErrorOut,
    LoadRequest,
    PlotList,
    RunOut,
    TrainDataOut,
    VersionInfo,
    VersionOut,
)

__all__ = ["router"]

router = make_router()

_FIGURE_CONTENT: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The figure: plotly JSON (default), a PNG or an HTML page.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "text/html": {"schema": {"type": "string"}},
        },
    },
    **errors(404, 409),
    503: {
        "model": ErrorOut,
        "description": (
            "For ?format=png: PNG export has no Chromium to render with (install Debian's"
            " chromium: apt-get install chromium) or rendering timed out; json and html need"
            " no browser. For any format: a plugin's service is unreachable."
        ),
    },
}


# -- models --------------------------------------------------------------------------------
@router.post(
    "/experiments/{name}/save",
    response_model=VersionOut,
    tags=["models"],
    responses=errors(404, 409),
)
def save(hub: Hub, name: Name) -> dict[str, Any]:
    """Save the champion again as a new run and model version."""
    return {"name": name, "version": hub.save(name)}


@router.post(
    "/experiments/{name}/load",
    response_model=VersionOut,
    tags=["models"],
    responses=errors(404, 409),
)
def load(
    hub: Hub, name: Name, body: Annotated[LoadRequest | None, Body()] = None
) -> dict[str, Any]:
    """Serve the stored champion, a model version or a run's model (creating the experiment)."""
    request = body or LoadRequest()
    return {"name": name, "version": hub.load(name, request.run_id, version=request.version)}


@router.post(
    "/experiments/{name}/rollback",
    response_model=VersionOut,
    tags=["models"],
    responses=errors(404, 409),
)
def rollback(hub: Hub, name: Name) -> dict[str, Any]:
    """Serve the previous champion again and move the ``champion`` alias back to it."""
    return {"name": name, "version": hub.rollback(name)}


@router.get(
    "/experiments/{name}/runs",
    response_model=list[RunOut],
    tags=["models"],
    responses=errors(404),
)
def runs(
    hub: Hub,
    name: Name,
    max_results: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    """List the experiment's MLOps runs, newest first."""
    hub.status(name)  # 404 for an unknown experiment
    return objs(hub.runs(name, max_results))


@router.get(
    "/experiments/{name}/versions",
    response_model=list[VersionInfo],
    tags=["models"],
    responses=errors(404),
)
def versions(hub: Hub, name: Name) -> list[dict[str, Any]]:
    """List the experiment's registered model versions, newest first, with their aliases."""
    hub.status(name)  # 404 for an unknown experiment
    return objs(hub.versions(name))


# -- data and reports ----------------------------------------------------------------------
@router.get(
    "/experiments/{name}/train-data",
    response_model=TrainDataOut,
    tags=["reports"],
    responses=errors(404, 409),
)
def train_data(
    hub: Hub,
    name: Name,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Return a page of the champion's kept training rows."""
    frame = hub.get_train_data(name)
    page = frame.iloc[offset : offset + limit]
    return {
        "total": len(frame),
        "offset": offset,
        "limit": limit,
        "columns": [str(c) for c in frame.columns],
        "rows": records(page),
    }


@router.get(
    "/experiments/{name}/plots",
    response_model=PlotList,
    tags=["reports"],
    responses=errors(404, 409),
)
def plot_list(hub: Hub, name: Name) -> dict[str, Any]:
    """List the champion's report figures and EDA figures."""
    eda = hub.eda_names(name)
    reports = [p for p in hub.plot_names(name) if p not in set(eda)]
    return {"reports": reports, "eda": eda}


Format = Annotated[
    FigureFormat, Query(alias="format", description="json (plotly figure JSON), png or html.")
]
Width = Annotated[int | None, Query(ge=100, le=4000, description="PNG width in pixels.")]
Height = Annotated[int | None, Query(ge=100, le=4000, description="PNG height in pixels.")]


@router.get("/experiments/{name}/plots/{plot}", tags=["reports"], responses=_FIGURE_CONTENT)
def plot(
    hub: Hub,
    request: Request,
    name: Name,
    plot: Annotated[str, Path(description="A name from GET .../plots.", examples=["scores"])],
    fmt: Format = "json",
    width: Width = None,
    height: Height = None,
) -> Response:
    """Return one report figure of the champion."""
    figure = hub.plot(name, plot)
    return _figure(request, figure, fmt, f"{name}: {plot}", width, height)


@router.get("/experiments/{name}/eda/{plot}", tags=["reports"], responses=_FIGURE_CONTENT)
def eda(
    hub: Hub,
    request: Request,
    name: Name,
    plot: Annotated[
        str, Path(description="histogram_<column> or correlation.", examples=["correlation"])
    ],
    fmt: Format = "json",
    width: Width = None,
    height: Height = None,
) -> Response:
    """Return one EDA figure of the champion's training data."""
    figure = hub.plot_eda(name, plot)
    return _figure(request, figure, fmt, f"{name}: {plot}", width, height)


@router.get("/experiments/{name}/shadow/figure", tags=["decisions"], responses=_FIGURE_CONTENT)
def shadow_figure(
    hub: Hub,
    request: Request,
    name: Name,
    fmt: Format = "json",
    width: Width = None,
    height: Height = None,
) -> Response:
    """Champion and challenger-in-shadow scores over the same streamed rows, both limits drawn.

    404 when no challenger is in shadow.
    """
    figure = hub.shadow_figure(name)
    return _figure(request, figure, fmt, f"{name}: champion vs challenger in shadow", width, height)


def _figure(
    request: Request,
    figure: Any,
    fmt: FigureFormat,
    title: str,
    width: int | None,
    height: int | None,
) -> Response:
    root = request.scope.get("root_path", "")
    if fmt == "png" and (width or height):
        figure = figure.update_layout(width=width, height=height)
    return figure_response(
        figure,
        fmt,
        renderer=request.app.state.png,
        plotly_js_url=f"{root}/static/plotly.min.js",
        title=title,
    )
