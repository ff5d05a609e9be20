"""Authentication with a token: bearer header or session cookie, sign-in page, CSRF guard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import fastapi.routing
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount

from observml import ExperimentHub
from observml.api import ApiSettings, create_app
from observml.api.auth import SESSION_COOKIE, same_origin
from observml.api.session_cookie import SessionCookies
from observml.config.api_settings import DEFAULT_SESSION_MAX_AGE
from tests.unit.api.conftest import FD_CONFIG

TOKEN = "tok-7f3a9c-do-not-echo"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}
#: A cookie as POST /session issues it (the key derives from the token: any app of TOKEN takes it).
COOKIE = {
    "Cookie": f"{SESSION_COOKIE}={SessionCookies(TOKEN, max_age=DEFAULT_SESSION_MAX_AGE).issue()}"
}
#: Paths that are not routes: the guard answers before routing.
EXTRA_PATHS = ("/favicon.ico", "/no-such-route", "/static/dashboard.js", "/docs/oauth2-redirect")


@pytest.fixture
def app(hub: ExperimentHub) -> FastAPI:
    return create_app(hub, settings=ApiSettings(token=TOKEN))


@pytest.fixture
def secured(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def requests_to_every_route(app: FastAPI) -> list[tuple[str, str]]:
    """``(method, path)`` for every route of ``app``, path parameters filled in."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)  # FastAPI >= 0.165
    routes: list[Any] = list(iterate(app.routes) if iterate else app.routes)
    found: list[tuple[str, str]] = []
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        if isinstance(getattr(route, "original_route", route), Mount):
            found.append(("GET", path + "/anything.js"))
            continue
        found += [(method, path) for method in sorted(route.methods) if method != "HEAD"]
    return found


def parse_cookie(response: Any) -> Any:
    header = response.headers["set-cookie"]
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar[SESSION_COOKIE], header.lower()


# -- who is let in -------------------------------------------------------------------------
def test_every_path_but_livez_needs_credentials(app: FastAPI, secured: TestClient) -> None:
    every = requests_to_every_route(app)
    paths = {path for _, path in every}
    assert {"/", "/docs", "/redoc", "/openapi.json", "/session", "/static/plotly.min.js"} <= paths
    assert {"/static/anything.js", "/static/docs/anything.js", "/experiments/x"} <= paths
    assert len(every) >= 35
    public = []
    for method, path in every + [("GET", path) for path in EXTRA_PATHS]:
        response = secured.request(method, path, headers=JSON)
        if response.status_code != 401:
            public.append((method, path, response.status_code))
            continue
        assert response.headers["www-authenticate"] == "Bearer", path
        assert response.json()["error"] == "UnauthorizedError", path
        assert "Authorization: Bearer <token>" in response.json()["message"]
    assert public == [("GET", "/livez", 200)]


def test_every_route_answers_with_the_bearer_header(app: FastAPI, secured: TestClient) -> None:
    for method, path in requests_to_every_route(app):
        response = secured.request(method, path, headers={**BEARER, **JSON})
        assert response.status_code != 401, (method, path, response.text)


def test_browser_navigation_gets_the_sign_in_page(secured: TestClient) -> None:
    page = secured.get("/", headers=HTML)
    assert page.status_code == 401
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["www-authenticate"] == "Bearer"
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert 'type="password"' in text
    assert 'fetch(root + "session"' in text
    assert 'Authorization: "Bearer " + token' in text
    assert "That token was refused." in text
    assert "api.token" in text
    assert "$OBSERVML_API_TOKEN" in text
    assert 'data-root=""' in text
    # self-contained: nothing loaded from /static (which needs the cookie too) or elsewhere
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=\"(?!data:)", text), text
    # the page of a deeper path posts to the same /session
    for path, root in [("/docs", ""), ("/static/dashboard.js", "../"), ("/jobs/x", "../")]:
        assert f'data-root="{root}"' in secured.get(path, headers=HTML).text, path
    plot = secured.get("/experiments/a%2Fb/plots/scores", headers=HTML)
    assert 'data-root="../../../"' in plot.text


def test_api_clients_get_the_json_401(secured: TestClient) -> None:
    for headers in ({}, JSON, {"Accept": "*/*"}):
        response = secured.get("/experiments", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error", "message"}
    posted = secured.post("/experiments", headers=HTML, json={})  # not a navigation
    assert posted.headers["content-type"] == "application/json"


def test_sign_in_page_works_under_a_root_path(app: FastAPI) -> None:
    with TestClient(app, root_path="/observml") as client:
        assert 'data-root=""' in client.get("/observml/docs", headers=HTML).text
        assert client.get("/observml/livez").status_code == 200
        assert client.post("/observml/session", headers=BEARER).status_code == 204


# -- POST /session -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="basic"),
        pytest.param(COOKIE, id="cookie-does-not-renew-itself"),
    ],
)
def test_sign_in_without_the_token_is_401(secured: TestClient, headers: dict[str, str]) -> None:
    response = secured.post("/session", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "UnauthorizedError"
    assert "set-cookie" not in response.headers


def test_sign_in_sets_the_session_cookie(secured: TestClient) -> None:
    response = secured.post("/session", headers=BEARER)
    assert response.status_code == 204
    assert response.content == b""
    cookie, header = parse_cookie(response)
    # <session id>.<token fingerprint>.<issue time>.<signature>, all URL-safe
    assert re.fullmatch(r"[\w-]{24}\.[0-9a-f]{16}\.[\w-]+\.[\w-]{43}", cookie.value)
    assert TOKEN not in cookie.value
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # plain http
    assert "max-age" not in header
    assert "expires" not in header  # a browser-session cookie


def test_sign_in_over_https_sets_a_secure_cookie(app: FastAPI) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        response = client.post("/session", headers=BEARER)
    cookie, _ = parse_cookie(response)
    assert cookie["secure"] is True


def test_the_cookie_opens_pages_files_docs_and_api(secured: TestClient) -> None:
    signed_in = secured.post("/session", headers=BEARER)
    assert signed_in.status_code == 204
    for path in ("/", "/static/dashboard.js", "/static/plotly.min.js", "/openapi.json", "/docs"):
        response = secured.get(path, headers=HTML)  # the client's jar sends the cookie
        assert response.status_code == 200, path
    assert secured.get("/experiments").json() == []
    assert 'data-auth="on"' in secured.get("/").text  # the page shows "sign out"


def test_a_cookie_of_another_token_is_refused(secured: TestClient) -> None:
    old = SessionCookies("the-old-token", max_age=DEFAULT_SESSION_MAX_AGE).issue()
    stale = {"Cookie": f"{SESSION_COOKIE}={old}"}
    response = secured.get("/experiments", headers=stale)
    assert response.status_code == 401
    assert "the server's token changed" in response.json()["message"]
    assert secured.get("/", headers={**stale, **HTML}).status_code == 401
    assert "Sign in" in secured.get("/", headers={**stale, **HTML}).text
    forged = {"Cookie": f"{SESSION_COOKIE}={TOKEN}"}  # the token itself is not the cookie
    assert secured.get("/experiments", headers=forged).status_code == 401


def test_a_wrong_bearer_header_wins_over_a_good_cookie(secured: TestClient) -> None:
    response = secured.get("/experiments", headers={**COOKIE, "Authorization": "Bearer no"})
    assert response.status_code == 401
    assert "does not carry the API's bearer token" in response.json()["message"]


def test_sign_out_clears_the_cookie(secured: TestClient) -> None:
    secured.post("/session", headers=BEARER)
    assert secured.get("/experiments").status_code == 200
    response = secured.delete("/session")
    assert response.status_code == 204
    cookie, header = parse_cookie(response)
    assert cookie.value == ""
    assert "max-age=0" in header
    assert "httponly" in header
    assert "path=/" in header
    assert SESSION_COOKIE not in secured.cookies
    assert secured.get("/experiments").status_code == 401
    assert secured.delete("/session").status_code == 401  # signed out already


# -- CSRF ----------------------------------------------------------------------------------
def create(client: TestClient, name: str, headers: dict[str, str]) -> Any:
    body = {"name": name, "type": "fault_detection", "config": FD_CONFIG}
    return client.post("/experiments", json=body, headers=headers)


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("http://evil.example", id="other-site"),
        pytest.param("http://testserver:8080", id="other-port"),
        pytest.param("null", id="opaque"),
    ],
)
def test_cookie_post_from_another_origin_is_403(secured: TestClient, origin: str) -> None:
    response = create(secured, "pump", {**COOKIE, "Origin": origin})
    assert response.status_code == 403
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "ForbiddenError"
    assert "cross-site request forgery" in body["message"]
    assert "send 'Authorization: Bearer <token>' instead of the cookie" in body["message"]
    assert secured.get("/experiments", headers=BEARER).json() == []  # nothing was created
    signed_out = secured.delete("/session", headers={**COOKIE, "Origin": origin})
    assert signed_out.status_code == 403


def test_cookie_post_from_this_origin_or_without_origin_is_allowed(secured: TestClient) -> None:
    assert create(secured, "pump", {**COOKIE, "Origin": "http://testserver"}).status_code == 201
    assert create(secured, "valve", COOKIE).status_code == 201
    # reading is never refused for its Origin; the bearer header is never checked for it
    assert secured.get("/experiments", headers={**COOKIE, "Origin": "http://evil.example"}).json()
    foreign_bearer = {**BEARER, "Origin": "http://evil.example"}
    assert create(secured, "fan", foreign_bearer).status_code == 201


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        pytest.param("http://plant:8010", "plant:8010", True, id="port"),
        pytest.param("https://Plant.example", "plant.example", True, id="case"),
        pytest.param("https://plant.example", "plant.example:443", True, id="default-port"),
        pytest.param("http://plant.example", "plant.example:80", True, id="default-port-http"),
        pytest.param("http://plant.example", "plant.example:8010", False, id="other-port"),
        pytest.param("http://evil.example", "plant.example", False, id="other-host"),
        pytest.param("null", "plant.example", False, id="opaque"),
        pytest.param("http://plant.example", None, False, id="no-host"),
        pytest.param("file://plant.example", "plant.example", False, id="scheme"),
    ],
)
def test_same_origin(origin: str, host: str | None, same: bool) -> None:
    assert same_origin(origin, host) is same


# -- never the token -----------------------------------------------------------------------
def test_the_token_is_never_sent_back(secured: TestClient) -> None:
    responses = [
        secured.get("/", headers=HTML),
        secured.get("/experiments", headers={"Authorization": f"Bearer {TOKEN}x"}),
        secured.post("/session", headers={"Authorization": "Bearer wrong"}),
        secured.post("/session", headers=BEARER),
        secured.get("/", headers=COOKIE),
        secured.get("/static/dashboard.js", headers=COOKIE),
        secured.get("/openapi.json", headers=COOKIE),
        secured.get("/docs", headers=COOKIE),
        create(secured, "pump", {**COOKIE, "Origin": "http://evil.example"}),
        secured.delete("/session", headers=COOKIE),
    ]
    for response in responses:
        assert TOKEN not in response.text, response.request.url
        assert TOKEN not in str(response.headers), response.request.url


# -- without a token -----------------------------------------------------------------------
def test_without_a_token_session_is_a_no_op(client: TestClient) -> None:
    signed_in = client.post("/session")
    assert signed_in.status_code == 204
    assert "set-cookie" not in signed_in.headers
    assert client.delete("/session").status_code == 204
    assert 'data-auth="off"' in client.get("/").text  # no "sign out" button
    assert client.get("/", headers=HTML).status_code == 200
