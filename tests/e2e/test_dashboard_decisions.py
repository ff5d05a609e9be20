"""People's decisions on the dashboard, in headless Chromium: the alert banner and the shadow card.

A served hub streams normal rows, then rows of a shifted regime: the anomaly rate crosses its
threshold and an alert opens (retraining is off, so only people act). Then:

* a challenger is put in shadow (``hub.retrain`` with rows, ``promotion: approve``); the page
  shows the banner and the card with the overlay of both models' scores, and **Promote** makes
  it the champion (status, the store's ``champion`` alias, ``observml.decision=promoted``);
* **It is a fault** labels the rows since the alert, then **Reject** with "as a known fault"
  keeps the alarm's rows too: two faults in the library;
* **It is the new normal** labels the rows normal and starts a retrain whose challenger waits
  in shadow.

Screenshots go to the test's temp dir and to ``/tmp/observml-decisions-*.png``
(``-shadow.png`` is the one in docs/dashboard.png).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.api import ApiSettings
from tests.e2e.conftest import new_memory_hub, sensors, serving, watch

pytestmark = [pytest.mark.integration]

SHOTS = Path("/tmp")
CONFIG: dict[str, Any] = {
    "create_model": {"model": "iforest", "params": {"n_estimators": 50}},
    "eda": True,
    # alerts on a high anomaly rate; no automatic retrain: the test asks for challengers
    "retrain": {
        "metric": "anomaly_rate",
        "threshold": 0.3,
        "higher_better": False,
        "enabled": False,
    },
}
BANNER = "#alert-banner"
CARD = "#shadow-card"
MESSAGE = "document.getElementById('message').textContent"


@pytest.fixture
def served() -> Iterator[tuple[str, ExperimentHub]]:
    """Serve a hub whose trained 'pump' streams; yield the base URL and the hub."""
    hub = new_memory_hub()
    hub.create_experiment("pump", "fault_detection", CONFIG)
    assert hub.train("pump", data=sensors(400), wait=True).status.state == "succeeded"
    hub.start_streaming("pump")
    with serving(hub, ApiSettings()) as url:
        yield url, hub


def send(hub: ExperimentHub, rows: pd.DataFrame, *, per_message: int = 10) -> None:
    """Publish ``rows`` to pump.predict and wait until the stream predicted them."""
    stream = hub.get_plugin("datastream")
    assert isinstance(stream, InMemoryDataStreamPlugin)
    before = hub.status("pump")["counters"]["predicted_rows"]
    for start in range(0, len(rows), per_message):
        stream.publish(
            "pump.predict", rows.iloc[start : start + per_message].to_json(orient="records")
        )
    deadline = time.monotonic() + 60
    while hub.status("pump")["counters"]["predicted_rows"] < before + len(rows):
        assert time.monotonic() < deadline, "the stream did not predict the rows in time"
        time.sleep(0.05)


def raise_alert(hub: ExperimentHub) -> dict[str, Any]:
    """Stream the normal regime, then a shifted one the champion flags: the alert opens."""
    send(hub, sensors(150, seed=1))
    send(hub, sensors(100, shift=4.0, seed=2))
    deadline = time.monotonic() + 30  # the policy runs just after the batch is counted
    while (alert := hub.status("pump")["alerts"]["open"]) is None:
        assert time.monotonic() < deadline, hub.status("pump")["decisions"]
        time.sleep(0.05)
    return dict(alert)


def put_in_shadow(hub: ExperimentHub) -> None:
    job = hub.retrain("pump", data=sensors(300, shift=0.2, seed=9), wait=True)
    assert job.status.state == "succeeded", job.status.error
    assert job.status.result["shadow"] is True


def mlops_of(hub: ExperimentHub) -> InMemoryMLOpsPlugin:
    plugin = hub.get_plugin("mlops")
    assert isinstance(plugin, InMemoryMLOpsPlugin)
    return plugin


def open_pump(browser: Any, base: str) -> tuple[Any, list[str], list[str]]:
    """Open the dashboard on pump; accept every confirm dialog, collecting their text."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = watch(page)
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.goto(f"{base}/#pump", wait_until="load")
    page.wait_for_function("document.getElementById('detail-name').textContent === 'pump'")
    return page, problems, dialogs


def shoot(page: Any, tmp_path: Path, name: str) -> Path:
    page.wait_for_timeout(1200)  # one more poll, so everything shows the latest state
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    (SHOTS / f"observml-decisions-{name}.png").write_bytes(shot.read_bytes())
    assert shot.stat().st_size > 50_000
    return shot


def test_promote_the_challenger_from_the_shadow_card(
    served: tuple[str, ExperimentHub], browser: Any, tmp_path: Path
) -> None:
    base, hub = served
    raise_alert(hub)
    put_in_shadow(hub)
    page, problems, dialogs = open_pump(browser, base)

    banner = page.locator(BANNER)
    banner.wait_for(state="visible")
    assert page.inner_text("#alert-title") == "Alert: a metric crossed its threshold"
    assert page.inner_text("#alert-reason").startswith("anomaly_rate")
    assert "champion v1" in page.inner_text("#alert-when")
    assert page.input_value("#alert-from")  # prefilled with when the alert opened
    row = page.locator("#experiments tbody tr[data-name='pump']")
    assert "alert" in row.inner_text()
    assert "v1 · v2 in shadow" in row.inner_text()

    page.locator(CARD).wait_for(state="visible")
    assert page.inner_text("#shadow-title") == "Challenger v2 in shadow beside champion v1"
    assert "No streamed rows scored yet" in page.inner_text("#shadow-empty")
    assert page.is_disabled("#retrain")

    # the challenger scores the streamed rows beside the champion: the overlay fills
    send(hub, pd.concat([sensors(80, seed=3), sensors(40, shift=4.0, seed=4)]))
    points = "Number(document.getElementById('shadow-chart').dataset.points)"
    page.wait_for_function(f"{points} >= 120", timeout=20_000)
    figure = page.evaluate(
        "(() => { const c = document.getElementById('shadow-chart');"
        " return {names: c.data.map(t => t.name), n: c.data.map(t => t.y.length),"
        " limits: (c.layout.shapes || []).length,"
        " notes: (c.layout.annotations || []).map(a => a.text)}; })()"
    )
    assert figure["names"] == ["champion v1", "challenger v2"]
    assert figure["n"] == [120, 120]
    assert figure["limits"] == 2  # both models' limits
    assert any(note.startswith("challenger v2 limit") for note in figure["notes"])
    stats = page.inner_text("#shadow-stats")
    assert re.search(r"rows scored by both\s+120", stats), stats
    assert re.search(r"agreement\s+\d+\.\d %", stats), stats
    gate = page.inner_text("#shadow-gate")
    assert re.match(r"Gate (passed|failed)", gate), gate
    assert re.search(r"false alarms on \d+ normal reference rows neither model trained on", gate)
    page.click("#report-list button[data-plot='scores']")  # a full page for docs/dashboard.png
    page.wait_for_function("document.getElementById('report-chart').dataset.plot === 'scores'")
    shoot(page, tmp_path, "shadow")

    page.fill("#shadow-note", "overlay checked: same limits, fewer false alarms")
    page.click("#shadow-promote")
    page.wait_for_function(
        f"{MESSAGE}.startsWith('promoted: v2 is the champion now')", timeout=20_000
    )
    assert dialogs[-1].startswith("Promote challenger v2 to champion of pump?")
    page.locator(CARD).wait_for(state="hidden")
    banner.wait_for(state="hidden")  # promoting answers the alert
    status = hub.status("pump")
    assert status["champion_version"] == 2
    assert status["shadow"] is None
    assert status["alerts"]["open"] is None
    promoted = status["decisions"][-1]
    assert promoted["kind"] == "promoted"
    assert promoted["reason"] == "overlay checked: same limits, fewer false alarms"
    mlops = mlops_of(hub)
    assert mlops.get_version_by_alias("pump", "champion").version == 2  # type: ignore[union-attr]
    assert mlops.get_version_by_alias("pump", "previous").version == 1  # type: ignore[union-attr]
    assert mlops.get_version_by_alias("pump", "challenger") is None
    assert mlops.list_versions("pump")[0].tags["observml.decision"] == "promoted"
    versions = "document.querySelector('#versions tbody').innerText"
    page.wait_for_function(f"/v2\\s+champion/.test({versions})", timeout=10_000)
    assert page.is_enabled("#rollback")
    shoot(page, tmp_path, "promoted")
    assert not problems, problems


def test_it_is_a_fault_then_reject_as_a_known_fault(
    served: tuple[str, ExperimentHub], browser: Any, tmp_path: Path
) -> None:
    base, hub = served
    raise_alert(hub)
    page, problems, dialogs = open_pump(browser, base)
    page.locator(BANNER).wait_for(state="visible")
    send(hub, sensors(50, shift=4.0, seed=5))  # the fault goes on after the alert opened

    page.fill("#alert-note", "cavitation at the inlet")
    page.click("#alert-fault")
    page.wait_for_function(f"/rows since .* labelled fault/.test({MESSAGE})", timeout=20_000)
    assert "as a FAULT?" in dialogs[-1]
    page.locator(BANNER).wait_for(state="hidden")
    library = hub.library("pump")
    assert library["faults"] == 1
    assert library["fault_rows"] >= 50
    assert library["recent"][0]["reason"] == "cavitation at the inlet"
    assert library["recent"][0]["source"] == "api"
    assert hub.status("pump")["decisions"][-1]["kind"] == "feedback"

    put_in_shadow(hub)
    page.locator(CARD).wait_for(state="visible")
    page.check("#shadow-as-fault")
    page.fill("#shadow-note", "trained while the pump cavitated")
    page.click("#shadow-reject")
    page.wait_for_function(
        f"/^rejected v2; champion v1 serves on; \\d+ rows kept as a known fault/.test({MESSAGE})",
        timeout=20_000,
    )
    assert "The rows the champion flagged in the alarm are kept as a known fault." in dialogs[-1]
    page.locator(CARD).wait_for(state="hidden")
    status = hub.status("pump")
    assert status["champion_version"] == 1
    assert status["shadow"] is None
    rejected = status["decisions"][-1]
    assert rejected["kind"] == "rejected"
    assert rejected["reason"].startswith("trained while the pump cavitated; ")
    assert hub.library("pump")["faults"] == 2
    mlops = mlops_of(hub)
    assert mlops.get_version_by_alias("pump", "champion").version == 1  # type: ignore[union-attr]
    assert mlops.get_version_by_alias("pump", "challenger") is None
    assert mlops.list_versions("pump")[0].tags["observml.decision"] == "rejected"
    history = "document.querySelector('#decisions tbody').innerText"
    page.wait_for_function(f"{history}.includes('rejected')", timeout=10_000)
    shoot(page, tmp_path, "rejected")
    assert not problems, problems


def test_it_is_the_new_normal_trains_a_challenger_for_the_shadow(
    served: tuple[str, ExperimentHub], browser: Any, tmp_path: Path
) -> None:
    base, hub = served
    raise_alert(hub)
    page, problems, dialogs = open_pump(browser, base)
    page.locator(BANNER).wait_for(state="visible")
    send(hub, sensors(60, shift=4.0, seed=6))  # the new operating point goes on

    page.fill("#alert-note", "new duty point after maintenance")
    page.click("#alert-normal")
    page.wait_for_function(
        "/retrain on the new normal: job \\w+ succeeded, challenger v2 is in shadow/"
        f".test({MESSAGE})",
        timeout=60_000,
    )
    assert "as NORMAL and train a challenger?" in dialogs[-1]
    page.locator(CARD).wait_for(state="visible")
    page.locator(BANNER).wait_for(state="hidden")
    status = hub.status("pump")
    assert status["shadow"]["version"] == 2
    assert status["champion_version"] == 1
    kinds = [d["kind"] for d in status["decisions"]]
    assert kinds[-4:] == ["feedback", "fired", "trained", "shadow"]
    fired = status["decisions"][-3]
    assert fired["reason"].startswith(
        "new normal confirmed by a person: new duty point after maintenance; training"
    )
    assert "confirmed normal by a person" in status["last_window"]["summary"]
    library = hub.library("pump")
    assert library["normal"] == 1
    assert library["normal_rows"] >= 60
    shoot(page, tmp_path, "new-normal")
    assert not problems, problems
