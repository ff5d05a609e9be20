"""``observml demo --quick`` on the embedded defaults, and the scenario's failure paths."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.cli import demo as demo_cli
from observml.cli import main
from observml.config import load_config
from observml.demo import DemoOptions, DemoSize, DemoSummary, demo_config
from observml.demo.scenario import ORDERS, PUMP, Demo
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
    assert pump.predictions == size.pump_normal + size.pump_shifted + size.pump_after
    assert summary.outcome(ORDERS).predictions == size.orders_stream  # one row per case

    # a retrain fired and its challenger was promoted
    assert summary.retrain["fired"].startswith("anomaly_rate mean of last 3")
    assert summary.retrain["version"] == 2
    assert summary.retrain["previous"] == 1
    assert pump.champion_version == 2
    assert pump.retrains == 1
    after = pump.stream[pump.stream["version"] == 2]
    before = pump.stream[pump.stream["version"] == 1]
    assert len(after) >= size.pump_after
    assert after["anomaly"].mean() < 0.2 < before["anomaly"].mean()

    # the report, the config for `observml serve`, and where to look
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert summary.report == (tmp_path / "report.html").resolve()
    assert report.count("Plotly.newPlot") >= 8
    assert "plotly.js v" in report  # plotly.js inline: the page opens offline
    assert "demo-pump: streamed anomaly scores" in report
    config = load_config(summary.hub_config)
    assert [i.name for i in config.instances] == list(TYPES)
    assert config.plugins["datastream"].name == "local"
    assert "mlflow ui --backend-store-uri sqlite:///.observml/mlflow.db" in out
    assert "observml serve --config .observml/demo/hub_config.yaml" in out
    assert "report.html" in out
    for name in TYPES:
        assert name in out

    # the store holds what the summary says: a second hub restores the promoted champion
    with ExperimentHub.from_config(summary.hub_config, streaming=False) as hub:
        status = hub.status(PUMP)
        assert status["champion_version"] == 2
        assert [v["version"] for v in hub.versions(PUMP)] == [2, 1]
        assert hub.versions(PUMP)[0]["tags"]["observml.decision"] == "promoted"


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


def test_demo_fails_clearly_when_no_retrain_is_promoted(memory_demo: ExperimentHub) -> None:
    demo = Demo(memory_demo, DemoOptions(size=DemoSize.quick(), timeout=5))
    demo.create()
    memory_demo.train(PUMP, data=demo.data[PUMP].train, wait=True)
    demo.outcomes[PUMP].champion_version = 1
    with pytest.raises(ExperimentError, match=r"no retrain of demo-pump was promoted within 5 s"):
        demo._wait_for_promotion()  # nothing streams, so nothing fires


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
