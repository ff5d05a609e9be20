"""Running the ``observml`` CLI inside a test, shared by the CLI, API-serve and demo tests."""

from __future__ import annotations

import pytest

from observml.cli import main

#: A hub config with the in-memory plugins: no store, no broker.
MEMORY = "plugins:\n  mlops: {type: memory}\n  datastream: {type: memory}\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``observml <argv>``; return its exit code, stdout and stderr."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
