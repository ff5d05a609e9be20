"""In-memory plugins: real implementations of the protocols, kept in one process's memory.

For unit tests and notebooks (httpx ships ``MockTransport`` the same way). All state lives on
the instance: two plugins, or two hubs, share nothing.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from observml.errors import DataError, NotFoundError, ServiceUnavailableError
from observml.plugins.base import HealthReport
from observml.plugins.datastream import (
    MAX_MESSAGE_BYTES,
    REASON_HEADER,
    BatchHandler,
    Handler,
    Message,
    OutgoingMessage,
    Settlement,
    dead_letter_queue,
    one_at_a_time,
    oversize_reason,
    settle,
)
from observml.plugins.mlops import (
    ExperimentRecord,
    Metric,
    MetricsArg,
    ModelVersion,
    RunRecord,
    RunStatus,
    as_metrics,
)

__all__ = ["InMemoryDataStreamPlugin", "InMemoryMLOpsPlugin"]


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Run:
    record: RunRecord
    history: dict[str, list[Metric]] = field(default_factory=dict)
    latest: dict[str, Metric] = field(default_factory=dict)  # highest (step, timestamp)
    artifacts: dict[str, bytes] = field(default_factory=dict)


class InMemoryMLOpsPlugin:
    """An MLOps store held in memory: experiments, runs, artifacts and a model registry.

    Configuration: none (``name`` only labels the store in health details).

    Usage::

        hub.register_plugin(InMemoryMLOpsPlugin())
    """

    plugin_type = "mlops"

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.tracking_uri = f"memory://{name}"
        self._lock = threading.RLock()
        self._experiments: dict[str, ExperimentRecord] = {}
        self._runs: dict[str, _Run] = {}
        self._versions: dict[str, list[ModelVersion]] = {}
        self._aliases: dict[str, dict[str, int]] = {}
        self._ids = itertools.count(1)
        self._active = threading.local()
        self._initialized = False

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Mark the store ready."""
        self._initialized = True

    def shutdown(self) -> None:
        """End runs left open as ``KILLED`` (as the real plugins do); the data stays readable."""
        with self._lock:
            for run in self._runs.values():
                if run.record.status == "RUNNING":
                    run.record = replace(run.record, status="KILLED", end_time=_now_ms())
            self._initialized = False

    def health_check(self) -> HealthReport:
        """Report the store's size."""
        with self._lock:
            return True, {
                "status": "connected",
                "uri": self.tracking_uri,
                "experiments": len(self._experiments),
                "runs": len(self._runs),
            }

    # -- the spec's methods ---------------------------------------------------------------
    def set_tracking_uri(self, uri: str) -> None:
        """Record the URI (the store stays in memory)."""
        self.tracking_uri = uri

    def create_experiment(self, name: str) -> str:
        """Create an experiment, or return the id of the existing one."""
        with self._lock:
            existing = self.get_experiment_by_name(name)
            if existing is not None:
                return existing.experiment_id
            experiment_id = str(next(self._ids))
            self._experiments[experiment_id] = ExperimentRecord(experiment_id, name)
            return experiment_id

    def start_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Start a run and remember it as this thread's active run."""
        with self._lock:
            if experiment_id not in self._experiments:
                raise NotFoundError(
                    f"memory MLOps store: experiment id {experiment_id!r} does not exist."
                    " Create it with create_experiment(name) first."
                )
            run_id = uuid.uuid4().hex
            record = RunRecord(
                run_id=run_id,
                experiment_id=experiment_id,
                status="RUNNING",
                start_time=_now_ms(),
                run_name=run_name or run_id[:8],
                tags=dict(tags or {}),
                artifact_uri=f"memory://{self.name}/{run_id}/artifacts",
            )
            # Runs started in the same millisecond still sort newest first by insertion.
            self._runs[run_id] = _Run(record)
        self._active.run_id = run_id
        return run_id

    def log_artifact(
        self, path: str, artifact_path: str | None = None, *, run_id: str | None = None
    ) -> None:
        """Copy a local file into the run's artifacts."""
        run = self._run(run_id or self._active_run_id())
        name = Path(path).name
        key = f"{artifact_path.strip('/')}/{name}" if artifact_path else name
        with self._lock:
            run.artifacts[key] = Path(path).read_bytes()

    def get_run(self, run_id: str) -> RunRecord:
        """Return the run's record."""
        return self._run(run_id).record

    def get_experiment_by_name(self, name: str) -> ExperimentRecord | None:
        """Return the experiment named ``name`` or ``None``."""
        with self._lock:
            for record in self._experiments.values():
                if record.name == name:
                    return record
        return None

    # -- what the hub needs ---------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: MetricsArg | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        """Record metrics (with history), params and tags.

        As in MLflow, a param cannot change once logged, and a metric's current value is the
        one at the highest step (then the latest timestamp).
        """
        run = self._run(run_id)
        now = _now_ms()
        points = [replace(p, timestamp=p.timestamp or now) for p in as_metrics(metrics, step)]
        new_params = {str(k): str(v) for k, v in (params or {}).items()}
        with self._lock:
            record = run.record
            for key, value in new_params.items():
                if record.params.get(key, value) != value:
                    raise DataError(
                        f"run {run_id}: param {key!r} is already {record.params[key]!r}; params"
                        f" cannot change (got {value!r}). Log a metric, or start a new run."
                    )
            for point in points:
                run.history.setdefault(point.key, []).append(point)
                best = run.latest.get(point.key)
                if best is None or (point.step, point.timestamp) >= (best.step, best.timestamp):
                    run.latest[point.key] = point
            run.record = replace(
                record,
                params={**record.params, **new_params},
                metrics={key: point.value for key, point in run.latest.items()},
                tags={**record.tags, **{k: str(v) for k, v in (tags or {}).items()}},
            )

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Return every logged point of a metric (for tests and notebooks)."""
        with self._lock:
            return list(self._run(run_id).history.get(key, []))

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """End the run with ``status``."""
        run = self._run(run_id)
        with self._lock:
            run.record = replace(run.record, status=status, end_time=_now_ms())

    def kill_run(self, run_id: str) -> None:
        """End the run as ``KILLED``."""
        self.end_run(run_id, "KILLED")

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Copy every file under ``local_dir`` into the run's artifacts."""
        run = self._run(run_id)
        root = Path(local_dir)
        prefix = artifact_path.strip("/") + "/" if artifact_path else ""
        with self._lock:
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                run.artifacts[prefix + file.relative_to(root).as_posix()] = file.read_bytes()

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """List artifact files under ``path``."""
        run = self._run(run_id)
        prefix = path.strip("/") + "/" if path else ""
        with self._lock:
            return sorted(k for k in run.artifacts if k.startswith(prefix) or k == path)

    def download_artifacts(self, run_id: str, artifact_path: str, dst_dir: str) -> str:
        """Write an artifact file or folder into ``dst_dir`` and return its local path."""
        run = self._run(run_id)
        wanted = artifact_path.strip("/")
        with self._lock:
            files = {
                k: v for k, v in run.artifacts.items() if k == wanted or k.startswith(wanted + "/")
            }
        if not files:
            raise NotFoundError(
                f"run {run_id}: no artifact {artifact_path!r}. It was not saved with this run;"
                " list what exists with list_artifacts(run_id)."
            )
        for key, data in files.items():
            target = Path(dst_dir, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return os.path.join(dst_dir, wanted)

    def search_runs(
        self,
        experiment_id: str,
        max_results: int = 100,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> list[RunRecord]:
        """Return the experiment's runs (those with every tag in ``tags``), newest first."""
        wanted = dict(tags or {})
        with self._lock:
            runs = [
                r.record
                for r in self._runs.values()
                if r.record.experiment_id == experiment_id
                and all(r.record.tags.get(k) == v for k, v in wanted.items())
            ]
        return list(reversed(runs))[:max_results]

    def register_model(self, name: str, run_id: str, artifact_path: str) -> ModelVersion:
        """Add a version of model ``name`` pointing at the run's artifact folder."""
        run = self._run(run_id)
        with self._lock:
            versions = self._versions.setdefault(name, [])
            version = ModelVersion(
                name=name,
                version=len(versions) + 1,
                run_id=run_id,
                source=f"{run.record.artifact_uri}/{artifact_path.strip('/')}",
                creation_time=_now_ms(),
            )
            versions.append(version)
            return version

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        with self._lock:
            self._version(name, version)
            self._aliases.setdefault(name, {})[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` if set."""
        with self._lock:
            self._aliases.get(name, {}).pop(alias, None)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` points at."""
        with self._lock:
            number = self._aliases.get(name, {}).get(alias)
            return None if number is None else self._version(name, number)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Return the model's versions, newest first."""
        with self._lock:
            return [self._version(name, v.version) for v in reversed(self._versions.get(name, []))]

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Tag a model version."""
        with self._lock:
            current = self._version(name, version)
            versions = self._versions[name]
            versions[version - 1] = replace(current, tags={**current.tags, key: value}, aliases=())

    # -- internals ------------------------------------------------------------------------
    def _active_run_id(self) -> str:
        run_id: str | None = getattr(self._active, "run_id", None)
        if run_id is None:
            raise NotFoundError(
                "memory MLOps store: no active run in this thread. Call start_run() first"
                " or pass run_id=."
            )
        return run_id

    def _run(self, run_id: str) -> _Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(
                f"run {run_id}: no such run in the memory MLOps store. Check the run id"
                " (list runs with search_runs(experiment_id))."
            )
        return run

    def _version(self, name: str, version: int) -> ModelVersion:
        versions = self._versions.get(name, [])
        if not 1 <= version <= len(versions):
            raise NotFoundError(
                f"model {name!r}: no version {version}. Known versions:"
                f" {[v.version for v in versions] or 'none'}."
            )
        aliases = tuple(sorted(a for a, v in self._aliases.get(name, {}).items() if v == version))
        return replace(versions[version - 1], aliases=aliases)


@dataclass
class _Queue:
    ready: deque[Message] = field(default_factory=deque)


class InMemoryDataStreamPlugin:
    """Queues held in memory with the broker's semantics: ack after handling, dead letters.

    Configuration: ``max_message_bytes`` (default 16 MiB): a larger body is dead-lettered
    unread. ``publish`` creates the queue if needed, as a default exchange would drop the
    message otherwise; here nothing is ever dropped.
    """

    plugin_type = "datastream"

    def __init__(self, name: str = "memory", *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.name = name
        self.max_message_bytes = max_message_bytes
        self._queues: dict[str, _Queue] = {}
        self._cond = threading.Condition()
        self._connected = False
        self._generation = 0

    # -- lifecycle ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Connect."""
        self.connect()

    def shutdown(self) -> None:
        """Disconnect; queued messages stay."""
        self.disconnect()

    def health_check(self) -> HealthReport:
        """Report connection state and queue count."""
        with self._cond:
            if not self._connected:
                return False, {"status": "disconnected", "message": "call connect() first"}
            return True, {"status": "connected", "queues": len(self._queues)}

    # -- the spec's methods ---------------------------------------------------------------
    def connect(self, **kwargs: Any) -> None:
        """Mark the plugin connected."""
        with self._cond:
            self._connected = True

    def disconnect(self) -> None:
        """Stop every consumer."""
        with self._cond:
            self._connected = False
            self._generation += 1
            self._cond.notify_all()

    def create_queue(self, queue_name: str) -> None:
        """Create the queue and its dead-letter queue."""
        with self._cond:
            self._queue(queue_name)
            self._queue(dead_letter_queue(queue_name))

    def pull_data(self, queue: str) -> str:
        """Take one message body, or ``""`` when the queue is empty."""
        with self._cond:
            self._require_connected()
            ready = self._queue(queue).ready
            if not ready:
                return ""
            message = ready.popleft()
            dead = dead_letter_queue(queue)
            too_big = oversize_reason(message, self.max_message_bytes)
            if too_big:
                headers = {**message.headers, REASON_HEADER: too_big}
                self._queue(dead).ready.append(replace(message, headers=headers, queue=dead))
                raise DataError(f"memory datastream: queue {queue!r}: {too_big}")
            try:
                return message.text()
            except UnicodeDecodeError as exc:
                reason = f"UnicodeDecodeError: {exc}"
                headers = {**message.headers, REASON_HEADER: reason}
                self._queue(dead).ready.append(replace(message, headers=headers, queue=dead))
                raise DataError(
                    f"memory datastream: queue {queue!r}: message {message.message_id} is not"
                    f" UTF-8 text; it was moved to {dead!r}. Use consume() to receive bytes."
                ) from exc

    def flush_queue(self, queue: str) -> int:
        """Drop the queue's ready messages and return how many."""
        with self._cond:
            ready = self._queue(queue).ready
            count = len(ready)
            ready.clear()
            return count

    # -- what the hub needs ---------------------------------------------------------------
    def publish(
        self,
        queue: str,
        body: bytes | str,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Append a message to the queue and return its id."""
        return self.publish_batch(
            queue, [OutgoingMessage(body, headers, message_id, content_type)]
        )[0]

    def publish_batch(
        self, queue: str, messages: Iterable[OutgoingMessage | bytes | str]
    ) -> list[str]:
        """Append many messages and return their ids."""
        ids: list[str] = []
        with self._cond:
            self._require_connected()
            ready = self._queue(queue).ready
            for item in messages:
                out = item if isinstance(item, OutgoingMessage) else OutgoingMessage(item)
                message_id = out.message_id or uuid.uuid4().hex
                body = out.body.encode("utf-8") if isinstance(out.body, str) else bytes(out.body)
                ready.append(
                    Message(
                        body, dict(out.headers or {}), message_id, False, out.content_type, queue
                    )
                )
                ids.append(message_id)
            self._cond.notify_all()
        return ids

    def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Call ``handler`` per message until ``disconnect()`` or ``stop``."""
        self.consume_batch(queue, one_at_a_time(handler), batch_size=1, stop=stop)

    def consume_batch(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        batch_size: int = 100,
        max_wait: float = 0.5,
        prefetch: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Hand micro-batches to ``handler`` until ``disconnect()`` or ``stop``."""
        with self._cond:
            self._require_connected()
            generation = self._generation
        while True:
            batch = self._take(queue, batch_size, max_wait, generation, stop)
            if batch is None:
                return
            if not batch:
                continue
            try:
                outcome = settle(handler, batch, max_bytes=self.max_message_bytes)
            except BaseException:  # the consumer "died": the batch comes back redelivered
                crashed = Settlement(requeue=tuple(range(len(batch))))
                self._settle(queue, batch, crashed, pause=False)
                raise
            self._settle(queue, batch, outcome)

    def queue_depth(self, queue: str) -> int:
        """Return the number of ready messages."""
        with self._cond:
            found = self._queues.get(queue)
            return len(found.ready) if found else 0

    # -- internals ------------------------------------------------------------------------
    def _queue(self, name: str) -> _Queue:
        return self._queues.setdefault(name, _Queue())

    def _require_connected(self) -> None:
        if not self._connected:
            raise ServiceUnavailableError(
                f"memory datastream {self.name!r}: not connected. Call connect() or register"
                " the plugin with a hub first."
            )

    def _take(
        self,
        queue: str,
        batch_size: int,
        max_wait: float,
        generation: int,
        stop: threading.Event | None,
    ) -> list[Message] | None:
        """Take up to ``batch_size`` messages; ``None`` once consumption must stop."""
        batch: list[Message] = []
        deadline: float | None = None
        with self._cond:
            while True:
                if self._generation != generation or (stop is not None and stop.is_set()):
                    self._queue(queue).ready.extendleft(reversed(batch))
                    return None
                ready = self._queue(queue).ready
                while ready and len(batch) < batch_size:
                    batch.append(ready.popleft())
                if len(batch) >= batch_size:
                    return batch
                if batch and deadline is None:
                    deadline = time.monotonic() + max_wait
                remaining = 0.05 if deadline is None else deadline - time.monotonic()
                if batch and remaining <= 0:
                    return batch
                self._cond.wait(timeout=min(max(remaining, 0.0), 0.05))

    def _settle(
        self, queue: str, batch: Sequence[Message], outcome: Settlement, *, pause: bool = True
    ) -> None:
        with self._cond:
            ready = self._queue(queue).ready
            for index in reversed(outcome.requeue):
                ready.appendleft(replace(batch[index], redelivered=True))
            dead = self._queue(dead_letter_queue(queue)).ready
            for index, reason in outcome.dead.items():
                message = batch[index]
                headers = {**message.headers, REASON_HEADER: reason}
                dead.append(replace(message, headers=headers, queue=dead_letter_queue(queue)))
            self._cond.notify_all()
        if outcome.requeue and pause:
            time.sleep(0.1)  # the service was down: give it a moment before the redelivery
