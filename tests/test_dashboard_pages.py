"""The dashboard's pages at the HTTP level: a real process, httpx on loopback.

Real sockets on 127.0.0.1 port 0 (games' server, control plane), no token
(the loopback case: the login flow has tests of its own). The browser
tests drive the same pages in Chromium.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
from server_helpers import connect

import neuro_api.dashboard
from neuro_api.app import (
    ControlPlaneCapability,
    GamesCapability,
    NeuroProcess,
    ProcessInfo,
    build_parser,
    default_capabilities,
)
from neuro_api.command import Action
from neuro_api.dashboard import DashboardCapability, DashboardSettings
from neuro_api.server import RandomNeuroServer
from neuro_api.settings import load_settings
from neuro_api.status import StatusCapability, StatusSettings

WAIT: Final = 10.0
XSS: Final = "<img src=x onerror=alert(1)>"
PACKAGE: Final = Path(neuro_api.dashboard.__file__).parent


@asynccontextmanager
async def running(
    data_dir: Path, *argv: str, status: bool = False
) -> AsyncIterator[ProcessInfo]:
    """A process with the control plane and the dashboard (and ``status``)."""
    flags = ["--engine", "random", "--port", "0", "--http-port", "0"]
    flags += ["--data-dir", str(data_dir), *argv]
    sections: list[Any] = [DashboardSettings, StatusSettings]
    parsed = build_parser(sections).parse_args(flags)
    settings = load_settings(parsed, environ={}, sections=sections)
    capabilities: list[Any] = [ControlPlaneCapability(), GamesCapability()]
    if status:
        capabilities.append(StatusCapability())
    capabilities.append(DashboardCapability())
    process = NeuroProcess(
        settings, RandomNeuroServer(), capabilities=capabilities, out=io.StringIO()
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            info = await nursery.start(
                lambda task_status: process.run(
                    handle_signals=False, task_status=task_status
                )
            )
        yield info
        nursery.cancel_scope.cancel()


def http(info: ProcessInfo) -> httpx.AsyncClient:
    assert info.control is not None
    return httpx.AsyncClient(base_url=info.control.local_url, timeout=WAIT)


HTML: Final = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def csrf(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', page)
    assert found is not None, "no csrf meta"
    return found.group(1)


async def test_every_page_renders_with_the_contract(tmp_path: Path) -> None:
    async with running(tmp_path) as info, http(info) as client:
        for path, nav in [
            ("/ui/", "games"),
            ("/ui/diagnostics", "diagnostics"),
            ("/ui/services", "services"),
            ("/ui/games/nosuchsession", "games"),
        ]:
            answer = await client.get(path, headers=HTML)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"].startswith("text/html")
            page = answer.text
            assert '<main id="main"' in page
            # Loopback: no session, so no token to carry (the Origin and
            # Host guard protects unsafe requests); the meta is there.
            assert csrf(page) == ""
            for name in ("games", "diagnostics", "services"):
                assert f'data-nav="{name}"' in page
            assert 'aria-current="page"' in page
            assert f'data-nav="{nav}"' in page
            # Capabilities that are off have no link and no page.
            for name in ("status", "calls", "realtime", "voice"):
                assert f'data-nav="{name}"' not in page
        for name in ("status", "calls", "realtime", "voice"):
            assert (await client.get(f"/ui/{name}")).status_code == 404


async def test_capability_pages_only_when_on(tmp_path: Path) -> None:
    async with running(tmp_path, status=True) as info, http(info) as client:
        page = (await client.get("/ui/")).text
        assert 'data-nav="status"' in page
        assert 'data-nav="calls"' not in page
        status = await client.get("/ui/status")
        assert status.status_code == 200
        assert 'id="client-rows"' in status.text
        assert (await client.get("/ui/calls")).status_code == 404


async def test_a_game_title_is_escaped(tmp_path: Path) -> None:
    async with (
        running(tmp_path) as info,
        http(info) as client,
        connect(info.games.local_url, XSS) as game,
    ):
        await game.startup()
        await game.register(Action("jump", "<script>alert(2)</script>", None))
        games = (await client.get("/games")).json()["games"]
        session = games[0]["session_id"]
        for path in ("/ui/", f"/ui/games/{session}", "/ui/diagnostics"):
            page = (await client.get(path)).text
            assert XSS not in page, path
            assert "<script>alert" not in page
        listing = (await client.get("/ui/")).text
        assert "&lt;img src=x onerror=alert(1)&gt;" in listing
        assert f'data-session="{session}"' in listing
        assert f'href="/ui/games/{session}"' in listing
        detail = (await client.get(f"/ui/games/{session}")).text
        assert "&lt;img src=x onerror=alert(1)&gt;" in detail


async def test_generate_and_validate_do_not_send(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}},
        "required": ["n"],
    }
    async with (
        running(tmp_path) as info,
        http(info) as client,
        connect(info.games.local_url, "Counter") as game,
    ):
        await game.startup()
        await game.register(Action("count", "count up", schema))
        session = (await client.get("/games")).json()["games"][0]["session_id"]
        base = f"/ui/api/games/{session}/actions/count"
        generated = await client.get(f"{base}/generate")
        assert generated.status_code == 200
        assert generated.json()["data"]["n"] in (1, 2, 3)
        good = await client.post(f"{base}/validate", json={"data": {"n": 2}})
        assert good.json() == {"ok": True, "reason": None}
        bad = await client.post(f"{base}/validate", json={"data": {"n": 9}})
        assert bad.status_code == 200
        assert bad.json()["ok"] is False
        assert bad.json()["reason"]
        missing = await client.post(f"{base}/validate", json=[1])
        assert missing.status_code == 400
        unknown = await client.get(f"/ui/api/games/{session}/actions/nope/generate")
        assert unknown.status_code == 404
        view = (await client.get(f"/games/{session}")).json()
        assert view["pending_ids"] == []  # nothing was sent to the game


async def test_static_files_have_their_types(tmp_path: Path) -> None:
    async with running(tmp_path) as info, http(info) as client:
        js = await client.get("/ui/static/dashboard.js")
        css = await client.get("/ui/static/dashboard.css")
        page = (await client.get("/ui/")).text
    assert js.status_code == 200
    assert css.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert css.headers["content-type"].startswith("text/css")
    assert "/ui/static/dashboard.js" in page
    assert "/ui/static/dashboard.css" in page


async def test_root_redirects_browsers_and_post_is_unchanged(tmp_path: Path) -> None:
    async with running(tmp_path) as info, http(info) as client:
        browser = await client.get("/", headers=HTML)
        assert browser.status_code == 303
        assert browser.headers["location"] == "/ui/"
        api = await client.get("/", headers={"Accept": "application/json"})
        assert api.status_code == 405
        assert api.json()["error"]["code"] == "method_not_allowed"
        posted = await client.post("/", json={"command": "actions/reregister_all"})
        assert posted.status_code == 200
        assert posted.json() == {"sent_to": []}


async def test_root_is_not_redirected_without_the_dashboard(tmp_path: Path) -> None:
    async with (
        running(tmp_path, "--no-dashboard") as info,
        http(info) as client,
    ):
        answer = await client.get("/", headers=HTML)
        assert answer.status_code == 405
        assert (await client.get("/ui/")).status_code == 404


async def test_pages_refuse_foreign_origins_and_hosts(tmp_path: Path) -> None:
    async with running(tmp_path) as info, http(info) as client:
        foreign = await client.get("/ui/", headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        rebound = await client.get("/ui/", headers={"Host": "evil.example"})
        assert rebound.status_code == 403


async def test_with_a_token_the_pages_need_a_login_then_open(tmp_path: Path) -> None:
    token = "a-dashboard-test-token-that-is-long-enough"
    async with (
        running(tmp_path, "--api-token", token) as info,
        http(info) as client,
    ):
        page = await client.get("/ui/", headers=HTML)
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login?next=%2Fui%2F"
        assert (await client.get("/ui/static/dashboard.css")).status_code != 200
        origin = str(client.base_url).rstrip("/")
        login = await client.post(
            "/ui/login",
            data={"token": token, "next": "/ui/"},
            headers={"Origin": origin},
        )
        assert login.status_code == 303, login.text
        page = await client.get("/ui/", headers=HTML)
        assert page.status_code == 200
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert csrf is not None
        assert 'action="/ui/logout"' in page.text
        assert token not in page.text
        # The control plane's JSON routes take the cookie: reads alone,
        # changes with the page's CSRF token from the page's own origin.
        assert (await client.get("/games")).status_code == 200
        refused = await client.post("/games/*/reregister", headers={"Origin": origin})
        assert refused.status_code == 403
        done = await client.post(
            "/games/*/reregister",
            headers={"Origin": origin, "X-CSRF-Token": csrf[1]},
        )
        assert done.status_code < 400, done.text


def test_the_dashboard_is_a_default_capability() -> None:
    assert any(isinstance(c, DashboardCapability) for c in default_capabilities())


@pytest.mark.parametrize("folder", ["templates", "static"])
def test_no_asset_comes_from_the_internet(folder: str) -> None:
    files = sorted((PACKAGE / folder).iterdir())
    assert files
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), file.name
        assert "@import" not in text, file.name


def test_the_script_never_writes_html() -> None:
    script = (PACKAGE / "static" / "dashboard.js").read_text(encoding="utf-8")
    sinks = r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML\(|document\.write"
    assert not re.search(sinks, script)
