"""One table from plugin type to ``{name: "module:Class"}``; nothing is imported until used.

Lookup order for ``type: <name>`` under ``plugins.<plugin_type>``:

1. the built-in table :data:`BUILTIN_PLUGINS` (built-ins cannot be shadowed);
2. names added by the hub config (``experiments:`` entries with ``module``/``class``);
3. the entry-point group ``observml.<plugin_type>`` of installed distributions, loading only the
   entry point asked for;
4. a name containing ``:`` is imported as ``package.module:Class``, but only on a *trusted*
   lookup (``trusted=True``): one whose name an operator wrote in ``hub_config.yaml`` or in
   Python. A name that arrived over the network (REST API, CLI ``--url``, a queue message, a
   model folder in the MLOps store that no hub key signed) is looked up with ``trusted=False``
   and may only be a registered name (steps 1-3); a ``module:Class`` there is an
   :class:`~observml.errors.UnknownPluginError` and nothing is imported.

A registry instance is immutable once built: :meth:`PluginRegistry.snapshot` assembles the full
table in a local variable and publishes it in one assignment, so threads never see it half-built.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

from observml.config.redact import mask_text
from observml.config.validation import check_arguments
from observml.errors import (
    ConfigError,
    ConfigProblem,
    PluginError,
    PluginLoadError,
    UnknownPluginError,
)
from observml.plugins.base import Plugin

if TYPE_CHECKING:
    from observml.config.sections import HubConfig, PluginSection

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_PREFIX",
    "PluginRegistry",
    "PluginSpec",
    "build_plugin",
    "check_plugin_sections",
    "load_object",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_PREFIX: Final = "observml."

BUILTIN_PLUGINS: Final[Mapping[str, Mapping[str, str]]] = {
    "mlops": {
        "memory": "observml.plugins.memory.mlops:InMemoryMLOpsPlugin",
        "mlflow": "observml.plugins.mlflow_plugin:MLflowPlugin",
    },
    "datastream": {
        "local": "observml.plugins.local:LocalQueuePlugin",
        "memory": "observml.plugins.memory.datastream:InMemoryDataStreamPlugin",
        "rabbitmq": "observml.plugins.rabbitmq_plugin:RabbitMQPlugin",
    },
    "experiment": {
        "fault_detection": "observml.experiments.fault_detection:FaultDetectionExperiment",
        "fault_isolation": "observml.experiments.fault_isolation:FaultIsolationExperiment",
        "process_mining": "observml.experiments.process_mining:ProcessMiningExperiment",
        "time_series": "observml.experiments.time_series:TimeSeriesExperiment",
    },
}

#: Which extra to install when a built-in plugin's module fails to import.
_EXTRAS: Final[Mapping[str, str]] = {
    "observml.plugins.mlflow_plugin": "mlflow",
    "observml.plugins.rabbitmq_plugin": "rabbitmq",
}


@dataclass(frozen=True)
class PluginSpec:
    """Where a plugin implementation comes from, before it is imported."""

    plugin_type: str
    name: str
    target: str  # "module:Class"
    origin: str  # "built-in", "config", "entry point (dist 1.0)"


def load_object(target: str, *, where: str, plugin_type: str = "", name: str = "") -> Any:
    """Import ``package.module:Class`` and return the object.

    Raises:
        PluginLoadError: The module failed to import or has no such attribute; chained from
            the cause.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise PluginLoadError(
            f"{where}: {target!r} is not of the form 'package.module:Class'.",
            plugin_type=plugin_type,
            name=name,
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(module_name)
        fix = (
            f" Install it with: pip install 'observml[{extra}]'."
            if extra
            else " Check that the package is installed in this environment."
        )
        raise PluginLoadError(
            f"{where}: cannot import {module_name!r} for {target!r}: {exc}.{fix}",
            plugin_type=plugin_type,
            name=name,
        ) from exc
    except Exception as exc:
        raise PluginLoadError(
            f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}."
            " Fix the error in that module.",
            plugin_type=plugin_type,
            name=name,
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise PluginLoadError(
                f"{where}: module {module_name!r} has no attribute {attr!r}."
                " Check the class name after the ':'.",
                plugin_type=plugin_type,
                name=name,
            ) from exc
    return obj


def _observml_entry_points() -> list[metadata.EntryPoint]:
    """Return every entry point in an ``observml.*`` group (one per distribution name)."""
    every = metadata.entry_points()
    return [
        ep
        for group in sorted(every.groups)
        if group.startswith(ENTRY_POINT_PREFIX)
        for ep in every.select(group=group)
    ]


def _dist_label(ep: metadata.EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "entry point"
    return f"entry point ({dist.metadata['Name']} {dist.version})"


class PluginRegistry:
    """The plugin table of one hub: built-ins, config additions and entry points.

    Args:
        extra: ``{plugin_type: {name: "module:Class"}}`` added by the hub config.
    """

    def __init__(self, extra: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._extra = {t: dict(names) for t, names in (extra or {}).items()}
        self._lock = threading.Lock()
        self._table: Mapping[str, Mapping[str, PluginSpec]] | None = None
        self._problems: tuple[str, ...] = ()

    def snapshot(self) -> Mapping[str, Mapping[str, PluginSpec]]:
        """Return the complete table, building it once (entry points scanned on first use)."""
        table = self._table
        if table is not None:
            return table
        with self._lock:
            if self._table is None:
                built, problems = self._build()
                self._problems = tuple(problems)
                self._table = built  # published only once complete
            return self._table

    @property
    def problems(self) -> tuple[str, ...]:
        """Entry-point conflicts found while building (duplicate names, shadowed built-ins)."""
        self.snapshot()
        return self._problems

    def plugin_types(self) -> list[str]:
        """Return every plugin type known, sorted."""
        return sorted(self.snapshot())

    def names(self, plugin_type: str) -> list[str]:
        """Return the plugin names known for ``plugin_type``, sorted."""
        return sorted(self.snapshot().get(plugin_type, {}))

    def spec(
        self, plugin_type: str, name: str, *, where: str | None = None, trusted: bool = False
    ) -> PluginSpec:
        """Return the spec for ``name``; ``module:Class`` names resolve to a path spec.

        Args:
            plugin_type: The slot (``"mlops"``, ``"datastream"``, ``"experiment"``).
            name: A registered name, or (trusted lookups only) ``package.module:Class``.
            where: Prefix of error messages (the key path or the request field).
            trusted: The name comes from the operator (hub config, Python), not from a
                request, a message or the MLOps store; only then may it be a module path.

        Raises:
            UnknownPluginError: No such name, or a module path on an untrusted lookup; lists
                the known ones and the closest match.
            PluginLoadError: Two distributions offer the name.
        """
        where = where or f"plugins.{plugin_type}.type"
        if not isinstance(name, str) or not name:
            raise self._unknown(plugin_type, str(name), where, trusted=trusted)
        if ":" in name:
            if trusted:
                return PluginSpec(plugin_type, name, name, "path")
            raise self._unknown(plugin_type, name, where, trusted=False, path=True)
        found = self.snapshot().get(plugin_type, {}).get(name)
        if found is not None:
            return found
        for problem in self.problems:
            if problem.startswith(f"{plugin_type}/{name}:"):
                raise PluginLoadError(
                    f"{where}: {problem.partition(': ')[2]}", plugin_type=plugin_type, name=name
                )
        raise self._unknown(plugin_type, name, where, trusted=trusted)

    def resolve(
        self, plugin_type: str, name: str, *, where: str | None = None, trusted: bool = False
    ) -> type[Any]:
        """Import and return the class registered as ``name`` for ``plugin_type``.

        ``trusted`` is as for :meth:`spec`: only a trusted lookup imports a module path.
        """
        where = where or f"plugins.{plugin_type}.type"
        spec = self.spec(plugin_type, name, where=where, trusted=trusted)
        obj = load_object(spec.target, where=where, plugin_type=plugin_type, name=name)
        if not isinstance(obj, type):
            raise PluginLoadError(
                f"{where}: {spec.target!r} is a {type(obj).__name__}, not a class.",
                plugin_type=plugin_type,
                name=name,
            )
        return obj

    # -- internals ------------------------------------------------------------------------
    def _unknown(
        self, plugin_type: str, name: str, where: str, *, trusted: bool, path: bool = False
    ) -> UnknownPluginError:
        """The error for a name that is not registered (or a module path from a request)."""
        known = self.names(plugin_type)
        if path:
            what = (
                f"{where}: {name!r} is a module path; a request may only name a registered"
                f" {plugin_type} type."
            )
            more = (
                " A module path is accepted only where the operator writes code: in"
                " hub_config.yaml or in Python. Register the class there (an 'experiments:'"
                f" entry with module/class) or through the '{ENTRY_POINT_PREFIX}{plugin_type}'"
                " entry-point group."
            )
        else:
            close = difflib.get_close_matches(name, known, n=1)
            what = f"{where}: no {plugin_type} plugin named {name!r}" + (
                f"; did you mean {close[0]!r}?" if close else "."
            )
            more = (
                f" Packages add more through the '{ENTRY_POINT_PREFIX}{plugin_type}' entry-point"
                + (" group, or give 'package.module:Class'." if trusted else " group.")
            )
        return UnknownPluginError(
            f"{what} Known: {', '.join(known) or 'none'}.{more}",
            plugin_type=plugin_type,
            name=name,
        )

    def _build(self) -> tuple[dict[str, dict[str, PluginSpec]], list[str]]:
        table: dict[str, dict[str, PluginSpec]] = {}
        problems: list[str] = []
        for plugin_type, names in BUILTIN_PLUGINS.items():
            table[plugin_type] = {
                n: PluginSpec(plugin_type, n, t, "built-in") for n, t in names.items()
            }
        for plugin_type, names in self._extra.items():
            slot = table.setdefault(plugin_type, {})
            for name, target in names.items():
                if name in slot:
                    problems.append(
                        f"{plugin_type}/{name}: config name {name!r} is taken by a built-in"
                        " plugin. Choose another name."
                    )
                    continue
                slot[name] = PluginSpec(plugin_type, name, target, "config")
        claimed: dict[tuple[str, str], str] = {}
        for ep in _observml_entry_points():
            plugin_type = ep.group[len(ENTRY_POINT_PREFIX) :]
            slot = table.setdefault(plugin_type, {})
            label = _dist_label(ep)
            existing = slot.get(ep.name)
            if existing is not None:
                if existing.origin == "built-in":
                    logger.warning(
                        "%s: entry point %r of %s shadows a built-in plugin; ignored",
                        ep.group,
                        ep.name,
                        label,
                    )
                    continue
                if existing.origin != "config":
                    problems.append(
                        f"{plugin_type}/{ep.name}: two distributions offer {ep.name!r} in"
                        f" '{ep.group}': {claimed[(plugin_type, ep.name)]} and {label}."
                        " Uninstall one of them."
                    )
                    slot.pop(ep.name)
                continue
            if (plugin_type, ep.name) in claimed:
                continue  # a conflicting name was already removed above
            claimed[(plugin_type, ep.name)] = label
            slot[ep.name] = PluginSpec(plugin_type, ep.name, ep.value.replace(" ", ""), label)
        return table, problems


def build_plugin(registry: PluginRegistry, section: PluginSection) -> Plugin:
    """Resolve, check and construct the plugin a config section asks for (not initialized).

    Raises:
        ConfigError: ``section.config`` does not fit the constructor; lists the accepted keys.
        UnknownPluginError, PluginLoadError: The implementation cannot be found or imported.
    """
    where = section.where
    cls = registry.resolve(section.plugin_type, section.type, where=f"{where}.type", trusted=True)
    problems: list[ConfigProblem] = []
    kwargs = check_arguments(cls, section.config, f"{where}.config", problems)
    if problems:
        raise ConfigError(problems=problems)
    try:
        plugin = cls(**kwargs)
    except Exception as exc:
        raise PluginLoadError(
            f"{where}: constructing {cls.__name__} failed: {type(exc).__name__}:"
            f" {mask_text(str(exc))}. Check the values under '{where}.config'.",
            plugin_type=section.plugin_type,
            name=section.type,
        ) from exc
    if not isinstance(plugin, Plugin):
        raise PluginLoadError(
            f"{where}.type: {cls.__name__} is not a plugin: it needs plugin_type, initialize(),"
            " shutdown() and health_check().",
            plugin_type=section.plugin_type,
            name=section.type,
        )
    if plugin.plugin_type != section.plugin_type:
        raise PluginLoadError(
            f"{where}.type: {cls.__name__} is a {plugin.plugin_type!r} plugin, configured under"
            f" {where!r}. Move it to 'plugins.{plugin.plugin_type}'.",
            plugin_type=section.plugin_type,
            name=section.type,
        )
    return plugin


def check_plugin_sections(config: HubConfig, *, skip: set[str]) -> list[ConfigProblem]:
    """Import each enabled plugin class and check its ``config:`` against the constructor."""
    registry = PluginRegistry({"experiment": config.type_targets()})
    problems: list[ConfigProblem] = []
    for section in config.enabled_plugins():
        if section.plugin_type in skip:
            continue
        try:
            cls = registry.resolve(
                section.plugin_type, section.type, where=f"{section.where}.type", trusted=True
            )
        except PluginError as exc:
            message = str(exc).removeprefix(f"{section.where}.type: ")
            problems.append(ConfigProblem(f"{section.where}.type", message))
            continue
        check_arguments(cls, section.config, f"{section.where}.config", problems)
    return problems
