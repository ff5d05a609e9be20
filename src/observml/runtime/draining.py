"""Reading a queue until it is empty: training rows and on-demand predictions.

Each batch is handled (and, for training rows, written to a spool file) before it is acked,
so a crash mid-drain loses nothing: unacked messages return to the queue and spooled rows stay
on disk under ``$OBSERVML_HOME/spool/<experiment>/``.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd

from observml.config import HOME_ENV_VAR
from observml.errors import DataError
from observml.io.messages import frame_from_message
from observml.io.queues import train_queue
from observml.plugins.datastream import DataStreamPlugin, Message

__all__ = ["drain", "drain_training_rows", "rows_to_retrain_on"]

#: A drain ends once the queue has been empty and idle this long.
IDLE_SECONDS: Final = 0.5


def drain(
    stream: DataStreamPlugin,
    queue: str,
    handle: Callable[[Sequence[Message]], Mapping[int, str] | None],
    *,
    batch_size: int = 500,
) -> None:
    """Consume ``queue`` with ``handle`` until it has been empty for :data:`IDLE_SECONDS`."""
    stop = threading.Event()
    last = [time.monotonic()]

    def wrapped(batch: Sequence[Message]) -> Mapping[int, str] | None:
        last[0] = time.monotonic()
        try:
            return handle(batch)
        finally:
            last[0] = time.monotonic()

    def watchdog() -> None:
        while not stop.wait(0.05):
            idle = time.monotonic() - last[0] > IDLE_SECONDS
            if idle and stream.queue_depth(queue) == 0:
                stop.set()

    guard = threading.Thread(target=watchdog, daemon=True, name=f"observml-drain-{queue}")
    guard.start()
    try:
        stream.consume_batch(queue, wrapped, batch_size=batch_size, max_wait=0.1, stop=stop)
    finally:
        stop.set()
        guard.join(5)


def drain_training_rows(
    stream: DataStreamPlugin,
    queue: str,
    fmt: Mapping[str, Any] | None,
    *,
    spool_name: str,
    required: bool,
) -> tuple[pd.DataFrame, Path | None]:
    """Read every message waiting in ``queue`` into one frame; bad messages are dead-lettered.

    A message redelivered during the drain (same ``message_id``) is counted once.

    Returns:
        The rows and the spool folder holding them; delete the folder once the rows are safe
        elsewhere (a training run stored them), or leave it to retry after a crash.

    Raises:
        DataError: ``required`` and the queue held no usable rows.
    """
    spool = _spool_dir(spool_name)
    files: list[Path] = []
    seen: set[str] = set()

    def handle(batch: Sequence[Message]) -> dict[int, str]:
        dead: dict[int, str] = {}
        frames = []
        for index, message in enumerate(batch):
            if message.message_id is not None:
                if message.message_id in seen:
                    continue  # a redelivery of rows this drain already holds
                seen.add(message.message_id)
            try:
                frames.append(frame_from_message(message, fmt))
            except Exception as exc:  # bad rows go to the dead letters
                dead[index] = f"{type(exc).__name__}: {exc}"
        if frames:
            path = spool / f"batch-{len(files):05d}.pkl"
            pd.concat(frames, ignore_index=True).to_pickle(path)
            files.append(path)
        return dead

    drain(stream, queue, handle)
    if not files:
        spool.rmdir()
        if required:
            raise DataError(
                f"experiment {spool_name!r}: no training data. Pass data=, or publish rows"
                f" to the queue {queue!r} first."
            )
        return pd.DataFrame(), None
    return pd.concat([pd.read_pickle(p) for p in files], ignore_index=True), spool


def rows_to_retrain_on(
    stream: DataStreamPlugin | None, name: str, fmt: Mapping[str, Any] | None, kept: pd.DataFrame
) -> pd.DataFrame:
    """The champion's kept training rows ``kept`` and whatever waits in ``<name>.train``.

    What a retrain a person asks for learns from when the stream has not brought rows yet.
    """
    queued = (
        drain_training_rows(stream, train_queue(name), fmt, spool_name=name, required=False)[0]
        if stream is not None
        else pd.DataFrame()
    )
    parts = [p for p in (kept, queued) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _spool_dir(name: str) -> Path:
    """A fresh folder for training rows drained from a queue, kept until a later drain."""
    root = Path(os.environ.get(HOME_ENV_VAR) or ".observml") / "spool" / name
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="train-", dir=root))
