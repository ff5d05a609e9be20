"""``observml send``: publish the rows of a file to a queue on the configured datastream.

It talks to the datastream plugin alone (no hub, no MLOps store), so it works against the
broker or local queue a streaming hub reads from, whether or not that hub is running.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import pandas as pd

from observml.cli.files import read_rows
from observml.cli.options import hub_config_option
from observml.errors import PluginNotConfiguredError

__all__ = ["encode_rows", "open_datastream", "send_command"]


@click.command("send")
@click.argument("queue")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--rows-per-message",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Rows in each message.",
)
@click.option(
    "--format",
    "orient",
    type=click.Choice(["records", "split"]),
    default="records",
    show_default=True,
    help="JSON layout of a message: a list of row objects, or pandas' split object.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Messages published (and confirmed) per call.",
)
@hub_config_option("--config", "--hub-config")
def send_command(
    queue: str,
    file: str,
    rows_per_message: int,
    orient: str,
    batch_size: int,
    hub_config: str | None,
) -> None:
    """Publish the rows of FILE to QUEUE (e.g. pump.predict) on the configured datastream."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from observml.plugins.datastream import OutgoingMessage

    frame = read_rows(file)
    bodies = encode_rows(frame, rows_per_message, orient)
    with open_datastream(hub_config) as stream:
        stream.create_queue(queue)
        started = time.perf_counter()
        columns = (TextColumn(f"sending to {queue}"), BarColumn(), MofNCompleteColumn())
        with Progress(
            *columns, TimeElapsedColumn(), console=Console(stderr=True), transient=False
        ) as progress:
            task = progress.add_task("send", total=len(bodies))
            for chunk in _chunks(bodies, batch_size):
                messages = [OutgoingMessage(b, content_type="application/json") for b in chunk]
                stream.publish_batch(queue, messages)
                progress.advance(task, len(chunk))
        took = max(time.perf_counter() - started, 1e-9)
    click.echo(
        f"sent {len(bodies):,} messages ({len(frame):,} rows) to {queue} in {took:.2f} s:"
        f" {len(bodies) / took:,.0f} msg/s."
    )


def encode_rows(frame: pd.DataFrame, rows_per_message: int, orient: str) -> list[str]:
    """Return one JSON body per ``rows_per_message`` rows (``records`` or ``split`` layout)."""
    bodies = []
    for start in range(0, len(frame), rows_per_message):
        chunk = frame.iloc[start : start + rows_per_message]
        if orient == "split":
            bodies.append(chunk.to_json(orient="split", date_format="iso", index=False))
        else:
            bodies.append(chunk.to_json(orient="records", date_format="iso"))
    return bodies


@contextmanager
def open_datastream(hub_config: str | None) -> Iterator[Any]:
    """Yield the configured datastream plugin alone (no MLOps store is started)."""
    from observml.config import load_config
    from observml.config.registry import build_plugin
    from observml.hub.plugin_host import PluginHost

    config = load_config(hub_config)
    section = config.plugins.get("datastream")
    if section is None or not section.enabled:
        raise PluginNotConfiguredError(
            "plugins.datastream: the hub config disables the datastream, so there is nothing to"
            " send to. Enable one under 'plugins.datastream'.",
            plugin_type="datastream",
        )
    with PluginHost(config=config) as host:
        host.register_plugin(build_plugin(host.registry, section))
        yield host.require_plugin("datastream")


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
