"""The session cookie: signed, expiring, rotated on sign-in, revoked by sign-out and token change.

The clock is a number the tests move (``SessionCookies.clock``), so nothing sleeps and no test
depends on how long it takes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from observml import ExperimentHub
from observml.api import ApiSettings, create_app
from observml.api.session_cookie import (
    SESSION_COOKIE,
    SessionCookies,
    SessionProblem,
    describe_duration,
    token_fingerprint,
)
from tests.unit.api.conftest import assert_error

TOKEN = "tok-5e1d-session-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml"}
HOUR = 3600


class Clock:
    """Epoch seconds that only move when a test moves them."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def browser(value: str) -> dict[str, str]:
    """Headers of a browser that holds the session cookie ``value``."""
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def sign_in(client: TestClient, headers: dict[str, str] | None = None) -> str:
    """Sign in with the bearer token; return the cookie and keep it out of the client's jar."""
    response = client.post("/session", headers={**BEARER, **(headers or {})})
    assert response.status_code == 204, response.text
    value = response.cookies[SESSION_COOKIE]
    client.cookies.clear()
    return value


# -- SessionCookies ------------------------------------------------------------------------
def test_session_cookie_is_accepted_for_max_age_seconds_then_expires() -> None:
    clock = Clock()
    sessions = SessionCookies(TOKEN, max_age=HOUR, clock=clock)
    value = sessions.issue()
    assert sessions.problem(value) is None
    clock.now += HOUR
    assert sessions.problem(value) is None  # used or not, it does not last longer
    clock.now += 1
    assert sessions.problem(value) is SessionProblem.EXPIRED


def test_session_cookie_from_a_clock_ahead_is_not_yet_valid() -> None:
    clock = Clock()
    ahead = SessionCookies(TOKEN, max_age=HOUR, clock=Clock(clock.now + 600)).issue()
    assert SessionCookies(TOKEN, max_age=HOUR, clock=clock).problem(ahead) is (
        SessionProblem.NOT_YET_VALID
    )


def test_every_issue_is_a_new_session() -> None:
    sessions = SessionCookies(TOKEN, max_age=HOUR, clock=Clock())
    values = {sessions.issue() for _ in range(20)}  # the same second: the id differs
    assert len(values) == 20
    assert all(sessions.problem(value) is None for value in values)


def tampered(value: str) -> list[str]:
    """``value`` with one character of a part changed, or cut short (its token kept)."""
    session_id, fingerprint, issued, signature = value.split(".")

    def flip(text: str) -> str:
        return ("A" if text[0] != "A" else "B") + text[1:]

    return [
        ".".join([flip(session_id), fingerprint, issued, signature]),
        ".".join([session_id, fingerprint, flip(issued), signature]),
        ".".join([session_id, fingerprint, issued, flip(signature)]),
        ".".join([session_id, fingerprint, issued]),
        value[:-1],
        value + "A",
    ]


def test_a_tampered_or_foreign_cookie_is_invalid() -> None:
    sessions = SessionCookies(TOKEN, max_age=HOUR, clock=Clock())
    value = sessions.issue()
    forged = [
        *tampered(value),
        "",
        "not-a-cookie",
        "5c1f" * 16,  # the fixed HMAC cookie of observml before 0.1
        TOKEN,
        value.replace(".", "", 1),
    ]
    for candidate in forged:
        assert sessions.problem(candidate) is SessionProblem.INVALID, candidate


def test_a_cookie_of_another_token_is_told_apart() -> None:
    clock = Clock()
    old = SessionCookies("the-old-token", max_age=HOUR, clock=clock).issue()
    sessions = SessionCookies(TOKEN, max_age=HOUR, clock=clock)
    assert sessions.problem(old) is SessionProblem.OTHER_TOKEN
    # refused all the same when only the fingerprint was changed; no key can tell which token
    # signed it, so the 401 goes by the fingerprint it claims
    session_id, _, issued, signature = sessions.issue().split(".")
    claimed = ".".join([session_id, "0" * 16, issued, signature])
    assert sessions.problem(claimed) is SessionProblem.OTHER_TOKEN
    assert token_fingerprint(TOKEN) in sessions.issue()
    assert token_fingerprint(TOKEN) != token_fingerprint("the-old-token")
    assert TOKEN not in token_fingerprint(TOKEN)


def test_a_restarted_server_with_the_same_token_keeps_browsers_signed_in() -> None:
    clock = Clock()
    value = SessionCookies(TOKEN, max_age=HOUR, clock=clock).issue()
    assert SessionCookies(TOKEN, max_age=HOUR, clock=clock).problem(value) is None


def test_revoke_ends_one_session_until_it_would_have_expired() -> None:
    clock = Clock()
    sessions = SessionCookies(TOKEN, max_age=HOUR, clock=clock)
    ended, other = sessions.issue(), sessions.issue()
    assert sessions.revoke(ended) is True
    assert sessions.problem(ended) is SessionProblem.SIGNED_OUT
    assert sessions.problem(other) is None
    assert sessions.revoke("not-a-cookie") is False
    clock.now += HOUR + 1
    assert sessions.problem(ended) is SessionProblem.EXPIRED
    # the list forgets what expired: it holds at most one sign-out per live session
    assert sessions.revoke(sessions.issue()) is True
    assert len(sessions._revoked) == 1


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        pytest.param(8 * HOUR, "8 hours", id="hours"),
        pytest.param(HOUR, "1 hour", id="one-hour"),
        pytest.param(90 * 60, "90 minutes", id="minutes"),
        pytest.param(61, "61 seconds", id="seconds"),
    ],
)
def test_describe_duration(seconds: int, words: str) -> None:
    assert describe_duration(seconds) == words


# -- through the app -----------------------------------------------------------------------
@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(hub: ExperimentHub, clock: Clock) -> FastAPI:
    app = create_app(hub, settings=ApiSettings(token=TOKEN, session_max_age=HOUR))
    app.state.sessions.clock = clock
    return app


@pytest.fixture
def secured(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def test_an_expired_cookie_is_401_saying_to_sign_in_again(
    secured: TestClient, clock: Clock
) -> None:
    value = sign_in(secured)
    assert secured.get("/experiments", headers=browser(value)).status_code == 200
    clock.now += HOUR + 1
    response = secured.get("/experiments", headers=browser(value))
    body = assert_error(response, 401, "UnauthorizedError", "the session cookie expired")
    assert "a sign-in lasts 1 hour (api.session_max_age)" in body["message"]
    assert "Sign in again on the dashboard page" in body["message"]
    assert response.headers["www-authenticate"] == "Bearer"
    page = secured.get("/", headers={**browser(value), **HTML})
    assert page.status_code == 401
    assert "Your session ended: a sign-in lasts 1 hour." in page.text
    assert 'id="signin-form"' in page.text


def test_a_tampered_cookie_is_401(secured: TestClient) -> None:
    for candidate in tampered(sign_in(secured)):
        response = secured.get("/experiments", headers=browser(candidate))
        assert_error(response, 401, "UnauthorizedError", "the session cookie is not valid")


def test_sign_out_ends_the_session_even_for_a_copy_of_the_cookie(secured: TestClient) -> None:
    kept, other = sign_in(secured), sign_in(secured)
    signed_out = secured.delete("/session", headers=browser(kept))
    assert signed_out.status_code == 204
    response = secured.get("/experiments", headers=browser(kept))
    body = assert_error(response, 401, "UnauthorizedError", "was signed out (DELETE /session)")
    assert "Authorization: Bearer <token>" in body["message"]
    assert "You signed out." in secured.get("/", headers={**browser(kept), **HTML}).text
    assert secured.get("/experiments", headers=browser(other)).status_code == 200


def test_a_new_token_refuses_every_cookie_of_the_old_one(
    hub: ExperimentHub, secured: TestClient
) -> None:
    value = sign_in(secured)
    renewed = create_app(hub, settings=ApiSettings(token="the-new-token"))
    with TestClient(renewed) as client:
        response = client.get("/experiments", headers=browser(value))
        assert_error(response, 401, "UnauthorizedError", "the server's token changed")
        page = client.get("/", headers={**browser(value), **HTML})
        assert "The server&#x27;s token changed: sign in with the new one." in page.text
        fresh = client.post("/session", headers={"Authorization": "Bearer the-new-token"})
        assert fresh.status_code == 204
        assert client.get("/experiments").status_code == 200


def test_each_sign_in_gets_a_new_cookie_and_ends_the_one_it_replaces(
    secured: TestClient,
) -> None:
    first = sign_in(secured)
    second = sign_in(secured, headers=browser(first))
    assert second != first
    assert secured.get("/experiments", headers=browser(second)).status_code == 200
    response = secured.get("/experiments", headers=browser(first))
    assert_error(response, 401, "UnauthorizedError", "was signed out")


def test_a_cookie_does_not_renew_itself(secured: TestClient) -> None:
    value = sign_in(secured)
    response = secured.post("/session", headers=browser(value))
    assert_error(response, 401, "UnauthorizedError", "a session cookie does not renew itself")
    assert "set-cookie" not in response.headers
    # using the API does not extend the session either
    assert "set-cookie" not in secured.get("/experiments", headers=browser(value)).headers


def test_the_sign_in_page_says_how_long_a_session_lasts(hub: ExperimentHub) -> None:
    with TestClient(create_app(hub, settings=ApiSettings(token=TOKEN))) as client:
        page = client.get("/", headers=HTML)
    assert page.status_code == 401
    assert "keeps a session cookie for 8 hours at most" in page.text
    assert '<p id="signin-note" class="note" role="status"></p>' in page.text  # no cookie sent
