"""The protocol every plugin implements, whatever its plugin type."""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = ["HealthReport", "Plugin"]

#: ``(healthy, details)`` as returned by :meth:`Plugin.health_check`.
HealthReport: TypeAlias = tuple[bool, dict[str, Any]]


@runtime_checkable
class Plugin(Protocol):
    """Base interface for all plugins.

    Lifecycle: construct (store settings only, no I/O) -> ``hub.register_plugin(plugin)`` ->
    ``initialize()`` -> use -> ``shutdown()``. The constructor takes the keys of the plugin's
    ``config:`` section as explicit keyword arguments.
    """

    #: The slot the plugin fills in a hub: ``"mlops"``, ``"datastream"`` or a user-defined one.
    plugin_type: str

    def initialize(self) -> None:
        """Set up the plugin: open connections, create stores."""
        ...

    def shutdown(self) -> None:
        """Release every resource the plugin holds. Safe to call twice."""
        ...

    def health_check(self) -> HealthReport:
        """Check whether the plugin works, cheaply and without raising.

        Returns:
            ``(healthy, details)``; ``details`` has at least ``"status"`` and, when unhealthy,
            ``"message"``. It never contains a password.
        """
        ...
