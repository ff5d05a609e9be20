"""The dashboard's experiment list with 501 experiments, in headless Chromium.

The page shows the summary line, 50 rows a page with previous/next, a name filter and a state
filter, and its polling asks for one page and the counts: never every experiment's status.
A screenshot goes to ``/tmp/observml-dashboard-list.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from observml import ExperimentHub
from observml.api import ApiSettings
from tests.e2e.conftest import new_memory_hub, sensors, serving, watch

pytestmark = [pytest.mark.integration]

SHOT_FOR_HUMANS = Path("/tmp/observml-dashboard-list.png")
UNITS = 500
ROWS = "#experiments tbody tr[data-name]"
RANGE = "document.getElementById('experiments-range').textContent"


@pytest.fixture
def served() -> Iterator[tuple[str, ExperimentHub]]:
    """500 untrained experiments and 'pump', trained and streaming."""
    hub = new_memory_hub()
    for i in range(UNITS):
        hub.create_experiment(f"unit-{i:03d}", "fault_detection", {})
    hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
    assert hub.train("pump", data=sensors(300), wait=True).status.state == "succeeded"
    hub.start_streaming("pump")
    with serving(hub, ApiSettings()) as url:
        yield url, hub


def test_the_list_pages_filters_and_polls_one_page(
    served: tuple[str, ExperimentHub], browser: Any, tmp_path: Path
) -> None:
    base, _ = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = watch(page)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"{base}/", wait_until="load")
    page.locator("#experiments tbody tr[data-name='unit-048']").wait_for()
    page.wait_for_function("document.getElementById('detail-name').textContent === 'pump'")

    assert page.locator(ROWS).count() == 50  # pump and unit-000 to unit-048
    assert page.inner_text("#experiments-summary") == (
        "501 experiments: 500 untrained, 1 ready · 1 streaming · 0 alerts open · 0 in shadow"
    )
    assert page.evaluate(RANGE) == "1–50 of 501"
    assert page.is_disabled("#experiments-prev")

    page.click("#experiments-next")
    page.locator("#experiments tbody tr[data-name='unit-049']").wait_for()
    assert page.evaluate(RANGE) == "51–100 of 501"
    assert page.locator(ROWS).count() == 50
    shot = tmp_path / "list.png"
    page.screenshot(path=str(shot))
    SHOT_FOR_HUMANS.write_bytes(shot.read_bytes())

    page.fill("#experiments-filter", "UNIT-49")  # contains, ignoring case
    page.wait_for_function(f"{RANGE} === '10 matching'")
    names = page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.name)")
    assert names == [f"unit-{i}" for i in range(490, 500)]
    assert page.is_hidden("#experiments-next")  # one page: no paging buttons

    page.fill("#experiments-filter", "")
    page.select_option("#experiments-state", "ready")
    page.wait_for_function(f"{RANGE} === '1 matching'")
    assert page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.dataset.name)") == ["pump"]
    options = page.eval_on_selector_all(
        "#experiments-state option", "options => options.map(o => o.textContent)"
    )
    assert options == ["every state", "ready (1)", "untrained (500)"]

    # polling: a page of the list and the counts, never all 501 summaries or statuses
    page.wait_for_timeout(4500)
    lists = [urlsplit(u) for u in asked if urlsplit(u).path == "/experiments"]
    assert len(lists) >= 3
    assert all(parse_qs(u.query)["limit"] == ["50"] for u in lists)
    summaries = [u for u in asked if urlsplit(u).path == "/experiments/summary"]
    assert len(summaries) >= 3
    paths = {urlsplit(u).path for u in asked if urlsplit(u).path.startswith("/experiments/")}
    others = {
        p for p in paths if p != "/experiments/summary" and not p.startswith("/experiments/pump")
    }
    assert others == set()  # only the selected experiment's status, plots and versions
    assert not problems, problems
