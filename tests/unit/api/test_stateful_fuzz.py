"""Stateful API fuzzing: sequences of calls chained by the OpenAPI links, counting 5xx.

schemathesis builds a state machine from the app's ``/openapi.json``: ``POST /experiments``
links to the experiment's routes (train, predict, streaming, delete...) through the created
``name``, and ``POST .../train`` links to ``GET /jobs/{job_id}``. Hypothesis then runs
sequences such as create -> train -> poll the job -> predict -> delete.

Generated bodies are mostly rejected at the door (a random ``type`` is not registered), so
the test steers a share of the steps (chosen by a checksum of the generated case, so a replay
steers the same way):

* every third create names a registered type with a small valid config, and every third
  train sends real rows, so sequences reach trained models, predictions and deletes;
* every third step gets a hostile value planted in its body (a module path as the type, a
  10**30 integer, 1e308, nesting 40 deep, a 10 MB string). NaN and Infinity cannot be sent
  through schemathesis' JSON encoder; the negative corpus (``test_hostile_requests.py``) sends
  them as raw bytes.

Every response must be below 500; the run reports the statuses it saw.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.api import ApiSettings, create_app
from observml.api.schemas import NAME_PATTERN
from tests.services import require_module
from tests.unit.api.conftest import sensor_rows

schemathesis = require_module("schemathesis", "dev")

from schemathesis.checks import not_a_server_error  # noqa: E402 - after the module check

SCENARIOS = 120
STEPS = 8
VALID_CONFIG = {"create_model": {"model": "iforest", "params": {"n_estimators": 10}}}


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


#: Values planted in request bodies, in turn.
HOSTILE: list[tuple[str, Any]] = [
    ("type", "antigravity:Nope"),
    ("type", "collections:OrderedDict"),
    ("config", {"create_model": {"model": "pca", "params": {"n_components": "abc"}}}),
    ("config", {"create_model": {"model": "iforest", "params": {"n_estimators": 10**30}}}),
    ("config", {"create_model": {"model": "iforest", "params": {"contamination": 1e308}}}),
    ("config", {"description": deep(40)}),
    ("rows", [{"temp": 1e308, "pressure": -1e308, "flow": 10**30}]),
    ("rows", [deep(40)]),
    ("rows", "os:system"),
    ("format", {"type": "os:system"}),
    ("name", "x" * (10 * 2**20)),
]


@pytest.fixture
def app() -> Iterator[Any]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        app = create_app(hub, settings=ApiSettings())
        yield app
        app.state.png.close()


@pytest.mark.slow
def test_stateful_sequences_never_answer_5xx(app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[int] = Counter()
    calls: Counter[str] = Counter()
    server_errors: list[str] = []

    hub = app.state.hub

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def teardown(self) -> None:
            # every scenario starts from an empty hub, so a replay meets the same state
            for name in hub.experiments():
                hub.delete_experiment(name)

        def before_call(self, case: Any) -> None:
            # Jobs run in the background: a call must not meet one still running in one run of
            # a sequence and ended in its replay (a 409 instead of a 202 changes which rules
            # Hypothesis can draw next: FlakyStrategyDefinition). Let the last call's jobs end.
            wait_until_idle(hub)
            # decided by the case itself, so Hypothesis replays a case the same way
            label = f"{case.method} {case.path}"
            turn = zlib.crc32(f"{label} {case.body!r}".encode())
            if turn % 3 == 1:
                steer(case, label)
            elif turn % 3 == 2 and isinstance(case.body, dict):
                key, value = HOSTILE[turn // 3 % len(HOSTILE)]
                case.body = {**case.body, key: value}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            calls[f"{case.method} {case.path}"] += 1
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path}: {response.text[:300]}")
            case.validate_response(response, checks=[not_a_server_error])

    Machine.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    total = sum(calls.values())
    print(f"stateful fuzz: {total} calls; statuses {dict(sorted(statuses.items()))}")
    print(f"stateful fuzz: calls {dict(sorted(calls.items()))}")
    assert server_errors == []
    assert not [code for code in statuses if code >= 500]
    assert calls["POST /experiments"] >= 20
    assert statuses[201] >= 5  # experiments were created ...
    chained = {
        "POST /experiments/{name}/train",
        "POST /experiments/{name}/predict",
        "DELETE /experiments/{name}",
        "GET /jobs/{job_id}",
    }
    assert chained <= set(calls), calls  # ... and the sequences went on from them


def wait_until_idle(hub: Any, timeout: float = 60.0) -> None:
    """Wait until no experiment of ``hub`` has a training job queued or running."""
    deadline = time.monotonic() + timeout
    while any(hub.status(name)["state"] in ("queued", "running") for name in hub.experiments()):
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still running after {timeout} s: {hub.job_queue()}")
        time.sleep(0.01)


def steer(case: Any, label: str) -> None:
    """Make a generated create or train valid, so the sequence reaches real state."""
    if label == "POST /experiments" and isinstance(case.body, dict):
        name = case.body.get("name")
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            name = f"fz{zlib.crc32(repr(case.body).encode()) % 10**6}"
        case.body = {"name": name, "type": "fault_detection", "config": VALID_CONFIG}
    elif label == "POST /experiments/{name}/train":
        case.body = {"rows": sensor_rows(60)}
