"""``observml decisions`` and ``observml tail``, in-process on the embedded defaults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml.plugins.datastream import REASON_HEADER
from observml.plugins.local import LocalQueuePlugin
from tests.unit.cli_helpers import run

pytestmark = pytest.mark.usefixtures("quiet_cli_output")

EMBEDDED = "global: {job_isolation: thread}\n"
PUMP_CONFIG = "type: fault_detection\ncreate_model: {model: pca}\n"


def queues(tmp_path: Path) -> LocalQueuePlugin:
    plugin = LocalQueuePlugin(path=str(tmp_path / ".observml" / "queues"))
    plugin.initialize()
    return plugin


def test_cli_decisions_lists_the_store_history_newest_first(
    tmp_path: Path, write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(EMBEDDED)
    config = tmp_path / "pump.yaml"
    config.write_text(PUMP_CONFIG, encoding="utf-8")
    rows = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 3)), columns=["a", "b", "c"])
    rows.to_csv(tmp_path / "train.csv", index=False)
    args = ["--experiment-config", str(config), "--data", str(tmp_path / "train.csv")]
    code, _, err = run(["train", "pump", *args], capsys)
    assert code == 0, err
    code, _, err = run(["retrain", "pump", "--data", str(tmp_path / "train.csv")], capsys)
    assert code == 0, err
    code, out, err = run(["decisions", "pump"], capsys)
    assert code == 0, err
    kinds = [line.split()[2] for line in out.splitlines()]
    assert kinds[-2:] == ["fired:", "trained"]  # the oldest: the first training, then the retrain
    assert kinds[0] in ("promoted", "rejected", "shadow")
    code, out, err = run(["decisions", "pump", "--limit", "1", "--offset", "1"], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 2
    assert out.splitlines()[1] == "(older: observml decisions pump --offset 2)"


def test_cli_tail_dead_shows_reasons_and_leaves_the_messages(
    tmp_path: Path, write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(EMBEDDED)
    plugin = queues(tmp_path)
    try:
        plugin.publish(
            "pump.predict.dead",
            '{"temp": 1}',
            message_id="m-1",
            headers={REASON_HEADER: "DataError: missing column 'flow'"},
        )
        plugin.publish("pump.predictions", '{"anomaly": false}', message_id="r-1")
        code, out, err = run(["tail", "pump.predict", "--dead", "-n", "5"], capsys)
        assert code == 0, err
        assert out.splitlines() == [
            "m-1  reason: DataError: missing column 'flow'",
            '    {"temp": 1}',
        ]
        code, out, err = run(["tail", "pump.predictions", "--json"], capsys)
        assert code == 0, err
        assert '"message_id": "r-1"' in out
        assert plugin.queue_depth("pump.predict.dead") == 1
        assert plugin.queue_depth("pump.predictions") == 1
        code, out, err = run(["tail", "pump.shadow"], capsys)
        assert (code, out) == (0, "")
        assert "pump.shadow: no messages waiting." in err
    finally:
        plugin.shutdown()
