"""Every ```python block in the user docs runs as written (one namespace per file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: Blocks that only show a value's shape, not code to run.
SHAPE_ONLY = re.compile(r"^\{\s*\n")


def _doc_files() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if BLOCK.search(p.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: p.name)
def test_docs_python_examples_run(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for block in BLOCK.findall(path.read_text(encoding="utf-8")):
        if SHAPE_ONLY.match(block):
            continue
        exec(compile(block, str(path), "exec"), namespace)  # our own docs
    capsys.readouterr()


def test_docs_producer_example_uses_plain_pika_only() -> None:
    """The outside producer of datastream.md must not need observml (another team runs it)."""
    text = (DOCS / "datastream.md").read_text(encoding="utf-8")
    [producer] = [block for block in BLOCK.findall(text) if "def publish_readings" in block]
    imports = re.findall(r"^(?:import|from) (\w+)", producer, re.MULTILINE)
    assert sorted(imports) == ["json", "pika", "uuid"]
    assert "queue_declare(queue, durable=True)" in producer
    assert "delivery_mode=pika.DeliveryMode.Persistent" in producer
