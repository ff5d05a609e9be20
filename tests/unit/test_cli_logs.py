"""The CLI's console handler: one per process, writing to the stderr of the moment."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from observml.cli.logs import CliHandler, cli_handlers, setup_logging


@pytest.fixture(autouse=True)
def _root_handlers_restored() -> Iterator[None]:
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)


def test_a_second_command_in_one_process_replaces_the_handler() -> None:
    first = setup_logging(debug=False)
    second = setup_logging(debug=True)
    assert cli_handlers() == [second]
    assert first not in logging.getLogger().handlers


def test_the_handler_writes_to_the_current_stderr_not_a_closed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = setup_logging(debug=False)
    assert isinstance(handler, CliHandler)
    gone = io.StringIO()
    monkeypatch.setattr(sys, "stderr", gone)
    gone.close()  # what click's test runner does to the stderr it lent a command
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    logging.getLogger("observml.test").warning("still heard")
    assert "still heard" in now.getvalue()
