"""The in-memory datastream passes the shared contract; its state stays on the instance."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from observml.plugins.memory import InMemoryDataStreamPlugin
from tests.contracts.claims import ClaimsContract
from tests.contracts.datastream import DataStreamContract, QueueBrowserContract
from tests.contracts.subscriptions import SubscribeContract


class TestInMemoryDataStream(DataStreamContract, QueueBrowserContract, SubscribeContract):
    @pytest.fixture
    def datastream(self) -> Iterator[InMemoryDataStreamPlugin]:
        plugin = InMemoryDataStreamPlugin()
        plugin.initialize()
        yield plugin
        plugin.shutdown()


def test_memory_datastream_instances_share_nothing() -> None:
    first, second = InMemoryDataStreamPlugin(), InMemoryDataStreamPlugin()
    first.connect()
    second.connect()
    first.publish("q", "only in first")
    assert second.queue_depth("q") == 0
    assert first.queue_depth("q") == 1


def test_memory_datastream_health_check_disconnected_is_unhealthy() -> None:
    plugin = InMemoryDataStreamPlugin()
    healthy, details = plugin.health_check()
    assert not healthy
    assert "connect()" in details["message"]


class TestInMemoryClaims(ClaimsContract):
    """Hubs in one process sharing one instance share its claims: the twin is the instance."""

    @pytest.fixture
    def datastream(self) -> Iterator[InMemoryDataStreamPlugin]:
        plugin = InMemoryDataStreamPlugin()
        plugin.connect()
        yield plugin
        plugin.disconnect()

    @pytest.fixture
    def twin(self, datastream: InMemoryDataStreamPlugin) -> InMemoryDataStreamPlugin:
        return datastream
