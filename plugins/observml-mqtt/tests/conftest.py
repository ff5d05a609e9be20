"""Fixtures: the shared Mosquitto on 127.0.0.1:1883 and plugins connected to it.

Each plugin gets its own ``client_id`` and ``topic_prefix`` so tests never share sessions, and a
short ``session_expiry`` so the sessions they leave on the broker go away by themselves.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mqtt_broker import Mosquitto
from observml_mqtt import MQTTPlugin
from tests.services import port_open, service_missing

HOST = os.environ.get("OBSERVML_TEST_MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("OBSERVML_TEST_MQTT_PORT", "1883"))


def unique_settings(**overrides: Any) -> dict[str, Any]:
    """Settings of a plugin that shares nothing with other tests."""
    tag = uuid.uuid4().hex[:10]
    return {
        "client_id": f"observml-test-{tag}",
        "topic_prefix": f"observml-test/{tag}",
        "session_expiry": 120,
        "retry_interval": 0.1,
        "retry_interval_max": 1.0,
        **overrides,
    }


@pytest.fixture
def mqtt_config() -> dict[str, Any]:
    """Where the shared broker is; skips locally (fails under CI) when it is not running."""
    if not port_open(HOST, PORT):
        service_missing(
            f"no MQTT broker on {HOST}:{PORT}: start one (mosquitto -d -c"
            " /etc/mosquitto/mosquitto.conf) or apt-get install mosquitto"
        )
    return {"host": HOST, "port": PORT}


@pytest.fixture
def make_plugin(mqtt_config: dict[str, Any]) -> Iterator[Callable[..., MQTTPlugin]]:
    """Return a factory of connected plugins (unique settings); all are shut down after."""
    made: list[MQTTPlugin] = []

    def make(**overrides: Any) -> MQTTPlugin:
        plugin = MQTTPlugin(**{**mqtt_config, **unique_settings(**overrides)})
        plugin.initialize()
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.shutdown()


@pytest.fixture
def mqtt_plugin(make_plugin: Callable[..., MQTTPlugin]) -> MQTTPlugin:
    """A connected plugin on the shared broker."""
    return make_plugin()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto (persistence on) a test may stop and start; stopped at the end."""
    own = Mosquitto(tmp_path / "broker")
    own.start()
    yield own
    own.halt()
