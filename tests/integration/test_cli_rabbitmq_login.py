"""A login the broker refuses is one clean line, not pika's log lines and traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]

OBSERVML = str(Path(sys.executable).parent / "observml")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RABBITMQ_PASSWORD"}
    env["OBSERVML_HOME"] = str(cwd / ".observml")
    return subprocess.run(
        [OBSERVML, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_health_with_a_wrong_password_prints_one_line_naming_the_keys(
    rabbitmq_config: dict[str, Any], tmp_path: Path
) -> None:
    config = tmp_path / "hub_config.yaml"
    config.write_text(
        "plugins:\n  datastream:\n    type: rabbitmq\n    config:\n"
        f"      host: {rabbitmq_config['host']}\n      port: {rabbitmq_config['port']}\n"
        f"      username: {rabbitmq_config['username']}\n      password: not-the-password\n",
        "utf-8",
    )
    done = run(["health", "--config", str(config)], tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: plugins.datastream: RabbitMQPlugin.initialize() failed: RabbitMQ at"
        f" {rabbitmq_config['host']}:{rabbitmq_config['port']}: the broker refused the login of"
        f" user {rabbitmq_config['username']!r}. Check plugins.datastream.config.username and"
        " plugins.datastream.config.password."
    ]
    assert "not-the-password" not in done.stdout + done.stderr


def test_demo_with_a_wrong_password_names_its_options(
    rabbitmq_config: dict[str, Any], tmp_path: Path
) -> None:
    done = run(
        [
            "demo",
            "--quick",
            "--rabbitmq",
            "--host",
            rabbitmq_config["host"],
            "--port",
            str(rabbitmq_config["port"]),
            "--username",
            rabbitmq_config["username"],
            "--password",
            "not-the-password",
        ],
        tmp_path,
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("error: demo --rabbitmq: RabbitMQ at ")
    assert "the broker refused the login" in line
    assert "--username, --password (or $RABBITMQ_PASSWORD) and --virtual-host" in line
    assert "not-the-password" not in done.stdout + done.stderr
