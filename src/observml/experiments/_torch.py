"""What the PyTorch models share (the optional ``deep`` extra): training, determinism, weights.

* :func:`torch_module` imports torch, or raises :class:`~observml.errors.ConfigError` naming
  the extra to install (the model tables check it first, at config check).
* :func:`deterministic` runs training and inference seeded, single-threaded and with
  ``torch.use_deterministic_algorithms``, restoring torch's global RNG, thread count and
  determinism flag afterwards, so two fits with the same seed give the same weights. One such
  block runs at a time in a process (a lock), so threads do not interleave those settings.
* :func:`train` is the one training loop: Adam on the mean squared error, mini-batches
  shuffled by a seeded generator, early stopping on the latest ``validation_split`` of the
  examples (the best weights are kept).
* :func:`weights_to_bytes` / :func:`weights_from_bytes` carry a network's ``state_dict``
  through the model files: written by ``torch.save``, read with ``torch.load(...,
  weights_only=True)``, which builds tensors only and never runs code from the file.
"""

from __future__ import annotations

import importlib
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from observml.errors import ConfigError

__all__ = [
    "DEEP_INSTALL",
    "SavedAsWeights",
    "TrainResult",
    "deterministic",
    "torch_module",
    "train",
    "weights_from_bytes",
    "weights_to_bytes",
]

#: How the error names the extra (the CPU build keeps the install small).
DEEP_INSTALL = "pip install 'observml[deep]' --extra-index-url https://download.pytorch.org/whl/cpu"


#: Serialises :func:`deterministic` blocks: they set torch's process-wide RNG, thread count and
#: determinism flag and restore them after, which two threads must not interleave.
_TORCH_STATE = threading.RLock()


def torch_module() -> Any:
    """Return the ``torch`` module.

    Raises:
        ConfigError: torch is not installed; the message gives the install line.
    """
    try:
        return importlib.import_module("torch")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the model needs 'torch', which is not installed. Install it with: {DEEP_INSTALL}",
            key="create_model.model",
        ) from exc


@contextmanager
def deterministic(seed: int) -> Iterator[Any]:
    """Seed torch, run on one thread with deterministic kernels; restore everything after.

    Yields:
        The ``torch`` module.
    """
    torch = torch_module()
    with _TORCH_STATE, torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        torch.manual_seed(int(seed))
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield torch
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            torch.set_num_threads(threads)


@dataclass
class TrainResult:
    """What :func:`train` reports: losses per epoch and where it stopped."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def train(
    net: Any,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    validation_split: float,
    learning_rate: float,
    seed: int,
) -> TrainResult:
    """Fit ``net`` (inputs -> targets, MSE) and leave it with the best validation weights.

    The last ``validation_split`` of the examples (they are in time order) is held out; with
    fewer than 2 held-out examples every example trains and the training loss decides.

    Call inside :func:`deterministic`.
    """
    torch = torch_module()
    x = torch.as_tensor(np.ascontiguousarray(inputs), dtype=torch.float32)
    y = torch.as_tensor(np.ascontiguousarray(targets), dtype=torch.float32)
    n = len(x)
    n_val = int(round(n * validation_split))
    if n_val < 2 or n - n_val < 2:
        n_val = 0
    x_train, y_train = x[: n - n_val], y[: n - n_val]
    x_val, y_val = x[n - n_val :], y[n - n_val :]
    optimizer = torch.optim.Adam(net.parameters(), lr=float(learning_rate))
    loss_fn = torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(int(seed))
    result = TrainResult()
    best = float("inf")
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    waited = 0
    for epoch in range(int(epochs)):
        net.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), int(batch_size)):
            batch = order[start : start + int(batch_size)]
            optimizer.zero_grad()
            loss = loss_fn(net(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        result.train_loss.append(total / max(len(x_train), 1))
        net.eval()
        with torch.no_grad():
            monitored = float(loss_fn(net(x_val), y_val)) if n_val else result.train_loss[-1]
        result.val_loss.append(monitored)
        if monitored < best - 1e-9:
            best, waited, result.best_epoch = monitored, 0, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= int(patience):
                break
    net.load_state_dict(best_state)
    net.eval()
    return result


def weights_to_bytes(net: Any) -> bytes:
    """Return ``net.state_dict()`` as the bytes ``torch.save`` writes (tensors only)."""
    torch = torch_module()
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buffer)
    return buffer.getvalue()


def weights_from_bytes(net: Any, data: bytes) -> None:
    """Load weights written by :func:`weights_to_bytes` into ``net`` (``weights_only=True``)."""
    torch = torch_module()
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.eval()


class SavedAsWeights:
    """Mixin: a model holding a network in ``net_`` is saved as its weights, never as code.

    ``__getstate__`` replaces the network by the :func:`weights_to_bytes` of its
    ``state_dict`` (what skops and pickle then store); ``__setstate__`` rebuilds the network
    with :meth:`_net_for_state` and loads the weights with ``weights_only=True``.
    """

    def _net_for_state(self) -> Any:
        """Return an untrained network of the saved model's shape (its fitted attributes set)."""
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        """Replace the network by its ``state_dict`` bytes (no pickled code)."""
        state = dict(vars(self))
        net = state.pop("net_", None)
        if net is not None:
            state["weights_"] = weights_to_bytes(net)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("weights_", None)
        vars(self).update(state)
        if weights is not None:
            net = self._net_for_state()
            weights_from_bytes(net, bytes(weights))
            self.net_ = net
