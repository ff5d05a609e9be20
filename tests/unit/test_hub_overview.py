"""``observml.hub.overview``: the experiment list a page at a time, and the summary's counts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.errors import DataError
from observml.hub import overview
from observml.hub.overview import MAX_PAGE, ExperimentFilter


@pytest.fixture
def hub() -> Iterator[ExperimentHub]:
    """Pumps 1 to 3 and valves 1 and 2, untrained; pump-2 trained."""
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        for name in ("valve-2", "pump-1", "Pump-3", "valve-1", "pump-2"):
            hub.create_experiment(name, "fault_detection", {"create_model": {"model": "pca"}})
        rows = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 3)), columns=list("abc"))
        assert hub.train("pump-2", data=rows, wait=True).status.state == "succeeded"
        yield hub


def test_a_page_is_sorted_by_name_and_reads_only_its_statuses(hub: ExperimentHub) -> None:
    page = overview.page(hub, offset=1, limit=2)
    assert [s["name"] for s in page.statuses] == ["pump-1", "pump-2"]  # "Pump-3" sorts first
    assert (page.offset, page.limit, page.total) == (1, 2, 5)
    everything = overview.page(hub)
    assert len(everything.statuses) == everything.total == 5
    assert everything.limit is None


def test_filters(hub: ExperimentHub) -> None:
    pumps = overview.page(hub, where=ExperimentFilter(name="PUMP"))
    assert [s["name"] for s in pumps.statuses] == ["Pump-3", "pump-1", "pump-2"]
    ready = overview.page(hub, where=ExperimentFilter(state="ready"))
    assert [s["name"] for s in ready.statuses] == ["pump-2"]
    assert ready.total == 1
    untrained_pumps = overview.page(hub, limit=1, where=ExperimentFilter("untrained", name="pump"))
    assert [s["name"] for s in untrained_pumps.statuses] == ["Pump-3"]
    assert untrained_pumps.total == 2
    other = overview.page(hub, where=ExperimentFilter(experiment_type="time_series"))
    assert (other.statuses, other.total) == ([], 0)


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0), (0, MAX_PAGE + 1)])
def test_a_bad_page_says_what_fits(hub: ExperimentHub, offset: int, limit: int) -> None:
    with pytest.raises(DataError, match=r"use an offset of 0 or more and a limit of 1 to 1000"):
        overview.page(hub, offset=offset, limit=limit)


def test_summarize(hub: ExperimentHub) -> None:
    hub.start_streaming("pump-2")
    try:
        summary = overview.summarize(hub)
    finally:
        hub.stop_streaming("pump-2")
    assert summary == {
        "total": 5,
        "by_state": {"untrained": 4, "ready": 1},
        "by_type": {"fault_detection": 5},
        "streaming": 1,
        "open_alerts": 0,
        "in_shadow": 0,
    }


def test_states_are_counted_as_the_status_names_them() -> None:
    """A state the hub adds later (``queued``) is counted like any other; most first."""
    statuses = [
        {"state": "ready", "type": "fault_detection", "streaming": True},
        {"state": "queued", "type": "time_series", "challenger_version": None},
        {"state": "queued", "type": "fault_detection", "alerts": {"open": {"kind": "drift"}}},
        {"state": "running", "type": "fault_detection", "challenger_version": 3},
        {"state": "ready", "type": "process_mining", "streaming": True},
        {"state": "ready", "type": "fault_detection", "alerts": {"open": None}},
    ]
    counted = overview.count(statuses)
    assert list(counted["by_state"].items()) == [("ready", 3), ("queued", 2), ("running", 1)]
    assert list(counted["by_type"].items()) == [
        ("fault_detection", 4),
        ("process_mining", 1),
        ("time_series", 1),
    ]
    assert (counted["total"], counted["streaming"]) == (6, 2)
    assert (counted["open_alerts"], counted["in_shadow"]) == (1, 1)
