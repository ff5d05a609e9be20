"""PluginHost: one plugin per plugin type, their lifecycle and health (the hub's base)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from observml.config import HubConfig, load_config
from observml.config.redact import mask_text, redact, secrets_of
from observml.config.registry import PluginRegistry, build_plugin
from observml.errors import ObservMLError, PluginInitError, PluginNotConfiguredError
from observml.plugins.base import HealthReport, Plugin

__all__ = ["PluginHost"]

logger = logging.getLogger(__name__)


class PluginHost:
    """Plugins plus the experiments that use them.

    Args:
        config: The validated configuration (``from_config`` reads one from YAML).
        registry: Plugin table; by default built from ``config``.
        health_timeout: Seconds each plugin's ``health_check`` may take before it is reported
            unhealthy.

    Usage::

        with ExperimentHub.from_config("hub_config.yaml") as hub:
            print(hub.check_plugin_health())
    """

    def __init__(
        self,
        *,
        config: HubConfig | None = None,
        registry: PluginRegistry | None = None,
        health_timeout: float | None = None,
    ) -> None:
        self.config = config or HubConfig(plugins={})
        self.registry = registry or PluginRegistry({"experiment": self.config.type_targets()})
        self.health_timeout = health_timeout or self.config.global_.health_timeout
        self._plugins: dict[str, Plugin] = {}
        self._lock = threading.RLock()
        self._closed = False

    # -- plugins --------------------------------------------------------------------------
    @property
    def plugins(self) -> Mapping[str, Plugin]:
        """The registered plugins by plugin type, in registration order (a copy)."""
        with self._lock:
            return dict(self._plugins)

    def register_plugin(self, plugin: Plugin) -> None:
        """Initialize ``plugin`` and store it under its ``plugin_type``.

        A plugin already registered for that type is replaced and shut down. If
        ``initialize()`` raises, the hub is left unchanged.

        Raises:
            PluginInitError: ``initialize()`` failed; chained from its error.
        """
        plugin_type = getattr(plugin, "plugin_type", None)
        if not isinstance(plugin_type, str) or not plugin_type:
            raise PluginInitError(
                f"register_plugin: {type(plugin).__name__} has no 'plugin_type' string."
                ' Set a class attribute such as plugin_type = "mlops".'
            )
        try:
            plugin.initialize()
        except ObservMLError as exc:
            raise PluginInitError(
                f"plugins.{plugin_type}: {type(plugin).__name__}.initialize() failed:"
                f" {mask_text(str(exc), secrets_of(plugin))}",
                plugin_type=plugin_type,
            ) from exc
        except Exception as exc:
            raise PluginInitError(
                f"plugins.{plugin_type}: {type(plugin).__name__}.initialize() failed:"
                f" {type(exc).__name__}: {mask_text(str(exc), secrets_of(plugin))}."
                " Check the plugin's settings under"
                f" 'plugins.{plugin_type}.config' and that its service is reachable.",
                plugin_type=plugin_type,
            ) from exc
        with self._lock:
            previous = self._plugins.pop(plugin_type, None)
            self._plugins[plugin_type] = plugin
        if previous is not None and previous is not plugin:
            self._shutdown_one(plugin_type, previous)
        logger.info("registered %s plugin %s", plugin_type, type(plugin).__name__)

    def get_plugin(self, plugin_type: str) -> Plugin | None:
        """Return the plugin registered for ``plugin_type``, or ``None``."""
        with self._lock:
            return self._plugins.get(plugin_type)

    def require_plugin(self, plugin_type: str) -> Plugin:
        """Return the plugin for ``plugin_type`` or raise a clear error.

        Raises:
            PluginNotConfiguredError: No such plugin is registered.
        """
        plugin = self.get_plugin(plugin_type)
        if plugin is None:
            raise PluginNotConfiguredError(
                f"plugins.{plugin_type}: this hub has no {plugin_type} plugin. Enable one in"
                f" hub_config.yaml under 'plugins.{plugin_type}' or call register_plugin().",
                plugin_type=plugin_type,
            )
        return plugin

    def check_plugin_health(self, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Check every plugin at once, each bounded by ``timeout`` seconds.

        Returns:
            ``{plugin_type: {"healthy": bool, "details": {..., "latency_ms": float}}}``; a check
            that does not answer in time is reported unhealthy with "timed out after N s".
        """
        limit = timeout or self.health_timeout
        checks = {t: _HealthProbe(t, p) for t, p in self.plugins.items()}
        for probe in checks.values():
            probe.start()
        deadline = time.monotonic() + limit
        report: dict[str, dict[str, Any]] = {}
        for plugin_type, probe in checks.items():
            probe.join(max(0.0, deadline - time.monotonic()))
            healthy, details = probe.result(limit)
            report[plugin_type] = {"healthy": healthy, "details": details}
        return report

    # -- construction and shutdown --------------------------------------------------------
    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Self:
        """Build a hub from ``hub_config.yaml`` and register every enabled plugin.

        Args:
            path: The config file; ``None`` uses ``$OBSERVML_CONFIG``, then
                ``./hub_config.yaml``, then the embedded defaults.

        Raises:
            ConfigError: The file is invalid (every problem listed).
            PluginError: A plugin could not be loaded or initialized; plugins already started
                are shut down again.
        """
        config = load_config(path)
        logging.getLogger("observml").setLevel(config.global_.log_level)
        hub = cls(config=config)
        try:
            for section in config.enabled_plugins():
                hub.register_plugin(build_plugin(hub.registry, section))
        except BaseException:
            hub.shutdown()
            raise
        return hub

    def shutdown(self) -> None:
        """Shut every plugin down in reverse registration order; errors are logged."""
        with self._lock:
            plugins = list(self._plugins.items())
            self._plugins.clear()
            self._closed = True
        for plugin_type, plugin in reversed(plugins):
            self._shutdown_one(plugin_type, plugin)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    @staticmethod
    def _shutdown_one(plugin_type: str, plugin: Plugin) -> None:
        try:
            plugin.shutdown()
        except Exception:
            logger.error("shutting down the %s plugin failed", plugin_type, exc_info=True)


class _HealthProbe(threading.Thread):
    """Runs one ``health_check`` in a daemon thread so a hung check never blocks the caller."""

    def __init__(self, plugin_type: str, plugin: Plugin) -> None:
        super().__init__(name=f"observml-health-{plugin_type}", daemon=True)
        self._plugin = plugin
        self._report: HealthReport | None = None
        self._started_at = 0.0
        self._latency_ms = 0.0

    def run(self) -> None:
        self._started_at = time.perf_counter()
        try:
            healthy, details = self._plugin.health_check()
            report: HealthReport = (bool(healthy), dict(details))
        except Exception as exc:
            report = (
                False,
                {"status": "error", "message": f"health_check raised {type(exc).__name__}: {exc}"},
            )
        self._latency_ms = (time.perf_counter() - self._started_at) * 1000
        self._report = report

    def result(self, limit: float) -> HealthReport:
        report = self._report
        if report is None:
            return False, {
                "status": "timeout",
                "message": f"timed out after {limit:g} s",
                "latency_ms": round(limit * 1000, 1),
            }
        healthy, details = report
        secrets = secrets_of(self._plugin)
        details = {
            k: mask_text(v, secrets) if isinstance(v, str) else v
            for k, v in redact(details).items()
        }
        details["latency_ms"] = round(self._latency_ms, 1)
        return healthy, details
