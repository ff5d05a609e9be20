"""The ``Experiment`` contract every experiment type follows (sklearn's estimator rules).

An experiment is built from a name and a config that follows the old system's shape::

    setup: {target: label, datetime_column: ds, datetime_format: null, features: null,
            format: null, keep_train_rows: 10000, decimal: "."}
    eda: false
    create_model: {model: iforest, params: {n_estimators: 200}}
    retrain: {metric: anomaly_rate, threshold: 0.1, higher_better: false, window: 3,
              min_samples: 500, cooldown: 600}

The constructor only stores. :meth:`Experiment.validate_config` checks the config against the
type's tables (:attr:`Experiment.MODELS`, :attr:`Experiment.SETUP_DEFAULTS`) and each model's
signature (the checks live in :mod:`~observml.experiments.config_check`); :meth:`Experiment.train`
calls it. Subclasses implement ``_fit``, ``_predict``, ``_metrics``, ``_model_reports`` and
``_model_report_names``; the base does data parsing, checks, EDA and the hooks retraining calls.
State learned in training ends in ``_``; :meth:`Experiment.fitted_state` hands it to
:mod:`observml.store.folders`, which writes it (in formats that do not run code where they
exist, signed; see :mod:`observml.store.model_files` and :mod:`observml.store.signing`).

Why this module is long: it is the contract every experiment type implements, a user's own
type included (docs/models.md): the class attributes a type sets, the estimator API, and the
hooks retraining and the store call, each documented where a type's author reads it. What is
not the contract has left: config checks (``config_check``), model specs (``spec``),
persistence (``observml.store.folders``).
"""

from __future__ import annotations

import abc
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import numpy as np
import pandas as pd

from observml.config.legacy import modernize
from observml.errors import (
    ConfigError,
    ConfigProblem,
    DataError,
    ModelNotTrainedError,
)
from observml.experiments.config_check import (
    as_bool,
    check_model,
    check_setup,
    check_setup_format,
    check_top_level,
    section,
)
from observml.experiments.spec import ExperimentSettings, ModelSpec
from observml.io.numbers import coerce_numeric, read_numbers, unreadable
from observml.io.rows import (
    DataLike,
    parse_datetime,
    require_columns,
    require_non_empty,
    to_frame,
)
from observml.retraining.drift import FloatArray, ScoreSample
from observml.retraining.policy import RetrainPolicy, check_policy

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.config.registry import PluginRegistry
    from observml.store.signing import ModelSigner

#: ``ModelSpec`` and ``ExperimentSettings`` live in :mod:`.spec`; the names stay importable here
#: (a type of your own imports them from this module, as docs/models.md shows).
__all__ = ["Experiment", "ExperimentSettings", "ModelSpec", "load_experiment"]

logger = logging.getLogger(__name__)

_MOVED: Final = (
    "{what} moved to observml.store.folders.{new}: call it there (this alias goes away in"
    " observml 0.2)."
)


class Experiment(abc.ABC):
    """Base of every experiment type.

    Args:
        name: The experiment's name (also its registered model name in the MLOps store).
        config: The ``setup``/``eda``/``create_model``/``retrain`` mapping.
    """

    #: Name the type is registered under (``fault_detection``, ...).
    experiment_type: ClassVar[str]
    #: Model name -> how to build it. The only place models are listed.
    MODELS: ClassVar[Mapping[str, ModelSpec]]
    #: Model used when ``create_model.model`` is left out.
    DEFAULT_MODEL: ClassVar[str]
    #: Metric the retrain policy watches unless ``retrain.metric`` says otherwise.
    DEFAULT_METRIC: ClassVar[str]
    #: Whether the type's stream carries ground truth (labels, actuals) to judge a challenger
    #: by its metric. Without it, challengers wait for a person (``retrain.promotion: approve``)
    #: and are trained on rows judged in control (``retrain.window_rows: in_control``).
    GROUND_TRUTH: ClassVar[bool] = False
    #: Whether feedback labels are classes of ``setup.target`` (else ``fault``/``normal``).
    LABELLED_CLASSES: ClassVar[bool] = False
    #: Whether rows must stay in time order (a holdout is then the newest rows).
    ORDERED_ROWS: ClassVar[bool] = False
    #: ``setup:`` keys the type accepts, with defaults. Subclasses extend it.
    SETUP_DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "target": None,
        "datetime_column": None,
        "datetime_format": None,
        "features": None,
        "format": None,
        "keep_train_rows": 10_000,
        "decimal": ".",
    }

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = modernize(
            config, getattr(self, "experiment_type", None), where=f"experiment {name!r}"
        )

    # -- configuration --------------------------------------------------------------------
    def validate_config(self) -> ExperimentSettings:
        """Check the config and return it with defaults filled in.

        Raises:
            ConfigError: Every problem found, each with its key (unknown model or params list
                the valid ones).
        """
        problems: list[ConfigProblem] = []
        config = check_top_level(self.config, problems)
        setup = self._check_setup(section(config, "setup", problems), problems)
        fmt = check_setup_format(setup, problems)
        eda = as_bool(config.get("eda", False), "eda", problems)
        model, spec, params, options = check_model(
            section(config, "create_model", problems),
            self.MODELS,
            default=self.DEFAULT_MODEL,
            experiment_type=self.experiment_type,
            problems=problems,
        )
        policy = check_policy(
            section(config, "retrain", problems), problems, ground_truth=self.GROUND_TRUTH
        )
        if problems:
            raise ConfigError(problems=problems, source=f"experiment {self.name!r}")
        assert spec is not None
        return ExperimentSettings(
            model=model,
            spec=spec,
            params=params,
            options=options,
            setup=setup,
            format=fmt,
            eda=eda,
            retrain=policy,
            metric=policy.metric or self.DEFAULT_METRIC,
        )

    def _check_setup(self, raw: Mapping[str, Any], problems: list[ConfigProblem]) -> dict[str, Any]:
        """Merge ``setup`` over :attr:`SETUP_DEFAULTS`; subclasses may add checks."""
        return check_setup(raw, self.SETUP_DEFAULTS, self.experiment_type, problems)

    # -- the estimator API ----------------------------------------------------------------
    def train(self, data: DataLike) -> Self:
        """Validate the config, parse ``data`` and fit the model.

        Raises:
            ConfigError: The config is invalid.
            DataError: The data misses a column, has a wrong type, is empty or has NaN.
        """
        settings = self.validate_config()
        self.settings_ = settings
        started = time.perf_counter()
        frame = self.prepare(data, action="train", settings=settings)
        self.features_ = self._select_features(frame, settings)
        self._fit(frame)
        drift = settings.retrain.drift
        if drift is not None and (
            drift.reference == "training"
            or (drift.reference == "auto" and settings.spec.in_sample_scores)
        ):
            self.reference_scores_: FloatArray | None = self._reference_scores(
                frame, drift.reference_size
            )
        else:
            self.reference_scores_ = None
        times = self.time_values(frame)
        self.train_span_: list[str] | None = (
            [str(times.min()), str(times.max())] if times is not None and len(times) else None
        )
        keep = int(settings.setup["keep_train_rows"])
        self.train_data_ = frame.iloc[len(frame) - min(keep, len(frame)) :].copy()
        self.n_train_rows_ = len(frame)
        self.metrics_: dict[str, float] = {
            "train_rows": float(len(frame)),
            "train_seconds": time.perf_counter() - started,
        }
        self.trained_at_ = time.time()
        return self

    def predict(self, data: DataLike) -> pd.DataFrame:
        """Return predictions, one row per input row in the same order (see each type).

        Raises:
            ModelNotTrainedError: Called before :meth:`train`.
            DataError: The data does not fit the trained model.
        """
        self._check_trained()
        frame = self.prepare(data, action="predict")
        result = self._predict(frame)
        if len(result) == len(frame):
            result.index = frame.index
        return result

    def score(self, data: DataLike) -> dict[str, float]:
        """Return metrics on ``data`` (which needs labels/actuals where the type needs them)."""
        self._check_trained()
        frame = self.prepare(data, action="score")
        metrics = {k: float(v) for k, v in self._metrics(frame).items()}
        self.metrics_ = {**self.metrics_, **metrics}
        return metrics

    @property
    def is_trained(self) -> bool:
        """Whether :meth:`train` has run (or a trained experiment was loaded)."""
        return hasattr(self, "trained_at_")

    @property
    def model_name(self) -> str:
        """The configured model (``create_model.model`` or the type's default)."""
        if hasattr(self, "settings_"):
            return self.settings_.model
        section = self.config.get("create_model") if isinstance(self.config, Mapping) else None
        model = section.get("model") if isinstance(section, Mapping) else None
        return str(model or self.DEFAULT_MODEL)

    def get_train_data(self) -> pd.DataFrame:
        """Return (a copy of) the last ``setup.keep_train_rows`` training rows."""
        self._check_trained()
        return self.train_data_.copy()

    # -- data -----------------------------------------------------------------------------
    def prepare(
        self, data: DataLike, *, action: str = "predict", settings: ExperimentSettings | None = None
    ) -> pd.DataFrame:
        """Parse ``data`` into a frame, check it is not empty, read numbers and datetimes.

        Numbers sent as text (``"12.5"``, ``"12,5"`` with ``setup.decimal: ","``, ``""`` as
        missing) become floats in the columns :meth:`_numeric_columns` names, the same way on
        every path (training, prediction, streaming, retraining; see
        :mod:`observml.io.numbers`).
        """
        settings = settings or self.settings_
        where = self.where(action)
        frame = to_frame(data, fmt=settings.format, where=where)
        require_non_empty(frame, where)
        frame = read_numbers(
            frame, self._numeric_columns(frame, settings), decimal=self._decimal(settings)
        )
        column = settings.setup.get("datetime_column")
        if column and column not in frame.index.names:
            require_columns(frame, [column], where)
            values = frame[column]
            if values.dtype.kind != "M":
                parsed = parse_datetime(
                    values, settings.setup.get("datetime_format"), where, column=column
                )
                frame = frame.assign(**{column: parsed})
        return frame

    def _numeric_columns(self, frame: pd.DataFrame, settings: ExperimentSettings) -> list[str]:
        """Columns whose text values are read as numbers.

        All but the datetime column (and, for types that learn classes, the target); types
        whose rows hold no measurements (process mining) return none.
        """
        skip = {settings.setup.get("datetime_column")}
        if self.LABELLED_CLASSES:
            skip.add(settings.setup.get("target"))
        return [str(c) for c in frame.columns if c not in skip]

    @staticmethod
    def _decimal(settings: ExperimentSettings) -> str:
        return str(settings.setup.get("decimal") or ".")

    def where(self, action: str) -> str:
        """Return the prefix of data errors, e.g. ``experiment 'pump' predict data``."""
        return f"experiment {self.name!r} {action} data"

    def _select_features(self, frame: pd.DataFrame, settings: ExperimentSettings) -> list[str]:
        """Return ``setup.features`` or every numeric column that is not target/time/excluded."""
        explicit = settings.setup.get("features")
        if explicit:
            require_columns(frame, explicit, self.where("train"))
            return list(explicit)
        skip = set(self._non_feature_columns(settings))
        candidates = [str(c) for c in frame.columns if c not in skip]
        chosen = [c for c in candidates if frame[c].dtype.kind in "fiub"]
        if not chosen:
            decimal = self._decimal(settings)
            bad = unreadable(frame, candidates, decimal=decimal)
            raise DataError(
                f"{self.where('train')}: no numeric feature columns. Not read as numbers:"
                f" {', '.join(bad) or 'none (no columns besides the target and datetime)'}."
                f" Numbers may be sent as text ('12.5'; with setup.decimal: ',' also '12,5',"
                f" now {decimal!r}); otherwise list the feature columns in setup.features."
            )
        return chosen

    def _non_feature_columns(self, settings: ExperimentSettings) -> list[str]:
        """Columns never used as features (target, datetime); subclasses may add more."""
        return [c for c in (settings.setup["target"], settings.setup["datetime_column"]) if c]

    def feature_matrix(self, frame: pd.DataFrame, *, action: str = "predict") -> np.ndarray:
        """Return the trained feature columns as a float array, checked column by column."""
        where = self.where(action)
        require_columns(frame, self.features_, where)
        block = frame[self.features_]
        if all(block[c].dtype.kind == "f" for c in self.features_):
            values: np.ndarray = block.to_numpy(dtype="float64")
            if not np.isnan(values).any():
                return values
        decimal = self._decimal(self.settings_)
        columns = [
            coerce_numeric(block[c], where, column=c, decimal=decimal) for c in self.features_
        ]
        checked: np.ndarray = np.column_stack([c.to_numpy() for c in columns])
        return checked

    def time_values(self, frame: pd.DataFrame) -> pd.Series | None:
        """Return the datetime column (or index) when ``setup.datetime_column`` is set."""
        column = self.settings_.setup.get("datetime_column")
        if not column:
            return None
        if column in frame.columns:
            return frame[column]
        if column in frame.index.names:
            return frame.index.get_level_values(column).to_series(index=frame.index)
        return None

    # -- reports --------------------------------------------------------------------------
    def reports(self) -> dict[str, Figure]:
        """Return every report figure by name (model reports, then EDA when ``eda`` is on)."""
        self._check_trained()
        figures = self._model_reports()
        if self.settings_.eda:
            figures.update(self.eda_reports())
        return figures

    def eda_reports(self) -> dict[str, Figure]:
        """Return ``histogram_<col>`` per feature and ``correlation`` of the training data."""
        from observml.experiments import reports

        self._check_trained()
        figures: dict[str, Figure] = reports.eda_figures(self.train_data_, self.features_)
        return figures

    def plot_names(self) -> list[str]:
        """Return the names :meth:`reports` produces for this configuration."""
        self._check_trained()
        names = self._model_report_names()
        return names + self.eda_names() if self.settings_.eda else names

    def eda_names(self) -> list[str]:
        """Return the EDA figure names: ``histogram_<feature>`` and ``correlation``."""
        self._check_trained()
        features = list(self.features_)
        return [f"histogram_{c}" for c in features] + (["correlation"] if len(features) > 1 else [])

    # -- retraining ----------------------------------------------------------------------
    @property
    def retrain_policy(self) -> RetrainPolicy:
        """The ``retrain:`` block as a :class:`RetrainPolicy`, with the type's defaults."""
        settings = getattr(self, "settings_", None) or self.validate_config()
        return settings.retrain

    def alarms(self, frame: pd.DataFrame, result: pd.DataFrame) -> np.ndarray:
        """Return, per row of ``frame``, whether the model flagged it (its ``anomaly`` column).

        ``result`` is what :meth:`predict` returned for ``frame``. Types that flag nothing row
        by row (fault isolation) flag nothing; process mining flags the rows of cases it judged
        non-conformant.
        """
        if "anomaly" in result.columns and len(result) == len(frame):
            return np.asarray(result["anomaly"].fillna(False), dtype=bool)
        return np.zeros(len(frame), dtype=bool)

    def score_limits(self) -> list[float]:
        """Limits of :meth:`drift_scores` beyond which a row is flagged (for plots)."""
        threshold = getattr(self, "threshold_", None)
        return [float(threshold)] if threshold is not None else []

    def keep_whole(self, frame: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
        """Adjust a row keep-mask so units the model learns from stay whole (default: rows)."""
        return keep

    def drift_scores(self, result: pd.DataFrame) -> FloatArray:
        """Return the scores the drift test compares, one per row of a :meth:`predict` result.

        ``retrain.drift.column`` names a result column; by default each type's own score
        (:meth:`_drift_scores`).

        Raises:
            DataError: The column is not in the result.
        """
        drift = self.settings_.retrain.drift
        column = drift.column if drift is not None else None
        if column is None:
            return self._drift_scores(result)
        if column not in result.columns:
            raise DataError(
                f"experiment {self.name!r}: retrain.drift.column {column!r} is not a prediction"
                f" column ({', '.join(map(str, result.columns))})."
            )
        return np.asarray(pd.to_numeric(result[column], errors="coerce"), dtype="float64")

    def score_sample(self, result: pd.DataFrame, *, model: Any = None) -> ScoreSample:
        """Return a batch's scores with this model's training reference, for the drift test."""
        return ScoreSample(
            self.drift_scores(result), getattr(self, "reference_scores_", None), model
        )

    def _drift_scores(self, result: pd.DataFrame) -> FloatArray:
        """The type's own score: the ``score`` column; subclasses without one override this."""
        if "score" not in result.columns:
            raise DataError(
                f"experiment {self.name!r}: its predictions have no 'score' column; set"
                " retrain.drift.column to the column the drift test should compare."
            )
        return np.asarray(result["score"], dtype="float64")

    def _reference_scores(self, frame: pd.DataFrame, size: int) -> FloatArray:
        """Scores of the newest ``size`` training rows (the drift test's reference)."""
        return self.drift_scores(self._predict(frame.iloc[max(0, len(frame) - size) :]))

    # -- state ----------------------------------------------------------------------------
    def fitted_state(self) -> dict[str, Any]:
        """Return what training learnt: every attribute ending in ``_`` but ``settings_``.

        ``settings_`` is rebuilt from the config by :meth:`from_state`. What a saved folder
        holds (see :func:`observml.store.folders.save_folder`).

        Raises:
            ModelNotTrainedError: Called before :meth:`train`.
        """
        self._check_trained()
        return {
            k: v
            for k, v in vars(self).items()
            if k.endswith("_") and not k.startswith("_") and k != "settings_"
        }

    @classmethod
    def from_state(cls, name: str, config: Mapping[str, Any], state: Mapping[str, Any]) -> Self:
        """Return a trained experiment from its config and :meth:`fitted_state`."""
        experiment = cls(name, config)
        vars(experiment).update(state)
        if "settings_" not in state:
            experiment.settings_ = experiment.validate_config()
        return experiment

    def save(self, directory: Path | str, *, signer: ModelSigner | None = None) -> Path:
        """Deprecated: use :func:`observml.store.folders.save_folder`."""
        warnings.warn(
            _MOVED.format(what="Experiment.save", new="save_folder"),
            DeprecationWarning,
            stacklevel=2,
        )
        from observml.store.folders import save_folder  # deprecated alias

        return save_folder(self, directory, signer=signer)

    def _check_trained(self) -> None:
        if not self.is_trained:
            raise ModelNotTrainedError(
                f"experiment {self.name!r}: the model is not trained. Call train() first."
            )

    # -- what subclasses implement --------------------------------------------------------
    @abc.abstractmethod
    def _fit(self, frame: pd.DataFrame) -> None:
        """Fit on the parsed training frame (``self.settings_``/``features_`` are set)."""

    @abc.abstractmethod
    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return the prediction frame for a parsed frame."""

    @abc.abstractmethod
    def _metrics(self, frame: pd.DataFrame) -> Mapping[str, float]:
        """Return metrics on a parsed frame."""

    @abc.abstractmethod
    def _model_reports(self) -> dict[str, Figure]:
        """Return the model's report figures by name."""

    @abc.abstractmethod
    def _model_report_names(self) -> list[str]:
        """Return the names :meth:`_model_reports` produces."""


def load_experiment(
    directory: Path | str,
    registry: PluginRegistry | Mapping[str, type[Experiment]] | None = None,
    **options: Any,
) -> Experiment:
    """Deprecated: use :func:`observml.store.folders.load_folder`."""
    warnings.warn(
        _MOVED.format(what="load_experiment", new="load_folder"),
        DeprecationWarning,
        stacklevel=2,
    )
    from observml.store.folders import load_folder  # deprecated alias

    return load_folder(directory, registry, **options)
