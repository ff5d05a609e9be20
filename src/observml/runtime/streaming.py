"""The prediction stream: consume -> micro-batch predict -> publish results -> ack.

One :class:`StreamWorker` per streaming experiment consumes ``<name>.predict`` in micro-batches
and hands each to its :class:`~observml.runtime.batch.BatchPredictor` (one result per input
message on ``<name>.predictions`` with publisher confirms); only then are the inputs acked.
When the datastream implements :class:`~observml.plugins.subscriptions.SupportsSubscribe` (the
built-in ones do), the worker holds no thread of its own: it subscribes, and its batches run on
the hub's stream pool (``streaming.workers`` threads), so threads and broker connections stay
flat however many experiments stream. Otherwise it runs ``consume_batch`` in a thread of its
own. A message that cannot be parsed or scored goes to ``<name>.predict.dead`` with
the reason; the others carry on. If publishing fails because the service is down, the batch is
requeued (nothing is lost; a redelivered input may produce a second result with the same
``message_id``, which consumers deduplicate). The hub's
:class:`~observml.runtime.champion_watch.ChampionWatch` calls :meth:`StreamWorker.refresh_champion`
every ``streaming.champion_refresh`` seconds, batches or not, so a champion another hub process
promoted or rolled back serves within that time even when no message arrives, and
:meth:`StreamWorker.tend` about every second, which subscribes a worker whose first champion
arrived or whose subscription ended (the broker went away). The worker logs batch metrics to a
``serving`` run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from observml.errors import ObservMLError
from observml.hub.managed import ManagedExperiment
from observml.io.queues import predict_queue, predictions_queue, shadow_queue
from observml.plugins.datastream import DataStreamPlugin, Message
from observml.plugins.mlops import Metric, MLOpsPlugin, tracked_run
from observml.plugins.subscriptions import Subscription, SupportsSubscribe
from observml.runtime.batch import AfterBatch, BatchPredictor

if TYPE_CHECKING:
    from observml.config import StreamingSection

__all__ = ["StreamWorker"]

logger = logging.getLogger(__name__)


class StreamWorker:
    """Streams predictions for one experiment until :meth:`stop`.

    Args:
        managed: The experiment.
        datastream: Where messages come from and results go.
        mlops: Where batch metrics are logged (in batches, every ``settings.log_interval`` s).
        settings: Batch size, wait, prefetch and intervals.
        after_batch: Called with ``(managed, metrics, n_rows, scores)`` after each batch (the
            hub's retrain check; ``scores`` is ``None`` unless the policy has a drift test); it
            must not block.
        refresh_champion: Picks up a champion another hub process promoted; called by
            :meth:`refresh_champion` (never two at once), and about every second while the
            stream waits for a first champion.
        pool: Where batches run when ``datastream`` can subscribe; ``None`` (or a datastream
            that cannot) consumes from a thread of the worker's own.
    """

    def __init__(
        self,
        managed: ManagedExperiment,
        datastream: DataStreamPlugin,
        mlops: MLOpsPlugin | None,
        settings: StreamingSection,
        *,
        after_batch: AfterBatch,
        refresh_champion: Callable[[ManagedExperiment], None],
        pool: Executor | None = None,
    ) -> None:
        self.managed = managed
        self.datastream = datastream
        self.mlops = mlops
        self.settings = settings
        self._predict = BatchPredictor(managed, datastream, after_batch=after_batch)
        self._refresh_champion = refresh_champion
        self._stop = threading.Event()
        self._pool = pool if isinstance(datastream, SupportsSubscribe) else None
        self._thread = threading.Thread(
            target=self._run, name=f"observml-stream-{managed.name}", daemon=True
        )
        self._started = False
        self._subscription: Subscription | None = None
        self._subscribing = threading.Lock()
        self._backoff = 0.0  # seconds between failed subscribes, doubling
        self._retry_at = 0.0
        self._store_check_at = 0.0  # when a stream without a champion next asks the store
        self._refreshing = threading.Lock()
        self._pending: list[Metric] = []
        self._last_log = time.monotonic()
        #: The open "serving" run this worker logs to, ended when the worker stops.
        self._serving = contextlib.ExitStack()
        self._serving_run: str | None = None
        self._step = 0
        self._error: str | None = None  # the last interruption, until consuming resumes

    @property
    def running(self) -> bool:
        """Whether the worker streams (or waits to: for a champion, for the broker)."""
        if self._pool is not None:
            return self._started and not self._stop.is_set()
        return self._thread.is_alive()

    @property
    def error(self) -> str | None:
        """Why the stream is not consuming right now (e.g. the broker is away), else ``None``."""
        subscription = self._subscription
        if subscription is not None and subscription.error:
            return subscription.error
        return self._error

    @property
    def pooled(self) -> bool:
        """Whether batches run on the hub's stream pool (no thread of the worker's own)."""
        return self._pool is not None

    def start(self) -> None:
        """Declare the queues and start consuming (subscribed, or in a background thread)."""
        name = self.managed.name
        for queue in (predict_queue(name), predictions_queue(name), shadow_queue(name)):
            self.datastream.create_queue(queue)
        self._started = True
        self.managed.streaming = True
        if self._pool is None:
            self._thread.start()
        else:
            self.tend()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming (the batch in hand finishes first) and flush pending metrics."""
        self._stop.set()
        with self._subscribing:
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.cancel(timeout)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.managed.streaming = False
        self._flush_metrics(final=True)

    # -- subscribed -----------------------------------------------------------------------
    def tend(self) -> None:
        """Subscribe if the stream should consume and is not (the champion watch calls this).

        A stream without a champion stays unsubscribed (its messages wait in the queue) until
        there is one: trained here (seen at the next call) or promoted by another hub process
        (the store is asked every ``champion_refresh`` seconds, not at every call). A
        subscription that ended (the broker went away for longer than the plugin rides out) is
        replaced. Does nothing for a stream that consumes from its own thread, or is stopped.
        """
        if self._pool is None or not self.running:
            return
        current = self._subscription
        if current is not None and current.active:
            return
        if current is not None:  # ended under us: say why, once
            self._subscription = None
            self._error = current.error or "the subscription ended"
            logger.warning(
                "%s: stream interrupted: %s; subscribing again", self.managed.name, self._error
            )
        if time.monotonic() < self._retry_at:
            return
        if self.managed.champion()[0] is None:
            now = time.monotonic()
            if now < self._store_check_at:  # a champion trained here shows without the store
                return
            self._store_check_at = now + self.settings.champion_refresh
            self._try_refresh()
            if self.managed.champion()[0] is None:
                return
        with self._subscribing:
            if self._stop.is_set() or (
                self._subscription is not None and self._subscription.active
            ):
                return
            assert isinstance(self.datastream, SupportsSubscribe)
            try:
                self._subscription = self.datastream.subscribe(
                    predict_queue(self.managed.name),
                    self._handle,
                    executor=self._pool,
                    batch_size=self.settings.batch_size,
                    max_wait=self.settings.max_wait,
                    prefetch=self.settings.prefetch,
                )
            except ObservMLError as exc:
                if not self._backoff:  # once per outage, not once per retry
                    logger.warning("%s: cannot subscribe: %s; retrying", self.managed.name, exc)
                self._error = str(exc)
                self._backoff = min(max(self._backoff * 2, 0.5), 10.0)
                self._retry_at = time.monotonic() + self._backoff
                return
        self._error = None
        self._backoff = 0.0

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            if self.managed.champion()[0] is None:
                self._wait_for_champion()
                continue
            try:
                self.datastream.consume_batch(
                    predict_queue(self.managed.name),
                    self._handle,
                    batch_size=self.settings.batch_size,
                    max_wait=self.settings.max_wait,
                    prefetch=self.settings.prefetch,
                    stop=self._stop,
                )
                if not self._stop.is_set():  # the plugin was disconnected under us
                    self._stop.wait(backoff)
            except ObservMLError as exc:
                self._error = str(exc)
                logger.warning(
                    "%s: stream interrupted: %s; retrying in %.1f s",
                    self.managed.name,
                    exc,
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                self._error = "unexpected error in the stream worker; see the logs"
                logger.exception("%s: stream worker failed; retrying", self.managed.name)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5
        self.managed.streaming = False

    def _wait_for_champion(self) -> None:
        """Leave messages queued until a champion exists (trained here or in another hub)."""
        self._try_refresh()
        if self.managed.champion()[0] is None:
            self._stop.wait(min(1.0, self.settings.champion_refresh))

    def _handle(self, batch: Sequence[Message]) -> dict[int, str]:
        """Predict one micro-batch; return ``{index: reason}`` for messages to dead-letter."""
        outcome = self._predict(batch)
        if outcome.rows is not None:
            self._queue_metrics(outcome.metrics, len(outcome.rows))
        return outcome.dead

    # -- champion refresh and metric logging ----------------------------------------------
    def refresh_champion(self) -> None:
        """Check the store for a new champion now (the hub's champion watch calls this).

        Does nothing while the stream is stopped, has no champion yet (its own loop is
        polling for one) or another check is running.
        """
        if self.running and self.managed.champion()[0] is not None:
            self._try_refresh()

    def _try_refresh(self) -> None:
        """Ask the store for the champion, unless another thread is asking right now."""
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            self._refresh_champion(self.managed)
        except Exception:
            logger.warning("%s: champion refresh failed", self.managed.name, exc_info=True)
        finally:
            self._refreshing.release()

    def _queue_metrics(self, metrics: Mapping[str, float], rows: int) -> None:
        if self.mlops is None:
            return
        self._step += 1
        stamp = int(time.time() * 1000)
        self._pending.extend(
            Metric(f"stream_{k}", v, self._step, stamp) for k, v in metrics.items()
        )
        self._pending.append(Metric("stream_batch_rows", float(rows), self._step, stamp))
        if time.monotonic() - self._last_log >= self.settings.log_interval:
            self._flush_metrics()

    def _flush_metrics(self, *, final: bool = False) -> None:
        if self.mlops is None or not (self._pending or (final and self._serving_run)):
            return
        points, self._pending = self._pending, []
        self._last_log = time.monotonic()
        try:
            if self._serving_run is None:
                self._serving_run = self._serving.enter_context(
                    tracked_run(
                        self.mlops,
                        self.mlops.create_experiment(self.managed.name),
                        run_name="serving",
                        tags={"observml.kind": "serving"},
                    )
                )
            if points:
                self.mlops.log_batch(self._serving_run, metrics=points)
            if final:
                self._serving_run = None
                self._serving.close()  # ends the run FINISHED
        except Exception:
            logger.warning("%s: logging stream metrics failed", self.managed.name, exc_info=True)
