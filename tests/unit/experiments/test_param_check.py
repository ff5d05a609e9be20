"""``create_model.params`` are checked as given: JSON text is never turned into a number."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from observml.experiments.param_check import check_params


class Model:
    def __init__(
        self, level: Literal[1, 2] = 1, scale: float = 1.0, out: Path | None = None
    ) -> None:
        self.level = level
        self.scale = scale
        self.out = out


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"level": "2"}, "expected one of 1, 2, got '2'.", id="literal-text"),
        pytest.param({"scale": "0.5"}, "expected a number, got '0.5'.", id="number-text"),
    ],
)
def test_param_check_refuses_numbers_written_as_text(params: dict[str, str], message: str) -> None:
    problems = check_params(params, target=Model, adapter=None, options={}, defaults={})
    assert [(p.key, p.message) for p in problems] == [
        (f"create_model.params.{next(iter(params))}", message)
    ]


def test_param_check_takes_values_its_annotations_take() -> None:
    params = {"level": 2, "scale": 3, "out": "report.csv"}
    assert check_params(params, target=Model, adapter=None, options={}, defaults={}) == []
