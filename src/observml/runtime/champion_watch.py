"""One watcher per hub that keeps every stream consuming and serving the store's champion.

Every ``streaming.champion_refresh`` seconds, batches or not, it asks the MLOps store about each
streaming experiment that has a champion, at most ``parallel`` experiments at a time. Between
sweeps, about every :data:`TEND_EVERY` seconds, it *tends* each stream: a subscribed stream
whose first champion arrived, or whose subscription ended, subscribes (again). A hub thus keeps
a fixed number of threads for this however many experiments stream, and a sweep over hundreds
of them on a remote store still fits in the interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Protocol

__all__ = ["TEND_EVERY", "ChampionWatch"]

#: Seconds between tending rounds (a stream's first champion is served within about this).
TEND_EVERY: Final = 1.0

logger = logging.getLogger(__name__)


class Watched(Protocol):
    """What the watcher asks of a stream (:class:`~observml.runtime.streaming.StreamWorker`)."""

    def refresh_champion(self) -> None:
        """Check the store for a new champion now, unless a check is running or none serves."""

    def tend(self) -> None:
        """Subscribe if the stream should consume and is not; cheap when all is well."""


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
        tick = min(TEND_EVERY, self.interval)
        next_sweep = time.monotonic() + self.interval
        with ThreadPoolExecutor(self._parallel, thread_name_prefix="observml-champion") as pool:
            while not stop.wait(tick):
                sweep = time.monotonic() >= next_sweep
                if sweep:
                    next_sweep = time.monotonic() + self.interval
                try:
                    # list(): wait for the round, so rounds never overlap
                    list(pool.map(_refresh if sweep else _tend, self._streams()))
                except Exception:  # never let one round end the watcher
                    logger.warning("champion watch: a round failed", exc_info=True)


def _refresh(stream: Watched) -> None:
    stream.refresh_champion()
    stream.tend()


def _tend(stream: Watched) -> None:
    stream.tend()
