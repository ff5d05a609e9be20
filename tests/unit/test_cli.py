from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.cli_helpers import MEMORY, run


def test_cli_plugins_lists_builtins_with_origin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins"], capsys)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["PLUGIN", "TYPE", "NAME", "ORIGIN", "CLASS"]
    assert ["mlops", "mlflow", "built-in", "observml.plugins.mlflow_plugin:MLflowPlugin"] in rows
    code, out, _ = run(["plugins", "--json"], capsys)
    entries = json.loads(out)
    assert {
        "plugin_type": "datastream",
        "name": "rabbitmq",
        "origin": "built-in",
        "target": "observml.plugins.rabbitmq_plugin:RabbitMQPlugin",
    } in entries


def test_cli_config_check_ok(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(MEMORY)
    code, out, _ = run(["config", "check"], capsys)
    assert code == 0
    assert out.startswith("hub_config.yaml: OK")
    assert "plugins.mlops: memory [enabled]" in out


def test_cli_config_check_lists_every_error(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        "taskqueue: {}\nplugins:\n  mlops: {type: mlfow}\n  datastream: {type: memory}\n"
    )
    code, out, err = run(["config", "check", str(path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [
        "error: hub_config.yaml: taskqueue: the task queue plugin was removed from observml"
        " (training runs as a job inside the hub). Delete this section.",
        "error: hub_config.yaml: plugins.mlops.type: no mlops plugin named 'mlfow'; did you mean"
        " 'mlflow'? Known: memory, mlflow. Packages add more through the 'observml.mlops'"
        " entry-point group, or give 'package.module:Class'.",
    ]
    assert "Traceback" not in err


def test_cli_config_check_reports_a_bad_api_section_with_the_rest(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        "plugins:\n  mlops: {type: mlfow}\n  datastream: {type: memory}\n"
        "api: {port: 70000, tokn: x}\n"
    )
    code, out, err = run(["config", "check", str(path)], capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    unknown = (
        "error: hub_config.yaml: api.tokn: unknown key. ApiSettings accepts: host, port, token,"
        " max_body_bytes, cors_origins, session_max_age."
    )
    assert unknown in lines
    assert "error: hub_config.yaml: api.port: expected 1-65535, got 70000." in lines
    assert any(
        line.startswith("error: hub_config.yaml: plugins.mlops.type: no mlops plugin named")
        for line in lines
    )


def test_cli_config_check_shows_the_api_settings(
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OBSERVML_API_TOKEN", raising=False)
    write_config(MEMORY + "api: {port: 8123, token: s3cret, session_max_age: 43200}\n")
    code, out, _ = run(["config", "check"], capsys)
    assert code == 0
    assert "  api: http://127.0.0.1:8123, token set" in out.splitlines()
    assert "s3cret" not in out


def test_cli_health_table_and_json(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(MEMORY)
    code, out, _ = run(["health"], capsys)
    assert code == 0
    assert out.splitlines()[0].split() == ["PLUGIN", "STATE", "LATENCY", "DETAILS"]
    code, out, _ = run(["health", "--json"], capsys)
    report = json.loads(out)
    assert report["mlops"]["healthy"] is True
    assert "latency_ms" in report["datastream"]["details"]


@pytest.mark.parametrize(
    ("datastream", "details"),
    [
        pytest.param(
            "{type: 'tests.unit.plugins_for_tests:UnhealthyPlugin'}",
            "status=error, message=broker at example:5672 is down",
            id="reports-unhealthy",
        ),
        pytest.param(
            "{type: 'tests.unit.plugins_for_tests:RaisingHealthPlugin',"
            " config: {plugin_type: datastream}}",
            "status=error, message=health_check raised RuntimeError: boom",
            id="check-raises",
        ),
    ],
)
def test_cli_health_exit_1_when_unhealthy(
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    datastream: str,
    details: str,
) -> None:
    write_config(f"plugins:\n  mlops: {{type: memory}}\n  datastream: {datastream}\n")
    code, out, _ = run(["health"], capsys)
    assert code == 1
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["mlops"].split()[1] == "healthy"
    assert rows["datastream"].split()[1] == "UNHEALTHY"
    assert details in rows["datastream"]
    code, out, _ = run(["health", "--json"], capsys)
    assert code == 1
    report = json.loads(out)
    assert report["mlops"]["healthy"] is True
    assert report["datastream"]["healthy"] is False


def test_cli_health_names_a_plugin_configured_in_the_wrong_slot(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(
        "plugins:\n  mlops: {type: memory}\n"
        "  datastream: {type: 'tests.unit.plugins_for_tests:RaisingHealthPlugin'}\n"
    )
    # RaisingHealthPlugin defaults to the 'mlops' slot: the config check catches that first.
    code, _, err = run(["health"], capsys)
    assert code == 1
    assert "is a 'mlops' plugin, configured under 'plugins.datastream'" in err
