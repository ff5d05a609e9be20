"""A negative corpus: hostile API requests and queue messages, each answered 4xx or dead-lettered.

What a careless or hostile API client (with a valid token) or broker publisher can send: module
paths and unknown types, configs that do not fit, names that are not names, huge numbers,
NaN/Infinity, deep nesting, 10 MB bodies, bodies that are not JSON. Every request must get a
4xx whose JSON says what is wrong; every message must land in the dead-letter queue with its
reason, alone (the good messages beside it are predicted). No module is imported and no
constructor is called on a request's say-so.
"""

from __future__ import annotations

import json
import pickle
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.api import ApiSettings, create_app
from observml.plugins.datastream import REASON_HEADER, Message
from tests.unit.api.conftest import FD_CONFIG, sensor_rows

TOKEN = "hostile-corpus-token"
#: Messages over this size are dead-lettered unread (small, so the test stays small).
MAX_MESSAGE = 64 * 1024
#: Constructor calls of :class:`SideEffect`; a request naming it must never add one.
CALLS: list[tuple[Any, ...]] = []


class SideEffect:
    """A class whose constructor does something: named in a request, it must never run."""

    def __init__(self, *args: Any) -> None:
        CALLS.append(args)


class PickleTrap:
    """Unpickling this touches a file: a pickle body must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def deep(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_list_text(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


# -- the API corpus -------------------------------------------------------------------------
GOOD = {"name": "h", "type": "fault_detection", "config": FD_CONFIG}


def create(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def cfg(**sections: Any) -> dict[str, Any]:
    return create(config=sections)


def model(name: str = "iforest", **params: Any) -> dict[str, Any]:
    return cfg(create_model={"model": name, "params": params})


MODULE_PATHS = [
    "antigravity:Nope",
    "collections:OrderedDict",
    "os:system",
    "subprocess:Popen",
    "builtins:eval",
    "builtins:exec",
    "pickle:loads",
    "importlib:import_module",
    "sys:exit",
    "shutil:rmtree",
    "webbrowser:open",
    "this:s",
    "ctypes:CDLL",
    "http.server:test",
    "os.path:join",
    "observml.config.registry:load_object",
    "observml.experiments.fault_detection:FaultDetectionExperiment",
    "tests.unit.api.test_hostile_requests:SideEffect",
    "tests.unit.api.hostile_module_never_imported:Thing",
    "no_such_module_4711:Thing",
    "fault_detection:x",
    ":",
    "a:",
    ":b",
    "os:system:ls",
    "os : system",
]
UNKNOWN_TYPES = [
    "antigravity",
    "fault_detectoin",
    "FAULT_DETECTION",
    " fault_detection",
    "fault_detection ",
    "fault_detection\x00",
    "../../etc/passwd",
    "fault_detection; rm -rf /",
    "__import__('os').system('id')",
    "x" * 10_000,
    "\u202efault_detection",
    "💥",
    "mlflow",
    "rabbitmq",
    "None",
]


def api_corpus() -> list[Any]:
    """``(method, path, body or raw bytes, expected statuses)`` with an id each."""
    cases: list[Any] = []

    def add(case_id: str, method: str, path: str, body: Any, *statuses: int) -> None:
        cases.append(pytest.param(method, path, body, statuses, id=case_id))

    for i, name in enumerate(MODULE_PATHS):
        add(f"type-path-{i}", "POST", "/experiments", create(type=name), 400)
    for i, name in enumerate(UNKNOWN_TYPES):
        add(f"type-unknown-{i}", "POST", "/experiments", create(type=name), 400)
    for i, value in enumerate([5, None, [], {}, True, ""]):
        add(f"type-not-a-string-{i}", "POST", "/experiments", create(type=value), 422)
    # config values that do not fit: 422 naming the key path
    for case_id, body in [
        ("pca-n-components-abc", model("pca", n_components="abc")),
        ("pca-n-components-list", model("pca", n_components=[1, 2])),
        ("pca-n-components-negative", model("pca", n_components=-3)),
        ("pca-n-components-huge-int", model("pca", n_components=10**400)),
        ("pca-alpha-one", model("pca", alpha=1.0)),
        ("iforest-n-estimators-float", model("iforest", n_estimators=1e308)),
        ("iforest-n-estimators-zero", model("iforest", n_estimators=0)),
        ("iforest-n-estimators-string", model("iforest", n_estimators="100")),
        ("iforest-n-estimators-nan", model("iforest", n_estimators=float("nan"))),
        ("iforest-n-estimators-inf", model("iforest", n_estimators=float("inf"))),
        ("iforest-max-features-huge", model("iforest", max_features=10**30)),
        ("iforest-contamination-high", model("iforest", contamination=0.9)),
        ("iforest-contamination-string", model("iforest", contamination="auto")),
        ("iforest-random-state-dict", model("iforest", random_state={"seed": 1})),
        ("lof-scale-yes", model("lof", scale="yes")),
        ("lof-n-neighbors-nan", model("lof", n_neighbors=float("nan"))),
        ("svm-kernel-os", model("one_class_svm", kernel="os:system")),
        ("svm-nu-deep", model("one_class_svm", nu=deep(20))),
        ("dbscan-eps-negative-inf", model("dbscan", eps=float("-inf"))),
        ("param-unknown", model("iforest", n_trees=3)),
        ("param-dunder", model("iforest", __class__="os:system")),
        ("model-module-path", model("sklearn.ensemble:IsolationForest")),
        ("model-os-system", model("os:system")),
        ("model-not-a-string", model(name=5)),  # type: ignore[arg-type]
        ("model-unknown", model("gpt")),
        ("create-model-a-list", cfg(create_model=["iforest"])),
        ("create-model-extra-key", cfg(create_model={"model": "iforest", "import": "os"})),
        ("params-a-list", cfg(create_model={"model": "iforest", "params": [1]})),
        ("setup-unknown-key", cfg(setup={"loader": "os:system"})),
        ("setup-features-a-string", cfg(setup={"features": "temp"})),
        ("setup-keep-rows-negative", cfg(setup={"keep_train_rows": -1})),
        ("setup-keep-rows-string", cfg(setup={"keep_train_rows": "all"})),
        ("setup-format-type-module", cfg(setup={"format": {"type": "os:system"}})),
        ("setup-format-aggfunc-eval", cfg(setup={"format": {"aggfunc": "eval"}})),
        ("setup-format-unknown-key", cfg(setup={"format": {"reader": "pickle"}})),
        ("retrain-window-string", cfg(retrain={"window": "abc"})),
        ("retrain-threshold-dict", cfg(retrain={"threshold": {"x": 1}})),
        ("retrain-unknown-key", cfg(retrain={"callback": "os:system"})),
        ("retrain-cooldown-negative", cfg(retrain={"cooldown": -5})),
        ("eda-maybe", cfg(eda="maybe")),
        ("top-level-unknown", cfg(loader={"module": "os", "class": "system"})),
        ("top-level-load-object", cfg(load_object="os:system")),
        ("config-deep-description", cfg(description=deep(200))),
        ("config-deep-setup", cfg(setup=deep(60))),
    ]:
        add(f"config-{case_id}", "POST", "/experiments", body, 422)
    # the request's shape: pydantic's 422
    for case_id, body in [
        ("name-path", create(name="../../etc")),
        ("name-space", create(name="a b")),
        ("name-empty", create(name="")),
        ("name-long", create(name="n" * 101)),
        ("name-nul", create(name="a\x00b")),
        ("name-number", create(name=7)),
        ("config-a-list", create(config=[1, 2])),
        ("config-a-string", create(config="os:system")),
        ("extra-field", create(module="os", **{"class": "system"})),
        ("no-name", {"type": "fault_detection"}),
        ("array-body", [GOOD]),
        ("string-body", "fault_detection"),
        ("null-body", None),
    ]:
        add(f"shape-{case_id}", "POST", "/experiments", body, 422)
    # bodies that are not JSON at all, or too big, or nested past any parser
    add("raw-not-json", "POST", "/experiments", b"{name: x}", 422)
    add("raw-pickle", "POST", "/experiments", b"PICKLE", 422)
    add("raw-bad-utf8", "POST", "/experiments", b'{"name": "\xff\xfe"}', 400, 422)
    add("raw-deep-nesting", "POST", "/experiments", deep_list_text(100_000).encode(), 400, 422)
    add("raw-10MB", "POST", "/experiments", b'{"name": "' + b"x" * (10 * 2**20) + b'"}', 413)
    add("raw-nan-name", "POST", "/experiments", b'{"name": NaN, "type": "x"}', 422)
    # training and prediction requests with hostile rows or configs (experiment 'pump' exists);
    # each fails before a job starts
    for case_id, body in [
        ("train-config-module", {"config": {"create_model": {"model": "os:system"}}}),
        ("train-config-bad-param", {"config": {"create_model": {"params": {"n_estimators": "x"}}}}),
        ("train-config-deep", {"config": {"description": deep(200)}}),
        ("train-config-type", {"config": {"create_model": {"model": "pca"}}, "type": "os:system"}),
        ("train-rows-deep", {"rows": [deep(200)]}),
        ("train-rows-a-string", {"rows": "os:system"}),
        ("train-format-module", {"rows": sensor_rows(20), "format": {"type": "os:system"}}),
        ("train-format-deep", {"rows": sensor_rows(20), "format": deep(100)}),
        ("train-split-garbage", {"rows": {"columns": ["a"], "data": "x"}}),
        ("train-unknown-field", {"rows": sensor_rows(20), "callback": "os:system"}),
        ("retrain-rows-deep", {"rows": [deep(100)]}),
        ("retrain-format-eval", {"rows": sensor_rows(20), "format": {"aggfunc": "eval"}}),
        ("predict-rows-strings", {"rows": [{"temp": "x", "pressure": "y", "flow": "z"}]}),
        ("predict-rows-missing-columns", {"rows": [{"a": 1.0}]}),
        ("predict-rows-huge-int", {"rows": [{"temp": 10**400, "pressure": 1, "flow": 1}]}),
        ("predict-rows-nested", {"rows": [{"temp": {"a": 1}, "pressure": 1, "flow": 1}]}),
        ("predict-rows-deep", {"rows": [deep(300)]}),
        ("predict-rows-a-string", {"rows": "os:system"}),
        ("predict-rows-empty", {"rows": []}),
        ("predict-format-module", {"rows": sensor_rows(3), "format": {"type": "os:system"}}),
    ]:
        action = case_id.split("-")[0]
        add(case_id, "POST", f"/experiments/pump/{action}", body, 422)
    for case_id, method, path, body, status in [
        ("load-version-negative", "POST", "/experiments/pump/load", {"version": -1}, 422),
        ("load-version-huge", "POST", "/experiments/pump/load", {"version": 10**30}, 404),
        ("load-run-path", "POST", "/experiments/pump/load", {"run_id": "../../x"}, 404),
        ("load-run-unknown", "POST", "/experiments/pump/load", {"version": 1, "run_id": "r"}, 404),
        ("status-traversal", "GET", "/experiments/..%2F..%2Fetc%2Fpasswd", None, 404),
        ("job-injection", "GET", "/jobs/1';DROP TABLE jobs;--", None, 404),
        ("plot-traversal", "GET", "/experiments/pump/plots/..%2F..%2Fsecret", None, 404),
        ("ghost-train", "POST", "/experiments/ghost/train", {"rows": sensor_rows(5)}, 404),
        ("ghost-delete", "DELETE", "/experiments/ghost", None, 404),
    ]:
        add(case_id, method, path, body, status)
    return cases


@pytest.fixture(scope="module")
def hostile_client() -> Iterator[TestClient]:
    """A token-protected app over a hub with a trained 'pump' (built once for the corpus)."""
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("pump", "fault_detection", FD_CONFIG)
        assert hub.train("pump", data=sensor_rows(300), wait=True).status.state == "succeeded"
        app = create_app(hub, settings=ApiSettings(token=TOKEN))
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            yield client


def send(client: TestClient, method: str, path: str, body: Any) -> Any:
    if isinstance(body, bytes):
        return client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
    if body is None and method != "POST":
        return client.request(method, path)
    return client.request(
        method,
        path,
        content=json.dumps(body, allow_nan=True).encode(),
        headers={"Content-Type": "application/json"},
    )


API_CORPUS = api_corpus()


def test_the_corpus_is_at_least_100_requests() -> None:
    assert len(API_CORPUS) >= 100


@pytest.mark.parametrize(("method", "path", "body", "statuses"), API_CORPUS)
def test_hostile_request_is_a_4xx_that_says_why(
    hostile_client: TestClient, method: str, path: str, body: Any, statuses: tuple[int, ...]
) -> None:
    before = set(sys.modules)
    response = send(hostile_client, method, path, body)
    if response.is_success and method == "POST" and path == "/experiments":
        hostile_client.delete("/experiments/h")  # keep the next cases independent of this one
    assert response.status_code in statuses, response.text[:2000]
    payload = response.json()
    assert set(payload) >= {"error", "message"}
    assert payload["message"]
    assert set(sys.modules) - before == set(), "a request imported a module"
    assert CALLS == []
    assert [e["name"] for e in hostile_client.get("/experiments").json()] == ["pump"]


def test_module_path_answer_names_the_accepted_types(hostile_client: TestClient) -> None:
    response = hostile_client.post("/experiments", json=create(type="antigravity:Nope"))
    assert response.status_code == 400
    assert response.json()["error"] == "UnknownPluginError"
    message = response.json()["message"]
    assert "'antigravity:Nope' is a module path; a request may only name a registered" in message
    assert "Known: fault_detection, fault_isolation, process_mining, time_series." in message
    assert "antigravity" not in sys.modules


def test_side_effect_constructor_named_in_a_request_is_never_called(
    hostile_client: TestClient,
) -> None:
    assert "tests.unit.api.hostile_module_never_imported" not in sys.modules
    for name in ("tests.unit.api.test_hostile_requests:SideEffect", "collections:OrderedDict"):
        response = hostile_client.post("/experiments", json=create(type=name, name="s"))
        assert response.status_code == 400, response.text
    assert CALLS == []
    assert "tests.unit.api.hostile_module_never_imported" not in sys.modules


def test_bad_param_is_a_422_naming_the_key_path_at_create_time(
    hostile_client: TestClient,
) -> None:
    response = hostile_client.post("/experiments", json=model("pca", n_components="abc"))
    assert response.status_code == 422
    assert response.json()["error"] == "ConfigError"
    assert "create_model.params.n_components" in response.json()["message"]
    assert hostile_client.get("/experiments/h").status_code == 404  # nothing was created


# -- the message corpus ----------------------------------------------------------------------
def message_corpus(marker: Path) -> list[tuple[str, bytes, dict[str, Any], str | None]]:
    """``(id, body, headers, content type)`` of messages that must all be dead-lettered."""
    row = {"temp": 1.0, "pressure": 1.0, "flow": 1.0}
    text: list[tuple[str, str]] = [
        ("not-json", "{temp: 1}"),
        ("truncated", '{"temp": 1.0, "pressure":'),
        ("empty-object", "{}"),
        ("empty-array", "[]"),
        ("json-string", '"os:system"'),
        ("json-number", "42"),
        ("json-null", "null"),
        ("json-true", "true"),
        ("array-of-strings", '["temp", "pressure"]'),
        ("array-of-arrays", "[[1, 2, 3]]"),
        ("deep-list", deep_list_text(100_000)),
        ("deep-object", json.dumps(deep(900))),
        ("nested-row", json.dumps({"temp": {"a": 1}, "pressure": 1, "flow": 1})),
        ("strings", json.dumps({"temp": "hot", "pressure": "x", "flow": "y"})),
        ("missing-columns", json.dumps({"a": 1.0})),
        ("nan", '{"temp": NaN, "pressure": 1, "flow": 1}'),
        ("huge-int", '{"temp": ' + "9" * 5000 + ', "pressure": 1, "flow": 1}'),
        ("null-values", '{"temp": null, "pressure": null, "flow": null}'),
        ("split-garbage", '{"columns": ["temp"], "data": "x"}'),
        ("split-mismatch", '{"columns": ["temp", "flow"], "data": [[1]]}'),
        ("type-in-body", json.dumps({"type": "os:system", "create_model": "x"})),
    ]
    corpus: list[tuple[str, bytes, dict[str, Any], str | None]] = [
        (case_id, body.encode(), {}, None) for case_id, body in text
    ]
    good = json.dumps(row).encode()
    corpus += [
        ("empty-body", b"", {}, None),
        ("whitespace", b"  \n\t ", {}, None),
        ("bad-utf8", b'{"temp": "\xff\xfe"}', {}, None),
        ("binary", bytes(range(256)), {}, None),
        ("pickle", pickle.dumps(PickleTrap(marker)), {}, "application/x-python-pickle"),
        ("pickle-as-json", pickle.dumps(PickleTrap(marker)), {}, None),
        ("oversize", b'{"temp": ' + b"1" * (MAX_MESSAGE + 1) + b"}", {}, None),
        ("oversize-json", json.dumps([row] * 4000).encode(), {}, None),
        ("format-type-module", good, {"x-observml-format": '{"type": "os:system"}'}, None),
        ("format-aggfunc-eval", good, {"x-observml-format": '{"aggfunc": "eval"}'}, None),
        ("format-unknown-key", good, {"x-observml-format": '{"loader": "pickle"}'}, None),
        ("format-not-json", good, {"x-observml-format": "{type: long"}, None),
        ("format-deep", good, {"x-observml-format": deep_list_text(100_000)}, None),
        ("format-a-list", good, {"x-observml-format": "[1, 2]"}, None),
        ("csv-garbage", b'a,b\n"1,2\n3', {}, "text/csv"),
        ("csv-strings", b"temp,pressure,flow\nx,y,z\n", {}, "text/csv"),
        ("csv-empty", b"temp,pressure,flow\n", {}, "text/csv"),
        ("csv-binary", bytes(range(256)), {}, "text/csv"),
        (
            "xml",
            b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
            {},
            "text/xml",
        ),
        (
            "row-with-lists",
            json.dumps({"temp": [1, 2], "pressure": [3], "flow": []}).encode(),
            {},
            None,
        ),
        ("format-long-wrong-shape", good, {"x-observml-format": '{"type": "long"}'}, None),
    ]
    return corpus


@pytest.fixture
def stream_hub() -> Iterator[ExperimentHub]:
    with ExperimentHub(job_isolation="thread") as hub:
        hub.register_plugin(InMemoryMLOpsPlugin())
        hub.register_plugin(InMemoryDataStreamPlugin(max_message_bytes=MAX_MESSAGE))
        hub.create_experiment("pump", "fault_detection", FD_CONFIG)
        assert hub.train("pump", data=sensor_rows(300), wait=True).status.state == "succeeded"
        yield hub


def dead_letters(stream: InMemoryDataStreamPlugin, queue: str) -> dict[str, str]:
    """Drain ``queue`` and return ``{message id: reason}`` (the size limit off while reading)."""
    found: dict[str, str] = {}
    limit, stream.max_message_bytes = stream.max_message_bytes, 0
    try:
        while stream.queue_depth(queue):
            stop = threading.Event()

            def take(message: Message, found: dict[str, str] = found, stop: Any = stop) -> None:
                found[str(message.message_id)] = str(message.headers.get(REASON_HEADER))
                if not stream.queue_depth(queue):
                    stop.set()

            stream.consume(queue, take, stop=stop)
    finally:
        stream.max_message_bytes = limit
    return found


def test_hostile_messages_are_dead_lettered_each_with_its_reason(
    stream_hub: ExperimentHub, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    corpus = message_corpus(marker)
    assert len(corpus) >= 40
    stream = stream_hub.get_plugin("datastream")
    assert isinstance(stream, InMemoryDataStreamPlugin)
    before = set(sys.modules)
    good_ids = []
    for case_id, body, headers, content_type in corpus:
        stream.publish(
            "pump.predict", body, headers=headers, message_id=case_id, content_type=content_type
        )
        good = f"good-after-{case_id}"  # a good message beside each: it must be predicted
        stream.publish("pump.predict", json.dumps(sensor_rows(2, seed=3)), message_id=good)
        good_ids.append(good)
    result = stream_hub.predict("pump")
    dead = dead_letters(stream, "pump.predict.dead")
    assert set(dead) == {case_id for case_id, *_ in corpus}, sorted(
        set(dead) ^ {c[0] for c in corpus}
    )
    assert all(reason and reason != "None" for reason in dead.values())
    assert set(result["message_id"]) == set(good_ids)
    assert "over max_message_bytes (65536)" in dead["oversize"]
    assert "over max_message_bytes" in dead["oversize-json"]
    assert not marker.exists()
    # text codecs load on first use when a body is tried as UTF-16/32; nothing else may load
    assert {m for m in set(sys.modules) - before if not m.startswith("encodings.")} == set()
    status = stream_hub.status("pump")
    assert (status["type"], status["model"]) == ("fault_detection", "iforest")


def test_oversize_message_is_dead_lettered_unread_by_the_stream_worker(
    stream_hub: ExperimentHub,
) -> None:
    from tests.unit.api.conftest import wait_for

    stream = stream_hub.get_plugin("datastream")
    assert isinstance(stream, InMemoryDataStreamPlugin)
    stream.publish("pump.predict", b"[" + b" " * MAX_MESSAGE + b"]", message_id="big")
    stream.publish("pump.predict", json.dumps(sensor_rows(3)), message_id="fine")
    stream_hub.start_streaming("pump")
    try:
        wait_for(lambda: stream.queue_depth("pump.predict.dead") == 1)
        wait_for(lambda: stream.queue_depth("pump.predictions") == 1)
    finally:
        stream_hub.stop_streaming("pump")
    dead = dead_letters(stream, "pump.predict.dead")
    assert dead["big"].startswith("PayloadTooLargeError: message big: the body has 65538 bytes")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(-float("inf"), id="-inf"),
        pytest.param(1e308, id="1e308"),
        pytest.param(-1e308, id="-1e308"),
        pytest.param(2**63, id="2**63"),
    ],
)
def test_extreme_numbers_in_rows_never_reach_a_5xx(hostile_client: TestClient, value: Any) -> None:
    """What the model makes of NaN/Inf/huge readings is its own (a score or a 422), never a 5xx."""
    body = {"rows": [{"temp": value, "pressure": value, "flow": 1.0}]}
    response = send(hostile_client, "POST", "/experiments/pump/predict", body)
    assert response.status_code in (200, 422), response.text
