"""The dashboard in a real headless Chromium, against a real process."""

from __future__ import annotations

from pathlib import Path

from browser_helpers import Browser, browser, browser_driver, running_process
from server_helpers import PLAY, connect

__all__ = ["browser", "browser_driver"]  # the fixtures, imported to be found

XSS = "<img src=x onerror=alert(1)>"


async def test_a_game_appears_without_reload_and_its_title_is_text(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_process(tmp_path) as (_, info):
        assert info.control is not None
        await browser.get(f"{info.control.local_url}/ui/")
        await browser.wait_for("#games")
        async with connect(info.games.local_url, XSS) as game:
            await game.startup()
            await game.register(PLAY)
            row = await browser.wait_for("#games [data-session] .game-title")
            assert await browser.run(lambda driver: row.text) == XSS
            await browser.screenshot()
            await browser.docs_screenshot("dashboard-games.png")
            await browser.assert_clean()


async def test_the_login_flow_works_with_a_token(
    tmp_path: Path, browser: Browser
) -> None:
    token = "a-browser-test-token-long-enough-0123"
    async with running_process(tmp_path, "--api-token", token) as (_, info):
        assert info.control is not None
        base = info.control.local_url
        await browser.get(f"{base}/ui/diagnostics")
        await browser.wait_for("form#login")
        assert "token" not in await browser.run(lambda driver: driver.current_url)
        await browser.type("form#login input[name=token]", token)
        await browser.click("form#login button[type=submit]")
        await browser.wait_for("a[data-nav=diagnostics][aria-current=page]")
        url = await browser.run(lambda driver: driver.current_url)
        assert url == f"{base}/ui/diagnostics"
        assert token not in url
        cookies = await browser.run(lambda driver: driver.get_cookies())
        (cookie,) = [c for c in cookies if c["name"] == "neuro_ui"]
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert cookie["value"] != token
        await browser.click("form.logout button[type=submit]")
        await browser.wait_for("form#login")
        await browser.assert_clean()
