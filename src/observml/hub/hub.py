"""ExperimentHub: experiments trained, served, retrained and versioned through the plugins.

Usage::

    with ExperimentHub.from_config() as hub:          # embedded defaults: no servers
        hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
        hub.train("pump", data=history).wait()
        hub.predict("pump", data=new_rows)
        hub.start_streaming("pump")                   # pump.predict -> pump.predictions

Each method checks its arguments and hands over: experiments to
:class:`~observml.hub.managed.ExperimentTable`, training to
:class:`~observml.runtime.training.TrainingJobs`, streaming to
:class:`~observml.runtime.streaming.StreamWorker`, on-demand queue reads to
:class:`~observml.runtime.batch.BatchPredictor`, retraining and people's decisions to
:class:`~observml.retraining.retrainer.Retrainer`, model files to :mod:`observml.store`.

Why this module is long: it is the spec's ``ExperimentHub``, the one class a Python user
calls. Its forty-odd public methods are a few lines each, and their docstrings are the Python
API reference (errors raised, what each argument does); splitting the class would scatter the
API a user reads in one place.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Self, cast

import pandas as pd

from observml.config import ExperimentInstanceSection, default_max_jobs, default_stream_workers
from observml.errors import (
    ConfigError,
    DataError,
    ExperimentNotFoundError,
    ModelNotTrainedError,
    NotFoundError,
    ObservMLError,
    TrainingInProgressError,
)
from observml.experiments.reports import pick_figure
from observml.hub.managed import ExperimentTable, ManagedExperiment
from observml.hub.plugin_host import PluginHost
from observml.io.queues import experiment_queues, is_input_queue, predict_queue, train_queue
from observml.io.rows import DataLike, to_frame
from observml.plugins.base import Plugin
from observml.plugins.browse import browse_queue
from observml.plugins.datastream import DataStreamPlugin, Message, dead_letter_queue
from observml.plugins.mlops import MLOpsPlugin, tracked_run
from observml.retraining.context import CLAIMED_ELSEWHERE, promote
from observml.retraining.decisions import CHAMPION, Decision
from observml.retraining.history import check_page, read_decisions, recent_decisions
from observml.retraining.retrainer import Retrainer
from observml.runtime.batch import BatchPredictor
from observml.runtime.champion_watch import ChampionWatch
from observml.runtime.claims import TrainingClaims
from observml.runtime.draining import drain, drain_training_rows, rows_to_retrain_on
from observml.runtime.jobs import IsolationSetting, Job
from observml.runtime.streaming import StreamWorker
from observml.runtime.training import TrainingJobs
from observml.store.cache import ModelCache
from observml.store.experiments import load_experiment_from_store, save_experiment
from observml.store.signing import ModelSigner

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from observml.experiments.base import Experiment

__all__ = ["ExperimentHub"]

logger = logging.getLogger(__name__)

#: Stored decisions a hub restoring an experiment starts its ``status()`` history with.
_RESTORED_DECISIONS = 50


class ExperimentHub(PluginHost):
    """Plugins plus the experiments that run through them.

    Args:
        config: The validated configuration (``from_config`` reads one from YAML).
        registry: Plugin and experiment-type table; by default built from ``config``.
        health_timeout: Seconds each plugin's ``health_check`` may take.
        job_isolation: Where each fit runs. ``"auto"`` (default): a job you wait for
            (``wait=True``) in this process, a background job in a fresh child process that
            ``stop_training`` kills and that never re-runs your script. ``"process"`` or
            ``"thread"``: always there. See :func:`observml.runtime.jobs.choose_isolation`.
        max_jobs: Training and retraining jobs that run at once; the rest wait ``queued``.
            Default ``global.max_jobs``, else the CPUs this process may use.
    """

    def __init__(
        self, *, job_isolation: str | None = None, max_jobs: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        isolation = job_isolation or self.config.global_.job_isolation
        if isolation not in ("auto", "process", "thread"):
            raise ConfigError(
                f"expected 'auto', 'process' or 'thread', got {isolation!r}. 'auto' runs a job"
                " you wait for in this process and a background job in a child process that"
                " stop_training can kill.",
                key="global.job_isolation",
            )
        self._experiments = ExperimentTable()
        self._streams: dict[str, StreamWorker] = {}
        self._champion_watch = ChampionWatch(self.config.streaming.champion_refresh, self._workers)
        #: Runs the batches of every subscribed stream; made by the first stream.
        self._stream_pool: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()
        self._signer: ModelSigner | None = None
        jobs_at_once = max_jobs or self.config.global_.max_jobs or default_max_jobs()
        if jobs_at_once < 1:
            raise ConfigError(
                f"expected 1 or more, got {jobs_at_once}: how many training jobs run at once.",
                key="global.max_jobs",
            )
        self._jobs = TrainingJobs(
            mlops=self._mlops,
            signer=lambda: self.model_signer,
            isolation=cast(IsolationSetting, isolation),
            max_jobs=jobs_at_once,
        )
        self._claims = TrainingClaims(self._datastream_or_none)
        self._retrainer = Retrainer(
            mlops=self._mlops,
            datastream=self._datastream_or_none,
            load_version=lambda name, version: self._load_version(name, version=version),
            start_job=self._jobs.start,
            holdout_fraction=self.config.streaming.holdout_fraction,
            claims=self._claims,
            catch_up=self._refresh_champion,
        )

    @property
    def job_isolation(self) -> IsolationSetting:
        """Where each fit runs: ``auto``, ``process`` or ``thread``."""
        return self._jobs.isolation

    @property
    def max_jobs(self) -> int:
        """How many training and retraining jobs run at once (``global.max_jobs``)."""
        return self._jobs.queue.max_jobs

    def job_queue(self) -> dict[str, Any]:
        """Return the job queue now: ``max_jobs``, ``running``, ``queued``, ``peak_running``."""
        return self._jobs.queue.snapshot()

    def register_plugin(self, plugin: Plugin) -> None:
        """Register ``plugin`` (see :meth:`PluginHost.register_plugin`).

        A plugin with ``expect_jobs(n)`` (the MLflow plugin) is told ``max_jobs`` first, so it
        sizes its connection pool for the jobs this hub runs at once.
        """
        expect_jobs = getattr(plugin, "expect_jobs", None)
        if callable(expect_jobs):
            expect_jobs(self.max_jobs)
        super().register_plugin(plugin)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        streaming: bool = True,
        start: bool = True,
    ) -> Self:
        """Build the hub, register its plugins and start the configured experiments.

        Experiments listed under ``experiments:`` with a ``type`` are created, their champion
        is restored from the MLOps store, and streaming resumes where ``streaming: true``.

        Args:
            path: The config file (see :func:`observml.config.hub_config.find_config_file`).
            streaming: ``False`` creates and restores the experiments without starting their
                streams (one-shot tools such as the CLI's ``train`` and ``predict``).
            start: ``False`` leaves the configured experiments for :meth:`start_configured`:
                a one-shot tool starts the one it works on, not every model the config lists
                (each would import its libraries and load its champion).
        """
        hub = super().from_config(path)
        try:
            for instance in hub.config.experiments:
                if instance.enabled and start:
                    hub._start_configured(instance, streaming=streaming)
        except BaseException:
            hub.shutdown()
            raise
        return hub

    def configured(self) -> list[str]:
        """The names of the enabled experiments the hub config lists, in its order."""
        return [i.name for i in self.config.experiments if i.enabled]

    def start_configured(self, name: str, *, streaming: bool = True) -> None:
        """Create the configured experiment ``name``, restore its champion, stream if set.

        What :meth:`from_config` does for each experiment it lists (see its ``start``).

        Raises:
            ExperimentNotFoundError: The hub config lists no enabled experiment ``name``.
        """
        found = [i for i in self.config.experiments if i.enabled and i.name == name]
        if not found:
            raise ExperimentNotFoundError(
                f"experiment {name!r} is not in the hub config (listed: "
                f"{', '.join(self.configured()) or 'none'})."
            )
        self._start_configured(found[0], streaming=streaming)

    def _start_configured(
        self, instance: ExperimentInstanceSection, *, streaming: bool = True
    ) -> None:
        self.create_experiment(instance.name, instance.type, instance.config)
        if self.get_plugin("mlops") is not None:
            try:
                self.load(instance.name)
            except (NotFoundError, ModelNotTrainedError):
                logger.info("%s: no champion in the store yet; train it first", instance.name)
        if instance.streaming and streaming:
            self.start_streaming(instance.name)

    def shutdown(self) -> None:
        """Stop streams and jobs, then shut every plugin down (reverse order)."""
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        self._champion_watch.stop()
        for worker in streams:
            worker.stop()
        with self._lock:
            pool, self._stream_pool = self._stream_pool, None
        if pool is not None:  # the streams settled their batches: nothing is left to run
            pool.shutdown(wait=False, cancel_futures=True)
        self._jobs.stop_all()
        super().shutdown()

    # -- experiments ----------------------------------------------------------------------
    def experiments(self) -> list[str]:
        """Return the names of the hub's experiments, sorted."""
        return self._experiments.names()

    def experiment_types(self) -> list[str]:
        """Return the experiment types the registry knows."""
        return self.registry.names("experiment")

    def create_experiment(
        self,
        name: str,
        experiment_type: str,
        config: Mapping[str, Any] | None = None,
        *,
        trusted: bool = True,
    ) -> dict[str, Any]:
        """Create an experiment of ``experiment_type`` (e.g. ``"fault_detection"``).

        The config is validated completely here (every model parameter against its
        signature and the library's own parameter constraints), not when training starts.

        Args:
            name: The experiment's name.
            experiment_type: A registered type; with ``trusted`` also ``package.module:Class``.
            config: The ``setup``/``eda``/``create_model``/``retrain`` mapping.
            trusted: The caller is the operator (Python, hub config, the local CLI). The REST
                API passes ``False``: a request may only name registered types.

        Raises:
            ExperimentExistsError: The name is taken.
            UnknownPluginError: No such experiment type; lists the known ones.
            ConfigError: The config does not fit the type (every problem listed).
        """
        self._experiments.check_name(name)
        self._experiments.ensure_free(name)
        managed = self._build(name, experiment_type, dict(config or {}), trusted=trusted)
        self._experiments.add(managed)
        stream = self._datastream_or_none()
        if stream is not None:
            for queue in experiment_queues(name):
                stream.create_queue(queue)
        return managed.status()

    def _build(
        self, name: str, experiment_type: str, config: dict[str, Any], *, trusted: bool
    ) -> ManagedExperiment:
        where = f"experiment {name!r}: type"
        spec = self.registry.spec("experiment", experiment_type, where=where, trusted=trusted)
        cls = self.registry.resolve("experiment", experiment_type, where=where, trusted=trusted)
        template = cls(name, config)
        template.validate_config()
        return ManagedExperiment(
            name,
            experiment_type,
            spec.target,
            template.config,  # an ObservML 1.0 config is kept in its translated form
            template,
            retrain_rows=self.config.streaming.retrain_rows,
        )

    def delete_experiment(self, name: str) -> None:
        """Stop streaming and training for ``name`` and forget it (the store keeps history)."""
        managed = self._get(name)
        self.stop_streaming(name)
        job = managed.active_job()
        if job is not None:
            job.stop()
        managed.clear()
        self._experiments.remove(name)

    def get_cfg(self, name: str) -> dict[str, Any]:
        """Return the experiment's config."""
        return dict(self._get(name).config)

    def status(self, name: str) -> dict[str, Any]:
        """Return the experiment's state, champion, jobs, metrics and retrain decisions."""
        managed = self._get(name)
        status = managed.status()
        worker = self._streams.get(name)
        status["stream_error"] = worker.error if worker else None
        return status

    # -- training -------------------------------------------------------------------------
    def train(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        data: DataLike | None = None,
        wait: bool = False,
    ) -> Job:
        """Start a training job; with ``data=None`` the rows come from ``<name>.train``.

        The trained model is logged to the MLOps plugin, registered as a new version and
        becomes ``champion``.

        Args:
            name: The experiment.
            config: A new config for the experiment (validated before anything starts).
            data: Training rows (DataFrame or JSON rows); ``None`` drains ``<name>.train``.
            wait: Block until the job ends.

        Raises:
            TrainingInProgressError: A job for this experiment is running.
            DataError: No data was given and the train queue is empty.
        """
        managed = self._get(name)
        managed.ensure_idle()
        if not self._claims.take(name):
            raise TrainingInProgressError(
                f"experiment {name!r}: {CLAIMED_ELSEWHERE}. Wait for that job to end (its status"
                " is in that hub), then try again."
            )
        try:
            return self._train(managed, config, data, wait=wait)
        except BaseException:
            self._claims.release(name)
            raise

    def _train(
        self,
        managed: ManagedExperiment,
        config: Mapping[str, Any] | None,
        data: DataLike | None,
        *,
        wait: bool,
    ) -> Job:
        name = managed.name
        if config is not None:
            # the type was accepted when the experiment was created; only the config is new
            replacement = self._build(name, managed.experiment_type, dict(config), trusted=True)
            with managed.lock:
                managed.config, managed.template = replacement.config, replacement.template
                managed.tracker = replacement.tracker
        if data is not None:
            frame = to_frame(data, fmt=managed.row_format, where=f"experiment {name!r} data")
            spool = None
        else:
            frame, spool = drain_training_rows(
                self._datastream(),
                train_queue(name),
                managed.row_format,
                spool_name=name,
                required=True,
            )
        reviews = self._retrainer.reviews
        job = self._jobs.start(
            managed,
            "train",
            frame,
            lambda managed, experiment, version, run_id: reviews.champion_trained(
                managed, experiment, version.version, run_id
            ),
            finally_=lambda: self._claims.release(name),
            on_success=spool,
            wait=wait,
        )
        if wait:
            job.wait()
        return job

    def retrain(
        self,
        name: str,
        *,
        data: DataLike | None = None,
        wait: bool = False,
        reason: str = "retrain requested",
    ) -> Job:
        """Train a challenger now; what happens to it follows ``retrain.promotion``.

        With ``approve`` (the default where the stream has no ground truth) the challenger runs
        in shadow until :meth:`promote` or :meth:`reject`; with ``auto`` it is promoted only if
        it passes the gate (see docs/hub.md). The rows are ``data``, else the streamed retrain
        window (``retrain.window_rows`` decides which of its rows), else the champion's training
        rows together with whatever waits in ``<name>.train``.

        Raises:
            TrainingInProgressError: A job for this experiment is running.
            DataError: Too few rows to train a challenger on; says why and what to do.
        """
        managed = self._get(name)
        managed.ensure_idle()
        # the slot first: rows drained from <name>.train must not go to a retrain refused after
        why_not = self._retrainer.context.take_slot(managed)
        if why_not is not None:
            raise TrainingInProgressError(
                f"experiment {name!r}: {why_not}. Wait for that job to end, then try again."
            )
        frame: pd.DataFrame | None
        spool = None
        try:
            if data is not None:
                frame = to_frame(data, fmt=managed.row_format, where=f"experiment {name!r} data")
            elif managed.recent_rows >= 10:
                frame = None  # the window, as retrain.window_rows selects it
            else:
                kept = managed.require_champion()[0].get_train_data()
                frame, spool = rows_to_retrain_on(
                    self._datastream_or_none(), name, managed.row_format, kept
                )
        except BaseException:
            self._retrainer.context.end_slot(managed, cooldown=False)
            raise
        job = self._retrainer.challengers.start(
            managed, reason=reason, data=frame, spool=spool, requested=True, wait=wait
        )
        assert job is not None  # a requested retrain raises instead of skipping
        return job

    # -- decisions by people ----------------------------------------------------------------
    def promote(
        self, name: str, version: int | None = None, *, reason: str = "", by: str = "a person"
    ) -> int:
        """Make the challenger in shadow (or model ``version``) the champion; return its version.

        The old champion keeps the alias ``previous`` (:meth:`rollback` goes back to it), the
        open alert is acknowledged, and the decision is recorded in ``status()`` and the store.

        Raises:
            NotFoundError: No challenger in shadow and no ``version``, or no such version.
        """
        return self._retrainer.reviews.promote(self._get(name), version, reason=reason, by=by)

    def reject(
        self, name: str, *, reason: str = "", as_fault: bool = False, by: str = "a person"
    ) -> dict[str, Any]:
        """Reject the challenger in shadow; the champion serves on, unchanged.

        With ``as_fault=True`` the rows the champion flagged in the window's alarm episodes are
        kept as a known fault: every later challenger must still flag them (the gate).

        Raises:
            NotFoundError: No challenger in shadow.
        """
        managed = self._get(name)
        return self._retrainer.reviews.reject(managed, reason=reason, as_fault=as_fault, by=by)

    def feedback(
        self,
        name: str,
        *,
        label: str,
        data: DataLike | None = None,
        start: Any = None,
        end: Any = None,
        reason: str = "",
        by: str = "a person",
    ) -> dict[str, Any]:
        """Say what rows are: ``label="fault"`` or ``"normal"`` (for fault isolation, a class).

        The rows are ``data``, else the streamed rows between ``start`` and ``end`` (times of
        ``setup.datetime_column`` where the rows carry it, else arrival times). Faults join the
        fault library every challenger must keep detecting, normal rows the normal reference and
        the rows a challenger may learn from; for fault isolation the rows become labelled
        training data. Kept in the MLOps store, so every hub process sees them. Acknowledges the
        open alert.

        Raises:
            DataError: A label that does not fit the type, no rows given or matched, or rows
                the champion cannot score (the gate scores every kept fault episode).
        """
        managed = self._get(name)
        where = f"experiment {name!r} feedback"
        rows = None if data is None else to_frame(data, fmt=managed.row_format, where=where)
        return self._retrainer.reviews.feedback(
            managed, label, rows=rows, start=start, end=end, reason=reason, by=by
        )

    def library(self, name: str) -> dict[str, Any]:
        """Return the experiment's fault library and normal reference (counts, newest entries)."""
        return self._retrainer.reviews.library_status(self._get(name))

    def shadow_figure(self, name: str) -> Figure:
        """Champion and challenger-in-shadow scores over the same rows, both limits drawn.

        Raises:
            NotFoundError: No challenger in shadow.
        """
        return self._retrainer.reviews.shadow_figure(self._get(name))

    def stop_training(self, name: str) -> bool:
        """Stop the running training job of ``name``; its MLflow run ends ``KILLED``.

        Returns:
            Whether a job was running.
        """
        job = self._get(name).active_job()
        if job is None:
            return False
        job.stop()
        job.wait(30)
        return True

    def get_job(self, job_id: str) -> Job:
        """Return a job by id.

        Raises:
            NotFoundError: No such job in this hub.
        """
        return self._jobs.get(job_id)

    # -- prediction -----------------------------------------------------------------------
    def predict(self, name: str, data: DataLike | None = None) -> pd.DataFrame:
        """Predict with the champion.

        With ``data``: return one result row per input row (nothing is published). With
        ``data=None``: drain ``<name>.predict``, publish one result message per input message to
        ``<name>.predictions``, ack, and return all results (with a ``message_id`` column).

        Raises:
            ModelNotTrainedError: No champion yet; says whether a training job is running.
            DataError: The rows do not fit the model (a missing column, a value it refuses).
        """
        managed = self._get(name)
        experiment, _ = managed.require_champion()
        if data is None:
            return self._predict_from_queue(managed)
        try:
            return experiment.predict(data)
        except ObservMLError:
            raise
        except Exception as exc:  # the model refused these rows: the rows are at fault
            raise DataError(
                f"experiment {name!r} predict data: the model cannot score these rows"
                f" ({type(exc).__name__}: {str(exc)[:300]}). Send finite numbers in the columns"
                " it was trained on."
            ) from exc

    def _predict_from_queue(self, managed: ManagedExperiment) -> pd.DataFrame:
        """Drain ``<name>.predict`` through the stream's own batch path; return every result."""
        managed.require_champion()  # no champion: say so now, not per batch
        stream = self._datastream()
        predict = BatchPredictor(managed, stream, after_batch=self._retrainer.after_batch)
        results: list[pd.DataFrame] = []

        def handle(batch: Sequence[Message]) -> dict[int, str]:
            outcome = predict(batch)
            if outcome.result is not None:
                results.append(outcome.result.assign(message_id=outcome.message_ids))
            return outcome.dead

        drain(stream, predict_queue(managed.name), handle)
        return pd.concat(results, ignore_index=True) if results else pd.DataFrame()

    # -- streaming ------------------------------------------------------------------------
    def start_streaming(self, name: str) -> None:
        """Consume ``<name>.predict`` in the background and publish to ``<name>.predictions``."""
        managed = self._get(name)
        with self._lock:
            if name in self._streams and self._streams[name].running:
                return
            worker = StreamWorker(
                managed,
                self._datastream(),
                self._mlops_or_none(),
                self.config.streaming,
                after_batch=self._retrainer.after_batch,
                refresh_champion=self._refresh_champion,
                pool=self._streams_pool(),
            )
            self._streams[name] = worker
        worker.start()
        self._champion_watch.start()

    def _streams_pool(self) -> ThreadPoolExecutor:
        """The pool that runs subscribed streams' batches (``streaming.workers`` threads)."""
        with self._lock:
            if self._stream_pool is None:
                self._stream_pool = ThreadPoolExecutor(
                    self.config.streaming.workers or default_stream_workers(),
                    thread_name_prefix="observml-stream",
                )
            return self._stream_pool

    def _workers(self) -> list[StreamWorker]:
        with self._lock:
            return list(self._streams.values())

    def stop_streaming(self, name: str) -> bool:
        """Stop streaming ``name``; return whether it was streaming."""
        with self._lock:
            worker = self._streams.pop(name, None)
        if worker is None:
            return False
        worker.stop()
        return True

    def _refresh_champion(self, managed: ManagedExperiment) -> None:
        """Pick up what another hub process decided: the aliases in the store are the truth."""
        mlops = self._mlops_or_none()
        if mlops is None or managed.active_job() is not None:
            return  # our own retrain is about to move them
        found = mlops.get_version_by_alias(managed.name, CHAMPION)
        if found is not None and found.version != managed.champion()[1]:
            experiment = self._load_version(managed.name, version=found.version)
            managed.swap(experiment, found.version)
            managed.record(Decision("restored", "champion moved in the MLOps store", found.version))
        self._retrainer.reviews.restore_shadow(managed)

    # -- persistence ----------------------------------------------------------------------
    def save(self, name: str) -> int:
        """Save the champion again as a new run and model version; return the version."""
        managed = self._get(name)
        experiment, _ = managed.require_champion()
        mlops = self._mlops()
        with tracked_run(
            mlops, mlops.create_experiment(name), run_name="save", tags={"observml.kind": "save"}
        ) as run_id:
            version = save_experiment(mlops, experiment, run_id=run_id, signer=self.model_signer)
        promote(mlops, managed, experiment, version.version)
        return version.version

    def load(
        self, name: str, run_id: str | None = None, *, version: int | None = None
    ) -> int | None:
        """Load the champion (or a run's or version's model) from the store and serve it.

        An experiment the hub does not have yet is created from the stored config.

        Returns:
            The model version now served (``None`` when loaded from a bare run id).

        Raises:
            NotFoundError: No such run, version or champion; names what was asked for.
        """
        mlops = self._mlops()
        if version is None and run_id is None:
            found = mlops.get_version_by_alias(name, CHAMPION)
            if found is None:
                raise NotFoundError(
                    f"experiment {name!r}: no champion in the MLOps store. Train it first."
                )
            version = found.version
        experiment = self._load_version(name, version=version, run_id=run_id)
        managed = self._experiments.find(name)
        if managed is None:
            self.create_experiment(name, experiment.experiment_type, experiment.config)
            managed = self._get(name)
        if not managed.decisions:  # a fresh process: the history it restarts with
            managed.seed_decisions(recent_decisions(mlops, name, _RESTORED_DECISIONS))
        managed.swap(experiment, version)
        managed.record(Decision("restored", f"loaded version {version or run_id}", version))
        if run_id is None:
            self._retrainer.reviews.restore_shadow(managed)
        return version

    def decisions(self, name: str, *, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        """Return the experiment's decisions, newest first, ``limit`` of them from ``offset``.

        They are read from the MLOps store, so they include what other hub processes and
        earlier runs of this one decided; without an MLOps plugin, this process's own.

        Raises:
            DataError: ``offset`` is negative, or ``limit`` is not 1 to 1000.
        """
        managed = self._get(name)
        check_page(offset, limit)
        if self._mlops_or_none() is None:
            own = [d.to_dict() for d in reversed(managed.decisions)]
            decisions, source = own[offset : offset + limit], "hub"
        else:
            stored = read_decisions(self._mlops(), name, offset=offset, limit=limit)
            decisions, source = [d.to_dict() for d in stored], "store"
        return {
            "name": name,
            "offset": offset,
            "limit": limit,
            "source": source,
            "decisions": decisions,
        }

    def rollback(self, name: str) -> int:
        """Serve the previous champion again and move ``champion`` back to it.

        Raises:
            NotFoundError: There is no previous version.
        """
        return self._retrainer.reviews.rollback(self._get(name))

    def runs(self, name: str, max_results: int = 50) -> list[dict[str, Any]]:
        """Return the experiment's MLOps runs, newest first."""
        mlops = self._mlops()
        record = mlops.get_experiment_by_name(name)
        if record is None:
            return []
        return [vars(r) for r in mlops.search_runs(record.experiment_id, max_results)]

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Return the experiment's model versions, newest first."""
        return [vars(v) for v in self._mlops().list_versions(name)]

    # -- reports and data -----------------------------------------------------------------
    def plot_names(self, name: str) -> list[str]:
        """Return the report names of the champion."""
        return self._get(name).require_champion()[0].plot_names()

    def plot(self, name: str, plot_name: str) -> Figure:
        """Return one report figure of the champion.

        Raises:
            NotFoundError: No report of that name; lists the names there are.
        """
        experiment = self._get(name).require_champion()[0]
        return pick_figure(experiment.reports(), plot_name, where=f"experiment {name!r}")

    def plot_eda(self, name: str, fig_name: str) -> Figure:
        """Return one EDA figure (``histogram_<col>``, ``correlation``) of the training data."""
        experiment = self._get(name).require_champion()[0]
        where = f"experiment {name!r}"
        return pick_figure(experiment.eda_reports(), fig_name, where=where, what="EDA figure")

    def eda_names(self, name: str) -> list[str]:
        """Return the EDA figure names :meth:`plot_eda` accepts for the champion."""
        return self._get(name).require_champion()[0].eda_names()

    def get_train_data(self, name: str) -> pd.DataFrame:
        """Return the champion's (kept) training rows."""
        return self._get(name).require_champion()[0].get_train_data()

    def browse(self, queue: str, limit: int = 10) -> list[dict[str, Any]]:
        """Return up to ``limit`` messages waiting in ``queue``, oldest first, leaving them there.

        Each is a dict: ``message_id``, ``body``, ``headers``, ``reason`` (of a dead letter).
        See :class:`~observml.plugins.browse.QueueBrowser` and docs/hub.md for each plugin.

        A queue the hub consumes (``NAME.train``, ``NAME.predict``) is refused: on RabbitMQ a
        look puts the messages back flagged redelivered, and a streaming hub counts that
        towards ``delivery_limit``, so a look could dead-letter good rows.

        Raises:
            DataError: ``queue`` is a queue the hub consumes.
            PluginError: The datastream plugin cannot browse queues.
        """
        if is_input_queue(queue):
            raise DataError(
                f"queue {queue!r}: the hub consumes it, and looking could count as a delivery"
                " (a streaming hub dead-letters a row delivered too often). Look at its results"
                f" ({queue.rsplit('.', 1)[0]}.predictions), or at its dead letters ({queue}.dead,"
                " `observml tail QUEUE --dead`); the broker's own tools show its depth."
            )
        return [m.to_dict() for m in browse_queue(self._datastream(), queue, limit)]

    def dead_letters(self, name: str, limit: int = 10) -> list[dict[str, Any]]:
        """Return up to ``limit`` of ``<name>.predict.dead``'s messages with their reasons."""
        self._get(name)
        return self.browse(dead_letter_queue(predict_queue(name)), limit)

    def flush(self, queue: str) -> int:
        """Purge ``queue`` and return how many messages were removed."""
        return self._datastream().flush_queue(queue)

    # -- model files ----------------------------------------------------------------------
    @property
    def model_signer(self) -> ModelSigner:
        """The key this hub signs and checks model folders with (see :mod:`observml.store.signing`).

        ``global.model_key``, else ``$OBSERVML_MODEL_KEY``, else ``$OBSERVML_HOME/model.key``
        (created on first use).
        """
        with self._lock:
            if self._signer is None:
                self._signer = ModelSigner.from_settings(self.config.global_.model_key)
            return self._signer

    def _load_version(
        self, name: str, *, version: int | None = None, run_id: str | None = None
    ) -> Experiment:
        """Load a stored model the way this hub trusts model files (its key, unsigned or not)."""
        return load_experiment_from_store(
            self._mlops(),
            name,
            version=version,
            run_id=run_id,
            registry=self.registry,
            signer=self.model_signer,
            trust_unsigned=self.config.global_.trust_unsigned_models,
            cache=ModelCache.default(),
        )

    # -- internals ------------------------------------------------------------------------
    def _get(self, name: str) -> ManagedExperiment:
        return self._experiments.get(name)

    def _mlops(self) -> MLOpsPlugin:
        return cast(MLOpsPlugin, self.require_plugin("mlops"))

    def _mlops_or_none(self) -> MLOpsPlugin | None:
        return cast(MLOpsPlugin | None, self.get_plugin("mlops"))

    def _datastream(self) -> DataStreamPlugin:
        return cast(DataStreamPlugin, self.require_plugin("datastream"))

    def _datastream_or_none(self) -> DataStreamPlugin | None:
        return cast(DataStreamPlugin | None, self.get_plugin("datastream"))
