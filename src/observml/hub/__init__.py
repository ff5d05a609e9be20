"""The hub: the facade users call, its plugins, and each experiment's state as the hub runs it.

* :mod:`~observml.hub.hub` — :class:`ExperimentHub`, a thin facade over the parts below;
* :mod:`~observml.hub.plugin_host` — registering, building, health-checking and shutting down
  plugins (the spec's contract);
* :mod:`~observml.hub.managed` — one experiment's champion, shadow, window, jobs and counters;
* :mod:`~observml.hub.overview` — the experiments a page at a time, and the counts of the
  summary line (``observml status``, ``GET /experiments``, the dashboard).

The hub may import every other subpackage but the API, the CLI and the demo.
"""

from __future__ import annotations

from observml.hub.hub import ExperimentHub

__all__ = ["ExperimentHub"]
