"""Documented import paths of modules that moved keep working, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = [
    pytest.param("observml.dataio", "observml.io.rows", "to_frame", id="dataio"),
    pytest.param(
        "observml.persistence", "observml.store.artifacts", "save_artifacts", id="persistence"
    ),
    pytest.param("observml.registry", "observml.config.registry", "PluginRegistry", id="registry"),
    pytest.param(
        "observml.experiments.store",
        "observml.store.experiments",
        "load_experiment_from_store",
        id="experiments.store",
    ),
]


@pytest.mark.parametrize(("old", "new", "name"), MOVED)
def test_old_path_warns_and_gives_the_same_objects(old: str, new: str, name: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}: import from there"):
        alias = importlib.import_module(old)
    module = importlib.import_module(new)
    assert getattr(alias, name) is getattr(module, name)
    assert alias.__all__ == module.__all__
