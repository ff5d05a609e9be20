"""Property-based API testing with schemathesis against the app's own ``/openapi.json``.

Every operation gets generated requests (valid and invalid ones) twice: once with the path
pointing at a trained experiment (``pump``, with a challenger in shadow), so the bodies and
query strings reach the hub, and once with generated path values. Each response must not be a
5xx and must match the schema. The run is bounded (a fixed number of examples per operation,
derandomized) and counts its requests: at least 500.

Without Chromium (outside CI only), a ``?format=png`` figure request gets the 503 the schema
documents for it, saying what to install; every other response is checked as usual.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.api import ApiSettings, create_app
from tests.services import CHROMIUM_MISSING, fail_under_ci, find_chromium, require_module
from tests.unit.api.conftest import FD_CONFIG, sensor_rows

schemathesis = require_module("schemathesis", "dev")

from schemathesis import GenerationMode  # noqa: E402 - after the import check
from schemathesis.checks import not_a_server_error, response_schema_conformance  # noqa: E402

POSITIVE_EXAMPLES = 15
NEGATIVE_EXAMPLES = 8
MIN_REQUESTS = 500
#: Path values that reach real state: the trained experiment and its figures.
FIXED_PATHS = {"name": "pump", "plot": "scores", "job_id": "", "queue": "pump.predict"}
EDA_PLOT = "correlation"


def is_png_request(case: Any) -> bool:
    """Whether ``case`` asks a figure route for a PNG."""
    return "{plot}" in case.operation.path and (case.query or {}).get("format") == "png"


def check_png_unavailable(response: Any) -> None:
    """The 503 of PNG export without Chromium says what to install."""
    body = response.json()
    assert body["error"] == "ServiceUnavailableError", body
    assert "apt-get install chromium" in body["message"], body


@pytest.fixture
def app() -> Iterator[Any]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("pump", "fault_detection", FD_CONFIG)
        job = hub.train("pump", data=sensor_rows(300), wait=True)
        assert job.status.state == "succeeded", job.status.error
        FIXED_PATHS["job_id"] = job.job_id
        # a challenger in shadow, so promote, reject and the shadow figure reach real state
        retrain = hub.retrain("pump", data=sensor_rows(300, seed=9), wait=True)
        assert retrain.status.result["shadow"] is True, retrain.status.error
        app = create_app(hub, settings=ApiSettings())
        yield app
        app.state.png.close()


@pytest.mark.slow
def test_api_conforms_to_its_schema(app: Any) -> None:
    png_works = find_chromium() is not None
    if not png_works:
        fail_under_ci(CHROMIUM_MISSING)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    calls: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    png_unavailable = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    # the destructive operation last, so the others see the trained experiment
    operations.sort(key=lambda op: (op.method.upper() == "DELETE", op.path))
    for fixed in (True, False):
        for operation in operations:
            names = {p.name for p in operation.path_parameters}
            path_values = {
                name: (
                    EDA_PLOT if name == "plot" and "/eda/" in operation.path else FIXED_PATHS[name]
                )
                for name in names
            }
            if not fixed and not names:
                continue  # nothing to vary in the path: the first pass covered it
            for mode, examples in (
                (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
                (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
            ):
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=path_values if fixed else None
                )

                @given(case=strategy)
                @settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def run(case: Any) -> None:
                    nonlocal png_unavailable
                    response = case.call()
                    calls[case.operation.label] += 1
                    if not png_works and response.status_code == 503 and is_png_request(case):
                        png_unavailable += 1
                        check_png_unavailable(response)
                        case.validate_response(response, checks=[response_schema_conformance])
                        return
                    statuses[response.status_code] += 1
                    case.validate_response(
                        response, checks=[not_a_server_error, response_schema_conformance]
                    )

                try:
                    run()
                except Unsatisfiable:
                    # no invalid request exists (no parameters, no body)
                    assert mode == GenerationMode.NEGATIVE, operation.label
    total = sum(calls.values())
    print(f"schemathesis: {total} requests over {len(calls)} operations; statuses {dict(statuses)}")
    if not png_works:
        print(f"PNG export without Chromium: {png_unavailable} documented 503s")
    assert total >= MIN_REQUESTS, calls
    assert not [code for code in statuses if code >= 500]
    assert statuses[200] + statuses[201] + statuses[202] > 50  # not only rejections
