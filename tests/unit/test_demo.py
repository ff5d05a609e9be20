"""``observml demo --quick`` on the embedded defaults, and the scenario's failure paths."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.cli import demo as demo_cli
from observml.cli import main
from observml.config import load_config
from observml.demo import DemoOptions, DemoSize, DemoSummary, demo_config
from observml.demo.scenario import Demo
from observml.demo.setup import ORDERS, PUMP, make_data
from observml.errors import ExperimentError

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quiet_cli_output")]

TYPES = {
    "demo-pump": "fault_detection",
    "demo-line": "fault_isolation",
    "demo-load": "time_series",
    "demo-orders": "process_mining",
}


def test_demo_quick_trains_streams_retrains_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[DemoSummary] = []
    show = demo_cli.show_summary

    def record(console: Any, summary: DemoSummary) -> None:
        seen.append(summary)
        show(console, summary)

    monkeypatch.setattr(demo_cli, "show_summary", record)
    try:
        main(["demo", "--quick", "--report", "report.html"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (summary,) = seen
    size = DemoSize.quick()

    # every type trained, and new data streamed through prediction
    assert {o.name: o.experiment_type for o in summary.experiments} == TYPES
    for outcome in summary.experiments:
        assert outcome.skipped is None
        assert outcome.champion_version is not None
        assert outcome.predictions > 0, outcome.name
    pump = summary.outcome(PUMP)
    streamed = (
        size.pump_normal + size.pump_shifted + size.pump_after + size.pump_settled + size.pump_fault
    )
    assert pump.predictions == streamed
    assert summary.outcome(ORDERS).predictions == size.orders_stream  # one row per case

    # the story: a new duty point approved by a person, a failing bearing rejected as a fault
    steps = [step.step for step in summary.story]
    assert steps == ["alert", "approved", "promoted", "alert", "rejected as a fault"]
    assert summary.story[0].text.startswith("anomaly_rate mean of last 3")
    promoted, rejected = summary.story[2], summary.story[4]
    assert promoted.version == pump.champion_version
    assert rejected.version is not None
    assert rejected.version > promoted.version
    assert promoted.figure is not None
    assert rejected.figure is not None
    assert pump.retrains == 1
    stream = pump.stream
    times = pd.to_datetime(stream["ds"])
    shift_at, fault_at = (pd.Timestamp(t) for t in make_data(size)[PUMP].changes)
    moved = (times >= shift_at) & (times < fault_at)
    by_v1 = stream[moved & (stream["version"] == 1)]
    by_new = stream[moved & (stream["version"] == promoted.version)]
    failing = stream[times >= fault_at]
    assert by_new["anomaly"].mean() < 0.2 < by_v1["anomaly"].mean()
    assert failing["anomaly"].mean() > 0.9  # the approved champion still flags the fault
    assert set(failing["version"]) == {promoted.version}  # the rejected one never served

    # the report, the config for `observml serve`, and where to look
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert summary.report == (tmp_path / "report.html").resolve()
    assert report.count("Plotly.newPlot") >= 8
    assert "plotly.js v" in report  # plotly.js inline: the page opens offline
    assert "demo-pump: streamed anomaly scores" in report
    assert "champion vs challenger in shadow" in report
    assert "then rejected as a fault" in report
    config = load_config(summary.hub_config)
    assert [i.name for i in config.experiments] == list(TYPES)
    assert config.plugins["datastream"].type == "local"
    assert "mlflow ui --backend-store-uri sqlite:///.observml/mlflow.db" in out
    assert "observml serve --config .observml/demo/hub_config.yaml" in out
    assert "report.html" in out
    for name in TYPES:
        assert name in out

    assert "rejected as a fault: challenger" in out

    # the store holds what the summary says: a second hub restores the approved champion,
    # no challenger in shadow, and the fault in the library
    with ExperimentHub.from_config(summary.hub_config, streaming=False) as hub:
        status = hub.status(PUMP)
        assert status["champion_version"] == promoted.version
        assert status["shadow"] is None
        tags = {v["version"]: v["tags"] for v in hub.versions(PUMP)}
        assert tags[promoted.version]["observml.decision"] == "promoted"
        assert tags[rejected.version]["observml.shadow"] == "rejected"
        library = hub.library(PUMP)
        assert library["faults"] == 1
        assert library["normal_rows"] > 0


@pytest.fixture
def memory_demo() -> Any:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        yield hub


def test_demo_skips_process_mining_without_pm4py(
    memory_demo: ExperimentHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pm4py", None)  # import pm4py now fails
    demo = Demo(memory_demo, DemoOptions(size=DemoSize.quick()))
    demo.create()
    skipped = demo.outcomes[ORDERS].skipped
    assert skipped is not None
    assert "the model needs 'pm4py', which is not installed" in skipped
    assert "pip install 'observml[process-mining]'" in skipped
    assert demo.active() == ["demo-pump", "demo-line", "demo-load"]


def test_demo_fails_clearly_when_no_alert_comes(memory_demo: ExperimentHub) -> None:
    demo = Demo(memory_demo, DemoOptions(size=DemoSize.quick(), timeout=5))
    demo.create()
    memory_demo.train(PUMP, data=demo.data[PUMP].train, wait=True)
    demo.outcomes[PUMP].champion_version = 1
    with pytest.raises(
        ExperimentError, match=r"the new duty point raised no alert on demo-pump within 5 s"
    ):
        demo._wait_for_alert("the new duty point")  # nothing streams, so nothing fires


def test_demo_config_for_rabbitmq_keeps_the_password_out() -> None:
    text = demo_config(
        DemoOptions(datastream="rabbitmq", rabbitmq={"host": "broker", "password": "hunter2"}),
        experiments=[PUMP],
    )
    assert "hunter2" not in text
    document = yaml.safe_load(text)
    settings = document["plugins"]["datastream"]["config"]
    assert settings["host"] == "broker"
    assert settings["password"] == "${RABBITMQ_PASSWORD:-guest}"
    assert document["experiments"][0]["streaming"] is True
