"""``observml promote``, ``reject`` and ``feedback``, and the status lines of the retraining flow.

A retrain under ``promotion: approve`` leaves a challenger in shadow beside the champion; these
commands are how a person decides, in-process or against a server (``--url``). ``status``
prints :func:`retraining_lines`: the open alert, the challenger in shadow with the gate's
advice, the rows the last challenger learnt from, the last gate and the fault library.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import click
import pandas as pd

from observml.cli.client import backend
from observml.cli.files import read_rows
from observml.cli.options import hub_config_option, json_option, remote_options

__all__ = [
    "feedback_command",
    "field",
    "parse_time",
    "promote_command",
    "reject_command",
    "retrain_lines",
    "retraining_lines",
]

_LABEL_WIDTH: Final = 12
_INDENT: Final = " " * (_LABEL_WIDTH + 2)
_ROWS_OF: Final = {
    "in_control": "rows in control and rows confirmed normal",
    "all": "every streamed row but known faults",
}
#: The run tag holding the reason of the "shadow" decision (with the gate's verdict).
_SHADOW_TAG: Final = "observml.decision.shadow"


def parse_time(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Read ``--start``/``--end`` as a :class:`pandas.Timestamp` (no zone means UTC)."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(
            f"{value!r} is not a time pandas can read ({exc}). Use ISO 8601, e.g."
            " 2026-05-04T06:00 or 2026-05-04T06:00+02:00.",
            ctx,
            param,
        ) from exc
    if pd.isna(stamp):
        raise click.BadParameter(f"{value!r} is not a time. Use ISO 8601.", ctx, param)
    return stamp


# -- commands ------------------------------------------------------------------------------
@click.command("promote")
@click.argument("name")
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="Promote this model version instead of the challenger in shadow.",
)
@click.option("--reason", default="", help="Why; kept with the decision.")
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
def promote_command(
    name: str,
    version: int | None,
    reason: str,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Make NAME's challenger in shadow (or --version) the champion."""
    with backend(url, token, hub_config) as ops:
        result = ops.promote(name, version, reason)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    was = result.get("was")
    if was == result["version"]:
        click.echo(f"{name}: version {result['version']} is the champion (it already was).")
        return
    click.echo(
        f"{name}: version {result['version']} is the champion now (was {_version(was)})."
        f" 'observml rollback {name}' goes back."
    )


@click.command("reject")
@click.argument("name")
@click.option("--reason", default="", help="Why; kept with the decision.")
@click.option(
    "--as-fault",
    is_flag=True,
    help="Keep the rows the champion flagged in the alarm as a known fault: every later"
    " challenger must still flag them.",
)
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
def reject_command(
    name: str,
    reason: str,
    as_fault: bool,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Reject NAME's challenger in shadow; the champion serves on."""
    with backend(url, token, hub_config) as ops:
        result = ops.reject(name, reason, as_fault)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"{name}: challenger version {result['version']} rejected; champion"
        f" {_version(result.get('champion'))} serves on."
    )
    if result.get("as_fault"):
        click.echo(
            f"  kept {result['fault_rows']:,} rows the champion flagged as a known fault (run"
            f" {result.get('feedback_run')}): every later challenger must flag them too."
        )


@click.command("feedback")
@click.argument("name")
@click.option(
    "--label",
    required=True,
    help="fault or normal; for fault_isolation, the class of the rows.",
)
@click.option(
    "--file",
    "data_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The rows (CSV, JSON, JSON lines, Parquet); else the streamed rows of --start/--end.",
)
@click.option(
    "--start",
    callback=parse_time,
    default=None,
    metavar="TIME",
    help="First time of the streamed rows (ISO 8601; no zone means UTC).",
)
@click.option(
    "--end", callback=parse_time, default=None, metavar="TIME", help="Last time of the rows."
)
@click.option("--reason", default="", help="Why; kept with the feedback.")
@hub_config_option("--config", "--hub-config")
@remote_options
@json_option
def feedback_command(
    name: str,
    label: str,
    data_file: str | None,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    reason: str,
    hub_config: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Say what rows of NAME are: a fault, normal operation, or (fault isolation) a class.

    The rows are those of --file, else the streamed rows between --start and --end (times of
    setup.datetime_column where the rows carry it, else arrival times; no zone means UTC),
    else every row of the retrain window.
    """
    if data_file is not None and (start is not None or end is not None):
        raise click.UsageError("give either --file or a time range (--start/--end), not both.")
    data = read_rows(data_file) if data_file else None
    with backend(url, token, hub_config) as ops:
        stored = ops.feedback(name, label=label, data=data, start=start, end=end, reason=reason)
        library = ops.library(name)
    if as_json:
        click.echo(json.dumps({**stored, "library": library}, indent=2))
        return
    click.echo(f"{name}: {stored['rows']:,} rows labelled {label} (run {stored['run_id']}).")
    click.echo(field("feedback", _library_text(library)))
    if label == "normal":
        click.echo(
            field(
                "next",
                f"'observml retrain {name}' trains a challenger that may learn from them; it"
                " waits in shadow until you promote or reject it.",
            )
        )
    elif label == "fault":
        click.echo(field("next", "every later challenger must keep flagging these rows."))


# -- rendering -----------------------------------------------------------------------------
def retraining_lines(status: Mapping[str, Any]) -> list[str]:
    """The status lines of the retraining flow: alert, shadow, window, gate, feedback."""
    name = status["name"]
    lines = []
    promotion = status.get("promotion")
    if promotion:
        who = "a person promotes or rejects" if promotion == "approve" else "the gate decides"
        rows = _ROWS_OF.get(str(status.get("window_rows")), str(status.get("window_rows")))
        lines.append(field("promotion", f"{promotion}: {who}; challengers learn from {rows}"))
    alerts = status.get("alerts") or {}
    lines += _alert_lines(name, alerts)
    shadow = status.get("shadow")
    if shadow:
        runs = list(status.get("runs") or [])
        lines += _shadow_lines(name, shadow, status.get("champion_version"), runs)
    window = status.get("last_window")
    if window and not (shadow and shadow.get("reason") == window["summary"]):
        alarm = "; an alarm episode reached into the newest rows" if window["alarm_now"] else ""
        lines.append(field("window", f"the last challenger learnt from {window['summary']}{alarm}"))
    gate = status.get("last_gate")
    if gate and not (shadow and shadow.get("gate") == gate):
        lines.append(field("last gate", gate["reason"]))
    library = status.get("library")
    if library:
        lines.append(field("feedback", _library_text(library)))
    return lines


def retrain_lines(name: str, status: Mapping[str, Any], champion: Any) -> list[str]:
    """What a finished retrain job did with its challenger, for ``observml retrain``."""
    result = status.get("result", {})
    version = status["version"]
    if result.get("shadow"):
        lines = [
            f"{name}: challenger version {version} is in shadow beside champion"
            f" {_version(champion)}: it scores the streamed rows until you decide."
        ]
    elif result.get("promoted"):
        lines = [f"{name}: challenger version {version} promoted: it is the champion now."]
    else:
        lines = [
            f"{name}: challenger version {version} rejected by the gate; champion"
            f" {_version(champion)} serves on."
        ]
    if result.get("window"):
        lines.append(field("trained on", result["window"]["summary"]))
    if result.get("reason"):
        lines.append(field("gate", str(result["reason"]).removeprefix("gate ")))
    if result.get("shadow"):
        lines.append(field("decide", _decide_hint(name)))
    return lines


def _alert_lines(name: str, alerts: Mapping[str, Any]) -> list[str]:
    alert = alerts.get("open")
    if alert:
        fired = f"fired {alert['count']} times" if alert["count"] > 1 else "fired once"
        return [
            field(
                "ALERT",
                f"{alert['kind']} since {_when(alert['opened_at'])}, {fired}"
                f" (champion {_version(alert.get('version'))}): {alert['reason']}",
            ),
            field(
                "answer",
                f"observml feedback {name} --label fault|normal --start"
                f" {_iso(alert['opened_at'])}, or promote or reject a challenger",
            ),
        ]
    recent = alerts.get("recent") or []
    if recent:
        last = recent[0]
        return [
            field(
                "last alert",
                f"{last['kind']} at {_when(last['opened_at'])}, answered"
                f" {_when(last['acknowledged_at'])} by {last['acknowledged_by']}",
            )
        ]
    return []


def _shadow_lines(
    name: str, shadow: Mapping[str, Any], champion: Any, runs: list[Mapping[str, Any]]
) -> list[str]:
    lines = [
        field(
            "shadow",
            f"challenger v{shadow['version']} beside champion {_version(champion)} since"
            f" {_when(shadow['since'])} ({shadow['reason']})",
        )
    ]
    if shadow["rows"]:
        lines.append(
            field(
                "",
                f"scored {shadow['rows']:,} streamed rows: champion flags"
                f" {_share(shadow['champion_flag_rate'])}, challenger"
                f" {_share(shadow['challenger_flag_rate'])}; they agree on"
                f" {_share(shadow['agreement'])}",
            )
        )
    else:
        lines.append(field("", f"no streamed rows scored yet (it scores while {name} streams)"))
    if shadow.get("errors"):
        lines.append(
            field(
                "", f"the challenger failed on {shadow['errors']} batches: {shadow['last_error']}"
            )
        )
    gate = shadow.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "FAILED"
        lines.append(field("gate", f"{verdict} (advice: a person decides)"))
        for check in gate["checks"]:
            mark = "ok  " if check["passed"] else "FAIL"
            lines.append(_wrap(f"{_INDENT}{mark} ", check["detail"]))
    else:  # resumed by a process that did not train it: the store keeps the verdict's text
        tags = (r.get("tags", {}) for r in runs)
        stored = next((t[_SHADOW_TAG] for t in tags if _SHADOW_TAG in t), None)
        lines.append(field("gate", f"from the store: {stored}" if stored else "not known here"))
    lines.append(field("decide", _decide_hint(name)))
    return lines


def _decide_hint(name: str) -> str:
    return f"observml promote {name}   |   observml reject {name} [--as-fault]"


def _library_text(library: Mapping[str, Any]) -> str:
    if "error" in library:
        return f"the fault library cannot be read: {library['error']}"
    if not library["faults"] + library["normal"] + library.get("labelled", 0):
        return "nothing labelled yet"
    text = (
        f"fault library {_count(library['faults'], 'episode')} ({library['fault_rows']:,} rows),"
        f" normal reference {_count(library['normal'], 'set')} ({library['normal_rows']:,} rows)"
    )
    if library.get("labelled"):
        text += f", {_count(library['labelled'], 'labelled set')} (classes)"
    return text


def field(label: str, text: str) -> str:
    """One status line, ``  label:    text``, wrapped to the terminal under its text column."""
    head = f"  {label + ':' if label else ''}".ljust(_LABEL_WIDTH + 2)
    return _wrap(head if head.endswith(" ") else head + " ", text)


def _wrap(head: str, text: str) -> str:
    width = min(max(shutil.get_terminal_size((100, 24)).columns, 60), 120)
    return textwrap.fill(
        text,
        width=width,
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_on_hyphens=False,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _share(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _version(version: Any) -> str:
    return f"v{version}" if version is not None else "-"


def _iso(epoch: float) -> str:
    """Local time with its UTC offset, as ``--start`` reads it back."""
    return datetime.fromtimestamp(float(epoch)).astimezone().isoformat(timespec="seconds")


def _when(epoch: Any) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(epoch)))
