"""The code blocks of a markdown page and how the docs test treats each.

A fenced block may be preceded by HTML comments the rendered page does not show:

* ``<!-- doc-test: expect PHRASE -->`` (one or more): the block's output must contain PHRASE;
* ``<!-- doc-test: skip REASON -->``: the block is not run (only where running it is
  impossible, e.g. it is the test suite itself);
* ``<!-- doc-test: server URL -->``: the block starts a server; it runs in the background until
  URL answers, and is stopped when the page is done;
* ``<!-- doc-test: stop-servers -->``: stop the servers started so far before this block.

``bash``/``sh`` blocks run in bash, ``python`` blocks in the project's Python; other languages
(``console`` output, YAML, ...) are shown, not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["RUNNABLE", "Block", "blocks"]

#: Languages of the blocks that are run.
RUNNABLE: Final = frozenset({"bash", "sh", "shell", "python"})
_FENCE = re.compile(
    r"(?P<marks>(?:^[ \t]*<!-- doc-test:.*?-->[ \t]*\n(?:[ \t]*\n)?)*)"
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^[ \t]*```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_MARK = re.compile(r"<!-- doc-test:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->")


@dataclass
class Block:
    """One fenced block and its doc-test marks."""

    page: str
    line: int
    lang: str
    code: str
    expect: list[str] = field(default_factory=list)
    skip: str | None = None
    server: str | None = None
    stop_servers: bool = False

    @property
    def runnable(self) -> bool:
        """Whether the test runs this block."""
        return self.lang in RUNNABLE and self.skip is None

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang})"


def blocks(path: Path, root: Path) -> list[Block]:
    """Return the fenced blocks of ``path`` in order, with their marks.

    Raises:
        ValueError: A mark is unknown, or a runnable block has neither an ``expect`` nor a
            ``server`` mark (its output would not be checked).
    """
    text = path.read_text(encoding="utf-8")
    page = path.relative_to(root).as_posix()
    found = []
    for match in _FENCE.finditer(text):
        indent = match["indent"]
        code = "".join(
            line.removeprefix(indent) for line in match["body"].splitlines(keepends=True)
        )
        block = Block(
            page, text.count("\n", 0, match.start("indent")) + 1, match["lang"].lower(), code
        )
        for mark in _MARK.finditer(match["marks"]):
            kind, arg = mark["kind"], mark["arg"]
            if kind == "expect" and arg:
                block.expect.append(arg)
            elif kind == "skip" and arg:
                block.skip = arg
            elif kind == "server" and arg:
                block.server = arg
            elif kind == "stop-servers":
                block.stop_servers = True
            else:
                raise ValueError(
                    f"{block}: unknown doc-test mark {mark[0]!r}. Use expect PHRASE, skip"
                    " REASON, server URL or stop-servers."
                )
        if block.runnable and not (block.expect or block.server):
            raise ValueError(
                f"{block}: add <!-- doc-test: expect PHRASE --> above the block (a phrase its"
                " output must contain), or <!-- doc-test: skip REASON --> if it cannot run."
            )
        found.append(block)
    return found
