"""The ``window_ae`` fault detector: an autoencoder of sensor windows (the ``deep`` extra).

The standardised sensors are cut into sliding windows of ``window`` rows (stride 1); a small
PyTorch autoencoder (1-D convolutional or dense, :class:`~._torch_nets.SensorWindowAE`) learns
to reconstruct them from normal operation. A row's score is the squared reconstruction error
of its own values, averaged over its sensors and over every window of the batch that holds it
(so a row is judged in the context of the rows around it). The threshold is the
``1 - contamination`` quantile of the training scores times ``threshold_factor``
(:class:`~.detectors.BaseDetector`): an autoencoder reconstructs the windows it was trained on
better than new windows of the same process, so the default factor 1.5 keeps a margin above
the training errors.

Rows are scored in the windows of the batch they arrive in: a batch shorter than ``window`` is
padded by repeating its first row, which scores its rows with less context, so send batches of
at least ``window`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.utils._param_validation import Interval, StrOptions

from observml.experiments import _torch
from observml.experiments.detectors import BaseDetector

__all__ = ["WindowAutoencoder"]


class WindowAutoencoder(_torch.SavedAsWeights, BaseDetector):
    """Autoencoder of sliding windows of the standardised sensors (module docstring).

    Args:
        window: Rows per window.
        architecture: ``conv`` (two stride-2 1-D convolutions and their mirror) or ``dense``.
        filters: Channels of the first convolution (the second has half); ``conv`` only.
        kernel_size: Odd width of the convolutions; ``conv`` only.
        hidden: Encoder layer sizes, the last the code (mirrored by the decoder); ``dense``
            only.
        activation: ``relu``, ``tanh`` or ``elu``.
        epoch_no: Most training epochs (early stopping may end sooner).
        batch_size: Windows per training step.
        patience: Epochs without a better validation loss before training stops.
        validation_split: Latest share of the training windows held out for early stopping.
        learning_rate: Adam's step size.
        seed: Seeds the initial weights and the batch order.
        contamination: Share of training rows above the threshold (its quantile).
        threshold_factor: Multiplies that quantile (above 1 = fewer false alarms; at 1 the
            training share flagged is ``contamination``).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "window": [Interval(Integral, 4, 10_000, closed="both")],
        "architecture": [StrOptions({"conv", "dense"})],
        "filters": [Interval(Integral, 2, 1024, closed="both")],
        "kernel_size": [Interval(Integral, 1, 101, closed="both")],
        "hidden": ["array-like"],
        "activation": [StrOptions({"relu", "tanh", "elu"})],
        "epoch_no": [Interval(Integral, 1, 10_000, closed="both")],
        "batch_size": [Interval(Integral, 1, 100_000, closed="both")],
        "patience": [Interval(Integral, 1, 10_000, closed="both")],
        "validation_split": [Interval(Real, 0, 0.5, closed="left")],
        "learning_rate": [Interval(Real, 0, 1, closed="neither")],
        "seed": [Interval(Integral, 0, 2**32 - 1, closed="both")],
        "contamination": [Interval(Real, 0, 0.5, closed="neither")],
        "threshold_factor": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        window: int = 24,
        architecture: str = "conv",
        filters: int = 32,
        kernel_size: int = 5,
        hidden: Sequence[int] = (32, 8),
        activation: str = "relu",
        epoch_no: int = 60,
        batch_size: int = 32,
        patience: int = 8,
        validation_split: float = 0.2,
        learning_rate: float = 0.005,
        seed: int = 0,
        contamination: float = 0.01,
        threshold_factor: float = 1.5,
    ) -> None:
        super().__init__(contamination=contamination, scale=True)
        self.window = window
        self.architecture = architecture
        self.filters = filters
        self.kernel_size = kernel_size
        self.hidden = hidden
        self.activation = activation
        self.epoch_no = epoch_no
        self.batch_size = batch_size
        self.patience = patience
        self.validation_split = validation_split
        self.learning_rate = learning_rate
        self.seed = seed
        self.threshold_factor = threshold_factor

    def _make_net(self, sensors: int) -> Any:
        from observml.experiments._neural_forecasters import _sizes
        from observml.experiments._torch_nets import SensorWindowAE

        if self.architecture == "conv" and int(self.kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        return SensorWindowAE(
            sensors,
            int(self.window),
            str(self.architecture),
            _sizes(self.hidden, "hidden") if self.architecture == "dense" else [],
            int(self.filters),
            int(self.kernel_size),
            str(self.activation),
        )

    def _windows(self, Z: np.ndarray) -> np.ndarray:
        """Return the ``(n_windows, sensors, window)`` blocks of ``Z`` (padded when short)."""
        w = int(self.window)
        if len(Z) < w:
            Z = np.concatenate([np.repeat(Z[:1], w - len(Z), axis=0), Z])
        blocks: np.ndarray = sliding_window_view(Z, w, axis=0)
        return np.ascontiguousarray(blocks, dtype="float32")

    def _fit(self, Z: np.ndarray) -> None:
        if len(Z) < int(self.window) + 10:
            raise ValueError(
                f"window_ae needs at least window + 10 = {int(self.window) + 10} rows, got {len(Z)}"
            )
        self.n_sensors_ = int(Z.shape[1])
        blocks = self._windows(Z)
        with _torch.deterministic(int(self.seed)):
            self.net_ = self._make_net(self.n_sensors_)
            result = _torch.train(
                self.net_,
                blocks,
                blocks,
                epochs=int(self.epoch_no),
                batch_size=int(self.batch_size),
                patience=int(self.patience),
                validation_split=float(self.validation_split),
                learning_rate=float(self.learning_rate),
                seed=int(self.seed),
            )
        self.train_loss_ = [float(v) for v in result.train_loss]
        self.val_loss_ = [float(v) for v in result.val_loss]
        self.best_epoch_ = int(result.best_epoch)

    def _threshold(self, Z: np.ndarray) -> float:
        return super()._threshold(Z) * float(self.threshold_factor)

    def _score(self, Z: np.ndarray) -> np.ndarray:
        n = len(Z)
        blocks = self._windows(Z)
        with _torch.deterministic(int(self.seed)) as torch:
            with torch.no_grad():
                out = self.net_(torch.as_tensor(blocks)).numpy()
        # squared error per window and position, averaged over sensors: (windows, window)
        errors = ((out - blocks) ** 2).mean(axis=1).astype("float64")
        rows = len(blocks) + int(self.window) - 1
        total = np.zeros(rows)
        count = np.zeros(rows)
        for offset in range(int(self.window)):
            total[offset : offset + len(errors)] += errors[:, offset]
            count[offset : offset + len(errors)] += 1
        result: np.ndarray = (total / count)[rows - n :]
        return result

    def _net_for_state(self) -> Any:
        return self._make_net(int(self.n_sensors_))
