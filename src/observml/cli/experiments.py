"""``observml train``, ``predict``, ``status``, ``retrain`` and ``rollback``.

``promote``, ``reject`` and ``feedback`` are in :mod:`observml.cli.decisions`; ``send``, which
talks to the datastream alone, is in :mod:`observml.cli.send`.

Each command runs in-process (a hub from the hub config) or against a running server with
``--url``; :func:`observml.cli.client.backend` picks which.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import click

from observml.cli.client import backend, json_rows
from observml.cli.decisions import field, retrain_lines, retraining_lines
from observml.cli.files import read_experiment_config, read_rows
from observml.cli.listing import (
    DEFAULT_LIMIT,
    ListRequest,
    list_output,
    paging_options,
    state_text,
    typed_options,
)
from observml.cli.options import hub_config_option, json_option, remote_options, timeout_option
from observml.cli.render import table
from observml.cli.send import send_command  # re-exported: it lived here before cli/send.py
from observml.config.legacy import config_type
from observml.errors import ExperimentError

__all__ = [
    "predict_command",
    "read_rows",
    "retrain_command",
    "rollback_command",
    "send_command",
    "status_command",
    "train_command",
]

_FINAL: Final = ("succeeded", "failed", "stopped")
_POLL_SECONDS: Final = 0.2


# -- progress ------------------------------------------------------------------------------
def watch_job(ops: Any, job_id: str, label: str, timeout: float) -> dict[str, Any]:
    """Show a progress bar (on stderr) until the job ends; return its final status.

    Raises:
        ExperimentError: The job failed, was stopped, or is still running after ``timeout``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(label, total=1.0, stage="queued")
        while True:
            status = ops.job(job_id)
            progress.update(task, completed=status["progress"], stage=status["stage"])
            if status["state"] in _FINAL:
                break
            if time.monotonic() > deadline:
                raise ExperimentError(
                    f"{label}: job {job_id} is still {status['state']} ({status['stage']}) after"
                    f" {timeout:g} s. Raise --timeout, or follow it with observml status."
                )
            time.sleep(_POLL_SECONDS)
    if status["state"] != "succeeded":
        why = status.get("error") or "stopped before it finished"
        kind = f"{status.get('error_type')}: " if status.get("error_type") else ""
        raise ExperimentError(f"{label}: job {job_id} {status['state']}: {kind}{why}")
    return dict(status)


# -- commands ------------------------------------------------------------------------------
@click.command("train")
@click.argument("name")
@click.option("--type", "experiment_type", default=None, help="Experiment type (new experiments).")
@click.option(
    "--experiment-config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Experiment config (YAML/JSON: setup, create_model, retrain, eda); not the hub config.",
)
@click.option(
    "--config",
    "old_config_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    hidden=True,
    help="Deprecated: the experiment config; use --experiment-config.",
)
@click.option(
    "--data",
    "data_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Training rows (CSV, JSON, JSON lines, Parquet); default: drain the queue NAME.train.",
)
@hub_config_option("--hub-config")
@remote_options
@timeout_option
@json_option
def train_command(
    name: str,
    experiment_type: str | None,
    config_file: str | None,
    old_config_file: str | None,
    data_file: str | None,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Train experiment NAME (created if new) and make the model its champion."""
    config_file = _experiment_config_file(config_file, old_config_file)
    config = read_experiment_config(config_file) if config_file else None
    if experiment_type is None and config is not None:
        experiment_type = config_type(config, source=config_file)
    data = read_rows(data_file) if data_file else None
    with backend(url, token, hub_config) as ops:
        train_config = ops.prepare_training(name, experiment_type, config)
        job_id = ops.start_train(name, train_config, data)
        status = watch_job(ops, job_id, f"training {name}", timeout)
    if as_json:
        click.echo(json.dumps(status, indent=2, default=str))
        return
    took = _took(status)
    click.echo(
        f"{name}: version {status['version']} is the champion (run {status['run_id']}{took})."
    )
    click.echo(f"  metrics: {_metrics_text(status.get('result', {}).get('metrics', {}))}")


def _experiment_config_file(new: str | None, old: str | None) -> str | None:
    """``train --config FILE``, the experiment config until observml 0.2: say so, then use it.

    Every other command reads ``--config`` as the hub config; ``train`` will too once the
    deprecated spelling is gone.
    """
    if old is None:
        return new
    if new is not None:
        raise click.UsageError(
            "give the experiment config once: --experiment-config FILE (--config is its"
            " deprecated spelling)."
        )
    click.echo(
        "observml train: --config FILE is deprecated for the experiment config; use"
        " --experiment-config FILE (--config will mean the hub config, as in every other"
        " command).",
        err=True,
    )
    return old


@click.command("predict")
@click.argument("name")
@click.option(
    "--data",
    "data_file",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="Rows to predict (CSV, JSON, JSON lines, Parquet).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show the first N rows.")
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
def predict_command(
    name: str,
    data_file: str,
    limit: int | None,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Predict the rows of a file with NAME's champion; one result row per input row."""
    data = read_rows(data_file)
    with backend(url, token, hub_config) as ops:
        result = ops.predict(name, data)
    shown = result.head(limit) if limit else result
    if as_json:
        click.echo(json.dumps(json_rows(shown), indent=2))
        return
    columns = [str(c) for c in shown.columns]
    rows = [
        [str(i), *(_cell(v) for v in values)]
        for i, values in enumerate(shown.itertuples(index=False))
    ]
    click.echo(table(("row", *columns), rows))
    more = f" (first {len(shown)} shown)" if len(shown) < len(result) else ""
    click.echo(f"{len(result)} rows predicted by {name}{more}.")


@click.command("status")
@click.argument("name", required=False)
@paging_options
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
@click.pass_context
def status_command(
    ctx: click.Context,
    name: str | None,
    limit: int | None,
    offset: int | None,
    state: str | None,
    experiment_type: str | None,
    match: str | None,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Show experiment NAME (champion, versions, decisions, runs), or a page of the experiments.

    Without NAME: a line counting the experiments by state, streaming, open alerts and
    challengers in shadow, then --limit of them from --offset, then the next page's command.
    """
    request = ListRequest(
        offset=offset or 0,
        limit=limit or DEFAULT_LIMIT,
        state=state,
        experiment_type=experiment_type,
        match=match,
        where=typed_options(ctx, ("hub_config", "--config"), ("url", "--url")),
    )
    if name and (limit is not None or offset is not None or request.filters):
        raise click.UsageError(
            "--limit, --offset, --state, --type and --match page the list of experiments;"
            f" leave them out to show {name!r}, or leave out NAME to list."
        )
    with backend(url, token, hub_config) as ops:
        if not name:
            click.echo(list_output(ops, request, as_json=as_json, url=url))
            return
        found = ops.status(name)
    click.echo(json.dumps(found, indent=2, default=str) if as_json else _describe(found))


@click.command("retrain")
@click.argument("name")
@click.option(
    "--data",
    "data_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Rows to retrain on; default: the champion's training rows plus the queue NAME.train.",
)
@hub_config_option("--config", "--hub-config")
@remote_options
@timeout_option
@json_option
def retrain_command(
    name: str,
    data_file: str | None,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Train a challenger for NAME; it waits in shadow for you (or the gate decides)."""
    data = read_rows(data_file) if data_file else None
    with backend(url, token, hub_config) as ops:
        job_id = ops.start_retrain(name, data)
        status = watch_job(ops, job_id, f"retraining {name}", timeout)
        champion = ops.champion_version(name)
    if as_json:
        click.echo(json.dumps(status, indent=2, default=str))
        return
    click.echo("\n".join(retrain_lines(name, status, champion)))


@click.command("rollback")
@click.argument("name")
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
def rollback_command(
    name: str, hub_config: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Serve NAME's previous champion again (the 'champion' alias moves back)."""
    with backend(url, token, hub_config) as ops:
        result = ops.rollback(name)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"{name}: version {result['version']} is the champion again"
        f" (was {_version(result.get('was'))})."
    )


# -- rendering -----------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    if hasattr(value, "item") and not isinstance(value, str):
        return _cell(value.item())
    return str(value)


def _metrics_text(metrics: Mapping[str, Any], limit: int = 10) -> str:
    items = [f"{k}={_cell(v)}" for k, v in sorted(metrics.items()) if v is not None]
    extra = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + extra or "none"


def _version(version: Any) -> str:
    return f"v{version}" if version is not None else "-"


def _took(status: Mapping[str, Any]) -> str:
    started, finished = status.get("started_at"), status.get("finished_at")
    return f", {finished - started:.1f} s" if started and finished else ""


def _describe(status: Mapping[str, Any]) -> str:
    counters = status.get("counters", {})
    versions = status.get("versions") or []
    aliases = {a: v["version"] for v in versions for a in v.get("aliases", ())}
    previous = status.get("previous_version") or aliases.get("previous")
    challenger = status.get("challenger_version") or aliases.get("challenger")
    lines = [
        f"{status['name']}: {status['type']}, model {status.get('model') or '-'},"
        f" {state_text(status)}",
        f"  champion:   {_version(status.get('champion_version'))}"
        f"  (previous {_version(previous)}, challenger {_version(challenger)})",
        f"  train:      {_metrics_text(status.get('train_metrics', {}))}",
    ]
    if status.get("streaming") or counters.get("predicted_rows"):
        lines.append(
            f"  streaming:  {'yes' if status.get('streaming') else 'no'};"
            f" {int(counters.get('predicted_rows', 0)):,} rows predicted,"
            f" {int(counters.get('dead_letters', 0)):,} dead letters,"
            f" {int(counters.get('retrains', 0))} retrains promoted"
        )
    dead = status.get("dead_letters") or {}
    if dead.get("summary"):
        lines.append(f"  dead:       {dead['summary']}")
        for letter in (dead.get("recent") or [])[:3]:
            lines.append(f"              {letter.get('message_id') or '-'}: {letter['reason']}")
        lines.append(
            f"              (observml tail {status['name']}.predict --dead shows them all)"
        )
    if status.get("metrics"):
        lines.append(f"  last batch: {_metrics_text(status['metrics'])}")
    drift = status.get("drift")
    if drift:
        lines.append(
            f"  drift:      {'drifted' if drift['drifted'] else 'steady'}, KS statistic"
            f" {drift['statistic']:.3f}, p-value {drift['p_value']:.3g}"
            f" ({drift['n_recent']} streamed vs {drift['n_reference']} {drift['reference']}"
            " scores)"
        )
    lines += retraining_lines(status)
    if versions:
        shown = [
            f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v.get("aliases") else "")
            for v in versions[:8]
        ]
        lines.append(f"  versions:   {', '.join(shown)}")
    decisions = [
        d for d in status.get("decisions", []) if d.get("kind") not in ("restored", "loaded")
    ]
    for decision in reversed(decisions[-5:]):  # newest first
        version = f" v{decision['version']}" if decision.get("version") else ""
        lines.append(field("decision", f"{decision['kind']}{version}: {decision['reason']}"))
    for run in (status.get("runs") or [])[:5]:
        kind = run.get("tags", {}).get("observml.kind", "")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["start_time"] / 1000))
        lines.append(
            f"  run:        {run['run_id']} {kind or run.get('run_name', '')}"
            f" {run['status']} {when}"
        )
    return "\n".join(lines)
