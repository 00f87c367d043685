"""Every dashboard page in a real headless Chromium: the calls page's
registry, filters and "sync now"; each page at 1280 and 390 px wide with a
screenshot; the keyboard alone reaching the navigation and an action form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import httpx
import pytest
from browser_helpers import Browser, browser, browser_driver, running_process
from fake_realtime import open_fake_realtime
from fake_twilio import FakeTwilio, loopback_only
from selenium.webdriver.common.keys import Keys
from server_helpers import PLAY, connect

from neuro_api.app import NeuroProcess, ProcessInfo
from neuro_api.manager import ServerInfo

__all__ = ["browser", "browser_driver"]  # the fixtures, imported to be found

SID: Final = "AC" + "0" * 32
KEY: Final = "SK" + "1" * 32
SECRET: Final = "a-test-secret-of-at-least-32-bytes-long"
KEYS: Final = {
    "TWILIO_ACCOUNT_SID": SID,
    "TWILIO_API_KEY": KEY,
    "TWILIO_API_SECRET": SECRET,
}
CAPABILITY_LINKS: Final = ", ".join(
    f'a[data-nav="{name}"]' for name in ("status", "calls", "realtime", "voice")
)
OVERFLOW: Final = (
    "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
)


def _calls_url(process: NeuroProcess) -> str:
    info = {s.name: s.info for s in process.supervisor.status()}["calls"]
    assert isinstance(info, ServerInfo)
    return info.local_url


async def _make_call(http: httpx.AsyncClient, caller: str, room: str) -> str:
    made = await http.post(
        "/api/calls", json={"caller": caller, "callee": "neuro", "room": room}
    )
    assert made.status_code == 201, made.text
    call_id: str = made.json()["id"]
    return call_id


async def test_the_calls_page_filters_the_registry_and_syncs_now(
    tmp_path: Path, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTwilio(KEY, SECRET) as fake, loopback_only(monkeypatch) as left:
        environ = {**KEYS, "TWILIO_BASE_URL": fake.url}
        fake.add_room("kitchen", participants=2)
        async with running_process(tmp_path, environ=environ) as (process, info):
            assert info.control is not None
            async with httpx.AsyncClient(base_url=_calls_url(process)) as http:
                kept = await _make_call(http, "alice", "kitchen")
                gone = await _make_call(http, "bob", "attic")  # no such room
                await _make_call(http, "<b>carol</b>", "hall")
                for call in (kept, gone):
                    await http.post(f"/api/calls/{call}/accept")
            await browser.get(f"{info.control.local_url}/ui/calls")
            await browser.wait_for(f'#call-rows tr[data-call="{kept}"]')
            assert len(await browser.find_all("#call-rows tr")) == 3
            # A caller's name is text, never markup.
            assert "<b>carol</b>" in await browser.text("#call-rows")
            await browser.wait_for_text("#job-twilio", "configured")
            await browser.wait_for_text("#job-next", "Z")  # the job's next run
            await browser.screenshot()
            # Filters: text, then status.
            await browser.type("#calls-q", "ALI")
            await browser.click("#calls-filter button[type=submit]")
            await browser.wait_for_text("#calls-count", "1 call shown of 1 matching")
            assert len(await browser.find_all("#call-rows tr")) == 1
            await browser.type("#calls-q", "")
            await browser.run(
                lambda d: d.execute_script(
                    "const s = document.getElementById('calls-status');"
                    "s.value = 'pending'; s.dispatchEvent(new Event('change'));"
                )
            )
            await browser.wait_until(
                lambda d: len(d.find_elements("css selector", "#call-rows tr")) == 1,
                message="the status filter did not apply",
            )
            # Sync now: the call whose room is gone is ended by it.
            await browser.click("#calls-sync")
            await browser.wait_for_text("#calls-sync-result", "synced 2, ended 1")
            await browser.run(
                lambda d: d.execute_script(
                    "const s = document.getElementById('calls-status');"
                    "s.value = 'ended'; s.dispatchEvent(new Event('change'));"
                )
            )
            await browser.wait_for(f'#call-rows tr[data-call="{gone}"]')
            await browser.wait_for_text("#job-last", "Z")
            await browser.wait_for_text(
                '#calls-registry-rows tr[data-key="total_calls"]', "3"
            )
            await browser.assert_clean()
    assert left == []


@asynccontextmanager
async def _everything_on(
    tmp_path: Path,
) -> AsyncIterator[tuple[NeuroProcess, ProcessInfo]]:
    async with open_fake_realtime(key="sk-pages") as fake:
        environ = {"OPENAI_API_KEY": "sk-pages", "OPENAI_REALTIME_URL": fake.url}
        async with running_process(tmp_path, environ=environ) as running:
            yield running


async def test_every_page_fits_1280_and_390_px(
    tmp_path: Path, browser: Browser
) -> None:
    async with _everything_on(tmp_path) as (_, info):
        assert info.control is not None
        base = f"{info.control.local_url}/ui"
        title = "A game with a long title " * 8
        async with connect(info.games.local_url, title) as game:
            await game.startup()
            await game.register(PLAY)
            assert game.session_id is not None
            pages = {
                "games": "/",
                "game": f"/games/{game.session_id}",
                "diagnostics": "/diagnostics",
                "services": "/services",
                "status": "/status",
                "calls": "/calls",
                "realtime": "/realtime",
                "voice": "/voice",
            }
            for name, path in pages.items():
                await browser.desktop()
                await browser.get(base + path)
                await browser.wait_for("main#main h1")
                assert len(await browser.find_all(CAPABILITY_LINKS)) == 4
                await browser.screenshot(name)
                assert await browser.run(lambda d: d.execute_script(OVERFLOW)) <= 0
                await browser.phone()
                await browser.get(base + path)
                await browser.wait_for("main#main h1")
                width = await browser.run(
                    lambda d: d.execute_script(
                        "return document.documentElement.clientWidth"
                    )
                )
                assert width == 390
                overflow = await browser.run(lambda d: d.execute_script(OVERFLOW))
                assert overflow <= 0, f"{name} is wider than 390 px by {overflow}"
                await browser.screenshot(f"{name}-phone")
            await browser.desktop()
            await browser.assert_clean()


async def _press(browser: Browser, *keys: str) -> None:
    await browser.run(lambda d: d.switch_to.active_element.send_keys(*keys))


async def _focused(browser: Browser) -> str:
    """The focused element, described (tag, id, name, data-nav, text)."""
    script = (
        "const e = document.activeElement;"
        "return [e.tagName, e.id, e.name || '', e.dataset.nav || '',"
        " (e.textContent || '').trim().slice(0, 40)].join('|');"
    )
    described: str = await browser.run(lambda d: d.execute_script(script))
    return described


async def _tab_to(browser: Browser, wanted: str, limit: int = 60) -> None:
    """Press Tab until the focused element's description contains ``wanted``."""
    seen = []
    for _ in range(limit):
        await _press(browser, Keys.TAB)
        focused = await _focused(browser)
        if wanted in focused:
            return
        seen.append(focused)
    raise AssertionError(f"Tab never reached {wanted!r}: {seen}")


async def test_the_keyboard_alone_navigates_and_performs_an_action(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_process(tmp_path) as (_, info):
        assert info.control is not None
        async with connect(info.games.local_url, "Tic Tac Toe") as game:
            await game.startup()
            await game.register(PLAY)
            await browser.get(f"{info.control.local_url}/ui/")
            await browser.wait_for("#games [data-session] .game-title")
            # The first Tab shows the skip link; Enter puts the focus on main.
            await _press(browser, Keys.TAB)
            assert (await _focused(browser)).endswith("Skip to content")
            await _press(browser, Keys.ENTER)
            assert (await _focused(browser)).startswith("MAIN|main")
            # The game's link, then the game's page.
            await _tab_to(browser, "Tic Tac Toe")
            await _press(browser, Keys.ENTER)
            await browser.wait_for("form.action-form[data-action=play]")
            await _tab_to(browser, "|cell|")
            await _press(browser, "7")
            await _tab_to(browser, "Perform play")
            await _press(browser, Keys.ENTER)
            action = await game.expect_action()
            assert (action.name, action.data_json) == ("play", '{"cell":7}')
            await game.result(action.id, True, "X in the corner")
            await browser.wait_for_text(".outcome[data-status=success]", "corner")
            # "Generate valid data" by keyboard fills the form.
            await _tab_to(browser, "Generate valid data", limit=80)
            await _press(browser, Keys.ENTER)
            cell = "form.action-form[data-action=play] input[name=cell]"
            await browser.wait_until(
                lambda d: (
                    d.find_element("css selector", cell).get_attribute("value")
                    in {str(n) for n in range(1, 10)}
                ),
                message="generated data did not fill the form",
            )
            # And the navigation, from the top of the page.
            await browser.run(lambda d: d.execute_script("document.body.focus()"))
            await _tab_to(browser, "|diagnostics|")
            await _press(browser, Keys.ENTER)
            await browser.wait_for('a[data-nav="diagnostics"][aria-current="page"]')
            await browser.assert_clean()
