from __future__ import annotations
import __future__

import re
import subprocess
import sys
import types
from pathlib import Path

import observml
from observml import errors

HUB_DOC = Path(__file__).resolve().parents[2] / "docs" / "hub.md"


def test_all_is_sorted_and_complete() -> None:
    assert observml.__all__ == sorted(observml.__all__)
    public = {
        name
        for name, value in vars(observml).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)  # type: ignore[arg-type]
    }
    assert public <= set(observml.__all__)
    for name in observml.__all__:
        assert hasattr(observml, name), name


def test_import_observml_imports_no_heavy_driver() -> None:
    code = (
        "import sys, observml, observml.hub, observml.config.registry;"
        "heavy = [m for m in ('mlflow', 'pika', 'fastapi', 'click', 'pm4py', 'uvicorn')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_error_the_hub_docs_list_is_exported_from_observml() -> None:
    """docs/hub.md's error table is what a user catches: each is ``from observml import X``."""
    documented = re.findall(
        r"^\| `(\w+Error)` \(\d{3}\)", HUB_DOC.read_text(encoding="utf-8"), re.M
    )
    assert len(documented) >= 8
    for name in documented:
        assert name in observml.__all__, name
        assert getattr(observml, name) is getattr(errors, name)


def test_an_unknown_experiment_is_a_not_found_error_with_404() -> None:
    assert issubclass(observml.ExperimentNotFoundError, observml.NotFoundError)
    assert issubclass(observml.ExperimentNotFoundError, observml.ExperimentError)
    assert observml.ExperimentNotFoundError.http_status == 404


def test_reading_an_api_section_imports_no_fastapi(tmp_path: Path) -> None:
    path = tmp_path / "hub_config.yaml"
    path.write_text("plugins: {mlops: {type: memory}}\napi: {port: 8123}\n", encoding="utf-8")
    code = (
        "import sys; from observml.config import load_config;"
        f"load_config({str(path)!r});"
        "from observml.api import ApiSettings;"
        "print([m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
