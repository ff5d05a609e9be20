"""``observml status`` without NAME: the summary line, a page of the table, the next page's command.

In-process here (the experiments of the hub config); ``--url`` mode is in
``test_cli_experiments.py`` beside the other commands against a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from observml.cli.listing import MAX_LIMIT, ListRequest, summary_line
from observml.hub.overview import MAX_PAGE
from tests.unit.cli_helpers import MEMORY, run

pytestmark = pytest.mark.usefixtures("quiet_cli_output")

#: Seven experiments: pump-1 to pump-5 (fault detection), flow-1 and flow-2 (time series).
SEVEN = (
    MEMORY
    + "experiments:\n"
    + "".join(
        [f"  - {{name: pump-{i}, type: fault_detection}}\n" for i in range(1, 6)]
        + [
            f"  - {{name: flow-{i}, type: time_series,"
            " config: {setup: {target: y, datetime_column: ds}}}\n"
            for i in (1, 2)
        ]
    )
)
SUMMARY = "7 experiments: 7 untrained · 0 streaming · 0 alerts open · 0 in shadow"


@pytest.fixture
def seven(write_config: Callable[[str], Path]) -> Path:
    return write_config(SEVEN)


def table_names(out: str) -> list[str]:
    """The NAME column of the table (between the header and the paging line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
    return [line.split()[0] for line in lines[start + 1 :] if not line.startswith("showing ")]


def test_summary_line_then_a_page_then_the_next_command(
    seven: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["status", "--limit", "3"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == SUMMARY
    assert lines[1].split()[:4] == ["NAME", "TYPE", "MODEL", "STATE"]
    assert table_names(out) == ["flow-1", "flow-2", "pump-1"]
    assert lines[-1] == "showing 1-3 of 7; next: observml status --limit 3 --offset 3"

    code, out, _ = run(["status", "--limit", "3", "--offset", "3"], capsys)
    assert table_names(out) == ["pump-2", "pump-3", "pump-4"]
    assert out.splitlines()[-1] == "showing 4-6 of 7; next: observml status --limit 3 --offset 6"
    code, out, _ = run(["status", "--limit", "3", "--offset", "6"], capsys)
    assert table_names(out) == ["pump-5"]
    assert out.splitlines()[-1] == "showing 7-7 of 7"  # the last page: nothing next


def test_everything_on_one_page_needs_no_paging_line(
    seven: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["status"], capsys)  # 50 by default
    assert code == 0
    assert out.splitlines()[0] == SUMMARY
    assert len(table_names(out)) == 7
    assert "showing" not in out


def test_filters_and_the_config_repeated_in_the_next_command(
    seven: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["status", "--config", str(seven), "--type", "fault_detection", "--limit", "2"], capsys
    )
    assert code == 0
    assert out.splitlines()[0] == SUMMARY  # the summary counts every experiment
    assert table_names(out) == ["pump-1", "pump-2"]
    assert out.splitlines()[-1] == (
        "showing 1-2 of 5 matching --type fault_detection; next: observml status --config"
        f" {seven} --type fault_detection --limit 2 --offset 2"
    )
    code, out, _ = run(["status", "--match", "FLOW"], capsys)
    assert table_names(out) == ["flow-1", "flow-2"]
    code, out, _ = run(["status", "--state", "ready"], capsys)
    assert out.splitlines() == [SUMMARY, "no experiments matching --state ready."]
    code, out, _ = run(["status", "--offset", "20"], capsys)
    assert out.splitlines() == [
        SUMMARY,
        "no experiments at --offset 20: 7 in all; first page: observml status",
    ]


def test_json_has_the_summary_the_page_and_the_total(
    seven: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["status", "--json", "--limit", "2", "--offset", "1", "--match", "pump"], capsys
    )
    assert code == 0
    answer = json.loads(out)
    assert set(answer) == {"summary", "experiments", "offset", "limit", "total"}
    assert answer["summary"] == {
        "total": 7,
        "by_state": {"untrained": 7},
        "by_type": {"fault_detection": 5, "time_series": 2},
        "streaming": 0,
        "open_alerts": 0,
        "in_shadow": 0,
    }
    assert [e["name"] for e in answer["experiments"]] == ["pump-2", "pump-3"]
    assert (answer["offset"], answer["limit"], answer["total"]) == (1, 2, 5)


def test_an_empty_hub_and_paging_a_single_experiment_are_refused(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(MEMORY)
    code, out, _ = run(["status"], capsys)
    assert code == 0
    assert out.startswith("no experiments in the hub config. Name one to read it from the MLOps")
    code, out, _ = run(["status", "--json"], capsys)
    assert json.loads(out)["experiments"] == []
    code, _, err = run(["status", "pump", "--limit", "5"], capsys)
    assert code == 2
    assert "--limit, --offset, --state, --type and --match page the list of experiments" in err
    code, _, err = run(["status", "--limit", "1001"], capsys)
    assert code == 2
    assert "1001 is not in the range 1<=x<=1000" in err


def test_the_cli_pages_within_the_hubs_limit() -> None:
    assert MAX_LIMIT == MAX_PAGE


def test_summary_line_counts_states_as_the_server_names_them() -> None:
    summary = {
        "total": 500,
        "by_state": {"ready": 480, "running": 12, "queued": 8},
        "by_type": {"fault_detection": 500},
        "streaming": 430,
        "open_alerts": 1,
        "in_shadow": 2,
    }
    assert summary_line(summary) == (
        "500 experiments: 480 ready, 12 running, 8 queued · 430 streaming · 1 alert open"
        " · 2 in shadow"
    )
    request = ListRequest(offset=0, state="ready", match="pump 1", where=("--url", "http://h"))
    assert request.command(50) == (  # a copy-paste command: quoted for the shell
        "observml status --url http://h --state ready --match 'pump 1' --offset 50"
    )
    assert request.query() == {"offset": 0, "limit": 50, "state": "ready", "name": "pump 1"}
