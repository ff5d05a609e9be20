"""One watcher per hub that picks up champions other hub processes moved, for every stream.

Every ``streaming.champion_refresh`` seconds, batches or not, it asks the MLOps store about each
streaming experiment that has a champion (a stream still waiting for its first champion polls
from its own thread), at most ``parallel`` experiments at a time. A hub thus keeps a fixed
number of threads for this however many experiments stream, and a sweep over hundreds of them
on a remote store still fits in the interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

__all__ = ["ChampionWatch"]

logger = logging.getLogger(__name__)


class Watched(Protocol):
    """What the watcher asks of a stream (:class:`~observml.runtime.streaming.StreamWorker`)."""

    def refresh_champion(self) -> None:
        """Check the store for a new champion now, unless a check is running or none serves."""


class ChampionWatch:
    """Checks every stream's champion every ``interval`` seconds from one thread (and a pool).

    Args:
        interval: Seconds between sweeps (``streaming.champion_refresh``).
        streams: Returns the streams to check now.
        parallel: Most store checks at once.
    """

    def __init__(
        self,
        interval: float,
        streams: Callable[[], Sequence[Watched]],
        *,
        parallel: int = 4,
    ) -> None:
        self.interval = max(0.05, interval)
        self._streams = streams
        self._parallel = parallel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start watching, unless already watching."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="observml-champion-watch", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching; a sweep in progress finishes first (up to ``timeout`` s)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        with ThreadPoolExecutor(self._parallel, thread_name_prefix="observml-champion") as pool:
            while not stop.wait(self.interval):
                try:
                    # list(): wait for the sweep, so sweeps never overlap
                    list(pool.map(_refresh, self._streams()))
                except Exception:  # never let one sweep end the watcher
                    logger.warning("champion watch: a sweep failed", exc_info=True)


def _refresh(stream: Watched) -> None:
    stream.refresh_champion()
