"""The PyTorch networks of the ``deep`` models (imported only when torch is installed).

Every network takes windows *levelled* at their last known value (the value is subtracted),
so it learns shapes and changes, not the level of the series:

* :class:`LSTMNet`: ``(batch, seq_length)`` -> the next value, ``(batch,)``.
* :class:`MaskedWindowAE`: ``(batch, window - 1)`` -> the whole window ``(batch, window)``,
  its last value unseen (masked as 0, the last known value); a dense autoencoder.
* :class:`SensorWindowAE`: ``(batch, sensors, window)`` -> the same shape; a dense or 1-D
  convolutional autoencoder of multivariate sensor windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LSTMNet", "MaskedWindowAE", "SensorWindowAE", "activation"]


def activation(name: str) -> nn.Module:
    """Return the activation module called ``name`` (``relu``, ``tanh`` or ``elu``)."""
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}[name]()


def _dense_stack(sizes: Sequence[int], act: str, last_linear: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if not (last_linear and i == len(sizes) - 2):
            layers.append(activation(act))
    return nn.Sequential(*layers)


class LSTMNet(nn.Module):
    """``layer_no`` stacked LSTM layers of ``cell_no`` cells and a linear read-out."""

    def __init__(self, cell_no: int, layer_no: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, cell_no, num_layers=layer_no, batch_first=True)
        self.head = nn.Linear(cell_no, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the next (levelled) value after each window."""
        out, _ = self.lstm(x.unsqueeze(-1))
        result: torch.Tensor = self.head(out[:, -1, :]).squeeze(-1)
        return result


class MaskedWindowAE(nn.Module):
    """Dense autoencoder of a window whose last value is masked (encoder sizes ``hidden``)."""

    def __init__(self, window: int, hidden: Sequence[int], act: str) -> None:
        super().__init__()
        sizes = [window, *hidden]
        self.encoder = _dense_stack(sizes, act, last_linear=False)
        self.decoder = _dense_stack(sizes[::-1], act, last_linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the reconstructed window (its last value is the forecast)."""
        masked = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
        result: torch.Tensor = self.decoder(self.encoder(masked))
        return result


class SensorWindowAE(nn.Module):
    """Autoencoder of ``(sensors, window)`` blocks: ``dense`` or 1-D ``conv`` layers.

    ``conv``: two stride-2 convolutions (``filters`` and ``filters // 2`` channels, odd
    ``kernel_size``) and the mirrored transposed convolutions, as in the Conv-AE of the SKAB
    leaderboard; ``dense``: the flattened block through ``hidden`` units and back.
    """

    def __init__(
        self,
        sensors: int,
        window: int,
        architecture: str,
        hidden: Sequence[int],
        filters: int,
        kernel_size: int,
        act: str,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        self.shape = (sensors, window)
        if architecture == "conv":
            pad = kernel_size // 2
            half = max(filters // 2, 1)
            self.encoder: nn.Module = nn.Sequential(
                nn.Conv1d(sensors, filters, kernel_size, stride=2, padding=pad),
                activation(act),
                nn.Conv1d(filters, half, kernel_size, stride=2, padding=pad),
                activation(act),
            )
            self.decoder: nn.Module = nn.Sequential(
                nn.ConvTranspose1d(half, filters, kernel_size, stride=2, padding=pad),
                activation(act),
                nn.ConvTranspose1d(filters, sensors, kernel_size, stride=2, padding=pad),
            )
        else:
            sizes = [sensors * window, *hidden]
            self.encoder = _dense_stack(sizes, act, last_linear=False)
            self.decoder = _dense_stack(sizes[::-1], act, last_linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the reconstruction of each block, the input's shape."""
        if self.architecture == "conv":
            out: torch.Tensor = self.decoder(self.encoder(x))
            window = self.shape[1]
            if out.shape[-1] < window:  # transposed convolutions may come back short
                out = nn.functional.pad(out, (0, window - out.shape[-1]), mode="replicate")
            return out[..., :window]
        flat = x.reshape(len(x), -1)
        result: torch.Tensor = self.decoder(self.encoder(flat)).reshape(x.shape)
        return result
