"""``observml plugins``, ``observml config check|migrate`` and ``observml health``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

import click
import yaml

from observml.cli.render import table
from observml.config import DEFAULT_PLUGINS, find_config_file, load_config
from observml.config.api_settings import ApiSettings
from observml.config.legacy import (
    MODERN_ORDER,
    config_type,
    is_legacy,
    modernize,
    ordered,
    translate,
)
from observml.config.registry import PluginRegistry
from observml.config.yaml_dump import dump_yaml
from observml.errors import ConfigError, UnknownPluginError
from observml.hub.hub import ExperimentHub

__all__ = ["config_group", "health_command", "plugins_command"]

#: Top-level keys that only an experiment config has (``load_object`` is ObservML 1.0's).
_EXPERIMENT_KEYS: Final = frozenset({*MODERN_ORDER, "load_object"}) - {"description"}
#: Top-level keys of a hub config.
_HUB_KEYS: Final = ("version", "global", "plugins", "experiments", "streaming", "api")


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
    registry = PluginRegistry({"experiment": config.type_targets()})
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
    """Check hub and experiment configs; migrate ObservML 1.0 experiment configs."""


@config_group.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--type",
    "experiment_type",
    default=None,
    help="Type of an experiment config that names none (no 'type:' or 'load_object:').",
)
def config_check(path: str | None, experiment_type: str | None) -> None:
    """Validate PATH, a hub config (default ./hub_config.yaml) or an experiment config.

    Exits 2 listing every problem.
    """
    experiment = _experiment_config(path) if path is not None else None
    if experiment is not None:
        assert path is not None
        _check_experiment(path, experiment, experiment_type)
        return
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
            f"  plugins.{section.plugin_type}: {section.type} [{state}] config: {keys}{default}"
        )
    for entry in config.types:
        state = "enabled" if entry.enabled else "disabled"
        click.echo(f"  experiments: {entry.name} -> {entry.target} [{state}]")
    api = ApiSettings.from_config(config.api, source=config.source)  # checked by load_config
    click.echo(f"  api: {api.url}, token {'set' if api.token else 'none'}")


@config_group.command("migrate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def config_migrate(path: str) -> None:
    """Print the modern form of experiment config PATH (ObservML 1.0 files are translated)."""
    from observml.cli.files import read_experiment_config

    raw = read_experiment_config(path)
    if not _is_experiment(raw):
        raise ConfigError(
            "this is not an experiment config (setup, create_model, ... or ObservML 1.0's"
            " load_object). 'observml config check' validates hub configs.",
            source=path,
        )
    if is_legacy(raw):
        result = translate(raw, source=path)
        click.echo(f"# {path}, migrated from ObservML 1.0 by 'observml config migrate':")
        for change in result.changes:
            click.echo(f"#   {change}")
        click.echo(_yaml(result.config), nl=False)
        return
    click.echo(_yaml(ordered(raw)), nl=False)
    click.echo(f"{path}: already in the modern form; printed unchanged.", err=True)


def _is_experiment(raw: Any) -> bool:
    """Whether a YAML document is an experiment config rather than a hub config."""
    keys = set(raw) if isinstance(raw, dict) else set()
    return bool(keys & _EXPERIMENT_KEYS) and not keys & set(_HUB_KEYS)


def _experiment_config(path: str) -> dict[str, Any] | None:
    """Return PATH's mapping when it is an experiment config; None leaves it to the hub check."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the hub config check reports it
    return raw if _is_experiment(raw) else None


def _check_experiment(path: str, raw: dict[str, Any], experiment_type: str | None) -> None:
    kind = experiment_type or config_type(raw, source=path)
    if kind is None:
        raise click.UsageError(
            f"{path}: the experiment config names no type. Add 'type: <type>' or pass --type"
            " (fault_detection, fault_isolation, time_series, process_mining)."
        )
    try:
        cls = PluginRegistry().resolve("experiment", kind, where="type")
        config = modernize(raw, kind, where=path)
        settings = cls(Path(path).stem, config).validate_config()
    except ConfigError as exc:
        raise ConfigError(problems=exc.problems, source=path) from exc
    except UnknownPluginError as exc:
        raise ConfigError(str(exc).removeprefix("type: "), key="type", source=path) from exc
    click.echo(f"{path}: OK ({kind} experiment, model {settings.model})")


def _yaml(config: dict[str, Any]) -> str:
    text: str = dump_yaml(config)
    return text


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
