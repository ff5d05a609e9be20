"""The dashboard in headless Chromium (the one kaleido finds, driven by Playwright) while streaming.

The app is served by uvicorn in a thread on a free port, with the in-memory plugins. While the
page is open, rows are published to ``pump.predict``; the predictions chart must grow. Then a
report and an EDA figure are opened, a retrain is started from its button, and a screenshot is
saved (to the test's temp dir and to ``/tmp/observml-dashboard.png``). With a token, the
sign-in page, the session cookie, signing out and the API docs are exercised (screenshot of the
sign-in page: ``/tmp/observml-signin.png``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from observml import ExperimentHub
from observml.api import ApiSettings
from tests.e2e.conftest import new_memory_hub, publish, sensors, serving, watch

pytestmark = [pytest.mark.integration]

SHOT_FOR_HUMANS = Path("/tmp/observml-dashboard.png")
SIGNIN_SHOT_FOR_HUMANS = Path("/tmp/observml-signin.png")
TOKEN = "let-me-in"
CONFIG: dict[str, Any] = {
    "create_model": {"model": "iforest", "params": {"n_estimators": 50}},
    "eda": True,
    # the drift test runs on every 30 scores; min_samples keeps it from retraining on its own
    "retrain": {"drift": {"window": 30}, "min_samples": 1_000_000, "min_rows": 50},
}


@pytest.fixture
def served() -> Iterator[tuple[str, ExperimentHub]]:
    """Serve a hub with a trained experiment 'pump'; yield the base URL and the hub."""
    hub = new_memory_hub()
    hub.create_experiment("pump", "fault_detection", CONFIG)
    assert hub.train("pump", data=sensors(400), wait=True).status.state == "succeeded"
    hub.create_experiment("valve", "fault_detection", CONFIG)  # an untrained neighbour
    with serving(hub, ApiSettings()) as url:
        yield url, hub


def test_dashboard_live_predictions_reports_and_retrain(
    served: tuple[str, ExperimentHub], browser: Any, tmp_path: Path
) -> None:
    base, hub = served
    hub.start_streaming("pump")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = watch(page)
    page.goto(f"{base}/", wait_until="load")
    page.locator("#experiments tbody tr[data-name='valve']").wait_for()
    page.click("#experiments tbody tr[data-name='pump']")
    page.wait_for_function("document.getElementById('detail-name').textContent === 'pump'")
    assert "mlops" in page.inner_text("#health")

    # live predictions: the chart grows while rows stream in
    publish(hub, sensors(30, seed=1))
    points = "Number(document.getElementById('predictions-chart').dataset.points)"
    page.wait_for_function(f"{points} >= 30", timeout=20_000)
    before = page.evaluate(points)
    live = threading.Thread(
        target=publish,
        args=(hub, pd.concat([sensors(40, seed=2), sensors(20, shift=5.0, seed=3)])),
        kwargs={"pause": 0.03},
    )
    live.start()
    page.wait_for_function(f"{points} > {before}", timeout=20_000)
    live.join(30)
    page.wait_for_function(f"{points} >= 90", timeout=20_000)
    drawn = page.evaluate(
        "(() => { const c = document.getElementById('predictions-chart');"
        " return {y: c.data[0].y.length, anomalies: c.data[1].y.length}; })()"
    )
    assert drawn["y"] >= 90
    assert drawn["anomalies"] >= 10  # the shifted rows are flagged
    cards = "document.getElementById('cards').innerText"
    page.wait_for_function(f"/score drift \\(KS\\)\\s+[0-9.]+ (drifted|steady)/.test({cards})")

    # rows without a column are dead-lettered; the table says why
    publish(hub, sensors(3, seed=4).drop(columns=["flow"]))
    dead = "document.querySelector('#dead-letters tbody').innerText"
    page.wait_for_function(f"{dead}.includes(\"missing column(s) 'flow'\")", timeout=20_000)
    assert page.inner_text("#dead-letters tbody td.num") == "3"

    # a report and an EDA figure
    chart_shows = "document.getElementById('report-chart').dataset.plot === '{}'"
    page.click("#report-list button[data-plot='scores']")
    page.wait_for_function(chart_shows.format("scores"))
    assert page.locator("#report-chart .main-svg").count() > 0
    assert page.inner_text("#report-title") == "Report: scores"
    page.click("#eda-list button[data-plot='correlation']")
    page.wait_for_function(chart_shows.format("correlation"))
    page.click("#report-list button[data-plot='scores']")
    page.wait_for_function(chart_shows.format("scores"))

    # retrain from its button; the history and the message follow the job, whose challenger
    # waits in shadow (fault detection: a person decides)
    page.click("#retrain")
    decisions = "document.querySelector('#decisions tbody').innerText"
    page.wait_for_function(f"{decisions}.includes('fired')", timeout=30_000)
    page.wait_for_function(f"{decisions}.includes('shadow')", timeout=60_000)
    page.wait_for_function(
        "/retrain: job \\w+ succeeded, challenger v2 is in shadow/"
        ".test(document.getElementById('message').textContent)",
        timeout=30_000,
    )
    page.locator("#shadow-card").wait_for(state="visible")
    assert page.is_disabled("#retrain")  # decide on the challenger first
    page.wait_for_timeout(1500)  # one more poll so the cards show the result
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    SHOT_FOR_HUMANS.write_bytes(shot.read_bytes())
    assert shot.stat().st_size > 50_000
    assert not problems, problems


def test_dashboard_sign_in_and_out(browser: Any, tmp_path: Path) -> None:
    hub = new_memory_hub()
    hub.create_experiment("pump", "fault_detection", CONFIG)
    with serving(hub, ApiSettings(token=TOKEN)) as base:
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        page = context.new_page()
        problems = watch(page)
        row = page.locator("#experiments tbody tr[data-name='pump']")

        # first load: the server's sign-in page, no data
        first = page.goto(f"{base}/", wait_until="load")
        assert first.status == 401
        page.locator("#signin-form").wait_for(state="visible")
        assert "$OBSERVML_API_TOKEN" in page.inner_text("#signin-form")
        assert "pump" not in page.content()
        shot = tmp_path / "signin.png"
        page.screenshot(path=str(shot))
        SIGNIN_SHOT_FOR_HUMANS.write_bytes(shot.read_bytes())

        page.fill("#signin-token", "wrong")
        page.click("#signin-form button[type=submit]")
        page.locator("#signin-error").wait_for(state="visible")
        assert page.inner_text("#signin-error") == "That token was refused."

        page.fill("#signin-token", TOKEN)
        page.click("#signin-form button[type=submit]")
        row.wait_for()
        (cookie,) = context.cookies()
        assert cookie["name"] == "observml_session"
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["expires"] == -1  # gone when the browser closes
        assert TOKEN not in cookie["value"]
        assert TOKEN not in page.evaluate("JSON.stringify([sessionStorage, localStorage])")

        page.reload(wait_until="load")  # still signed in
        row.wait_for()
        assert page.locator("#signin-form").count() == 0

        # the API docs load through the cookie
        docs = page.goto(f"{base}/docs", wait_until="load")
        assert docs.status == 200
        page.locator(".swagger-ui .opblock").first.wait_for()
        assert page.locator(".opblock-summary-path[data-path='/session']").count() == 2

        # sign out: back to the sign-in page
        page.goto(f"{base}/", wait_until="load")
        row.wait_for()
        page.click("#sign-out")
        page.locator("#signin-form").wait_for(state="visible")
        assert context.cookies() == []

        # signing in on /docs returns to /docs
        assert page.goto(f"{base}/docs", wait_until="load").status == 401
        page.fill("#signin-token", TOKEN)
        page.click("#signin-form button[type=submit]")
        page.locator(".swagger-ui .opblock").first.wait_for()
        assert page.url == f"{base}/docs"

        # a session that ends while the dashboard is open (token changed): the sign-in page
        page.goto(f"{base}/", wait_until="load")
        row.wait_for()
        context.clear_cookies()
        page.locator("#signin-form").wait_for(state="visible", timeout=10_000)
        assert not [p for p in problems if p.startswith("page error")], problems
        context.close()
