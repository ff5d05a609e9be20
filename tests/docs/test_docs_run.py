"""The shell and Python blocks of README.md and docs/quickstart.md run as written.

Each page gets a fresh copy of the repository in a temp folder (git's files, or the tree without
``.venv``, ``.observml`` and caches) whose ``.venv`` is a link to the project's own, installed by
``./scripts/test`` (so ``./scripts/demo`` finds it installed and does not install again).
``OBSERVML_HOME`` is the copy's ``.observml``. Shell blocks run in bash with the PATH of a new
shell, without the virtual environment on it, as a reader types them after opening one; Python
blocks run with the project's Python. Each block must exit 0 and print the phrases its
``<!-- doc-test: expect ... -->`` marks name (see :mod:`tests.docs.blocks`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import pytest

from tests.docs.blocks import Block, blocks
from tests.services import port_open, service_missing

pytestmark = [pytest.mark.slow]

ROOT: Final = Path(__file__).resolve().parents[2]
PAGES: Final = (
    pytest.param("README.md", id="README.md"),
    pytest.param(  # its "On RabbitMQ" block runs the demo on the broker
        "docs/quickstart.md",
        id="quickstart.md",
        marks=[pytest.mark.integration, pytest.mark.rabbitmq],
    ),
)
#: Seconds one block may take (the full demo takes 30-90 s on two busy cores).
BLOCK_TIMEOUT: Final = 420.0
#: Seconds a server block has to answer its URL.
SERVER_TIMEOUT: Final = 180.0
_COPY_IGNORE: Final = (
    ".venv",
    ".observml",
    ".git",
    "__pycache__",
    "*.egg-info",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "observml-demo-report.html",
)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", PAGES)
def test_docs_page_blocks_run_as_written(page: str, tmp_path: Path) -> None:
    found = blocks(ROOT / page, ROOT)
    assert any(b.runnable for b in found), f"{page}: no block to run"
    if any("--rabbitmq" in b.code for b in found if b.runnable):
        _require_rabbitmq()
    copy = _fresh_copy(tmp_path)
    env = _new_shell_env(copy)
    with _servers() as start:
        for block in found:
            if block.stop_servers:
                start.stop_all()
            if not block.runnable:
                continue
            if block.server is not None:
                start(block, copy, env)
                continue
            _check(block, _run(block, copy, env))


@pytest.mark.timeout(1200)
def test_demo_where_to_look_lines_work_as_printed_in_a_new_shell(tmp_path: Path) -> None:
    copy = _fresh_copy(tmp_path)
    env = _new_shell_env(copy)
    demo = Block("scripts/demo", 0, "bash", "./scripts/demo --quick\n", ["Where to look"])
    output = _check(demo, _run(demo, copy, env))
    commands = _printed_commands(output)
    assert {c.split()[1] for c in commands} >= {"ui", "serve", "status", "predict", "send"}, output
    assert all(c.startswith("./.venv/bin/") for c in commands), commands
    servers = {"serve": "http://127.0.0.1:8010/livez", "ui": "http://127.0.0.1:5000/health"}
    for command in commands:
        block = Block("demo output", 0, "bash", command + "\n")
        kind = command.split()[1]
        if kind in servers:
            block.server = servers[kind]
            with _servers() as start:
                start(block, copy, env)
            continue
        block.expect = ["demo-pump"] if kind != "send" else ["sent 50 messages"]
        _check(block, _run(block, copy, env))


# -- running blocks ----------------------------------------------------------------------
def _run(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if block.lang == "python":
        script = cwd / f".doc-test-{Path(block.page).stem}-{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block}: still running after {BLOCK_TIMEOUT:.0f} s:\n{block.code}\n{exc}")


def _check(block: Block, done: subprocess.CompletedProcess[str]) -> str:
    output = done.stdout + done.stderr
    shown = f"{block}:\n{block.code}\n--- output (exit {done.returncode}) ---\n{output[-6000:]}"
    assert done.returncode == 0, shown
    for phrase in block.expect:
        assert phrase in output, f"expected {phrase!r} in the output of {shown}"
    return output


class _ServerStarter:
    """Starts server blocks in the background and stops them (their process groups)."""

    def __init__(self) -> None:
        self.running: list[tuple[Block, subprocess.Popen[bytes], Path]] = []

    def __call__(self, block: Block, cwd: Path, env: dict[str, str]) -> None:
        assert block.server is not None
        url = urlsplit(block.server)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        if port_open(host, port):
            pytest.fail(f"{block}: port {port} is taken before the block starts its server")
        log = cwd / f".doc-test-server-{port}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", block.code],
                cwd=cwd,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append((block, process, log))
        deadline = time.monotonic() + SERVER_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{block}: the server exited ({process.returncode}):\n{_tail(log)}")
            if _answers(block.server):
                return
            time.sleep(1.0)
        pytest.fail(
            f"{block}: {block.server} did not answer in {SERVER_TIMEOUT:.0f} s\n{_tail(log)}"
        )

    def stop_all(self) -> None:
        while self.running:
            _, process, _ = self.running.pop()
            _stop(process)


@contextmanager
def _servers() -> Iterator[_ServerStarter]:
    starter = _ServerStarter()
    try:
        yield starter
    finally:
        starter.stop_all()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # the block's own process group (start_new_session)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-4000:]


def _printed_commands(output: str) -> list[str]:
    """The commands under "Where to look" in the demo's output."""
    after = output.split("Where to look", 1)[1]
    return [
        line.strip()
        for line in after.splitlines()
        if line.strip().startswith(("./", "/")) and " " in line.strip()
    ]


# -- the fresh folder --------------------------------------------------------------------
def _fresh_copy(tmp_path: Path) -> Path:
    """Copy the repository to ``tmp_path/repo`` and link the project's venv as its .venv."""
    venv = _installed_venv()
    copy = tmp_path / "repo"
    files = _git_files()
    if files is None:
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*_COPY_IGNORE), symlinks=True)
    else:
        for name in files:
            source = ROOT / name
            if source.is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(venv, target_is_directory=True)
    return copy


def _git_files() -> list[str] | None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    return [name for name in done.stdout.decode().split("\0") if name]


def _installed_venv() -> Path:
    """The project's venv, stamped by scripts/_env as holding observml[all] for this project.

    A copy's ``./scripts/demo`` would otherwise install the copy into it (and leave it pointing
    at a deleted folder).
    """
    venv = Path(sys.prefix)
    stamp = venv / ".observml-installed"
    lines = stamp.read_text(encoding="utf-8").split() if stamp.is_file() else []
    project = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if sys.prefix == sys.base_prefix or not lines or lines[0] != project or "all" not in lines:
        pytest.fail(
            f"{venv} is not the project's venv as ./scripts/test installs it (no current"
            f" {stamp.name} with the extra 'all'). Run the tests with ./scripts/test.",
            pytrace=False,
        )
    return venv


def _new_shell_env(copy: Path) -> dict[str, str]:
    """The environment of a new shell: no virtualenv on PATH; the copy's OBSERVML_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "OBSERVML_"))}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        part
        for part in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if part and not (Path(part).parent / "pyvenv.cfg").is_file()
    )
    env["OBSERVML_HOME"] = str(copy / ".observml")
    return env


def _require_rabbitmq() -> None:
    if not port_open("127.0.0.1", 5672):
        service_missing("the quickstart's --rabbitmq block needs RabbitMQ on 127.0.0.1:5672")
