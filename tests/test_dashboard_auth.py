"""The dashboard's login, sessions and CSRF checks, and the credential hook.

A control plane built with ``create_app`` (the dashboard's login blueprint,
a stand-in page under ``/ui`` with :func:`page_check`, the session as a
credential) served by real Hypercorn on 127.0.0.1 port 0 and driven with
httpx, as a browser would: cookies, ``Origin`` and ``Host`` headers.
Time is a clock of the test's own (sessions and the login limiter take it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypercorn.config
import hypercorn.trio
import pytest
import trio
from quart import Blueprint, Request, request
from server_helpers import RecordingServer, start_server

from neuro_api.app import (
    Capability,
    ControlPlaneCapability,
    GamesCapability,
    NeuroProcess,
    Setup,
)
from neuro_api.control import ApiError, Routes, create_app
from neuro_api.dashboard._auth import (
    api_credential,
    csrf_token_for,
    login_blueprint,
    page_check,
    safe_next,
)
from neuro_api.dashboard._sessions import COOKIE, DashboardSessions, LoginLimiter
from neuro_api.server import RandomNeuroServer
from neuro_api.settings import load_settings

TOKEN = "dashboard-test-token-0123456789"
TTL = 60.0
MAX_SESSIONS = 3
MAX_FAILURES = 3
WINDOW = 30.0
REREGISTER = "/games/*/reregister"


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Plane:
    """A served control plane with the dashboard's auth."""

    url: str
    clock: Clock
    sessions: DashboardSessions

    @property
    def origin(self) -> str:
        return self.url

    def http(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=5)

    async def login(self, http: httpx.AsyncClient, **form: str) -> httpx.Response:
        """Log ``http`` in (its cookie jar keeps the session)."""
        fields = {"token": TOKEN, **form}
        return await http.post(
            "/ui/login", data=fields, headers={"Origin": self.origin}
        )

    async def csrf(self, http: httpx.AsyncClient) -> str:
        """The CSRF token a page of the session shows."""
        page = await http.get("/ui/")
        assert page.status_code == 200, page.text
        token = page.json()["csrf"]
        assert isinstance(token, str)
        return token


def pages() -> Blueprint:
    """A stand-in for the dashboard's pages: shows the page's CSRF token."""
    blueprint = Blueprint("pages", __name__)

    @blueprint.route("/", methods=["GET", "POST"])
    async def home() -> dict[str, Any]:
        return {"csrf": csrf_token_for(request)}

    @blueprint.get("/games/<session>")
    async def game(session: str) -> dict[str, Any]:
        return {"session": session}

    return blueprint


def build(server: RecordingServer, token: str | None, clock: Clock) -> Any:
    sessions = DashboardSessions(ttl=TTL, max_sessions=MAX_SESSIONS, clock=clock)
    limiter = LoginLimiter(
        max_failures=MAX_FAILURES, window=WINDOW, max_clients=4, clock=clock
    )
    app = create_app(
        server,
        token=token,
        routes=[
            Routes(login_blueprint(sessions, token, limiter=limiter), "/ui", "public"),
            Routes(pages(), "/ui", page_check(sessions, token)),
        ],
        credentials=[api_credential(sessions)],
    )
    return app, sessions


async def serve(nursery: trio.Nursery, app: Any) -> str:
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    binds = await nursery.start(
        functools.partial(
            hypercorn.trio.serve, app, config, shutdown_trigger=trio.sleep_forever
        )
    )
    url = binds[0]
    assert isinstance(url, str)
    return url


@pytest.fixture
async def plane(nursery: trio.Nursery) -> AsyncIterator[Plane]:
    server = RecordingServer()
    await start_server(nursery, server)
    clock = Clock()
    app, sessions = build(server, TOKEN, clock)
    yield Plane(await serve(nursery, app), clock, sessions)
    nursery.cancel_scope.cancel()


# --- logging in --------------------------------------------------------------------


async def test_the_login_page_is_a_form_that_loads_nothing_from_elsewhere(
    plane: Plane,
) -> None:
    async with plane.http() as http:
        page = await http.get("/ui/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<form id="login" method="post"' in html
    assert 'type="password" id="token" name="token"' in html
    for elsewhere in ("http://", "https://", "src="):
        assert elsewhere not in html
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


async def test_a_page_without_a_session_sends_the_browser_to_the_login(
    plane: Plane,
) -> None:
    async with plane.http() as http:
        page = await http.get("/ui/games/a b?tab=2")
        assert page.status_code == 303
        assert page.headers["location"] == (
            "/ui/login?next=%2Fui%2Fgames%2Fa%2520b%3Ftab%3D2"
        )
        # Not a page a browser navigates to: an error, no redirect.
        posted = await http.post("/ui/", headers={"Origin": plane.origin})
        assert posted.status_code == 401
        assert posted.json()["error"]["code"] == "login_required"
        # The control plane's own routes: the bearer token's 401.
        assert (await http.get("/games")).status_code == 401


async def test_a_login_sets_a_strict_http_only_cookie_and_goes_to_next(
    plane: Plane,
) -> None:
    async with plane.http() as http:
        done = await plane.login(http, next="/ui/games/a%20b?tab=2")
        assert done.status_code == 303
        assert done.headers["location"] == "/ui/games/a%20b?tab=2"
        cookie = done.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert cookie.startswith(f"{COOKIE}=")
        assert {"httponly", "path", "max-age", "samesite"} <= attributes
        assert "SameSite=Strict" in cookie
        assert "Path=/;" in cookie + ";"
        assert f"Max-Age={int(TTL)}" in cookie
        assert "secure" not in attributes  # plain http: a browser would drop it
        assert TOKEN not in cookie
        assert (await http.get("/ui/games/x")).json() == {"session": "x"}
        assert (await http.get("/games")).status_code == 200
        assert len(plane.sessions) == 1
        # Logged in already: the login page goes on to the pages.
        again = await http.get("/ui/login")
        assert (again.status_code, again.headers["location"]) == (303, "/ui/")
    async with plane.http(**{"X-Forwarded-Proto": "https"}) as tunnelled:
        over_https = await plane.login(tunnelled)
        assert "; Secure" in over_https.headers["set-cookie"]


async def test_a_wrong_token_shows_the_form_again_with_401_and_no_cookie(
    plane: Plane,
) -> None:
    async with plane.http() as http:
        wrong = await plane.login(
            http, token="not-" + TOKEN, next='/ui/"><script>alert(1)</script>'
        )
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers
        assert 'id="login-error" role="alert">wrong token<' in wrong.text
        # The next path comes back in the form, escaped.
        assert "<script>" not in wrong.text
        assert "&#34;&gt;&lt;script&gt;" in wrong.text
        empty = await http.post("/ui/login", data={}, headers={"Origin": plane.origin})
        assert empty.status_code == 401
        assert (await http.get("/games")).status_code == 401
    assert len(plane.sessions) == 0


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/ui/",
        "/\\evil.example",
        "/\tevil.example",
        "javascript:alert(1)",
        "ui/",
        "",
        "/ui/\r\nSet-Cookie: x=1",
    ],
)
def test_next_is_only_a_path_of_this_site(target: str) -> None:
    assert safe_next(target) == "/ui/"


def test_next_keeps_a_path_of_this_site() -> None:
    assert safe_next("/ui/games/a%20b?tab=2#f") == "/ui/games/a%20b?tab=2#f"


async def test_a_login_never_redirects_to_another_site(plane: Plane) -> None:
    async with plane.http() as http:
        done = await plane.login(http, next="//evil.example/")
    assert (done.status_code, done.headers["location"]) == (303, "/ui/")


async def test_a_login_posted_from_another_site_is_refused(plane: Plane) -> None:
    async with plane.http() as http:
        refused = await http.post(
            "/ui/login",
            data={"token": TOKEN},
            headers={"Origin": "https://evil.example"},
        )
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers


async def test_failed_logins_are_limited_per_address_even_with_the_right_token(
    plane: Plane,
) -> None:
    async with plane.http() as http:
        for _ in range(MAX_FAILURES):
            assert (await plane.login(http, token="wrong")).status_code == 401
        limited = await plane.login(http)
        assert limited.status_code == 429
        assert "set-cookie" not in limited.headers
        assert limited.headers["retry-after"] == str(int(WINDOW))
        assert "too many failed attempts" in limited.text
        plane.clock.now += WINDOW / 2
        assert (await plane.login(http)).status_code == 429
        assert (await plane.login(http)).headers["retry-after"] == str(int(WINDOW / 2))
        plane.clock.now += WINDOW / 2
        assert (await plane.login(http)).status_code == 303


def test_the_login_limiter_remembers_a_bounded_number_of_addresses() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=2, window=10, max_clients=4, clock=clock)
    for n in range(1000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
        limiter.failed("attacker")  # the busiest address stays remembered
    assert len(limiter) == 4
    assert limiter.retry_after("attacker") == 10
    assert limiter.retry_after("10.0.0.0") == 0  # forgotten: not blocked
    clock.now += 10
    assert limiter.retry_after("attacker") == 0


# --- sessions ------------------------------------------------------------------------


async def test_a_session_ends_ttl_after_the_login(plane: Plane) -> None:
    async with plane.http() as http:
        await plane.login(http)
        plane.clock.now += TTL - 1
        assert (await http.get("/games")).status_code == 200
        plane.clock.now += 1
        assert (await http.get("/games")).status_code == 401
        assert (await http.get("/ui/")).status_code == 303
    assert len(plane.sessions) == 0


async def test_sessions_are_bounded_and_the_oldest_ends_first(plane: Plane) -> None:
    browsers = [plane.http() for _ in range(MAX_SESSIONS + 1)]
    try:
        for browser in browsers:
            assert (await plane.login(browser)).status_code == 303
            plane.clock.now += 1
        assert len(plane.sessions) == MAX_SESSIONS
        assert (await browsers[0].get("/games")).status_code == 401
        for browser in browsers[1:]:
            assert (await browser.get("/games")).status_code == 200
    finally:
        for browser in browsers:
            await browser.aclose()


def test_session_ids_and_csrf_tokens_are_random_and_never_match_empty() -> None:
    sessions = DashboardSessions(max_sessions=1000)
    made = [sessions.create() for _ in range(100)]
    ids = {session_id for session_id, _ in made}
    assert len(ids) == 100
    assert all(len(session_id) >= 43 for session_id in ids)
    session_id, csrf = made[0]
    assert sessions.csrf_matches(session_id, csrf)
    assert not sessions.csrf_matches(session_id, "")
    assert not sessions.csrf_matches(session_id, None)
    assert not sessions.csrf_matches(session_id, made[1][1])
    assert not sessions.csrf_matches("", "")
    assert sessions.csrf_token("nope") is None
    with pytest.raises(ValueError, match="ttl"):
        DashboardSessions(ttl=0)


async def test_a_logout_needs_the_csrf_token_then_ends_the_session(
    plane: Plane,
) -> None:
    async with plane.http() as http:
        await plane.login(http)
        csrf = await plane.csrf(http)
        own = {"Origin": plane.origin}
        forged = await http.post("/ui/logout", headers=own)
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "csrf_failed"
        foreign = await http.post(
            "/ui/logout",
            data={"csrf_token": csrf},
            headers={"Origin": "http://127.0.0.1:1"},
        )
        assert foreign.json()["error"]["code"] == "forbidden_origin"
        assert len(plane.sessions) == 1
        session_id = http.cookies[COOKIE]
        done = await http.post("/ui/logout", data={"csrf_token": csrf}, headers=own)
        assert (done.status_code, done.headers["location"]) == (303, "/ui/login")
        cleared = done.headers["set-cookie"]
        assert cleared.startswith((f'{COOKIE}="";', f"{COOKIE}=;"))
        assert "Max-Age=0" in cleared
        assert len(plane.sessions) == 0
    # The old cookie, kept by someone, opens nothing any more.
    async with plane.http(Cookie=f"{COOKIE}={session_id}") as stale:
        assert (await stale.get("/games")).status_code == 401


# --- the control plane's routes with the session -----------------------------------


async def test_unsafe_requests_need_the_csrf_token_and_the_own_origin(
    plane: Plane,
) -> None:
    async with plane.http() as http:
        await plane.login(http)
        csrf = await plane.csrf(http)
        assert (await http.get("/games")).json() == {"games": []}

        async def post(**headers: str) -> httpx.Response:
            return await http.post(REREGISTER, json={}, headers=headers)

        own = plane.origin
        cases = [
            ({"Origin": own}, "csrf_failed"),
            ({"Origin": own, "X-CSRF-Token": "x" + csrf[1:]}, "csrf_failed"),
            ({"Origin": own, "X-CSRF-Token": ""}, "csrf_failed"),
            ({"X-CSRF-Token": csrf}, "forbidden_origin"),
            ({"Origin": "null", "X-CSRF-Token": csrf}, "forbidden_origin"),
            (
                {"Origin": "https://evil.example", "X-CSRF-Token": csrf},
                "forbidden_origin",
            ),
            # Same site (a page on another port of this machine): refused too.
            (
                {"Origin": "http://127.0.0.1:1", "X-CSRF-Token": csrf},
                "forbidden_origin",
            ),
        ]
        for headers, code in cases:
            refused = await post(**headers)
            assert refused.status_code == 403, headers
            assert refused.json()["error"]["code"] == code, headers
        accepted = await post(Origin=own, **{"X-CSRF-Token": csrf})
        assert accepted.status_code == 200, accepted.text
        # A page's own unsafe request: the same rules.
        assert (await http.post("/ui/", headers={"Origin": own})).status_code == 403
        page = await http.post("/ui/", headers={"Origin": own, "X-CSRF-Token": csrf})
        assert page.status_code == 200
    async with plane.http(Authorization=f"Bearer {TOKEN}") as bearer:
        assert (await bearer.post(REREGISTER, json={})).status_code == 200


async def test_the_event_stream_opens_with_the_cookie_alone(plane: Plane) -> None:
    async with plane.http() as http:
        await plane.login(http)
        session_id = http.cookies[COOKIE]
    host, port = plane.url.removeprefix("http://").rsplit(":", 1)

    async def first_bytes(*headers: bytes) -> bytes:
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(
                b"GET /events HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
                b"Accept: text/event-stream\r\n" + b"".join(headers) + b"\r\n"
            )
            received = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in received:
                    received += await stream.receive_some()
            return received

    opened = await first_bytes(f"Cookie: {COOKIE}={session_id}\r\n".encode())
    assert opened.startswith(b"HTTP/1.1 200")
    assert b"text/event-stream" in opened
    refused = await first_bytes(f"Cookie: {COOKIE}=forged\r\n".encode())
    assert refused.startswith(b"HTTP/1.1 401")


async def test_the_bearer_token_works_as_before(plane: Plane) -> None:
    async with plane.http(Authorization=f"Bearer {TOKEN}") as bearer:
        assert (await bearer.get("/games")).status_code == 200
        # No Origin, no CSRF token: a program, not a page.
        assert (await bearer.post(REREGISTER, json={})).status_code == 200
        in_url = await bearer.get("/games", params={"token": TOKEN})
        assert in_url.status_code == 401
        assert "URL" in in_url.json()["error"]["message"]
    async with plane.http(Authorization="Bearer wrong") as wrong:
        assert (await wrong.get("/games")).status_code == 401
    async with plane.http() as http:
        await plane.login(http)
        # A session does not make a token in the URL acceptable either.
        assert (await http.get("/games", params={"token": "x"})).status_code == 401
        assert (await http.get("/ui/", params={"token": "x"})).status_code == 401


async def test_the_token_is_never_taken_from_a_url_nor_logged(
    plane: Plane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with plane.http() as http:
        shown = await http.get("/ui/login", params={"token": TOKEN})
        assert shown.status_code == 400
        assert "never used" in shown.text
        assert TOKEN not in shown.text
        posted = await http.post(
            "/ui/login",
            params={"token": TOKEN},
            data={"token": TOKEN},
            headers={"Origin": plane.origin},
        )
        assert posted.status_code == 400
        assert "set-cookie" not in posted.headers
        await plane.login(http, token=TOKEN + "x")
        done = await plane.login(http)
        assert done.status_code == 303
        assert TOKEN not in done.headers["location"]
    # The server's records (the test's HTTP client logs its own URLs).
    text = "\n".join(
        f"{record.getMessage()} {record.args!r}"
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    assert "dashboard login failed from 127.0.0.1" in text
    assert "dashboard login from 127.0.0.1" in text
    assert TOKEN not in text


# --- without a token: the loopback guard -----------------------------------------


async def test_without_a_token_pages_are_open_to_this_machine_only(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    await start_server(nursery, server)
    app, sessions = build(server, None, Clock())
    url = await serve(nursery, app)
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        page = await http.get("/ui/")
        assert page.json() == {"csrf": ""}  # no session, nothing to check
        assert (await http.post("/ui/", headers={"Origin": url})).status_code == 200
        foreign = await http.post("/ui/", headers={"Origin": "https://evil.example"})
        assert foreign.json()["error"]["code"] == "forbidden_origin"
        rebound = await http.get("/ui/", headers={"Host": "evil.example"})
        assert rebound.json()["error"]["code"] == "forbidden_host"
        login = await http.get("/ui/login", params={"next": "/ui/games/x"})
        assert (login.status_code, login.headers["location"]) == (303, "/ui/games/x")
        posted = await http.post("/ui/login", data={"token": "anything"})
        assert posted.status_code == 303
        assert "set-cookie" not in posted.headers
    assert len(sessions) == 0


# --- the credential hook of capabilities -------------------------------------------


async def _key_check(request: Request) -> bool:
    key = request.headers.get("X-Key")
    if key == "bad":
        raise ApiError(403, "bad_key", "that key is refused")
    return key == "good"


class KeyCapability(Capability):
    name = "keyed"

    def setup(self, app: Setup) -> None:
        app.add_credential(_key_check)


async def test_a_capability_credential_opens_token_routes_and_only_those() -> None:
    settings = load_settings(
        {"engine": "random", "port": 0, "http_port": 0, "api_token": TOKEN},
        environ={},
    )
    control = ControlPlaneCapability()
    NeuroProcess(
        settings,
        RandomNeuroServer(),
        capabilities=[control, GamesCapability(), KeyCapability()],
    )
    assert control.app is not None
    async with control.app.test_app() as test_app:
        client = test_app.test_client()
        assert (
            await client.get("/games", headers={"X-Key": "good"})
        ).status_code == 200
        assert (
            await client.get("/games", headers={"X-Key": "other"})
        ).status_code == 401
        refused = await client.get("/games", headers={"X-Key": "bad"})
        assert refused.status_code == 403
        assert (await refused.get_json())["error"]["code"] == "bad_key"
        in_url = await client.get("/games?token=x", headers={"X-Key": "good"})
        assert in_url.status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/games", headers=bearer)).status_code == 200


def test_a_credential_is_added_in_setup_not_finish() -> None:
    class Late(Capability):
        name = "late"

        def finish(self, app: Setup) -> None:
            app.add_credential(_key_check)

    settings = load_settings({"engine": "random", "port": 0}, environ={})
    with pytest.raises(RuntimeError, match="add credentials in setup"):
        NeuroProcess(
            settings, RandomNeuroServer(), capabilities=[GamesCapability(), Late()]
        )
