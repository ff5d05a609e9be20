"""Where one training job's time goes, stage by stage (issue 13).

Trains one ``fault_detection/pca`` experiment on 500 x 5 rows ``--jobs`` times in a row on the
embedded defaults (``ExperimentHub.from_config()`` with no config: MLflow on SQLite, the local
datastream; ``$OBSERVML_HOME`` a temporary folder), each job in the background as ``hub.train``
runs it (a warm child process fits), and prints the median of each stage of one job, in
milliseconds and as a ratio to the unit of the issue's goal: the bare ``PCA.fit`` on the same
rows plus one store round trip (``get_experiment_by_name``), both measured in the same run.

The stages come from wrapping, in this process only, the functions a job goes through:

- ``child``: :func:`~observml.runtime.jobs.run_isolated`, split into what the child reports it
  spent (``fit``, ``reports`` (plotly figures), ``state+files`` (model parts, config, metrics),
  ``sign``) and the rest, the ``hand-off`` (sending the rows, the class and the fitted
  experiment across, waking the child);
- every MLOps store call, by method name and count, under the stage it was made in: opening
  and ending the run, ``save`` (:func:`~observml.store.experiments.save_experiment`: metrics,
  artifacts, model version), ``aliases`` (``champion``/``previous``) and ``decision`` (the
  ``trained`` decision: run tags, version tag, decision run);
- ``other``: the job's wall time that none of the above covers (status updates, temporary
  folders, the thread hop).

Usage::

    python bench/train_cost.py [--jobs 30] [--warm 3] [--profile FILE]

The run ends with the **floor**: the same fit tracked the least way MLflow allows, straight
through ``MlflowClient`` on the same store (``create_run`` with its tags, the fit, one
``log_batch`` of metrics and params, one ``log_artifact`` of the pickled model,
``create_model_version``, ``set_registered_model_alias``, ``set_terminated``: a run, a
registered version and a serving alias, as DESIGN's data flow requires of a training, and
nothing else), and one job as a ratio to it.

``--profile FILE`` also writes a cProfile of the hub side of the measured jobs (read it with
``python -m pstats FILE``); the stages above were found that way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from scale import baseline, frame  # the sibling script bench/scale.py: the same rows and units

_STAGE = threading.local()


def timed_fit_and_save(
    cls: Any, name: str, config: Any, data: Any, folder: str, signer: Any
) -> Any:
    """``fit_and_save`` as the training child runs it, with the child's own stage timings.

    Defined in ``__main__``, so it travels to the child by value; the timings ride back on the
    experiment (an attribute that is not fitted state, set after the folder was written).
    """
    from observml.runtime.training import fit_experiment
    from observml.store.folders import save_folder

    spent: dict[str, float] = {}
    start = time.perf_counter()
    experiment = fit_experiment(cls, name, config, data)
    spent["fit"] = time.perf_counter() - start

    def measured(key: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - began

        return call

    class TimedSigner:  # the signer is frozen: time its ``sign`` through a stand-in
        sign = staticmethod(measured("sign", signer.sign))

    experiment.reports = measured("reports", experiment.reports)
    began = time.perf_counter()
    save_folder(experiment, folder, signer=TimedSigner())  # type: ignore[arg-type]
    saved = time.perf_counter() - began
    del experiment.reports
    spent["state+files"] = saved - spent.get("reports", 0.0) - spent.get("sign", 0.0)
    spent["total"] = time.perf_counter() - start
    experiment._bench_child = spent
    return experiment


@contextmanager
def stage(name: str) -> Iterator[None]:
    outer = getattr(_STAGE, "name", "run")
    _STAGE.name = name
    try:
        yield
    finally:
        _STAGE.name = outer


class Recorder:
    """Per-job stage times and store calls, filled by the wrappers :meth:`install` sets."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, float]] = []
        self.calls: list[dict[str, int]] = []
        self._now: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, key: str, seconds: float, count: int = 0) -> None:
        with self._lock:
            self._now[key] += seconds
            if count:
                self._counts[key] += count

    def close_job(self, wall: float) -> None:
        with self._lock:
            job = dict(self._now)
            covered = sum(job.values())
            job["other"] = wall - covered
            job["wall"] = wall
            self.jobs.append(job)
            self.calls.append(dict(self._counts))
            self._now, self._counts = defaultdict(float), defaultdict(int)

    def install(self, hub: Any) -> None:
        """Wrap the store plugin's methods and the job's stage functions (this process only)."""
        import observml.retraining.context as context
        import observml.retraining.reviews as reviews
        import observml.runtime.training as training

        mlops = hub.get_plugin("mlops")
        for method in (
            "create_experiment start_run end_run log_batch log_artifacts register_model"
            " set_version_tag set_alias delete_alias get_version_by_alias get_run list_versions"
            " search_runs get_experiment_by_name"
        ).split():
            setattr(mlops, method, self._store_call(method, getattr(mlops, method)))

        real_isolated = training.run_isolated

        def run_isolated(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            experiment = real_isolated(*args, **kwargs)
            took = time.perf_counter() - began
            child = experiment.__dict__.pop("_bench_child", {})
            for key in ("fit", "reports", "state+files", "sign"):
                self.add(f"child: {key}", child.get(key, 0.0))
            self.add("child: hand-off", took - child.get("total", 0.0))
            return experiment

        training.run_isolated = run_isolated
        training.fit_and_save = timed_fit_and_save
        training.save_experiment = self._stage("save", training.save_experiment)
        reviews.promote = self._stage("aliases", reviews.promote)
        context.log_decision = self._stage("decision", context.log_decision)

    def _store_call(self, method: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                where = getattr(_STAGE, "name", "run")
                self.add(f"{where}: {method}", time.perf_counter() - began, 1)

        return call

    def _stage(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            before = self._store_time(name)
            began = time.perf_counter()
            with stage(name):
                try:
                    return func(*args, **kwargs)
                finally:  # the stage's own time outside its store calls (counted apiece)
                    took = time.perf_counter() - began
                    self.add(f"{name}: (not store)", took - (self._store_time(name) - before))

        return call

    def _store_time(self, name: str) -> float:
        with self._lock:
            return sum(
                v
                for k, v in self._now.items()
                if k.startswith(f"{name}: ") and k != f"{name}: (not store)"
            )


def floor(hub: Any, rounds: int = 15) -> float:
    """Median seconds of the least MLflow-tracked training of the same fit (module docstring)."""
    import pickle

    from sklearn.decomposition import PCA

    client = hub.get_plugin("mlops")._require_client()  # the plugin's MlflowClient: same store
    experiment_id = client.create_experiment("floor")
    client.create_registered_model("floor")
    data = frame(0).to_numpy()
    took = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            began = time.perf_counter()
            run = client.create_run(experiment_id, tags={"observml.kind": "floor"})
            model = PCA().fit(data)
            path = Path(folder, "model.pkl")
            path.write_bytes(pickle.dumps(model))
            metrics = [Metric("explained", float(model.explained_variance_ratio_[0]), 0, 0)]
            client.log_batch(run.info.run_id, metrics=metrics, params=[Param("model", "pca")])
            client.log_artifact(run.info.run_id, str(path), "model")
            version = client.create_model_version(
                "floor", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
            )
            client.set_registered_model_alias("floor", "champion", version.version)
            client.set_terminated(run.info.run_id)
            took.append(time.perf_counter() - began)
    return statistics.median(took)


def report(recorder: Recorder, fit: float, trip: float) -> str:
    unit = fit + trip
    keys = sorted({k for job in recorder.jobs for k in job} - {"wall", "other"})
    lines = [
        f"bare PCA.fit {fit * 1000:.2f} ms + store round trip {trip * 1000:.2f} ms"
        f" = {unit * 1000:.2f} ms (the unit)",
        f"{len(recorder.jobs)} jobs; medians per job:",
        f"  {'stage':42} {'calls':>5} {'ms':>8} {'÷ unit':>7}",
    ]
    total_calls = 0
    for key in keys:
        values = [job.get(key, 0.0) for job in recorder.jobs]
        counts = [calls.get(key, 0) for calls in recorder.calls]
        median, calls = statistics.median(values), statistics.median(counts)
        total_calls += int(calls)
        shown = f"{calls:>5.0f}" if calls else f"{'':>5}"
        lines.append(f"  {key:42} {shown} {median * 1000:>8.1f} {median / unit:>7.1f}")
    for key in ("other", "wall"):
        median = statistics.median(job[key] for job in recorder.jobs)
        label = "one job (wall, started -> finished)" if key == "wall" else key
        lines.append(f"  {label:42} {'':>5} {median * 1000:>8.1f} {median / unit:>7.1f}")
    lines.append(f"  store calls per job: {total_calls}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30, help="measured jobs")
    parser.add_argument("--warm", type=int, default=3, help="jobs run first, not measured")
    parser.add_argument("--profile", help="write a cProfile of the hub side here")
    args = parser.parse_args()
    os.environ["OBSERVML_HOME"] = tempfile.mkdtemp(prefix="observml-train-cost-")
    from observml import ExperimentHub

    data = frame(1)
    recorder = Recorder()
    with ExperimentHub.from_config() as hub:
        hub.create_experiment("cost", "fault_detection", {"create_model": {"model": "pca"}})
        for _ in range(args.warm):  # the warm child, MLflow's client and the registered model
            hub.train("cost", data=data).wait()
        recorder.install(hub)
        profiler = None
        if args.profile:
            import cProfile

            import observml.runtime.training as training

            profiler = cProfile.Profile()
            inner = training.run_training

            def profiled(*a: Any, **k: Any) -> Any:
                assert profiler is not None
                profiler.enable()
                try:
                    return inner(*a, **k)
                finally:
                    profiler.disable()

            training.run_training = profiled
        for _ in range(args.jobs):
            status = hub.train("cost", data=data).wait()
            if status.state != "succeeded":
                raise SystemExit(f"job {status.state}: {status.error}")
            assert status.started_at is not None
            assert status.finished_at is not None
            recorder.close_job(status.finished_at - status.started_at)
        fit, trip = baseline(hub, "cost")
        least = floor(hub)
        if profiler is not None:
            profiler.dump_stats(args.profile)
    print(report(recorder, fit, trip))
    wall = statistics.median(job["wall"] for job in recorder.jobs)
    print(
        f"floor (the fit tracked the least way MLflow allows, 7 client calls): {least * 1000:.1f}"
        f" ms = {least / (fit + trip):.1f} units; one job ÷ floor: {wall / least:.2f}"
    )
    print(f"(OBSERVML_HOME was {Path(os.environ['OBSERVML_HOME'])})")


if __name__ == "__main__":
    main()
