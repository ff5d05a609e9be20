"""Small synthetic data sets shared by the experiment tests (generated, never read from disk)."""

from __future__ import annotations

import pandas as pd
import pytest

from observml import datasets
from observml.plugins.memory import InMemoryMLOpsPlugin


@pytest.fixture(scope="session")
def pump() -> pd.DataFrame:
    """400 hourly rows of 5 sensors: clean first half, drift/step/spikes in the second."""
    return datasets.pump_sensors(400, 5, seed=1)


@pytest.fixture(scope="session")
def faults() -> pd.DataFrame:
    """600 rows of a three-phase line with persistent fault classes."""
    return datasets.fault_table(600, seed=2, mean_run=30)


@pytest.fixture
def mlops() -> InMemoryMLOpsPlugin:
    """An initialised in-memory MLOps store."""
    plugin = InMemoryMLOpsPlugin()
    plugin.initialize()
    return plugin
