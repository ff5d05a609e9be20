from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.errors import PluginInitError, PluginNotConfiguredError
from observml.plugins.base import HealthReport
from observml.plugins.mlops import MLOpsPlugin
from tests.unit.plugins_for_tests import (
    HangingPlugin,
    RaisingHealthPlugin,
    RecordingPlugin,
    SecretPlugin,
)


class CustomMLOpsPlugin(InMemoryMLOpsPlugin):
    """The spec's 'Creating Custom Plugins' example, on top of the shipped memory store."""

    plugin_type = "mlops"

    def __init__(self, custom_param: str) -> None:
        super().__init__()
        self.custom_param = custom_param

    def initialize(self) -> None:
        """Initialize the plugin."""
        super().initialize()

    def shutdown(self) -> None:
        """Clean up resources."""

    def health_check(self) -> HealthReport:
        """Check if plugin is working correctly."""
        try:
            return True, {"status": "connected", "custom_param": self.custom_param}
        except Exception as e:  # pragma: no cover - the spec's shape
            return False, {"status": "error", "message": str(e)}


def test_hub_spec_custom_plugin_example() -> None:
    hub = ExperimentHub()
    custom_plugin = CustomMLOpsPlugin(custom_param="value")
    hub.register_plugin(custom_plugin)
    assert hub.get_plugin("mlops") is custom_plugin
    assert isinstance(custom_plugin, MLOpsPlugin)
    health = hub.check_plugin_health()
    assert health == {
        "mlops": {
            "healthy": True,
            "details": {
                "status": "connected",
                "custom_param": "value",
                "latency_ms": health["mlops"]["details"]["latency_ms"],
            },
        }
    }
    assert isinstance(health["mlops"]["details"]["latency_ms"], float)


def test_hub_get_plugin_absent_is_none() -> None:
    assert ExperimentHub().get_plugin("mlops") is None


def test_hub_require_plugin_says_what_to_enable() -> None:
    with pytest.raises(PluginNotConfiguredError, match="Enable one in hub_config.yaml"):
        ExperimentHub().require_plugin("datastream")


def test_hub_register_calls_initialize() -> None:
    log: list[str] = []
    hub = ExperimentHub()
    hub.register_plugin(RecordingPlugin("mlops", log=log))
    assert log == ["initialize mlops"]


def test_hub_failing_initialize_leaves_hub_unchanged() -> None:
    hub = ExperimentHub()
    first = RecordingPlugin("mlops")
    hub.register_plugin(first)
    with pytest.raises(
        PluginInitError, match=r"plugins.mlops: RecordingPlugin.initialize\(\) failed"
    ):
        hub.register_plugin(RecordingPlugin("mlops", fail_initialize=True))
    assert hub.get_plugin("mlops") is first
    assert list(hub.plugins) == ["mlops"]


def test_hub_replacing_a_plugin_shuts_the_old_one_down() -> None:
    log: list[str] = []
    hub = ExperimentHub()
    hub.register_plugin(RecordingPlugin("mlops", log=log))
    hub.register_plugin(RecordingPlugin("mlops", log=log))
    assert log == ["initialize mlops", "initialize mlops", "shutdown mlops"]


def test_hub_shutdown_reverse_order_and_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    hub = ExperimentHub()
    hub.register_plugin(RecordingPlugin("mlops", log=log))
    hub.register_plugin(RecordingPlugin("datastream", log=log, fail_shutdown=True))
    hub.register_plugin(RecordingPlugin("alerting", log=log))
    with caplog.at_level(logging.ERROR, logger="observml.hub"):
        hub.shutdown()
    assert log[3:] == ["shutdown alerting", "shutdown datastream", "shutdown mlops"]
    assert "shutting down the datastream plugin failed" in caplog.text
    assert hub.plugins == {}


def test_hub_context_manager_shuts_down() -> None:
    log: list[str] = []
    with ExperimentHub() as hub:
        hub.register_plugin(RecordingPlugin("mlops", log=log))
    assert log[-1] == "shutdown mlops"


def test_hub_health_timeout_never_hangs_the_caller() -> None:
    hub = ExperimentHub(health_timeout=0.3)
    hanging = HangingPlugin()
    hub.register_plugin(hanging)
    hub.register_plugin(RecordingPlugin("mlops"))
    try:
        report = hub.check_plugin_health()  # the plugin's own check would answer "late"
    finally:
        hanging.release.set()
    assert report["datastream"]["healthy"] is False
    assert report["datastream"]["details"]["message"] == "timed out after 0.3 s"
    assert report["mlops"]["healthy"] is True


def test_hub_health_check_that_raises_is_unhealthy() -> None:
    hub = ExperimentHub()
    hub.register_plugin(RaisingHealthPlugin("mlops"))
    report = hub.check_plugin_health()
    assert report["mlops"]["healthy"] is False
    assert "RuntimeError: boom" in report["mlops"]["details"]["message"]


def test_hub_never_shows_passwords() -> None:
    hub = ExperimentHub()
    secret = SecretPlugin()
    with pytest.raises(PluginInitError) as info:
        hub.register_plugin(secret)
    assert "s3cr3t-pw" not in str(info.value)
    assert "****" in str(info.value)
    secret.initialize = lambda: None  # type: ignore[method-assign]
    hub.register_plugin(secret)
    details: dict[str, Any] = hub.check_plugin_health()["datastream"]["details"]
    assert "s3cr3t-pw" not in repr(details)
    assert details["password"] == "****"


def test_two_hubs_share_nothing() -> None:
    one, two = ExperimentHub(), ExperimentHub()
    one.register_plugin(InMemoryMLOpsPlugin())
    assert two.get_plugin("mlops") is None
    assert one.registry is not two.registry
    a, b = InMemoryDataStreamPlugin(), InMemoryDataStreamPlugin()
    one.register_plugin(a)
    two.register_plugin(b)
    a.publish("q", b"x")
    assert b.queue_depth("q") == 0


def test_hub_from_config_spec_plugin_section(write_config: Callable[[str], Path]) -> None:
    path = write_config(
        """
plugins:
  mlops:
    enabled: true
    type: "memory"
  datastream:
    enabled: true
    type: "memory"
"""
    )
    with ExperimentHub.from_config(path) as hub:
        assert isinstance(hub.get_plugin("mlops"), InMemoryMLOpsPlugin)
        assert isinstance(hub.get_plugin("datastream"), InMemoryDataStreamPlugin)
        assert all(v["healthy"] for v in hub.check_plugin_health().values())


def test_hub_from_config_failure_shuts_down_started_plugins(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config(
        """
plugins:
  mlops: {type: 'tests.unit.plugins_for_tests:RecordingPlugin'}
  datastream: {type: 'tests.unit.plugins_for_tests:SecretPlugin'}
"""
    )
    with pytest.raises(PluginInitError, match="SecretPlugin.initialize"):
        ExperimentHub.from_config(path)
