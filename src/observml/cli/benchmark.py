"""``observml benchmark skab PATH``: experiment configs scored under SKAB's protocol.

Each config runs through an in-process hub (in-memory MLOps store) like a user's experiment;
see :mod:`observml.benchmarks.skab.protocol`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from observml.cli.options import json_option
from observml.cli.render import table

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["benchmark_group", "skab_command", "skab_table"]


@click.group("benchmark")
def benchmark_group() -> None:
    """Score experiment configs on public benchmarks under their published protocols."""


@benchmark_group.command("skab")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--config",
    "config_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A benchmark config (name/type/config, as an experiments: entry); repeatable."
    " Default: the configs docs/benchmarks.md reports.",
)
@json_option
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the plotly HTML report (per-file scores and traces) here.",
)
def skab_command(
    path: Path, config_files: Sequence[Path], as_json: bool, report: Path | None
) -> None:
    """Run configs on the SKAB data folder PATH (valve1/, valve2/, other/).

    Per labelled file: train on the first 400 rows, predict the rest; confusion counts are
    pooled over the 34 files. Prints each config beside the published leaderboard.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from observml.benchmarks.skab import default_configs, load_config, load_skab, run_config

    files = load_skab(path)
    configs = [load_config(p) for p in config_files] if config_files else default_configs()
    console = Console(stderr=True)
    results = []
    columns = (
        TextColumn("{task.description:<28}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("files"),
    )
    with Progress(*columns, console=console, transient=as_json) as progress:
        for config in configs:
            task = progress.add_task(config.name, total=len(files))
            results.append(run_config(files, config, _advance(progress, task)))
    if as_json:
        for result in results:
            click.echo(json.dumps(result.summary()))
    else:
        click.echo(skab_table([r.summary() for r in results]))
    if report is not None:
        from observml.benchmarks.skab.report import write_report

        written = write_report(report, results, f"SKAB benchmark: {len(files)} files")
        click.echo(f"report: {written}", err=as_json)


def _advance(progress: Progress, task: TaskID) -> Callable[[str, int, int], None]:
    """A progress callback moving ``task`` to the number of files done."""

    def update(_config: str, done: int, _total: int) -> None:
        progress.update(task, completed=done)

    return update


def skab_table(summaries: Sequence[dict[str, object]]) -> str:
    """The configs' rows then the published leaderboard's, as a plain-text table."""
    from observml.benchmarks.skab.leaderboard import LEADERBOARD

    rows = [
        [
            f"{s['config']} (observml)",
            f"{s['f1']:.3f}",
            f"{s['far']:.2f}",
            f"{s['mar']:.2f}",
            f"{s['nab']:.2f}",
            f"{s['seconds']:.1f}",
        ]
        for s in summaries
    ]
    rows += [
        [
            f"{r.method} (published)",
            f"{r.f1:.2f}",
            f"{r.far:.2f}",
            f"{r.mar:.2f}",
            "" if r.nab is None else f"{r.nab:.2f}",
            "",
        ]
        for r in LEADERBOARD
    ]
    return table(["method", "f1", "far %", "mar %", "nab", "seconds"], rows)
