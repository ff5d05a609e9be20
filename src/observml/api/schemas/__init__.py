"""Pydantic models of the REST API's request and response bodies, by what they describe.

- :mod:`~observml.api.schemas.base`: the request and response base models, the row shape,
  the name pattern and the one error shape;
- :mod:`~observml.api.schemas.requests`: the bodies clients send (create, train, retrain,
  predict, load);
- :mod:`~observml.api.schemas.status`: what ``GET /experiments/{name}`` answers (state, jobs,
  alerts, the challenger in shadow, the gate, decisions);
- :mod:`~observml.api.schemas.responses`: every other answer (the experiments' counts of
  ``GET /experiments/summary`` among them).

Every name is importable from ``observml.api.schemas``. The bodies of the decision routes
(promote, reject, feedback) are in :mod:`observml.api.schemas.decisions`.
"""

from __future__ import annotations

from observml.api.schemas.base import (
    MAX_NESTING,
    NAME_PATTERN,
    ErrorOut,
    RequestModel,
    ResponseModel,
    Rows,
)
from observml.api.schemas.requests import (
    CreateExperiment,
    LoadRequest,
    PredictRequest,
    RetrainRequest,
    TrainRequest,
)
from observml.api.schemas.responses import (
    DeletedOut,
    ExperimentsOverview,
    FlushOut,
    HealthEntry,
    Livez,
    PlotList,
    PluginOut,
    PredictOut,
    RunOut,
    StoppedOut,
    StreamOut,
    TrainDataOut,
    VersionInfo,
    VersionOut,
)
from observml.api.schemas.status import (
    AlertOut,
    AlertsOut,
    DeadLetterOut,
    DeadLettersOut,
    DecisionOut,
    DriftOut,
    ExperimentStatus,
    ExperimentSummary,
    GateCheckOut,
    GateOut,
    JobOut,
    ShadowOut,
    ShadowPointOut,
    WindowOut,
)

__all__ = [
    "MAX_NESTING",
    "NAME_PATTERN",
    "AlertOut",
    "AlertsOut",
    "CreateExperiment",
    "DeadLetterOut",
    "DeadLettersOut",
    "DecisionOut",
    "DeletedOut",
    "DriftOut",
    "ErrorOut",
    "ExperimentStatus",
    "ExperimentSummary",
    "ExperimentsOverview",
    "FlushOut",
    "GateCheckOut",
    "GateOut",
    "HealthEntry",
    "JobOut",
    "Livez",
    "LoadRequest",
    "PlotList",
    "PluginOut",
    "PredictOut",
    "PredictRequest",
    "RequestModel",
    "ResponseModel",
    "RetrainRequest",
    "Rows",
    "RunOut",
    "ShadowOut",
    "ShadowPointOut",
    "StoppedOut",
    "StreamOut",
    "TrainDataOut",
    "TrainRequest",
    "VersionInfo",
    "VersionOut",
    "WindowOut",
]
