"""``observml status`` without NAME: a summary line, a page of the experiments, how to see more.

A hub may serve hundreds of experiments; the command prints one line of counts (from
``GET /experiments/summary`` or the in-process hub), then ``--limit`` experiments from
``--offset`` (optionally of one ``--state`` or ``--type``, or with ``--match`` in the name),
then the command that shows the next page.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import click
from click.core import ParameterSource

from observml.cli.render import table

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ListRequest",
    "list_json",
    "list_output",
    "list_text",
    "paging_options",
    "state_text",
    "summary_line",
    "typed_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Experiments per page when ``--limit`` is not given.
DEFAULT_LIMIT: Final = 50
#: The most per page: ``observml.hub.overview.MAX_PAGE`` (not imported here: the CLI starts
#: without importing the hub).
MAX_LIMIT: Final = 1000


@dataclass(frozen=True)
class ListRequest:
    """What the command was asked to list.

    Attributes:
        offset: Experiments to skip.
        limit: Experiments per page.
        state: Only this state, or ``None``.
        experiment_type: Only this type, or ``None``.
        match: Only names containing this text, or ``None``.
        where: The options that name the hub (``--config FILE``, ``--url URL``) as typed,
            repeated in the next page's command.
    """

    offset: int = 0
    limit: int = DEFAULT_LIMIT
    state: str | None = None
    experiment_type: str | None = None
    match: str | None = None
    where: tuple[str, ...] = ()

    @property
    def filters(self) -> tuple[str, ...]:
        """The filter options as typed: ``("--state", "ready", ...)``."""
        given = (
            ("--state", self.state),
            ("--type", self.experiment_type),
            ("--match", self.match),
        )
        return tuple(word for option, value in given if value for word in (option, value))

    def query(self) -> dict[str, Any]:
        """The query string of ``GET /experiments`` for this page."""
        given = {
            "offset": self.offset,
            "limit": self.limit,
            "state": self.state,
            "type": self.experiment_type,
            "name": self.match,
        }
        return {k: v for k, v in given.items() if v is not None}

    def command(self, offset: int) -> str:
        """The command that lists the page at ``offset``."""
        words = ["observml", "status", *self.where, *self.filters]
        if self.limit != DEFAULT_LIMIT:
            words += ["--limit", str(self.limit)]
        if offset:
            words += ["--offset", str(offset)]
        return " ".join(_quoted(w) for w in words)


def paging_options(func: F) -> F:
    """``--limit``, ``--offset``, ``--state``, ``--type`` and ``--match`` of the list."""
    options = (
        click.option(
            "--limit",
            type=click.IntRange(1, MAX_LIMIT),
            default=None,
            help=f"Without NAME: experiments per page (default {DEFAULT_LIMIT}).",
        ),
        click.option(
            "--offset",
            type=click.IntRange(min=0),
            default=None,
            help="Without NAME: experiments to skip, sorted by name (next page: --offset 50).",
        ),
        click.option("--state", default=None, help="Without NAME: only experiments in this state."),
        click.option(
            "--type",
            "experiment_type",
            default=None,
            help="Without NAME: only experiments of this type.",
        ),
        click.option(
            "--match", default=None, help="Without NAME: only experiments whose name contains this."
        ),
    )
    for option in reversed(options):
        func = option(func)
    return func


def typed_options(ctx: click.Context, *params: tuple[str, str]) -> tuple[str, ...]:
    """The options among ``(parameter, --option)`` typed on the command line, with their values."""
    words: list[str] = []
    for param, option in params:
        value = ctx.params.get(param)
        if value and ctx.get_parameter_source(param) is ParameterSource.COMMANDLINE:
            words += [option, str(value)]
    return tuple(words)


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line of counts: ``500 experiments: 480 ready, 12 running · 430 streaming · ...``."""
    total = int(summary.get("total", 0))
    states = ", ".join(f"{n} {state}" for state, n in (summary.get("by_state") or {}).items())
    alerts = int(summary.get("open_alerts", 0))
    parts = [
        f"{_count(total, 'experiment')}: {states or 'none'}",
        f"{int(summary.get('streaming', 0))} streaming",
        f"{_count(alerts, 'alert')} open",
        f"{int(summary.get('in_shadow', 0))} in shadow",
    ]
    return " · ".join(parts)


def list_text(
    request: ListRequest,
    summary: Mapping[str, Any],
    page: Mapping[str, Any],
    *,
    nowhere: str,
) -> str:
    """The command's text: the summary line, the page's table and where the next page is.

    Args:
        request: What was asked for.
        summary: The counts of all experiments.
        page: ``{"experiments": [...], "total": N}``; ``total`` passes the filters.
        nowhere: Where the experiments would be listed, for the message of an empty hub.
    """
    rows: Sequence[Mapping[str, Any]] = page["experiments"]
    total = int(page["total"])
    if not int(summary.get("total", 0)) and not total:
        return (
            f"no experiments in {nowhere}. Name one to read it from the MLOps store"
            " (observml status NAME), or list them under 'experiments:' in hub_config.yaml."
        )
    lines = [summary_line(summary)]
    matching = f" matching {' '.join(request.filters)}" if request.filters else ""
    if not rows:
        if total and request.offset >= total:
            lines.append(
                f"no experiments at --offset {request.offset}: {total}{matching} in all;"
                f" first page: {request.command(0)}"
            )
        else:
            lines.append(f"no experiments{matching}.")
        return "\n".join(lines)
    lines.append(_table(rows))
    first, last = request.offset + 1, request.offset + len(rows)
    if first > 1 or last < total:
        hint = f"showing {first}-{last} of {total}{matching}"
        if last < total:
            hint += f"; next: {request.command(last)}"
        lines.append(hint)
    return "\n".join(lines)


def list_output(ops: Any, request: ListRequest, *, as_json: bool, url: str | None) -> str:
    """Read the summary and the page from ``ops`` (a CLI backend); return the command's output."""
    summary, page = ops.summary(), ops.experiments(request)
    if as_json:
        return list_json(request, summary, page)
    nowhere = f"the server at {url}" if url else "the hub config"
    return list_text(request, summary, page, nowhere=nowhere)


def list_json(request: ListRequest, summary: Mapping[str, Any], page: Mapping[str, Any]) -> str:
    """``{"summary", "experiments", "offset", "limit", "total"}`` as indented JSON."""
    answer = {
        "summary": summary,
        "experiments": page["experiments"],
        "offset": request.offset,
        "limit": request.limit,
        "total": page["total"],
    }
    return json.dumps(answer, indent=2, default=str)


def state_text(status: Mapping[str, Any]) -> str:
    """The experiment's state; a queued job says its place (``queued, #3 in line``)."""
    place = status.get("queue_position")
    if status.get("state") != "queued" or not place:
        return str(status.get("state"))
    return f"queued, {'next' if place == 1 else f'#{place}'} in line"


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ("name", "type", "model", "state", "champion", "streaming", "predicted rows"),
        [
            (
                s["name"],
                s["type"],
                s.get("model") or "-",
                state_text(s),
                f"v{s['champion_version']}" if s.get("champion_version") is not None else "-",
                "yes" if s.get("streaming") else "no",
                f"{int(s.get('counters', {}).get('predicted_rows', 0)):,}",
            )
            for s in rows
        ],
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _quoted(word: str) -> str:
    """``word`` as a shell reads it back (quoted when it holds spaces or quotes)."""
    return shlex.quote(word)
