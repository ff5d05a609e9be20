"""The ``lstm`` and ``ae`` forecasters of the ``time_series`` experiment (the ``deep`` extra).

Both forecast each step from the ``k`` standardised values before it, with a small PyTorch
network (:mod:`observml.experiments._torch_nets`) trained by
:func:`observml.experiments._torch.train` (Adam, MSE, early stopping on the latest
``validation_split`` of training). The windows are *levelled*: the last known value is
subtracted before the network sees them and added back to its output, so the networks learn
changes and shapes, and a flat network is the last-value forecast.

* :class:`LSTMForecaster` (``lstm``): an LSTM over the last ``seq_length`` values.
* :class:`WindowAEForecaster` (``ae``): a dense autoencoder of a ``window`` whose last value
  is masked; the reconstruction of that value is the forecast (a denoising, in-painting
  autoencoder), so the reconstruction error of the newest value is the forecast error.

The standardised forecast error flags anomalies as with every forecaster: the interval is the
forecast ± ``z`` sigma (``confidence``), sigma the RMSE of the one-step errors on the held-out
validation part (all of training when it is too short); ``h`` steps after the last actual the
width grows as ``sqrt(h)``. New actuals only move the window (the network is not refitted).
Fitting and inference are seeded and deterministic on CPU (:func:`~._torch.deterministic`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.utils._param_validation import Interval, StrOptions

from observml.experiments import _torch
from observml.experiments._forecasters import FloatArray, Forecaster, decompose, gap_std

__all__ = ["LSTMForecaster", "WindowAEForecaster"]

_TRAINING: dict[str, list[Any]] = {
    "epoch_no": [Interval(Integral, 1, 10_000, closed="both")],
    "batch_size": [Interval(Integral, 1, 100_000, closed="both")],
    "patience": [Interval(Integral, 1, 10_000, closed="both")],
    "validation_split": [Interval(Real, 0, 0.5, closed="left")],
    "learning_rate": [Interval(Real, 0, 1, closed="neither")],
    "seed": [Interval(Integral, 0, 2**32 - 1, closed="both")],
}


def _ones(n: int) -> FloatArray:
    return np.ones(n)


class _WindowForecaster(_torch.SavedAsWeights, Forecaster):
    """A network forecasting each step from the ``context`` values before it."""

    def __init__(
        self,
        epoch_no: int,
        batch_size: int,
        patience: int,
        validation_split: float,
        learning_rate: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.epoch_no = epoch_no
        self.batch_size = batch_size
        self.patience = patience
        self.validation_split = validation_split
        self.learning_rate = learning_rate
        self.seed = seed

    @property
    @abc.abstractmethod
    def context(self) -> int:
        """How many past values one forecast reads."""

    @abc.abstractmethod
    def _make_net(self) -> Any:
        """Return a fresh (untrained) network."""

    @abc.abstractmethod
    def _targets(self, levelled: FloatArray, following: FloatArray) -> FloatArray:
        """Return the training targets for the levelled windows and their next values."""

    @property
    def min_rows(self) -> int:  # type: ignore[override]
        """A window and at least 20 examples to learn from."""
        return int(self.context) + 20

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, y: FloatArray, times: pd.DatetimeIndex) -> None:
        """Standardise ``y``, train on its windows, keep sigma and the last window."""
        self.mean_ = float(np.mean(y))
        self.scale_ = float(np.std(y)) or 1.0
        z = (np.asarray(y, dtype="float64") - self.mean_) / self.scale_
        k = self.context
        windows = sliding_window_view(z[:-1], k)
        level = windows[:, -1:]
        inputs = windows - level
        targets = self._targets(inputs, z[k:] - level[:, 0])
        with _torch.deterministic(self.seed):
            self.net_ = self._make_net()
            result = _torch.train(
                self.net_,
                inputs,
                targets,
                epochs=self.epoch_no,
                batch_size=self.batch_size,
                patience=self.patience,
                validation_split=self.validation_split,
                learning_rate=self.learning_rate,
                seed=self.seed,
            )
        self.train_loss_ = [float(v) for v in result.train_loss]
        self.val_loss_ = [float(v) for v in result.val_loss]
        self.best_epoch_ = int(result.best_epoch)
        fitted = np.full(len(y), np.nan)
        fitted[k:] = self._one_step(windows) * self.scale_ + self.mean_
        errors = (y - fitted)[k:]
        n_val = int(round(len(errors) * self.validation_split))
        held_out = errors[-n_val:] if n_val >= 10 else errors
        self.sigma_ = float(np.sqrt(np.mean(held_out**2)))
        self.fitted_ = fitted
        self.tail_ = z[-k:].copy()

    def _one_step(self, windows: FloatArray) -> FloatArray:
        """Forecast the value after each standardised window (rows of ``windows``)."""
        with _torch.deterministic(self.seed) as torch:
            return self._forward(torch, windows)

    def _forward(self, torch: Any, windows: FloatArray) -> FloatArray:
        """:meth:`_one_step` inside :func:`~._torch.deterministic` (``torch`` is the module)."""
        level = windows[:, -1]
        x = torch.as_tensor(np.ascontiguousarray(windows - level[:, None]), dtype=torch.float32)
        with torch.no_grad():
            out = self.net_(x)
        step = out if out.ndim == 1 else out[:, -1]
        result: FloatArray = level + np.asarray(step.numpy(), dtype="float64")
        return result

    # -- the Forecaster interface -----------------------------------------------------------
    def in_sample(self) -> tuple[FloatArray, FloatArray]:
        """Return the one-step forecasts of training (NaN for the first window)."""
        std = np.where(np.isfinite(self.fitted_), self.sigma_, np.nan)
        return self.fitted_.copy(), std

    def update(
        self, y: FloatArray, times: pd.DatetimeIndex, *, commit: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Forecast each step from the window before it; actuals (or forecasts) move it."""
        z = (np.asarray(y, dtype="float64") - self.mean_) / self.scale_
        k = self.context
        if not len(z):
            return np.zeros(0), np.zeros(0)
        if np.isfinite(z).all():
            history = np.concatenate([self.tail_, z])
            predicted = self._one_step(sliding_window_view(history[:-1], k))
            filled = z
        else:
            predicted, filled = self._walk(z)
        if commit:
            self.tail_ = np.concatenate([self.tail_, filled])[-k:]
        return predicted * self.scale_ + self.mean_, gap_std(y, self.sigma_, _ones)

    def _walk(self, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Step by step: a missing actual is replaced by its forecast."""
        window = self.tail_.copy()
        predicted = np.empty(len(z))
        filled = np.empty(len(z))
        with _torch.deterministic(self.seed) as torch:
            for i, value in enumerate(z):
                predicted[i] = self._forward(torch, window[None, :])[0]
                filled[i] = value if np.isfinite(value) else predicted[i]
                window = np.concatenate([window[1:], filled[i : i + 1]])
        return predicted, filled

    def forecast(self, steps: int, times: pd.DatetimeIndex) -> tuple[FloatArray, FloatArray]:
        """Forecast ``steps`` steps recursively (each forecast feeds the next)."""
        predicted, _ = self._walk(np.full(steps, np.nan))
        std = self.sigma_ * np.sqrt(np.arange(1, steps + 1))
        return predicted * self.scale_ + self.mean_, std

    def components(self, y: FloatArray, times: pd.DatetimeIndex) -> dict[str, FloatArray]:
        """Return a moving-average trend and the remainder (the networks have no parts)."""
        return decompose(y, 0)

    def describe(self) -> dict[str, float]:
        """Return sigma, the epoch kept and its validation loss."""
        return {
            "sigma": self.sigma_,
            "best_epoch": float(self.best_epoch_),
            "epochs_run": float(len(self.train_loss_)),
            "val_loss": self.val_loss_[self.best_epoch_],
        }

    def _net_for_state(self) -> Any:
        return self._make_net()


class LSTMForecaster(_WindowForecaster):
    """An LSTM one-step forecaster (the ``deep`` extra); see the module docstring.

    Args:
        seq_length: Past values each forecast reads.
        cell_no: LSTM cells per layer.
        layer_no: Stacked LSTM layers.
        epoch_no: Most training epochs (early stopping may end sooner).
        batch_size: Windows per training step.
        patience: Epochs without a better validation loss before training stops.
        validation_split: Latest share of the training windows held out for early stopping
            and sigma (0 = none: the training loss decides).
        learning_rate: Adam's step size.
        seed: Seeds the initial weights and the batch order.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "seq_length": [Interval(Integral, 1, 10_000, closed="both")],
        "cell_no": [Interval(Integral, 1, 4096, closed="both")],
        "layer_no": [Interval(Integral, 1, 16, closed="both")],
        **_TRAINING,
    }

    def __init__(
        self,
        seq_length: int = 24,
        cell_no: int = 16,
        layer_no: int = 1,
        epoch_no: int = 50,
        batch_size: int = 32,
        patience: int = 5,
        validation_split: float = 0.2,
        learning_rate: float = 0.005,
        seed: int = 0,
    ) -> None:
        super().__init__(epoch_no, batch_size, patience, validation_split, learning_rate, seed)
        self.seq_length = seq_length
        self.cell_no = cell_no
        self.layer_no = layer_no

    @property
    def context(self) -> int:
        """``seq_length``."""
        return int(self.seq_length)

    def _make_net(self) -> Any:
        from observml.experiments._torch_nets import LSTMNet

        return LSTMNet(int(self.cell_no), int(self.layer_no))

    def _targets(self, levelled: FloatArray, following: FloatArray) -> FloatArray:
        return following


class WindowAEForecaster(_WindowForecaster):
    """A dense autoencoder of sliding windows, the newest value masked (the ``deep`` extra).

    Args:
        window: Window length; each forecast reads the ``window - 1`` values before it.
        hidden: Encoder layer sizes, the last the code (the decoder mirrors them).
        activation: ``relu``, ``tanh`` or ``elu``.
        epoch_no: Most training epochs (early stopping may end sooner).
        batch_size: Windows per training step.
        patience: Epochs without a better validation loss before training stops.
        validation_split: Latest share of the training windows held out for early stopping
            and sigma (0 = none).
        learning_rate: Adam's step size.
        seed: Seeds the initial weights and the batch order.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "window": [Interval(Integral, 2, 10_000, closed="both")],
        "hidden": ["array-like"],
        "activation": [StrOptions({"relu", "tanh", "elu"})],
        **_TRAINING,
    }

    def __init__(
        self,
        window: int = 24,
        hidden: Sequence[int] = (16, 4),
        activation: str = "relu",
        epoch_no: int = 50,
        batch_size: int = 32,
        patience: int = 5,
        validation_split: float = 0.2,
        learning_rate: float = 0.005,
        seed: int = 0,
    ) -> None:
        super().__init__(epoch_no, batch_size, patience, validation_split, learning_rate, seed)
        self.window = window
        self.hidden = hidden
        self.activation = activation

    @property
    def context(self) -> int:
        """``window - 1``."""
        return int(self.window) - 1

    def _make_net(self) -> Any:
        from observml.experiments._torch_nets import MaskedWindowAE

        sizes = _sizes(self.hidden, "hidden")
        return MaskedWindowAE(int(self.window), sizes, str(self.activation))

    def _targets(self, levelled: FloatArray, following: FloatArray) -> FloatArray:
        result: FloatArray = np.concatenate([levelled, following[:, None]], axis=1)
        return result


def _sizes(value: Any, name: str) -> list[int]:
    from observml.errors import ConfigError

    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ConfigError(
            f"expected a non-empty list of layer sizes (integers >= 1), got {value!r}.",
            key=f"create_model.params.{name}",
        )
    return [int(v) for v in value]
