"""Fault isolation: classify each row into a fault class (``setup.target`` holds the labels).

Config::

    setup: {target: "Output (S)", datetime_column: ds, features: null}
    create_model: {model: random_forest, params: {n_estimators: 200}}

``predict`` returns per row ``prediction`` and ``proba_<class>`` for every class seen in
training. ``hmm`` and ``markov_chain`` treat the rows of one call as a time-ordered sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np
import pandas as pd

from observml.errors import ConfigError, ConfigProblem, DataError
from observml.experiments.base import Experiment
from observml.experiments.spec import ModelSpec
from observml.retraining.drift import FloatArray

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["FaultIsolationExperiment"]

_SEQ: Final = "observml.experiments.sequence_models"
#: Rows used for permutation importance (models without their own importances).
_IMPORTANCE_ROWS: Final = 2000

MODELS: Final[Mapping[str, ModelSpec]] = {
    "decision_tree": ModelSpec(
        "sklearn.tree:DecisionTreeClassifier",
        defaults={"random_state": 0},
        summary="CART decision tree",
    ),
    "random_forest": ModelSpec(
        "sklearn.ensemble:RandomForestClassifier",
        defaults={"random_state": 0, "n_jobs": -1},
        summary="random forest",
        in_sample_scores=False,
    ),
    "naive_bayes": ModelSpec("sklearn.naive_bayes:GaussianNB", summary="Gaussian naive Bayes"),
    "hmm": ModelSpec(
        "hmmlearn.hmm:GaussianHMM",
        defaults={"covariance_type": "full", "random_state": 0},
        options={"alpha": 1.0, "refine": False},
        exclude=("n_components", "init_params"),
        extra="experiments",
        adapter=f"{_SEQ}:SupervisedHMM",
        summary="Gaussian HMM, states = classes, Viterbi-decoded over the sequence",
    ),
    "markov_chain": ModelSpec(
        f"{_SEQ}:MarkovChainClassifier",
        summary="Markov chain over classes with Gaussian emissions, filtered causally",
    ),
    "bayes_net": ModelSpec(
        f"{_SEQ}:BayesNetClassifier",
        extra="experiments",
        requires=("pgmpy",),
        summary="discrete Bayesian network (TAN by default) over binned features",
    ),
}

_SEQUENCE_MODELS: Final = ("hmm", "markov_chain")


class FaultIsolationExperiment(Experiment):
    """Classify rows into fault classes (see the module docstring)."""

    experiment_type: ClassVar[str] = "fault_isolation"
    MODELS: ClassVar[Mapping[str, ModelSpec]] = MODELS
    DEFAULT_MODEL: ClassVar[str] = "decision_tree"
    GROUND_TRUTH: ClassVar[bool] = True  # the stream carries the label: judge by the metric
    LABELLED_CLASSES: ClassVar[bool] = True
    DEFAULT_METRIC: ClassVar[str] = "accuracy"

    def _check_setup(self, raw: Mapping[str, Any], problems: list[ConfigProblem]) -> dict[str, Any]:
        setup = super()._check_setup(raw, problems)
        if not setup.get("target"):
            problems.append(
                ConfigProblem(
                    "setup.target",
                    "fault isolation needs the label column. Add 'target: <column>'.",
                )
            )
        return setup

    # -- fitting and predicting -----------------------------------------------------------
    def _labels(self, frame: pd.DataFrame, action: str) -> np.ndarray:
        target = self.settings_.setup["target"]
        if target not in frame.columns:
            raise DataError(
                f"{self.where(action)}: missing the label column {target!r} (setup.target);"
                " scoring and training need the true classes."
            )
        labels = frame[target]
        if labels.isna().any():
            row = int(np.flatnonzero(labels.isna().to_numpy())[0])
            raise DataError(
                f"{self.where(action)}: column {target!r} has a missing label at row {row};"
                " expected a class in every row."
            )
        values: np.ndarray = labels.to_numpy()
        return values

    def _fit(self, frame: pd.DataFrame) -> None:
        settings = self.settings_
        X = self.feature_matrix(frame, action="train")
        y = self._labels(frame, "train")
        model = settings.spec.build(settings.params, settings.options)
        try:
            model.fit(X, y)
            if len(model.classes_) < 2:
                raise ValueError("one class")
        except ValueError as exc:
            if y.size and (y == y[0]).all():
                raise DataError(
                    f"{self.where('train')}: column {settings.setup['target']!r} has one class"
                    f" ({y[0]!r}); fault isolation needs at least two."
                ) from exc
            raise DataError(
                f"{self.where('train')}: {settings.model} could not be fitted: {exc}"
            ) from exc
        except TypeError as exc:
            raise ConfigError(
                f"{settings.model} rejected its parameters: {exc}", key="create_model.params"
            ) from exc
        self.model_ = model
        self.classes_ = np.asarray(model.classes_)
        self.confusion_source_ = "training data"
        self.confusion_ = None

    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        X = self.feature_matrix(frame)
        proba = self.model_.predict_proba(X)
        if self.settings_.model in _SEQUENCE_MODELS:
            predicted = self.model_.predict(X)
        else:
            predicted = self.classes_.take(proba.argmax(axis=1))
        result = pd.DataFrame(
            proba, columns=[f"proba_{label}" for label in self.classes_], index=frame.index
        )
        # object dtype as the labels came: inferring a string dtype costs more than predicting
        dtype = object if predicted.dtype == object else None
        result.insert(0, "prediction", pd.Series(predicted, index=frame.index, dtype=dtype))
        column = self.settings_.setup["datetime_column"]
        if column and column in frame.columns:
            result.insert(0, column, frame[column].to_numpy())
        return result

    def _drift_scores(self, result: pd.DataFrame) -> FloatArray:
        """How sure the model is: the probability of the class it predicted."""
        columns = [c for c in result.columns if str(c).startswith("proba_")]
        return np.asarray(result[columns].max(axis=1), dtype="float64")

    # -- metrics --------------------------------------------------------------------------
    def _metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        from sklearn import metrics

        y = self._labels(frame, "score")
        predicted = self.model_.predict(self.feature_matrix(frame, action="score"))
        labels = self.classes_
        self.confusion_ = metrics.confusion_matrix(y, predicted, labels=labels)
        self.confusion_source_ = f"last scored data ({len(y)} rows)"
        result = {"accuracy": float(metrics.accuracy_score(y, predicted))}
        for name, fn in (
            ("f1", metrics.f1_score),
            ("precision", metrics.precision_score),
            ("recall", metrics.recall_score),
        ):
            result[name] = float(fn(y, predicted, average="macro", zero_division=0))
        result["n_samples"] = float(len(y))
        return result

    # -- reports --------------------------------------------------------------------------
    def _model_report_names(self) -> list[str]:
        names = ["confusion_matrix", "feature_importance"]
        if self.settings_.model in _SEQUENCE_MODELS:
            names += ["states", "transition_matrix"]
        return names

    def _model_reports(self) -> dict[str, Figure]:
        from sklearn.metrics import confusion_matrix

        from observml.experiments import reports

        frame = self.train_data_
        X = self.feature_matrix(frame)
        y = self._labels(frame, "train")
        predicted = self.model_.predict(X)
        names = [str(c) for c in self.classes_]
        matrix = self.confusion_
        source = self.confusion_source_
        if matrix is None:
            matrix = confusion_matrix(y, predicted, labels=self.classes_)
            source = f"training data ({len(y)} rows)"
        figures: dict[str, Figure] = {
            "confusion_matrix": reports.heatmap(
                matrix,
                x=names,
                y=names,
                title=f"{self.name}: confusion matrix on {source}",
                x_title="predicted",
                y_title="actual",
            ),
        }
        importance, kind = self._importances(X, y)
        figures["feature_importance"] = reports.bar_chart(
            dict(zip(self.features_, importance, strict=True)),
            title=f"{self.name}: feature importance ({kind})",
            y_title="importance",
        )
        if self.settings_.model in _SEQUENCE_MODELS:
            time = self.time_values(frame)
            codes = {c: i for i, c in enumerate(self.classes_)}
            figures["states"] = reports.line_chart(
                {
                    "actual": np.array([codes[v] for v in y]),
                    "decoded": np.array([codes[v] for v in predicted]),
                },
                x=None if time is None else time.to_numpy(),
                title=f"{self.name}: actual and decoded states",
                y_title="state (class index)",
            )
            figures["transition_matrix"] = reports.heatmap(
                self.model_.transmat_,
                x=names,
                y=names,
                title=f"{self.name}: transition probabilities",
                x_title="to",
                y_title="from",
            )
        return figures

    def _importances(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, str]:
        own = getattr(self.model_, "feature_importances_", None)
        if own is not None:
            return np.asarray(own), "impurity decrease"
        rows = slice(len(X) - min(len(X), _IMPORTANCE_ROWS), len(X))
        X, y = X[rows], y[rows]
        base = float(np.mean(self.model_.predict(X) == y))
        rng = np.random.default_rng(0)
        drops = []
        for j in range(X.shape[1]):
            shuffled = X.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            drops.append(base - float(np.mean(self.model_.predict(shuffled) == y)))
        return np.array(drops), "permutation: accuracy drop"
