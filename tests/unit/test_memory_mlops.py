"""The in-memory MLOps plugin passes the shared MLOps contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from observml.plugins.memory import InMemoryMLOpsPlugin
from tests.contracts.mlops import MLOpsContract


class TestInMemoryMLOps(MLOpsContract):
    @pytest.fixture
    def mlops(self) -> Iterator[InMemoryMLOpsPlugin]:
        plugin = InMemoryMLOpsPlugin()
        plugin.initialize()
        yield plugin
        plugin.shutdown()
