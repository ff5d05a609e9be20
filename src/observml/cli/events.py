"""``observml decisions`` and ``observml tail``: what the hub decided, and what waits in a queue.

``decisions NAME`` pages through the decision history kept in the MLOps store, newest first.
``tail QUEUE`` shows the oldest messages waiting in a queue without taking them (results in
``<name>.predictions`` and ``<name>.shadow``; with ``--dead``, the dead letters of
``<queue>.dead`` and why each was refused). Both work in-process and with ``--url``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final

import click

from observml.cli.client import backend
from observml.cli.options import hub_config_option, json_option, remote_options
from observml.plugins.datastream import DEAD_SUFFIX

__all__ = ["decision_line", "decisions_command", "message_line", "tail_command"]

#: Characters of a message body shown on one line (``--json`` shows all of it).
_BODY_CHARS: Final = 200


@click.command("decisions")
@click.argument("name")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Decisions to show.",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Newest decisions to skip (the next page: --offset 20).",
)
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
def decisions_command(
    name: str,
    limit: int,
    offset: int,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """NAME's retraining decisions, newest first, from the MLOps store.

    Alerts, fired retrains, trained challengers, promotions, rejections, rollbacks, failed
    retrains and feedback, by every hub process, also before the last restart.
    """
    with backend(url, token, hub_config) as ops:
        page = ops.decisions(name, offset, limit)
    if as_json:
        click.echo(json.dumps(page, indent=2, default=str))
        return
    found = page["decisions"]
    if not found:
        click.echo(f"{name}: no decisions" + (f" after the newest {offset}." if offset else "."))
        return
    for decision in found:
        click.echo(decision_line(decision))
    if len(found) == limit:
        click.echo(f"(older: observml decisions {name} --offset {offset + limit})")


def decision_line(decision: Mapping[str, Any]) -> str:
    """One decision: ``<time>  <kind> v<version>: <reason>``."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(decision.get("at", 0))))
    version = decision.get("version")
    shown = f" v{version}" if version is not None else ""
    return f"{when}  {decision.get('kind')}{shown}: {decision.get('reason')}"


@click.command("tail")
@click.argument("queue")
@click.option("--dead", is_flag=True, help="Read QUEUE's dead letters (QUEUE.dead).")
@click.option(
    "-n",
    "--lines",
    "limit",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Messages to show.",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Look again every --interval seconds and print messages not shown yet; Ctrl-C stops.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between looks with --follow.",
)
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
def tail_command(
    queue: str,
    dead: bool,
    limit: int,
    follow: bool,
    interval: float,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Show the oldest messages waiting in QUEUE without taking them.

    QUEUE is e.g. pump.predictions (results), pump.shadow (the challenger's results), or
    pump.predict with --dead (messages the hub refused, with the reason). Messages stay in the
    queue; on RabbitMQ they are put back flagged 'redelivered' (see docs/cli.md).
    """
    name = queue + DEAD_SUFFIX if dead and not queue.endswith(DEAD_SUFFIX) else queue
    shown: set[str] = set()
    with backend(url, token, hub_config) as ops:
        while True:
            found = ops.browse(name, limit)
            fresh = [m for m in found if _key(m) not in shown]
            for message in fresh:
                shown.add(_key(message))
                click.echo(json.dumps(message) if as_json else message_line(message))
            if not follow:
                if not found and not as_json:
                    click.echo(f"{name}: no messages waiting.", err=True)
                return
            try:
                time.sleep(interval)
            except KeyboardInterrupt:  # Ctrl-C ends --follow quietly
                return


def _key(message: Mapping[str, Any]) -> str:
    return str(message.get("message_id") or message.get("body"))


def message_line(message: Mapping[str, Any]) -> str:
    """One message: its id, the dead-letter reason if any, and the start of its body."""
    body = str(message.get("body", "")).replace("\n", " ")
    if len(body) > _BODY_CHARS:
        body = body[:_BODY_CHARS] + "..."
    reason = message.get("reason")
    head = f"{message.get('message_id') or '(no id)'}"
    return f"{head}  reason: {reason}\n    {body}" if reason else f"{head}  {body}"
