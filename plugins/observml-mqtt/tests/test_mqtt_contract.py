"""MQTTPlugin passes observml's shared DataStreamContract and SubscribeContract on Mosquitto."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from observml_mqtt import MQTTPlugin
from tests.contracts.datastream import DataStreamContract
from tests.contracts.subscriptions import SubscribeContract

from observml.errors import PluginError
from observml.plugins.browse import browse_queue

pytestmark = [pytest.mark.integration]


class TestMQTT(DataStreamContract, SubscribeContract):
    @pytest.fixture
    def datastream(self, mqtt_plugin: MQTTPlugin) -> MQTTPlugin:
        return mqtt_plugin


class TestMQTTSharedGroup(DataStreamContract, SubscribeContract):
    """The same contract when the hub's sessions are members of a shared subscription."""

    @pytest.fixture
    def datastream(self, make_plugin: Callable[..., MQTTPlugin]) -> MQTTPlugin:
        return make_plugin(share_group="observml")


def test_browsing_says_mqtt_cannot_show_messages_without_taking_them() -> None:
    """MQTT has no look-without-taking: ``observml tail`` refuses plainly instead of consuming."""
    with pytest.raises(PluginError, match="MQTTPlugin cannot browse queues"):
        browse_queue(MQTTPlugin(), "pump.predictions", 5)
