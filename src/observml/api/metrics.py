"""Prometheus metrics of a hub, derived from its status at scrape time.

One :class:`HubCollector` per app, registered in that app's own ``CollectorRegistry`` (no
global state): each scrape reads every experiment's counters, the depth of its queues and a
cached plugin health report. Counters therefore reset when the process restarts, as Prometheus
counters do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from observml.errors import ObservMLError
from observml.io.queues import experiment_queues

if TYPE_CHECKING:
    from observml.hub.hub import ExperimentHub

__all__ = ["HealthCache", "HubCollector", "build_registry"]

logger = logging.getLogger(__name__)

#: (metric name, counter key in the hub status, help text)
_COUNTERS: Final = (
    ("observml_predictions", "predicted_rows", "Rows predicted by the stream worker."),
    ("observml_predicted_messages", "predicted_messages", "Messages answered with a result."),
    ("observml_dead_letters", "dead_letters", "Messages sent to a dead-letter queue."),
    ("observml_batches", "batches", "Micro-batches predicted by the stream worker."),
    ("observml_retrains", "retrains", "Retrains whose challenger was promoted."),
    ("observml_alerts", "alerts", "Signals raised as alerts (an open alert firing again counts)."),
    ("observml_shadow_rows", "shadow_rows", "Rows a challenger in shadow scored."),
)


class HealthCache:
    """``check_plugin_health`` at most once per ``ttl`` seconds (scrapes must stay cheap)."""

    def __init__(self, hub: ExperimentHub, ttl: float = 10.0) -> None:
        self.hub = hub
        self.ttl = ttl
        self._lock = threading.Lock()
        self._report: dict[str, dict[str, Any]] = {}
        self._at = float("-inf")

    def get(self) -> dict[str, dict[str, Any]]:
        """Return the last report, checking again when it is older than ``ttl``."""
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._report = self.hub.check_plugin_health()
                self._at = time.monotonic()
            return self._report


class HubCollector(Collector):
    """Collects the hub's metrics on each scrape."""

    def __init__(self, hub: ExperimentHub, health: HealthCache) -> None:
        self.hub = hub
        self.health = health

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (experiments deleted mid-scrape are skipped)."""
        statuses = []
        for name in self.hub.experiments():
            try:
                statuses.append(self.hub.status(name))
            except ObservMLError:
                continue
        for metric, key, doc in _COUNTERS:
            family = CounterMetricFamily(metric, doc, labels=["experiment"])
            for status in statuses:
                family.add_metric([status["name"]], float(status["counters"].get(key, 0)))
            yield family
        latency = SummaryMetricFamily(
            "observml_batch_latency_seconds",
            "Time to predict, publish and account one micro-batch.",
            labels=["experiment"],
        )
        for status in statuses:
            counters = status["counters"]
            latency.add_metric(
                [status["name"]],
                count_value=int(counters.get("batches", 0)),
                sum_value=float(counters.get("batch_seconds", 0.0)),
            )
        yield latency
        yield from self._gauges(statuses)

    def _gauges(self, statuses: list[dict[str, Any]]) -> Iterator[Metric]:
        champion = GaugeMetricFamily(
            "observml_champion_version", "Model version serving predictions.", labels=["experiment"]
        )
        shadow = GaugeMetricFamily(
            "observml_shadow_version",
            "Model version of the challenger in shadow, awaiting a person's decision.",
            labels=["experiment"],
        )
        alert = GaugeMetricFamily(
            "observml_alert_open",
            "1 while the experiment has an alert nobody answered.",
            labels=["experiment"],
        )
        streaming = GaugeMetricFamily(
            "observml_streaming",
            "1 while the experiment streams predictions.",
            labels=["experiment"],
        )
        for status in statuses:
            name = status["name"]
            if status.get("champion_version") is not None:
                champion.add_metric([name], float(status["champion_version"]))
            if status.get("shadow"):
                shadow.add_metric([name], float(status["shadow"]["version"]))
            alert.add_metric([name], 1.0 if (status.get("alerts") or {}).get("open") else 0.0)
            streaming.add_metric([name], 1.0 if status.get("streaming") else 0.0)
        yield champion
        yield shadow
        yield alert
        yield streaming
        depth = GaugeMetricFamily(
            "observml_queue_depth", "Messages ready in the queue.", labels=["queue"]
        )
        stream = self.hub.get_plugin("datastream")
        if stream is not None:
            for status in statuses:
                name = status["name"]
                for queue in experiment_queues(name):
                    for each in (queue, f"{queue}.dead"):
                        try:
                            value = stream.queue_depth(each)  # type: ignore[attr-defined]
                        except Exception:  # the broker is down: the health gauge says so
                            logger.debug("queue_depth(%s) failed", each, exc_info=True)
                            continue
                        depth.add_metric([each], float(value))
        yield depth
        healthy = GaugeMetricFamily(
            "observml_plugin_healthy",
            "1 when the plugin's health check passes.",
            labels=["plugin_type"],
        )
        for plugin_type, entry in self.health.get().items():
            healthy.add_metric([plugin_type], 1.0 if entry.get("healthy") else 0.0)
        yield healthy


def build_registry(hub: ExperimentHub, *, health_ttl: float = 10.0) -> CollectorRegistry:
    """Return a new registry holding one :class:`HubCollector` for ``hub``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub, HealthCache(hub, ttl=health_ttl)))
    return registry
