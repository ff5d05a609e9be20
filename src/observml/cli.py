"""The ``observml`` command. Thin: every command calls the hub, the config or the registry."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from observml.config import DEFAULT_PLUGINS, find_config_file, load_config
from observml.errors import ConfigError, ObservMLError
from observml.hub import ExperimentHub
from observml.registry import PluginRegistry

__all__ = ["main"]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="observml")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """observml: train, stream, track and retrain process-monitoring models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    handler = logging.StreamHandler()
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if debug:
        logging.getLogger("observml").setLevel(logging.DEBUG)


@cli.command("plugins")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Hub config whose 'experiments:' entries to include.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(config_path: str | None, as_json: bool) -> None:
    """List every plugin implementation the registry can see, per plugin type."""
    config = load_config(config_path, check_plugins=False)
    registry = PluginRegistry({"experiment": config.experiment_types()})
    table = registry.snapshot()
    rows = [
        (plugin_type, spec.name, spec.origin, spec.target)
        for plugin_type in sorted(table)
        for spec in sorted(table[plugin_type].values(), key=lambda s: s.name)
    ]
    if as_json:
        keys = ("plugin_type", "name", "origin", "target")
        click.echo(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
    else:
        click.echo(_table(("plugin type", "name", "origin", "class"), rows))
    for problem in registry.problems:
        click.echo(f"warning: {problem}", err=True)


@cli.group("config")
def config_group() -> None:
    """Check hub configuration files."""


@config_group.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def config_check(path: str | None) -> None:
    """Validate PATH (default ./hub_config.yaml); exit 2 listing every problem."""
    found = find_config_file(path)
    config = load_config(path)
    if found is None:
        click.echo(
            "no config file found (looked at $OBSERVML_CONFIG and ./hub_config.yaml);"
            " the embedded defaults apply:"
        )
    else:
        click.echo(f"{config.source}: OK")
    for section in config.plugins.values():
        state = "enabled" if section.enabled else "disabled"
        keys = ", ".join(sorted(section.config)) or "defaults"
        default = (
            " (embedded default)" if DEFAULT_PLUGINS.get(section.plugin_type) == section else ""
        )
        click.echo(
            f"  plugins.{section.plugin_type}: {section.name} [{state}] config: {keys}{default}"
        )
    for entry in config.experiments:
        state = "enabled" if entry.enabled else "disabled"
        click.echo(f"  experiments: {entry.name} -> {entry.target} [{state}]")


@cli.command("health")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Hub config (default ./hub_config.yaml, else embedded defaults).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the spec's health dict as JSON.")
@click.option("--timeout", type=float, default=None, help="Seconds per plugin check.")
def health_command(config_path: str | None, as_json: bool, timeout: float | None) -> None:
    """Check every configured plugin; exit 1 if any is unhealthy."""
    with ExperimentHub.from_config(config_path) as hub:
        report = hub.check_plugin_health(timeout)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        rows = [
            (
                plugin_type,
                "healthy" if entry["healthy"] else "UNHEALTHY",
                f"{entry['details'].get('latency_ms', 0):.0f} ms",
                _summary(entry["details"]),
            )
            for plugin_type, entry in report.items()
        ]
        click.echo(_table(("plugin", "state", "latency", "details"), rows))
    if not all(entry["healthy"] for entry in report.values()):
        sys.exit(1)


def _summary(details: dict[str, Any]) -> str:
    skip = {"latency_ms"}
    return ", ".join(f"{k}={v}" for k, v in details.items() if k not in skip)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; print observml errors as one message (exit 2 for config errors, else 1)."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="observml",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except ObservMLError as exc:
        if debug:
            raise
        if isinstance(exc, ConfigError):
            lines = [p.render(exc.source) for p in exc.problems]
        else:
            lines = [str(exc)]
        for line in lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
