"""Reading a queue until it is empty: training rows and on-demand predictions.

Each batch is handled (and, for training rows, written to a spool file) before it is acked,
so a crash mid-drain loses nothing: unacked messages return to the queue and spooled rows stay
on disk under ``$OBSERVML_HOME/spool/<experiment>/``, in a folder of their own per drain. The
folder is deleted once a training run stored its rows. One left behind (the training failed,
was refused or stopped, or the hub died) is adopted by the experiment's next drain: its rows
are trained on first, then the queue's, so rows once acked are never lost. The drain runs under
the experiment's training claim, so no other drain adopts a folder in use.
"""

from __future__ import annotations

import json
import logging
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

logger = logging.getLogger(__name__)

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

    Rows of spool folders an earlier drain of the experiment left behind come first (see the
    module docstring); their messages' ids count as seen.

    Returns:
        The rows and the spool folder holding them; delete the folder once the rows are safe
        elsewhere (a training run stored them), or leave it for the next drain to adopt.

    Raises:
        DataError: ``required`` and neither the queue nor a left-behind spool held rows.
    """
    spool = _spool_dir(spool_name)
    files, seen = _adopt_left_behind(spool, queue)

    def handle(batch: Sequence[Message]) -> dict[int, str]:
        dead: dict[int, str] = {}
        frames, ids = [], []
        for index, message in enumerate(batch):
            if message.message_id is not None:
                if message.message_id in seen:
                    continue  # a redelivery of rows this drain already holds
                seen.add(message.message_id)
            try:
                frames.append(frame_from_message(message, fmt))
            except Exception as exc:  # bad rows go to the dead letters
                dead[index] = f"{type(exc).__name__}: {exc}"
            else:
                if message.message_id is not None:
                    ids.append(message.message_id)
        if frames:
            path = spool / f"batch-{len(files):05d}.pkl"
            pd.concat(frames, ignore_index=True).to_pickle(path)
            path.with_suffix(".ids").write_text(json.dumps(ids), encoding="utf-8")
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
) -> tuple[pd.DataFrame, Path | None]:
    """The champion's kept training rows ``kept`` and whatever waits in ``<name>.train``.

    What a retrain a person asks for learns from when the stream has not brought rows yet.
    Returns the rows and the spool folder of the drained ones (see
    :func:`drain_training_rows`), or ``None`` when nothing was drained.
    """
    queued, spool = (
        drain_training_rows(stream, train_queue(name), fmt, spool_name=name, required=False)
        if stream is not None
        else (pd.DataFrame(), None)
    )
    parts = [p for p in (kept, queued) if len(p)]
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), spool


def _adopt_left_behind(spool: Path, queue: str) -> tuple[list[Path], set[str]]:
    """Move the batch files of the experiment's other spool folders into ``spool``.

    Returns:
        The batch files now in ``spool``, oldest first, and the message ids they hold.
    """
    files: list[Path] = []
    seen: set[str] = set()
    for folder in sorted(
        (p for p in spool.parent.iterdir() if p.is_dir() and p != spool),
        key=lambda p: p.stat().st_mtime,
    ):
        moved = 0
        for batch in sorted(folder.glob("batch-*.pkl")):
            target = spool / f"batch-{len(files):05d}.pkl"
            ids = batch.with_suffix(".ids")
            if ids.exists():
                seen.update(json.loads(ids.read_text(encoding="utf-8")))
                ids.replace(target.with_suffix(".ids"))
            batch.replace(target)
            files.append(target)
            moved += 1
        if moved:
            logger.warning(
                "%s: %d batch(es) of rows drained earlier and never stored by a training run"
                " (the training failed, was refused, or the hub stopped) are trained on again,"
                " from %s",
                queue,
                moved,
                folder,
            )
        try:
            folder.rmdir()
        except OSError:  # something else in it: leave it to a person
            logger.warning("%s: left %s in place (it holds more than batch files)", queue, folder)
    return files, seen


def _spool_dir(name: str) -> Path:
    """A fresh folder for training rows drained from a queue, kept until a later drain."""
    root = Path(os.environ.get(HOME_ENV_VAR) or ".observml") / "spool" / name
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="train-", dir=root))
