"""The package's shape: no import cycles, each subpackage imports only what lies below it.

Imports are read from the source (not executed), at module level and inside functions alike: a
local import hides a cycle from Python at import time, not from this test. For cycles, imports
under ``if TYPE_CHECKING:`` count too (two modules that need each other's types are one concept
split in two); for the layers they do not (an annotation may name a type from above).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "observml"

#: What each subpackage must not import (see docs/architecture.md). The API, the CLI and the
#: demo sit on top; the hub above the runtime and retraining; plugins, store, io and config at
#: the bottom with experiments.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "observml.config": ("hub", "runtime", "retraining", "store", "api", "cli", "demo"),
    "observml.io": ("experiments", "hub", "runtime", "retraining", "store", "api", "cli", "demo"),
    "observml.plugins": ("experiments", "hub", "runtime", "retraining", "store", "api", "cli"),
    "observml.store": ("hub", "runtime", "retraining", "api", "cli", "demo"),
    "observml.experiments": ("hub", "runtime", "store", "api", "cli", "demo"),
    "observml.retraining": ("hub.hub", "runtime", "api", "cli", "demo"),
    "observml.runtime": ("hub.hub", "api", "cli", "demo"),
    "observml.hub": ("api", "cli", "demo"),
    "observml.benchmarks": ("api", "cli", "demo"),
}
#: Deprecated aliases inside a module (Experiment.save, load_experiment) that call their new
#: home lazily until they go away in observml 0.2.
DEPRECATED_EDGES = {("observml.experiments.base", "observml.store.folders")}
#: Modules kept only as deprecated aliases of a moved one (they import their new home).
ALIASES = {
    "observml.dataio",
    "observml.persistence",
    "observml.registry",
    "observml.experiments.store",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _nodes(tree: ast.AST, *, types: bool) -> Iterator[ast.AST]:
    """Walk the tree; without ``types``, skip ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if not types and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(name: str, path: Path, known: set[str], *, types: bool) -> set[str]:
    """The observml modules ``name`` imports (with ``types``: for annotations too)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8")), types=types):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                )
                base = base.strip(".")
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("observml") and target != name:
                found.add(target)
    return found


def graph(*, types: bool = False) -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {
        name: {
            t for t in imports(name, path, known, types=types) if (name, t) not in DEPRECATED_EDGES
        }
        for name, path in found.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def without_package_inits(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop a module's edge to its own package's ``__init__`` (Python runs it first anyway)."""
    return {
        name: {t for t in targets if not (name.startswith(t + ".") and t in edges)}
        for name, targets in edges.items()
    }


def test_no_import_cycles() -> None:
    found = cycles(without_package_inits(graph(types=True)))
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    edges = graph()
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in edges.items()
        if (name == layer or name.startswith(layer + ".")) and name not in ALIASES
        for target in targets
        for above in FORBIDDEN[layer]
        if target == f"observml.{above}" or target.startswith(f"observml.{above}.")
    )
    assert wrong == []


def test_the_package_root_holds_only_the_api_errors_and_subpackages() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root == sorted(
        [
            "__init__.py",
            "errors.py",
            *(a.split(".")[-1] + ".py" for a in ALIASES if a.count(".") == 1),
        ]
    )


def test_a_module_over_400_lines_says_why_at_its_top() -> None:
    long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 400:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Why this module is long" not in doc:
                long.append(f"{name} ({text.count(chr(10))} lines)")
    assert long == []


def test_docs_architecture_states_the_same_rules_as_this_test() -> None:
    """Each subpackage's "Must not import:" line in docs/architecture.md is its FORBIDDEN row."""
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    stated: dict[str, set[str]] = {}
    for block in text.split("\n### ")[1:]:
        heading, _, body = block.partition("\n")
        names = [n.strip("` ") for n in heading.split(",")]
        for line in body.splitlines():
            if line.startswith("Must not import:"):
                rule = line.removeprefix("Must not import:").split("(")[0]
                for name in names:
                    stated[name] = {part.strip(" `.") for part in rule.split(",")}
    assert stated == {layer: set(above) for layer, above in FORBIDDEN.items()}
    documented = {
        n.strip("` ") for b in text.split("\n### ")[1:] for n in b.split("\n")[0].split(",")
    }
    subpackages = {f"observml.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages <= documented, "a subpackage without a paragraph in docs/architecture.md"
