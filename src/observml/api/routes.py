"""Routes of the service, experiments, training and prediction: one hub call each.

Routes are plain ``def`` functions, so FastAPI runs the blocking hub calls in its threadpool.
Errors are the hub's own :class:`~observml.errors.ObservMLError` s; the app renders them as
``{"error", "message"}`` with the error's HTTP status. Model, data and figure routes are in
:mod:`observml.api.artifacts`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Body, Path, Query, Request, Response
from prometheus_client.exposition import choose_encoder

from observml.api.deps import Hub, Name, errors, links, make_router, obj, records, rows_data
from observml.api.schemas import (
    CreateExperiment,
    DeletedOut,
    ExperimentsOverview,
    ExperimentStatus,
    ExperimentSummary,
    FlushOut,
    HealthEntry,
    JobOut,
    Livez,
    PluginOut,
    PredictOut,
    PredictRequest,
    RetrainRequest,
    StoppedOut,
    StreamOut,
    TrainRequest,
)
from observml.hub import overview
from observml.hub.overview import MAX_PAGE, ExperimentFilter

__all__ = ["TOTAL_HEADER", "router"]

router = make_router()

_SUMMARY_KEYS: Final = tuple(ExperimentSummary.model_fields)


# -- service -------------------------------------------------------------------------------
@router.get("/livez", response_model=Livez, tags=["service"], summary="The process answers")
async def livez() -> dict[str, str]:
    """Answer 200 while the process runs (no plugin is checked; never needs a token)."""
    return {"status": "ok"}


@router.get(
    "/health",
    response_model=dict[str, HealthEntry],
    tags=["service"],
    summary="Plugin health",
    responses={503: {"model": dict[str, HealthEntry], "description": "A plugin is unhealthy."}},
)
def health(hub: Hub, response: Response) -> dict[str, Any]:
    """Check every plugin: ``{plugin_type: {"healthy", "details"}}``; 503 if one is unhealthy."""
    report = hub.check_plugin_health()
    if not all(entry["healthy"] for entry in report.values()):
        response.status_code = 503
    return obj(report)


@router.get("/plugins", response_model=list[PluginOut], tags=["service"])
def plugins(hub: Hub) -> list[dict[str, Any]]:
    """List the registered plugins and every implementation known for their plugin types."""
    table = hub.registry.snapshot()
    out = []
    for plugin_type, plugin in hub.plugins.items():
        target = f"{type(plugin).__module__}:{type(plugin).__qualname__}"
        specs = table.get(plugin_type, {})
        name = next((n for n, s in specs.items() if s.target == target), type(plugin).__name__)
        out.append(
            {
                "plugin_type": plugin_type,
                "name": name,
                "target": target,
                "available": sorted(specs),
            }
        )
    return out


@router.get("/experiment-types", response_model=list[str], tags=["service"])
def experiment_types(hub: Hub) -> list[str]:
    """List the experiment types ``POST /experiments`` accepts."""
    return hub.experiment_types()


@router.get(
    "/metrics",
    tags=["service"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus text: predictions, dead letters, batches, latency, retrains, queues, health."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(request.app.state.metrics), media_type=content_type)


@router.post(
    "/queues/{queue}/flush",
    response_model=FlushOut,
    tags=["queues"],
    responses=errors(404),
)
def flush(
    hub: Hub,
    queue: Annotated[str, Path(description="The queue.", examples=["pump.predict"])],
) -> dict[str, Any]:
    """Purge a queue's ready messages and say how many were removed."""
    return {"queue": queue, "removed": hub.flush(queue)}


# -- experiments ---------------------------------------------------------------------------
#: The header of ``GET /experiments`` with how many experiments pass its filters.
TOTAL_HEADER: Final = "X-Total-Count"


@router.get(
    "/experiments",
    response_model=list[ExperimentSummary],
    tags=["experiments"],
    responses={
        200: {
            "description": "A page of the experiments, sorted by name.",
            "headers": {
                TOTAL_HEADER: {
                    "description": "How many experiments pass the filters, on every page.",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        }
    },
)
def list_experiments(
    hub: Hub,
    response: Response,
    offset: Annotated[int, Query(ge=0, description="Experiments to skip, sorted by name.")] = 0,
    limit: Annotated[
        int | None,
        Query(ge=1, le=MAX_PAGE, description="Experiments to return (default: all of them)."),
    ] = None,
    state: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Only experiments in this state (ready, untrained, running, ...).",
            examples=["ready"],
        ),
    ] = None,
    experiment_type: Annotated[
        str | None,
        Query(
            alias="type",
            max_length=200,
            description="Only experiments of this type (GET /experiment-types).",
            examples=["fault_detection"],
        ),
    ] = None,
    name: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Only experiments whose name contains this text (ignoring case).",
            examples=["pump"],
        ),
    ] = None,
) -> list[dict[str, Any]]:
    """List the experiments with state, champion and challenger, open alert, last metrics.

    Sorted by name, ``limit`` of them from ``offset`` (all by default); the
    ``X-Total-Count`` header says how many pass the filters. ``GET /experiments/summary``
    counts them all.
    """
    where = ExperimentFilter(state=state, experiment_type=experiment_type, name=name)
    found = overview.page(hub, offset=offset, limit=limit, where=where)
    response.headers[TOTAL_HEADER] = str(found.total)
    out = []
    for status in found.statuses:
        summary = {k: status[k] for k in _SUMMARY_KEYS if k in status}
        summary["alert"] = status.get("alerts", {}).get("open")
        out.append(obj(summary))
    return out


@router.get(
    "/experiments/summary",
    response_model=ExperimentsOverview,
    tags=["experiments"],
    summary="Count the experiments",
)
def summarize_experiments(hub: Hub) -> dict[str, Any]:
    """Count every experiment: by state, by type, streaming, with an open alert, in shadow.

    One pass over the experiments, for a one-line summary of a hub with hundreds of them.
    """
    return obj(overview.summarize(hub))


@router.post(
    "/experiments",
    status_code=201,
    response_model=ExperimentStatus,
    tags=["experiments"],
    responses={
        201: links(
            "The experiment was created.",
            "$response.body#/name",
            GetExperiment="get_experiment_experiments__name__get",
            GetConfig="get_config_experiments__name__config_get",
            Train="train_experiments__name__train_post",
            Predict="predict_experiments__name__predict_post",
            StartStreaming="start_streaming_experiments__name__stream_post",
            StopStreaming="stop_streaming_experiments__name__stream_delete",
            StopTraining="stop_training_experiments__name__stop_post",
            Delete="delete_experiment_experiments__name__delete",
        ),
        **errors(400, 409),
    },
)
def create_experiment(hub: Hub, body: CreateExperiment, response: Response) -> dict[str, Any]:
    """Create an experiment of a registered type (GET /experiment-types); its queues are declared.

    The type is a registered name, never a module path (400 naming the accepted types); the
    config is validated completely now (422 naming the key path).
    """
    status = hub.create_experiment(body.name, body.type, body.config, trusted=False)
    response.headers["Location"] = f"/experiments/{body.name}"
    return obj(status)


@router.get(
    "/experiments/{name}",
    response_model=ExperimentStatus,
    tags=["experiments"],
    responses=errors(404),
)
def get_experiment(hub: Hub, name: Name) -> dict[str, Any]:
    """Return the state, champion, jobs, metrics, decisions and newest streamed predictions."""
    return obj(hub.status(name))


@router.delete(
    "/experiments/{name}", response_model=DeletedOut, tags=["experiments"], responses=errors(404)
)
def delete_experiment(hub: Hub, name: Name) -> dict[str, Any]:
    """Stop streaming and training and forget the experiment (the MLOps store keeps history)."""
    hub.delete_experiment(name)
    return {"name": name, "deleted": True}


@router.get(
    "/experiments/{name}/config",
    response_model=dict[str, Any],
    tags=["experiments"],
    responses=errors(404),
)
def get_config(hub: Hub, name: Name) -> dict[str, Any]:
    """Return the experiment's config."""
    return obj(hub.get_cfg(name))


@router.post(
    "/experiments/{name}/train",
    status_code=202,
    response_model=JobOut,
    tags=["training"],
    responses={
        202: links(
            "The training job started.",
            "$response.body#/job_id",
            GetJob="get_job_jobs__job_id__get",
        ),
        **errors(400, 404, 409),
    },
)
def train(
    hub: Hub,
    name: Name,
    response: Response,
    body: Annotated[TrainRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Start a training job (rows inline, else drained from ``<name>.train``); poll the job."""
    request = body or TrainRequest()
    job = hub.train(name, request.config, data=rows_data(request.rows, request.format))
    response.headers["Location"] = f"/jobs/{job.job_id}"
    return obj(job.status.to_dict())


@router.post(
    "/experiments/{name}/retrain",
    status_code=202,
    response_model=JobOut,
    tags=["training"],
    responses=errors(404, 409),
)
def retrain(
    hub: Hub,
    name: Name,
    response: Response,
    body: Annotated[RetrainRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Train a challenger now; ``retrain.promotion`` says what happens to it (the job's result).

    With ``approve`` (the default where the stream has no ground truth) it goes into shadow
    until ``POST .../promote`` or ``.../reject``; with ``auto`` the gate promotes or rejects it.
    """
    request = body or RetrainRequest()
    job = hub.retrain(name, data=rows_data(request.rows, request.format), reason=request.reason)
    response.headers["Location"] = f"/jobs/{job.job_id}"
    return obj(job.status.to_dict())


@router.post(
    "/experiments/{name}/stop",
    response_model=StoppedOut,
    tags=["training"],
    responses=errors(404),
)
def stop_training(hub: Hub, name: Name) -> dict[str, Any]:
    """Stop the running training job (its MLOps run ends KILLED)."""
    return {"name": name, "stopped": hub.stop_training(name)}


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["training"], responses=errors(404))
def get_job(
    hub: Hub, job_id: Annotated[str, Path(description="The id from POST .../train.")]
) -> dict[str, Any]:
    """Return a training job's state, progress, run id, model version and error."""
    return obj(hub.get_job(job_id).status.to_dict())


@router.post(
    "/experiments/{name}/predict",
    response_model=PredictOut,
    tags=["prediction"],
    responses=errors(404, 409),
)
def predict(
    hub: Hub, name: Name, body: Annotated[PredictRequest | None, Body()] = None
) -> dict[str, Any]:
    """Predict inline rows; without rows, drain ``<name>.predict`` and publish the results."""
    request = body or PredictRequest()
    frame = hub.predict(name, rows_data(request.rows, request.format))
    return {"experiment": name, "count": len(frame), "rows": records(frame)}


@router.post(
    "/experiments/{name}/stream",
    response_model=StreamOut,
    tags=["prediction"],
    responses=errors(404),
)
def start_streaming(hub: Hub, name: Name) -> dict[str, Any]:
    """Consume ``<name>.predict`` in the background, publishing to ``<name>.predictions``."""
    hub.start_streaming(name)
    return {"name": name, "streaming": True}


@router.delete(
    "/experiments/{name}/stream",
    response_model=StreamOut,
    tags=["prediction"],
    responses=errors(404),
)
def stop_streaming(hub: Hub, name: Name) -> dict[str, Any]:
    """Stop streaming (the batch in hand finishes first)."""
    hub.status(name)  # 404 for an unknown experiment
    hub.stop_streaming(name)
    return {"name": name, "streaming": False}
