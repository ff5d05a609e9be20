"""Plant data to try observml on: generated sensors, fault tables, series and event logs.

Every generator is seeded, so a test or a demo sees the same rows each run; see
:mod:`~observml.datasets.synthetic`.
"""

from __future__ import annotations

from observml.datasets.synthetic import (
    FAULT_CLASSES,
    PROCESS_STEPS,
    event_log,
    fault_table,
    pump_sensors,
    seasonal_series,
)

__all__ = [
    "FAULT_CLASSES",
    "PROCESS_STEPS",
    "event_log",
    "fault_table",
    "pump_sensors",
    "seasonal_series",
]
