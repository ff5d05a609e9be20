"""MQTTPlugin passes observml's shared DataStreamContract against a real Mosquitto."""

from __future__ import annotations

import pytest
from observml_mqtt import MQTTPlugin
from tests.contracts.datastream import DataStreamContract

pytestmark = [pytest.mark.integration]


class TestMQTT(DataStreamContract):
    @pytest.fixture
    def datastream(self, mqtt_plugin: MQTTPlugin) -> MQTTPlugin:
        return mqtt_plugin
