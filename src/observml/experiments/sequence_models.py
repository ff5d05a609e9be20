"""Fault-isolation classifiers that scikit-learn lacks: HMM, Markov chain and Bayesian network.

All three follow the classifier API (``fit(X, y)``, ``predict``, ``predict_proba``,
``classes_``) and take rows in time order: the HMM and the Markov chain use the order.

* :class:`SupervisedHMM` wraps :class:`hmmlearn.hmm.GaussianHMM`: with labels known, the hidden
  states *are* the classes, so start/transition probabilities and Gaussian emissions are counted
  from the labelled sequence (optionally refined by EM), and ``predict`` decodes the whole input
  sequence with Viterbi.
* :class:`MarkovChainClassifier`: a Markov chain over the classes with Gaussian emissions,
  filtered causally (forward algorithm): a row's prediction depends only on it and earlier rows,
  which is what a stream needs.
* :class:`BayesNetClassifier`: features binned, a structure learned with pgmpy (tree-augmented
  naive Bayes by default), CPDs estimated with a BDeu prior; the class posterior is computed
  from the class node's Markov blanket, vectorised over rows.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from scipy.special import logsumexp
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import KBinsDiscretizer

__all__ = ["BayesNetClassifier", "MarkovChainClassifier", "SupervisedHMM", "transition_matrix"]


def _encode(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes


def transition_matrix(codes: np.ndarray, n_states: int, alpha: float = 1.0) -> np.ndarray:
    """Return row-normalised transition counts of a label sequence with ``alpha`` smoothing."""
    counts = np.full((n_states, n_states), float(alpha))
    np.add.at(counts, (codes[:-1], codes[1:]), 1.0)
    result: np.ndarray = counts / counts.sum(axis=1, keepdims=True)
    return result


class SupervisedHMM:
    """A Gaussian HMM whose states are the labelled classes (see the module docstring).

    Args:
        hmm: A configured :class:`hmmlearn.hmm.GaussianHMM` (``n_components`` is set here).
        alpha: Additive smoothing of start and transition counts.
        refine: Run hmmlearn's EM (``n_iter`` rounds) from the counted parameters.
    """

    def __init__(self, hmm: Any, alpha: float = 1.0, refine: bool = False) -> None:
        self.hmm = hmm
        self.alpha = alpha
        self.refine = refine

    def fit(self, X: np.ndarray, y: np.ndarray) -> SupervisedHMM:
        """Count the HMM's parameters from the labelled sequence."""
        self.classes_, codes = _encode(y)
        k, d = len(self.classes_), X.shape[1]
        hmm = self.hmm
        hmm.n_components = k
        start = np.full(k, float(self.alpha))
        start[codes[0]] += 1.0
        means = np.vstack([X[codes == c].mean(axis=0) for c in range(k)])
        full = np.stack([_covariance(X[codes == c], d, hmm.min_covar) for c in range(k)])
        hmm.startprob_ = start / start.sum()
        hmm.transmat_ = transition_matrix(codes, k, self.alpha)
        hmm.means_ = means
        hmm.n_features = d
        kind = hmm.covariance_type
        if kind == "full":
            hmm.covars_ = full
        elif kind == "diag":
            hmm.covars_ = np.stack([np.diag(c) for c in full])
        elif kind == "spherical":
            hmm.covars_ = np.array([np.diag(c).mean() for c in full])
        else:  # tied
            counts = np.bincount(codes, minlength=k)[:, None, None]
            hmm.covars_ = (full * counts).sum(axis=0) / counts.sum()
        if self.refine:
            hmm.init_params = ""
            # Dirichlet pseudo-counts keep a state that EM leaves empty from a zero row
            if np.all(np.asarray(hmm.transmat_prior) == 1.0):
                hmm.transmat_prior = 1.0 + self.alpha
            if np.all(np.asarray(hmm.startprob_prior) == 1.0):
                hmm.startprob_prior = 1.0 + self.alpha
            hmm.fit(X)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the Viterbi-decoded class of every row (rows are one sequence)."""
        result: np.ndarray = self.classes_[self.hmm.predict(X)]
        return result

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return the posterior class probabilities (forward-backward) of every row."""
        result: np.ndarray = self.hmm.predict_proba(X)
        return result

    @property
    def transmat_(self) -> np.ndarray:
        """The transition matrix between classes."""
        result: np.ndarray = self.hmm.transmat_
        return result


def _covariance(block: np.ndarray, d: int, floor: float) -> np.ndarray:
    if len(block) < 2:
        return np.eye(d) * max(floor, 1.0)
    cov = np.atleast_2d(np.cov(block, rowvar=False))
    result: np.ndarray = cov + np.eye(d) * floor
    return result


class MarkovChainClassifier:
    """A Markov chain over the classes with Gaussian emissions, filtered causally.

    Args:
        alpha: Additive smoothing of the transition counts.
        var_smoothing: Added to the emission variances (as in GaussianNB).
    """

    def __init__(self, alpha: float = 1.0, var_smoothing: float = 1e-9) -> None:
        self.alpha = alpha
        self.var_smoothing = var_smoothing

    def fit(self, X: np.ndarray, y: np.ndarray) -> MarkovChainClassifier:
        """Fit emissions per class and count transitions between consecutive labels."""
        self.classes_, codes = _encode(y)
        self.emission_ = GaussianNB(var_smoothing=self.var_smoothing).fit(X, codes)
        k = len(self.classes_)
        self.transmat_ = transition_matrix(codes, k, self.alpha)
        self.startprob_ = np.bincount(codes, minlength=k) / len(codes)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return filtered class probabilities: P(class_t | rows up to t)."""
        emission = self.emission_
        log_lik = emission.predict_joint_log_proba(X) - np.log(emission.class_prior_)
        log_trans = np.log(self.transmat_)
        out = np.empty_like(log_lik)
        belief = np.log(self.startprob_)
        for t in range(len(log_lik)):
            prior = belief if t == 0 else logsumexp(belief[:, None] + log_trans, axis=0)
            belief = prior + log_lik[t]
            belief -= logsumexp(belief)
            out[t] = belief
        result: np.ndarray = np.exp(out)
        return result

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the most probable class of each row given the rows before it."""
        result: np.ndarray = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return result


class BayesNetClassifier:
    """A discrete Bayesian network over binned features and the class (pgmpy).

    Args:
        n_bins: Bins per feature.
        strategy: Binning strategy of :class:`~sklearn.preprocessing.KBinsDiscretizer`.
        structure: ``tan`` (tree-augmented naive Bayes), ``naive`` or ``hill_climb``.
        equivalent_sample_size: Strength of the BDeu prior on the CPDs.
    """

    def __init__(
        self,
        n_bins: int = 5,
        strategy: Literal["uniform", "quantile", "kmeans"] = "quantile",
        structure: Literal["tan", "naive", "hill_climb"] = "tan",
        equivalent_sample_size: float = 10.0,
    ) -> None:
        self.n_bins = n_bins
        self.strategy = strategy
        self.structure = structure
        self.equivalent_sample_size = equivalent_sample_size

    def fit(self, X: np.ndarray, y: np.ndarray) -> BayesNetClassifier:
        """Bin the features, learn the structure and estimate the CPDs."""
        if self.structure not in ("tan", "naive", "hill_climb"):
            raise ValueError(
                f"structure must be 'tan', 'naive' or 'hill_climb', got {self.structure!r}"
            )
        pgmpy = _pgmpy()
        import pandas as pd

        self.classes_, codes = _encode(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # constant features lose their bins
            self.binner_ = KBinsDiscretizer(
                n_bins=self.n_bins, encode="ordinal", strategy=self.strategy, random_state=0
            ).fit(X)
        self.nodes_ = [f"x{j}" for j in range(X.shape[1])]
        data = pd.DataFrame(self.binner_.transform(X).astype(int), columns=self.nodes_)
        data["class"] = codes
        cards = {
            n: int(len(e) - 1) for n, e in zip(self.nodes_, self.binner_.bin_edges_, strict=True)
        }
        cards["class"] = len(self.classes_)
        edges = self._structure(pgmpy, data)
        model = pgmpy["DiscreteBayesianNetwork"](edges)
        model.add_nodes_from(data.columns)
        estimator = pgmpy["DiscreteBayesianEstimator"](
            state_names={n: list(range(c)) for n, c in cards.items()},
            prior_type="BDeu",
            equivalent_sample_size=self.equivalent_sample_size,
        )
        model.fit(data, estimator=estimator)
        self.edges_ = sorted(model.edges())
        self.factors_ = self._blanket(model)
        return self

    def _structure(self, pgmpy: dict[str, Any], data: Any) -> list[tuple[str, str]]:
        naive = [("class", n) for n in self.nodes_]
        if self.structure == "naive" or len(self.nodes_) < 2:
            return naive
        if self.structure == "tan":
            search = pgmpy["TreeSearch"](data, root_node=self.nodes_[0], n_jobs=1)
            dag = search.estimate(estimator_type="tan", class_node="class", show_progress=False)
        else:
            # start from naive Bayes so the search refines a classifier, not any network
            search = pgmpy["HillClimbSearch"](
                scoring_method="bic-d",
                start_dag=pgmpy["DAG"](naive),
                max_indegree=3,
                return_type="dag",
                show_progress=False,
            )
            dag = search.fit(data.astype("category")).causal_graph_
        return [(str(a), str(b)) for a, b in dag.edges()]

    @staticmethod
    def _blanket(model: Any) -> list[tuple[list[str], np.ndarray]]:
        """Return ``(other variables, log table with the class axis last)`` per CPD with class."""
        factors = []
        for cpd in model.get_cpds():
            variables = list(cpd.variables)
            if "class" not in variables:
                continue
            table = np.log(np.maximum(cpd.values, 1e-300))
            axis = variables.index("class")
            table = np.moveaxis(table, axis, -1)
            factors.append(([v for v in variables if v != "class"], table))
        return factors

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return P(class | all binned features) of every row."""
        binned = self.binner_.transform(X).astype(int)
        column = {n: binned[:, j] for j, n in enumerate(self.nodes_)}
        log_p = np.zeros((len(X), len(self.classes_)))
        for others, table in self.factors_:
            log_p += table[tuple(column[v] for v in others)] if others else table
        log_p -= logsumexp(log_p, axis=1, keepdims=True)
        result: np.ndarray = np.exp(log_p)
        return result

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the most probable class of every row."""
        result: np.ndarray = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return result


def _pgmpy() -> dict[str, Any]:
    """Import the pgmpy parts used (quietly: pgmpy warns about its own deprecations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pgmpy.base import DAG
        from pgmpy.causal_discovery import HillClimbSearch
        from pgmpy.estimators import TreeSearch
        from pgmpy.models import DiscreteBayesianNetwork
        from pgmpy.parameter_estimator import DiscreteBayesianEstimator
    return {
        "DAG": DAG,
        "DiscreteBayesianNetwork": DiscreteBayesianNetwork,
        "DiscreteBayesianEstimator": DiscreteBayesianEstimator,
        "HillClimbSearch": HillClimbSearch,
        "TreeSearch": TreeSearch,
    }
