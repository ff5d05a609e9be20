"""``observml plugins``, ``observml config check`` and ``observml health``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from observml.api.settings import ApiSettings
from observml.config import DEFAULT_PLUGINS, find_config_file, load_config
from observml.hub import ExperimentHub
from observml.registry import PluginRegistry

__all__ = ["config_group", "health_command", "plugins_command", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render rows as an aligned plain-text table with upper-case headers."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


@click.command("plugins")
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
    found = registry.snapshot()
    rows = [
        (plugin_type, spec.name, spec.origin, spec.target)
        for plugin_type in sorted(found)
        for spec in sorted(found[plugin_type].values(), key=lambda s: s.name)
    ]
    if as_json:
        keys = ("plugin_type", "name", "origin", "target")
        click.echo(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
    else:
        click.echo(table(("plugin type", "name", "origin", "class"), rows))
    for problem in registry.problems:
        click.echo(f"warning: {problem}", err=True)


@click.group("config")
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
    api = ApiSettings.from_config(config.api, source=config.source)  # checked by load_config
    click.echo(f"  api: {api.url}, token {'set' if api.token else 'none'}")


@click.command("health")
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
        click.echo(table(("plugin", "state", "latency", "details"), rows))
    if not all(entry["healthy"] for entry in report.values()):
        sys.exit(1)


def _summary(details: dict[str, Any]) -> str:
    skip = {"latency_ms"}
    return ", ".join(f"{k}={v}" for k, v in details.items() if k not in skip)
