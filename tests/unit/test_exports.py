from __future__ import annotations
import __future__

import subprocess
import sys
import types

import observml


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
        "import sys, observml, observml.hub, observml.registry;"
        "heavy = [m for m in ('mlflow', 'pika', 'fastapi', 'click', 'pm4py', 'uvicorn')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
