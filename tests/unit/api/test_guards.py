"""Settings, bearer-token auth, body limit, CORS and the catch-all 500 of the REST API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from observml import ExperimentHub
from observml.api import ApiSettings, create_app
from observml.api.auth import token_matches
from observml.config.api_settings import is_loopback
from observml.errors import ConfigError
from tests.unit.cli_helpers import MEMORY

TOKEN = "s3cret-token"


@pytest.fixture
def secured(hub: ExperimentHub) -> Iterator[TestClient]:
    with TestClient(create_app(hub, settings=ApiSettings(token=TOKEN))) as client:
        yield client


# -- settings ------------------------------------------------------------------------------
def test_settings_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OBSERVML_API_TOKEN", raising=False)
    assert ApiSettings.from_config({}) == ApiSettings()
    settings = ApiSettings.from_config(
        {"host": "0.0.0.0", "port": "9000", "token": "t", "cors_origins": ["http://a.example"]}
    )
    assert settings.port == 9000
    assert settings.cors_origins == ("http://a.example",)
    assert ApiSettings.from_config({"token": ""}).token is None


def test_settings_env_token_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVML_API_TOKEN", "from-env")
    assert ApiSettings.from_config({"token": "from-file"}).token == "from-env"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        pytest.param(
            {"tokn": "x"}, r"api\.tokn: unknown key\. ApiSettings accepts: host", id="typo"
        ),
        pytest.param({"port": 70000}, r"api\.port: expected 1-65535, got 70000", id="port"),
        pytest.param({"port": "many"}, r"api\.port: expected an integer", id="port-type"),
        pytest.param({"max_body_bytes": 10}, r"api\.max_body_bytes: expected at least", id="limit"),
        pytest.param({"cors_origins": "*"}, r"api\.cors_origins: expected a list", id="cors"),
    ],
)
def test_settings_errors_name_the_key(raw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ApiSettings.from_config(raw, source="hub_config.yaml")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        pytest.param("127.0.0.1", True, id="v4"),
        pytest.param("127.0.0.2", True, id="v4-range"),
        pytest.param("::1", True, id="v6"),
        pytest.param("localhost", True, id="name"),
        pytest.param("0.0.0.0", False, id="any"),
        pytest.param("::", False, id="any-v6"),
        pytest.param("10.1.2.3", False, id="lan"),
        pytest.param("example.com", False, id="dns"),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_without_token_refuses_and_says_why() -> None:
    with pytest.raises(
        ConfigError, match=r"api\.host: binding the API to 0\.0\.0\.0 without a token"
    ):
        ApiSettings(host="0.0.0.0").check_bind()
    with pytest.raises(ConfigError, match=r"OBSERVML_API_TOKEN.*or bind to 127\.0\.0\.1"):
        ApiSettings(host="10.0.0.5").check_bind()
    ApiSettings(host="0.0.0.0", token="t").check_bind()
    ApiSettings(host="127.0.0.1").check_bind()


def test_token_matches() -> None:
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert token_matches(f"bearer  {TOKEN} ", TOKEN)
    assert not token_matches(f"Basic {TOKEN}", TOKEN)
    assert not token_matches("Bearer wrong", TOKEN)
    assert not token_matches(None, TOKEN)


# -- auth ----------------------------------------------------------------------------------
def test_token_required_before_validation(secured: TestClient) -> None:
    # every route: tests/unit/api/test_auth.py
    assert secured.post("/experiments", json={}).status_code == 401
    assert secured.get("/livez").status_code == 200


def test_wrong_and_right_token(secured: TestClient) -> None:
    wrong = secured.get("/experiments", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "does not carry the API's bearer token" in wrong.json()["message"]
    assert TOKEN not in wrong.text
    right = secured.get("/experiments", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert right.json() == []


def test_openapi_declares_bearer_auth_only_with_a_token(
    secured: TestClient, client: TestClient
) -> None:
    schema = secured.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert schema["paths"]["/experiments"]["get"]["security"] == [{"bearerAuth": []}]
    unsecured = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "security" not in operation
    ]
    assert unsecured == ["GET /livez"]
    for method in ("post", "delete"):  # sign in and out: a real route, no body
        session = schema["paths"]["/session"][method]
        assert session["responses"]["204"] == {"description": "Done; the answer has no body."}
    assert "securitySchemes" not in client.get("/openapi.json").json()["components"]


# -- limits, CORS, 500 ---------------------------------------------------------------------
def test_body_over_the_limit_is_413(hub: ExperimentHub) -> None:
    app = create_app(hub, settings=ApiSettings(max_body_bytes=2048))
    with TestClient(app) as client:
        rows = [{"temp": 1.0, "pressure": 2.0, "flow": 3.0}] * 100
        response = client.post("/experiments/pump/predict", json={"rows": rows})
        assert response.status_code == 413
        assert response.json()["error"] == "PayloadTooLargeError"
        assert "limit of 2048 bytes (api.max_body_bytes)" in response.json()["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield b'{"rows": ['
            for _ in range(100):
                yield b'{"temp": 1.0, "pressure": 2.0, "flow": 3.0},'
            yield b"{}]}"

        streamed = client.post(
            "/experiments/pump/predict",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413
        small = client.post("/experiments/pump/predict", json={"rows": rows[:2]})
        assert small.json()["error"] == "ExperimentNotFoundError"


def test_cors_is_off_by_default_and_on_for_listed_origins(
    hub: ExperimentHub, client: TestClient
) -> None:
    origin = {"Origin": "http://dash.example"}
    assert "access-control-allow-origin" not in client.get("/livez", headers=origin).headers
    app = create_app(hub, settings=ApiSettings(cors_origins=("http://dash.example",)))
    with TestClient(app) as cors:
        response = cors.get("/livez", headers=origin)
        assert response.headers["access-control-allow-origin"] == "http://dash.example"
        other = cors.get("/livez", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_unexpected_error_is_json_500_without_traceback(
    hub: ExperimentHub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> list[str]:
        raise RuntimeError("secret internals at /srv/app.py line 3")

    monkeypatch.setattr(hub, "experiment_types", explode)
    with TestClient(create_app(hub, settings=ApiSettings()), raise_server_exceptions=False) as c:
        response = c.get("/experiment-types")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "InternalServerError"
    assert "incident" in body["message"]
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert "secret internals" in caplog.text  # the server log has it


# -- app lifecycle -------------------------------------------------------------------------
def test_create_app_builds_and_shuts_down_its_own_hub(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSERVML_CONFIG", str(write_config(MEMORY + "api: {port: 9001}\n")))
    app = create_app()
    hub = app.state.hub
    assert app.state.settings.port == 9001
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
    assert hub.plugins == {}  # shut down by the lifespan


def test_create_app_keeps_a_hub_it_was_given(hub: ExperimentHub) -> None:
    with TestClient(create_app(hub)) as client:
        assert client.get("/livez").status_code == 200
    assert set(hub.plugins) == {"mlops", "datastream"}


def test_create_app_rejects_a_bad_api_section(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSERVML_CONFIG", str(write_config(MEMORY + "api: {prot: 1}\n")))
    with pytest.raises(ConfigError, match=r"hub_config\.yaml: api\.prot: unknown key"):
        create_app()
