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
