"""``observml send/train/predict/status/retrain/rollback``: in-process and with ``--url``.

``promote``, ``reject`` and ``feedback`` are tested in ``test_cli_decisions.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.plugins.local import LocalQueuePlugin
from tests.services import free_port
from tests.unit.cli_helpers import MEMORY, run

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


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Training, new and drifted rows as CSV/Parquet/JSON, and the experiment config."""
    paths = {
        "config": tmp_path / "pump.yaml",
        "train": tmp_path / "train.csv",
        "new": tmp_path / "new.parquet",
        "new_json": tmp_path / "new.json",
        "drifted": tmp_path / "drifted.csv",
    }
    paths["config"].write_text(PUMP_CONFIG, encoding="utf-8")
    sensors(300).to_csv(paths["train"], index=False)
    sensors(10, seed=1).to_parquet(paths["new"])
    paths["new_json"].write_text(
        sensors(4, seed=2).to_json(orient="split", date_format="iso"), encoding="utf-8"
    )
    sensors(200, shift=3.0, seed=3).to_csv(paths["drifted"], index=False)
    return paths


# -- in-process, on the embedded defaults ---------------------------------------------------
def test_cli_train_predict_status_rollback_retrain_through_the_store(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(EMBEDDED)
    code, out, err = run(
        [
            "train",
            "pump",
            "--experiment-config",
            str(files["config"]),
            "--data",
            str(files["train"]),
        ],
        capsys,
    )
    assert code == 0, err
    assert out.startswith("pump: version 1 is the champion (run ")
    assert "train_rows=300" in out
    assert "training pump" in err  # the progress bar

    code, out, err = run(["predict", "pump", "--data", str(files["new"]), "--limit", "3"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ROW", "DS", "SCORE", "ANOMALY"]
    assert len(lines) == 5
    assert lines[-1] == "10 rows predicted by pump (first 3 shown)."

    code, out, _ = run(["predict", "pump", "--data", str(files["new_json"]), "--json"], capsys)
    rows = json.loads(out)
    assert len(rows) == 4
    assert {"score", "anomaly"} <= set(rows[0])

    code, out, err = run(["train", "pump", "--data", str(files["train"])], capsys)  # type known
    assert code == 0, err
    assert out.startswith("pump: version 2 is the champion")

    code, out, err = run(["status", "pump"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "pump: fault_detection, model iforest, ready"
    assert "champion:   v2  (previous v1, challenger -)" in out
    assert "versions:   v2 (champion), v1 (previous)" in out
    code, out, _ = run(["status", "pump", "--json"], capsys)
    status = json.loads(out)
    assert status["champion_version"] == 2
    assert [v["version"] for v in status["versions"]] == [2, 1]
    assert len(status["runs"]) == 2

    code, out, err = run(["rollback", "pump"], capsys)
    assert code == 0, err
    assert out.strip() == "pump: version 1 is the champion again (was v2)."

    code, out, err = run(["retrain", "pump", "--data", str(files["drifted"])], capsys)
    assert code == 0, err
    assert out.startswith(
        "pump: challenger version 3 is in shadow beside champion v1: it scores the streamed rows"
    )


def test_cli_send_then_train_drains_the_queue(
    write_config: Callable[[str], Path],
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(EMBEDDED)
    code, out, err = run(
        ["send", "pump.train", str(files["train"]), "--rows-per-message", "25"], capsys
    )
    assert code == 0, err
    assert out.startswith("sent 12 messages (300 rows) to pump.train in ")
    assert out.rstrip().endswith("msg/s.")
    code, out, err = run(["train", "pump", "--experiment-config", str(files["config"])], capsys)
    assert code == 0, err
    assert "train_rows=300" in out

    code, out, err = run(["send", "pump.predict", str(files["new"]), "--format", "split"], capsys)
    assert code == 0, err
    assert out.startswith("sent 10 messages (10 rows) to pump.predict")
    queue = LocalQueuePlugin(path=str(tmp_path / ".observml" / "queues"))
    queue.initialize()
    try:
        body = json.loads(queue.pull_data("pump.predict"))
    finally:
        queue.shutdown()
    assert body["columns"] == ["ds", "temp", "pressure", "flow"]
    assert len(body["data"]) == 1


# -- in-process errors (memory plugins: nothing outlives the command) ------------------------
@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        pytest.param(
            ["train", "pump", "--data", "{train}"],
            2,
            "experiment 'pump' is new (not in the hub, no champion in the MLOps store): give its"
            " type with --type (fault_detection, fault_isolation, time_series, process_mining) or"
            " 'type:' in the --experiment-config file.",
            id="new-without-type",
        ),
        pytest.param(
            ["train", "pump", "--type", "fault_detektion", "--data", "{train}"],
            2,
            "no experiment plugin named 'fault_detektion'; did you mean 'fault_detection'?",
            id="unknown-type",
        ),
        pytest.param(
            ["predict", "valve", "--data", "{new}"],
            1,
            "experiment 'valve' is not in the hub config (known: none) and has no champion in"
            " the MLOps store. Train it first: observml train valve --type TYPE"
            " --experiment-config FILE --data FILE",
            id="predict-unknown",
        ),
        pytest.param(
            ["predict", "valve", "--data", "{config}"],
            1,
            "pump.yaml: unknown file type '.yaml'. Use one of .csv, .json, .jsonl, .ndjson,"
            " .parquet, .pq.",
            id="unknown-suffix",
        ),
        pytest.param(
            ["rollback", "valve"], 1, "experiment 'valve' is not in the hub config", id="rollback"
        ),
    ],
)
def test_cli_errors_say_what_to_do(
    argv: list[str],
    code: int,
    message: str,
    write_config: Callable[[str], Path],
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(MEMORY)
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    got, out, err = run(argv, capsys)
    assert got == code, err
    assert message in err
    assert "Traceback" not in err


def test_cli_bad_experiment_config_exits_2_naming_the_key(
    write_config: Callable[[str], Path],
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(MEMORY)
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: fault_detection\ncreate_model: {model: isoforest}\n", encoding="utf-8")
    code, _, err = run(
        ["train", "pump", "--experiment-config", str(bad), "--data", str(files["train"])], capsys
    )
    assert code == 2
    assert "create_model.model: unknown fault_detection model 'isoforest'. Valid: iforest" in err
    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- a\n- b\n", encoding="utf-8")
    code, _, err = run(["train", "pump", "--experiment-config", str(not_a_mapping)], capsys)
    assert code == 2
    assert "list.yaml: expected a mapping with setup, create_model, retrain" in err


def test_cli_train_config_still_reads_the_experiment_config_with_a_notice(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(MEMORY + "global: {job_isolation: thread}\n")
    code, out, err = run(
        ["train", "pump", "--config", str(files["config"]), "--data", str(files["train"])], capsys
    )
    assert code == 0, err
    assert out.startswith("pump: version 1 is the champion")
    notices = [line for line in err.splitlines() if "deprecated" in line]
    assert notices == [
        "observml train: --config FILE is deprecated for the experiment config; use"
        " --experiment-config FILE (--config will mean the hub config, as in every other"
        " command)."
    ]


def test_cli_train_takes_the_experiment_config_once(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(MEMORY)
    config = str(files["config"])
    code, out, err = run(
        ["train", "pump", "--config", config, "--experiment-config", config], capsys
    )
    assert code == 2
    assert out == ""
    assert "give the experiment config once: --experiment-config FILE" in err


def test_cli_train_hub_config_is_the_hub_config(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    hub = write_config("plugins:\n  mlops: {type: mlfow}\n", name="other_hub.yaml")
    code, _, err = run(
        ["train", "pump", "--hub-config", str(hub), "--experiment-config", str(files["config"])],
        capsys,
    )
    assert code == 2
    assert "other_hub.yaml: plugins.mlops.type: no mlops plugin named 'mlfow'" in err


def test_cli_train_help_names_the_experiment_config_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    assert "--experiment-config FILE" in out
    assert "not the hub config" in out
    assert "--hub-config FILE" in out
    assert "--config " not in out  # the deprecated spelling is not offered


def test_cli_failed_training_exits_1_with_the_jobs_error(
    write_config: Callable[[str], Path],
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(MEMORY + "global: {job_isolation: thread}\n")
    broken = tmp_path / "broken.csv"
    broken.write_text("ds,temp\n2024-01-01,hot\n2024-01-02,cold\n", encoding="utf-8")
    code, _, err = run(
        ["train", "pump", "--experiment-config", str(files["config"]), "--data", str(broken)],
        capsys,
    )
    assert code == 1
    assert "error: training pump: job " in err
    assert "failed: DataError: " in err
    assert "temp" in err


def test_cli_parquet_without_pyarrow_names_the_package(
    write_config: Callable[[str], Path],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(MEMORY)

    def no_engine(*args: object, **kwargs: object) -> pd.DataFrame:
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow'")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    code, _, err = run(["predict", "pump", "--data", str(files["new"])], capsys)
    assert code == 1
    assert "reading Parquet needs pyarrow, which is not installed." in err
    assert "pip install pyarrow" in err


def test_cli_type_mismatch_and_status_of_configured_experiments(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["status", "--config", str(write_config(MEMORY))], capsys)
    assert code == 0
    assert out.startswith("no experiments in the hub config. Name one to read it from the MLOps")
    write_config(MEMORY + "experiments:\n  - {name: pump, type: fault_detection}\n")
    code, out, _ = run(["status"], capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        "1 experiment: 1 untrained · 0 streaming · 0 alerts open · 0 in shadow"
    )
    assert out.splitlines()[1].split() == [
        "NAME",
        "TYPE",
        "MODEL",
        "STATE",
        "CHAMPION",
        "STREAMING",
        "PREDICTED",
        "ROWS",
    ]
    assert out.splitlines()[2].split() == [
        "pump",
        "fault_detection",
        "iforest",
        "untrained",
        "-",
        "no",
        "0",
    ]
    code, _, err = run(
        ["train", "pump", "--type", "time_series", "--data", str(files["train"])], capsys
    )
    assert code == 1
    assert "experiment 'pump' is a fault_detection experiment, not time_series." in err


def test_cli_send_needs_a_datastream(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_config("plugins:\n  mlops: {type: memory}\n  datastream: {enabled: false}\n")
    code, _, err = run(["send", "pump.predict", str(files["train"])], capsys)
    assert code == 1
    assert "plugins.datastream: the hub config disables the datastream" in err


# -- --url: a real server in a thread ------------------------------------------------------
@pytest.fixture
def server() -> Iterator[str]:
    """Serve a memory-backed hub's API on a free loopback port (token 's3cret')."""
    import uvicorn

    from observml.api import ApiSettings, create_app

    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        port = free_port()
        app = create_app(hub, settings=ApiSettings(token="s3cret"))
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        http = uvicorn.Server(config)
        thread = threading.Thread(target=http.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not http.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            http.should_exit = True
            thread.join(15)


def test_cli_url_mode_talks_to_the_server(
    server: str,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OBSERVML_API_TOKEN", "s3cret")
    remote = ["--url", server]
    code, out, err = run(
        [
            "train",
            "pump",
            *remote,
            "--experiment-config",
            str(files["config"]),
            "--data",
            str(files["train"]),
        ],
        capsys,
    )
    assert code == 0, err
    assert out.startswith("pump: version 1 is the champion")
    code, out, err = run(
        ["predict", "pump", *remote, "--data", str(files["new"]), "--json"], capsys
    )
    assert code == 0, err
    assert len(json.loads(out)) == 10
    code, out, _ = run(["status", *remote], capsys)
    assert out.splitlines()[2].split()[:5] == ["pump", "fault_detection", "iforest", "ready", "v1"]
    code, out, _ = run(["status", "pump", *remote], capsys)
    assert "versions:   v1 (champion)" in out
    code, out, err = run(["retrain", "pump", *remote, "--data", str(files["drifted"])], capsys)
    assert code == 0, err
    assert out.startswith("pump: challenger version 2 is in shadow beside champion v1")
    code, _, err = run(["rollback", "pump", *remote], capsys)
    assert code == 1
    assert "no previous version to roll back to" in err


def test_cli_url_mode_pages_the_servers_list(
    server: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    remote = ["--url", server, "--token", "s3cret"]
    with httpx.Client(base_url=server, headers={"Authorization": "Bearer s3cret"}) as client:
        for i in range(1, 6):
            body = {"name": f"valve-{i}", "type": "fault_detection"}
            assert client.post("/experiments", json=body).status_code == 201
    train = ["train", "pump", *remote, "--experiment-config", str(files["config"])]
    code, _, err = run([*train, "--data", str(files["train"])], capsys)
    assert code == 0, err

    code, out, err = run(["status", *remote, "--limit", "2", "--offset", "1"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        "6 experiments: 5 untrained, 1 ready · 0 streaming · 0 alerts open · 0 in shadow"
    )
    assert [line.split()[0] for line in lines[2:4]] == ["valve-1", "valve-2"]
    assert lines[4] == (  # the token is never repeated in the command
        f"showing 2-3 of 6; next: observml status --url {server} --limit 2 --offset 3"
    )
    code, out, _ = run(["status", *remote, "--state", "ready"], capsys)
    assert out.splitlines()[2].split()[:5] == ["pump", "fault_detection", "iforest", "ready", "v1"]
    assert len(out.splitlines()) == 3  # the summary, the header, pump
    code, out, _ = run(["status", *remote, "--json", "--match", "valve", "--limit", "3"], capsys)
    answer = json.loads(out)
    assert answer["summary"]["by_state"] == {"untrained": 5, "ready": 1}
    assert [e["name"] for e in answer["experiments"]] == ["valve-1", "valve-2", "valve-3"]
    assert (answer["offset"], answer["limit"], answer["total"]) == (0, 3, 5)


def test_cli_url_mode_errors(
    server: str,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OBSERVML_API_TOKEN", raising=False)
    code, _, err = run(["status", "--url", server], capsys)
    assert code == 1
    assert err.startswith(f"error: {server}: ")
    assert "Pass --token or set OBSERVML_API_TOKEN." in err
    authed = ["--url", server, "--token", "s3cret"]
    code, _, err = run(
        ["train", "pump", *authed, "--type", "nope", "--data", str(files["train"])], capsys
    )
    assert code == 2
    assert "no experiment plugin named 'nope'" in err
    code, _, err = run(  # a request never names code: exit 2, nothing imported on the server
        ["train", "pump", *authed, "--type", "antigravity:Nope", "--data", str(files["train"])],
        capsys,
    )
    assert code == 2
    assert "'antigravity:Nope' is a module path; a request may only name a registered" in err
    assert "antigravity" not in sys.modules
    bad = files["config"].with_name("bad.yaml")
    bad.write_text("create_model: {model: pca, params: {n_components: abc}}\n", "utf-8")
    code, _, err = run(
        ["train", "pump", *authed, "--type", "fault_detection", "--experiment-config", str(bad)],
        capsys,
    )
    assert code == 2  # a 422 ConfigError from the server is a configuration error here too
    assert "create_model.params.n_components" in err
    code, _, err = run(["predict", "valve", *authed, "--data", str(files["new"])], capsys)
    assert code == 1
    assert "no champion in the MLOps store. Train it first." in err
    # the server does not know 'valve' (a 404 NotFoundError): as in-process, it needs a type
    code, _, err = run(["train", "valve", *authed, "--data", str(files["train"])], capsys)
    assert code == 2
    assert "experiment 'valve' is new" in err
    assert "give its type with --type" in err
    down = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(["status", "--url", down], capsys)
    assert code == 1
    assert f"error: {down}: cannot connect" in err
    assert "Is 'observml serve' running there?" in err


def test_status_text_shows_the_last_drift_test() -> None:
    from observml.cli.experiments import _describe

    status = {
        "name": "pump",
        "type": "fault_detection",
        "model": "iforest",
        "state": "ready",
        "champion_version": 1,
        "drift": {
            "drifted": True,
            "statistic": 0.3421,
            "p_value": 1.2e-9,
            "n_reference": 1000,
            "n_recent": 200,
            "reference": "training",
        },
    }
    assert (
        "  drift:      drifted, KS statistic 0.342, p-value 1.2e-09"
        " (200 streamed vs 1000 training scores)" in _describe(status)
    )
    assert "drift:" not in _describe({**status, "drift": None})


def test_cli_url_mode_without_httpx_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if the cli extra were not installed
    code, _, err = run(["status", "--url", f"http://127.0.0.1:{free_port()}"], capsys)
    assert code == 1
    assert "talking to a server needs httpx, which is not installed" in err
    assert "pip install 'observml[cli]'" in err


def test_a_command_restores_only_the_configured_experiment_it_names(
    write_config: Callable[[str], Path], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI does not load every champion the hub config lists, only the one it works on."""
    from observml.cli.client import backend

    config = write_config(EMBEDDED)
    for name in ("pump", "fan"):
        args = ["train", name, "--experiment-config", str(files["config"])]
        assert run([*args, "--data", str(files["train"])], capsys)[0] == 0
    write_config(
        EMBEDDED + "experiments:\n"
        "  - {name: pump, type: fault_detection}\n"
        "  - {name: fan, type: fault_detection}\n"
    )
    with backend(None, None, str(config)) as ops:
        assert ops.status("pump")["champion_version"] == 1
        assert ops.hub.experiments() == ["pump"]  # fan is not started: not named
        assert ops.status("fan")["champion_version"] == 1  # restored when named
    code, out, _ = run(["status"], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("2 experiments: 2 ready")  # a list restores them all
