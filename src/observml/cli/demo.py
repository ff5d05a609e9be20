"""``observml demo``: run :func:`observml.demo.run_demo` and show it with rich."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:
    from rich.console import Console

    from observml.demo import DemoSummary
    from observml.runtime.jobs import Job

__all__ = ["demo_command"]

_PASSWORD_ENV: Final = "RABBITMQ_PASSWORD"


class RichReporter:
    """Numbered stages, notes and one progress bar per training job, on a rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.perf_counter()
        self.steps = 0

    def step(self, text: str) -> None:
        """Print a numbered stage with the time since the start."""
        self.steps += 1
        took = time.perf_counter() - self.started
        self.console.print(f"[bold cyan]{self.steps}.[/] [bold]{text}[/]  [dim]{took:.0f} s[/]")

    def note(self, text: str) -> None:
        """Print a detail line."""
        self.console.print(f"   {text}", highlight=False)

    def wait_jobs(self, jobs: Mapping[str, Job], timeout: float) -> None:
        """Show each job's progress and stage until all ended or ``timeout`` passed."""
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        deadline = time.monotonic() + timeout
        columns = (
            TextColumn("   {task.description:<12}"),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TextColumn("{task.fields[stage]}"),
        )
        with Progress(*columns, console=self.console) as progress:
            tasks = {n: progress.add_task(n, total=1.0, stage="queued") for n in jobs}
            while time.monotonic() < deadline:
                for name, job in jobs.items():
                    status = job.status
                    progress.update(tasks[name], completed=status.progress, stage=status.stage)
                if all(job.done for job in jobs.values()):
                    break
                time.sleep(0.1)


@click.command("demo")
@click.option("--quick", is_flag=True, help="Less data: a faster run (used by the tests).")
@click.option(
    "--rabbitmq",
    is_flag=True,
    help="Stream through RabbitMQ (--host/--port...) instead of the embedded local queue.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="RabbitMQ host.")
@click.option("--port", type=click.IntRange(1, 65535), default=5672, show_default=True)
@click.option("--username", default="guest", show_default=True, help="RabbitMQ user.")
@click.option(
    "--password",
    envvar=_PASSWORD_ENV,
    default="guest",
    show_default=False,
    help=f"RabbitMQ password (env {_PASSWORD_ENV}; default guest).",
)
@click.option("--virtual-host", default="/", show_default=True, help="RabbitMQ virtual host.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default="observml-demo-report.html",
    show_default=True,
    help="Where to write the HTML report.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=5),
    default=120.0,
    show_default=True,
    help="Seconds each stage (training, streaming, the retrain) may take.",
)
@click.option(
    "--job-isolation",
    type=click.Choice(["thread", "process"]),
    default="thread",
    show_default=True,
    help="Run training jobs in threads (fastest start) or child processes.",
)
def demo_command(
    quick: bool,
    rabbitmq: bool,
    host: str,
    port: int,
    username: str,
    password: str,
    virtual_host: str,
    report: str,
    timeout: float,
    job_isolation: str,
) -> None:
    """Run the whole job on generated plant data: train, stream, retrain, report.

    No servers are needed: MLflow and the queue live under ./.observml ($OBSERVML_HOME).
    One experiment per type is trained and new data streams through prediction. The pump's
    story shows retraining as a plant runs it: a new duty point raises an alert, is confirmed
    as normal and its challenger promoted from shadow; a failing bearing is rejected as a
    fault. An HTML report is written.
    """
    from rich.console import Console

    from observml.demo import DemoOptions, DemoSize, run_demo
    from observml.errors import AuthenticationError, PluginInitError

    if rabbitmq and password != os.environ.get(_PASSWORD_ENV, "guest"):
        os.environ[_PASSWORD_ENV] = password  # the demo's hub config reads it from there
    console = Console(highlight=False)
    if not console.is_terminal:  # logs and pipes: do not wrap the summary at 80 columns
        console.width = max(console.width, 150)
    options = DemoOptions(
        size=DemoSize.quick() if quick else DemoSize(),
        datastream="rabbitmq" if rabbitmq else "local",
        rabbitmq={
            "host": host,
            "port": port,
            "username": username,
            "virtual_host": virtual_host,
        },
        report=Path(report),
        timeout=timeout,
        job_isolation="process" if job_isolation == "process" else "thread",
    )
    try:
        summary = run_demo(options, RichReporter(console))
    except PluginInitError as exc:
        if isinstance(exc.__cause__, AuthenticationError):
            raise AuthenticationError(
                f"demo --rabbitmq: {exc.__cause__} The demo sets those keys from --username,"
                f" --password (or ${_PASSWORD_ENV}) and --virtual-host: pass the right ones."
            ) from exc
        raise
    show_summary(console, summary)


def show_summary(console: Console, summary: DemoSummary) -> None:
    """Print the summary table and where to look."""
    from rich import box
    from rich.table import Table

    from observml.demo.report import where_to_look

    table = Table(box=box.SIMPLE_HEAD, title="observml demo", title_justify="left")
    for column in ("experiment", "type", "model", "champion", "key metric", "predictions"):
        table.add_column(column, overflow="fold")
    table.add_column("retrains", justify="right")
    for o in summary.experiments:
        if o.skipped:
            table.add_row(
                o.name, o.experiment_type, o.model, "-", f"skipped: {o.skipped}", "-", "-"
            )
            continue
        table.add_row(
            o.name,
            o.experiment_type,
            o.model,
            f"v{o.champion_version}",
            o.metric,
            f"{o.predictions:,}",
            str(o.retrains),
        )
    console.print(table)
    if summary.story:
        console.print("[bold]Retraining: a person decides what is normal[/]")
        for step in summary.story:
            console.print(f"  [cyan]{step.step}[/]: {step.text}", highlight=False)
    console.print("[bold]Where to look[/]")
    for what, how in where_to_look(summary):
        console.print(f"  {what}:\n    [green]{how}[/]", highlight=False)
    console.print(f"Done in {summary.seconds:.0f} s.")
