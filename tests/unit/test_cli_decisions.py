"""``observml promote``, ``reject``, ``feedback`` and the retraining lines of ``status``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from tests.services import free_port
from tests.unit.cli_helpers import run

#: Embedded defaults (MLflow + local queue under the test's OBSERVML_HOME), jobs in threads.
EMBEDDED = "global: {job_isolation: thread}\n"
PUMP_CONFIG = (
    "type: fault_detection\n"
    "setup: {datetime_column: ds}\n"
    "create_model: {model: iforest, params: {n_estimators: 30}}\n"
)

pytestmark = pytest.mark.usefixtures("quiet_cli_output")


def sensors(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(shift, 1.0, (n, 3)), columns=["temp", "pressure", "flow"])
    frame.insert(0, "ds", pd.date_range("2024-01-01", periods=n, freq="h"))
    return frame


def flat(text: str) -> str:
    """The text with its line wrapping undone (status lines wrap to the terminal)."""
    return " ".join(text.split())


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "config": tmp_path / "pump.yaml",
        "train": tmp_path / "train.csv",
        "new": tmp_path / "new.csv",
        "fault": tmp_path / "fault.csv",
    }
    paths["config"].write_text(PUMP_CONFIG, encoding="utf-8")
    sensors(300).to_csv(paths["train"], index=False)
    sensors(200, shift=0.3, seed=3).to_csv(paths["new"], index=False)
    sensors(20, shift=3.0, seed=4).to_csv(paths["fault"], index=False)
    return paths


def status_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code, out, err = run(["status", "pump", "--json", *extra], capsys)
    assert code == 0, err
    found: dict[str, Any] = json.loads(out)
    return found


def tags_of(status: dict[str, Any], version: int) -> dict[str, str]:
    tags: dict[str, str] = next(v["tags"] for v in status["versions"] if v["version"] == version)
    return tags


def aliases_of(status: dict[str, Any]) -> dict[str, int]:
    return {a: v["version"] for v in status["versions"] for a in v["aliases"]}


# -- in-process, on the embedded defaults (the store is what one command leaves the next) ---
def test_cli_promote_reject_feedback_in_process(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(EMBEDDED)
    train = [
        "train",
        "pump",
        "--experiment-config",
        str(files["config"]),
        "--data",
        str(files["train"]),
    ]
    assert run(train, capsys)[0] == 0
    code, out, err = run(["retrain", "pump", "--data", str(files["new"])], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        "pump: challenger version 2 is in shadow beside champion v1: it scores the streamed rows"
        " until you decide."
    )
    # a fifth of the given rows is held out: the comparison is on rows neither model learnt
    held = "trained on: 160 of 200 window rows (given); left out 40 held out to compare"
    assert flat(out).count(held) == 1
    assert "false alarms on 40 normal reference rows neither model trained on" in out
    assert (
        lines[-1] == "  decide:     observml promote pump   |   observml reject pump [--as-fault]"
    )

    # a new process resumes the challenger from the store; the gate's words come from the run
    code, out, err = run(["status", "pump"], capsys)
    assert code == 0, err
    text = flat(out)
    assert "champion: v1 (previous -, challenger v2)" in text
    assert "promotion: approve: a person promotes or rejects; challengers learn from rows" in text
    assert "shadow: challenger v2 beside champion v1 since " in text
    assert "(resumed from the store) no streamed rows scored yet (it scores while pump" in text
    assert "gate: from the store: challenger v2 scores beside champion v1 until a person" in text
    assert "feedback: nothing labelled yet" in text
    status = status_json(capsys)
    assert aliases_of(status) == {"champion": 1, "challenger": 2}
    assert tags_of(status, 2)["observml.shadow"] == "pending"

    # the rows of an alarm live in the streaming process: this one cannot keep them
    code, _, err = run(["reject", "pump", "--as-fault"], capsys)
    assert code == 1
    assert "--as-fault keeps the rows the champion flagged while streaming" in err
    assert "observml feedback pump --label fault --file ROWS" in err
    code, _, err = run(["feedback", "pump", "--label", "fault", "--start", "2024-01-01"], capsys)
    assert code == 1
    assert "there are no streamed rows in this process to label" in err

    code, out, err = run(
        ["feedback", "pump", "--label", "fault", "--file", str(files["fault"]), "--reason", "seal"],
        capsys,
    )
    assert code == 0, err
    assert out.startswith("pump: 20 rows labelled fault (run ")
    assert "feedback:   fault library 1 episode (20 rows), normal reference 0 sets (0 rows)" in out
    assert "next:       every later challenger must keep flagging these rows." in out

    code, out, err = run(["reject", "pump", "--reason", "not convinced"], capsys)
    assert code == 0, err
    assert out.strip() == "pump: challenger version 2 rejected; champion v1 serves on."
    status = status_json(capsys)
    assert aliases_of(status) == {"champion": 1}
    assert tags_of(status, 2)["observml.decision"] == "rejected"
    assert tags_of(status, 2)["observml.shadow"] == "rejected"
    assert status["library"]["faults"] == 1
    code, _, err = run(["promote", "pump"], capsys)
    assert code == 1
    assert "no challenger in shadow to promote" in err

    code, out, err = run(["retrain", "pump", "--data", str(files["new"])], capsys)
    assert code == 0, err
    assert out.startswith("pump: challenger version 3 is in shadow beside champion v1")
    code, out, err = run(["promote", "pump", "--reason", "the overlay looks right"], capsys)
    assert code == 0, err
    assert out.strip() == (
        "pump: version 3 is the champion now (was v1). 'observml rollback pump' goes back."
    )
    status = status_json(capsys)
    assert status["champion_version"] == 3
    assert status["shadow"] is None
    assert aliases_of(status) == {"champion": 3, "previous": 1}
    assert tags_of(status, 3)["observml.decision"] == "promoted"
    assert tags_of(status, 3)["observml.shadow"] == "promoted"

    code, out, err = run(["promote", "pump", "--version", "1", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out) == {"name": "pump", "version": 1, "was": 3}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["feedback", "pump", "--label", "fault", "--file", "{fault}", "--start", "2024-01-01"],
            "give either --file or a time range (--start/--end), not both.",
            id="file-and-range",
        ),
        pytest.param(
            ["feedback", "pump", "--label", "fault", "--start", "yesterday"],
            "Invalid value for '--start': 'yesterday' is not a time pandas can read",
            id="bad-time",
        ),
        pytest.param(["feedback", "pump"], "Missing option '--label'", id="no-label"),
        pytest.param(
            ["promote", "pump", "--version", "0"], "Invalid value for '--version'", id="version-0"
        ),
    ],
)
def test_cli_decision_usage_errors_exit_2(
    argv: list[str],
    message: str,
    write_config: Callable[[str], Path],
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config("plugins:\n  mlops: {type: memory}\n  datastream: {type: memory}\n")
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err


# -- --url: a streaming server in a thread --------------------------------------------------
@pytest.fixture
def streaming_server() -> Iterator[tuple[str, ExperimentHub]]:
    """Serve a memory hub whose 'pump' alerts on a high anomaly rate; yield URL and hub."""
    import uvicorn

    from observml.api import ApiSettings, create_app

    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        config = {
            "create_model": {"model": "iforest", "params": {"n_estimators": 30}},
            "retrain": {"metric": "anomaly_rate", "threshold": 0.3, "enabled": False},
        }
        hub.create_experiment("pump", "fault_detection", config)
        job = hub.train("pump", data=sensors(400).drop(columns="ds"), wait=True)
        assert job.status.state == "succeeded", job.status.error
        port = free_port()
        app = create_app(hub, settings=ApiSettings())
        http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=http.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not http.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", hub
        finally:
            http.should_exit = True
            thread.join(15)


def stream(hub: ExperimentHub, frame: pd.DataFrame) -> None:
    plugin = hub.get_plugin("datastream")
    assert isinstance(plugin, InMemoryDataStreamPlugin)
    before = hub.status("pump")["counters"]["predicted_rows"]
    rows = frame.drop(columns="ds")
    for start in range(0, len(rows), 20):
        plugin.publish("pump.predict", rows.iloc[start : start + 20].to_json(orient="records"))
    deadline = time.monotonic() + 30
    while hub.status("pump")["counters"]["predicted_rows"] < before + len(rows):
        assert time.monotonic() < deadline, "the stream did not predict the rows"
        time.sleep(0.05)


def test_cli_url_mode_alert_shadow_reject_as_fault_and_promote(
    streaming_server: tuple[str, ExperimentHub],
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, hub = streaming_server
    remote = ["--url", url]
    hub.start_streaming("pump")
    stream(hub, pd.concat([sensors(100, seed=1), sensors(200, shift=4.0, seed=2)]))

    code, out, err = run(["status", "pump", *remote], capsys)
    assert code == 0, err
    text = flat(out)
    assert "ALERT: threshold since " in text
    assert ", fired once (champion v1): anomaly_rate value " in text
    assert "answer: observml feedback pump --label fault|normal --start " in text

    code, out, err = run(["retrain", "pump", *remote, "--data", str(files["new"])], capsys)
    assert code == 0, err
    assert out.startswith("pump: challenger version 2 is in shadow beside champion v1")
    stream(hub, sensors(60, seed=5))
    code, out, err = run(["status", "pump", *remote], capsys)
    assert code == 0, err
    text = flat(out)
    assert "shadow: challenger v2 beside champion v1 since " in text
    assert "scored 60 streamed rows: champion flags " in text
    assert "ok false alarms on 40 normal reference rows neither model trained on" in text
    assert "window: " not in text  # the shadow line already says what it learnt from

    code, out, err = run(
        ["reject", "pump", *remote, "--as-fault", "--reason", "cavitation"], capsys
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "pump: challenger version 2 rejected; champion v1 serves on."
    assert lines[1].startswith("  kept ")
    assert "rows the champion flagged as a known fault (run " in lines[1]
    status = status_json(capsys, *remote)
    assert status["library"]["faults"] == 1
    assert status["alerts"]["open"] is None
    assert status["alerts"]["recent"][0]["acknowledged_by"] == "api: rejected v2"
    assert status["decisions"][-1]["kind"] == "rejected"
    assert tags_of(status, 2)["observml.decision"] == "rejected"
    text = flat(run(["status", "pump", *remote], capsys)[1])
    assert "last alert: threshold at " in text
    assert "by api: rejected v2" in text
    assert "feedback: fault library 1 episode (" in text

    since = pd.Timestamp.now(tz="UTC")
    stream(hub, sensors(100, shift=0.5, seed=6))
    code, out, err = run(
        ["feedback", "pump", *remote, "--label", "normal", "--start", since.isoformat()], capsys
    )
    assert code == 0, err
    assert out.startswith("pump: 100 rows labelled normal (run ")
    assert "'observml retrain pump' trains a challenger that may learn from them" in flat(out)

    code, out, err = run(["retrain", "pump", *remote, "--data", str(files["new"])], capsys)
    assert code == 0, err
    code, out, err = run(["promote", "pump", *remote, "--reason", "checked"], capsys)
    assert code == 0, err
    assert out.startswith("pump: version 3 is the champion now (was v1).")
    status = status_json(capsys, *remote)
    assert status["decisions"][-1]["reason"] == "checked"
    assert aliases_of(status) == {"champion": 3, "previous": 1}
    assert tags_of(status, 3)["observml.decision"] == "promoted"
    code, _, err = run(["reject", "pump", *remote], capsys)
    assert code == 1
    assert f"error: {url}: experiment 'pump': no challenger in shadow to reject." in err
    hub.stop_streaming("pump")


def test_status_lines_of_the_retraining_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    from observml.cli.experiments import _describe

    monkeypatch.setenv("COLUMNS", "100")
    check = {
        "name": "false_alarms",
        "passed": True,
        "champion": 0.05,
        "challenger": 0.04,
        "limit": 0.07,
        "rows": 400,
        "detail": "false alarms on 400 normal reference rows: challenger 4.0% within 7.0%",
    }
    failed = {**check, "name": "fault_1", "passed": False, "detail": "fault 1 missed"}
    gate = {"passed": False, "reason": "gate failed: fault 1 missed", "checks": [check, failed]}
    status = {
        "name": "pump",
        "type": "fault_detection",
        "model": "iforest",
        "state": "ready",
        "champion_version": 1,
        "promotion": "auto",
        "window_rows": "all",
        "alerts": {"open": None, "recent": [], "raised": 0},
        "shadow": {
            "version": 2,
            "since": 1.7e9,
            "reason": "given rows",
            "rows": 0,
            "errors": 2,
            "last_error": "ValueError: boom",
            "gate": gate,
        },
        "last_window": {"summary": "300 of 300 window rows (given)", "alarm_now": False},
        "last_gate": gate,
        "library": {"error": "ServiceUnavailableError: store down"},
    }
    lines = _describe(status).splitlines()
    assert lines[3:] == [
        "  promotion:  auto: the gate decides; challengers learn from every streamed row but known"
        " faults",
        lines[4],  # the shadow line carries a local time
        "              no streamed rows scored yet (it scores while pump streams)",
        "              the challenger failed on 2 batches: ValueError: boom",
        "  gate:       FAILED (advice: a person decides)",
        "              ok   false alarms on 400 normal reference rows: challenger 4.0% within 7.0%",
        "              FAIL fault 1 missed",
        "  decide:     observml promote pump   |   observml reject pump [--as-fault]",
        "  window:     the last challenger learnt from 300 of 300 window rows (given)",
        "  feedback:   the fault library cannot be read: ServiceUnavailableError: store down",
    ]
    assert lines[4].startswith("  shadow:     challenger v2 beside champion v1 since ")
    text = flat(_describe({**status, "shadow": None}))
    assert "window: the last challenger learnt from 300 of 300 window rows (given)" in text
    assert "last gate: gate failed: fault 1 missed" in text
