"""The dashboard in a real headless Chromium, against a real process."""

from __future__ import annotations

from pathlib import Path

from browser_helpers import Browser, browser, browser_driver, running_process
from server_helpers import PLAY, connect
from status_helpers import eventually

from neuro_api.command import Action
from neuro_api.server import RandomNeuroServer

__all__ = ["browser", "browser_driver"]  # the fixtures, imported to be found

XSS = "<img src=x onerror=alert(1)>"
HUGE = '[data-action-card="huge"]'


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


async def test_a_force_shows_with_its_timer_and_an_action_goes_from_the_form(
    tmp_path: Path, browser: Browser
) -> None:
    slow = RandomNeuroServer(delay=600)  # the force stays open meanwhile
    async with running_process(tmp_path, server=slow) as (_, info):
        assert info.control is not None
        async with connect(info.games.local_url, "Tic Tac Toe") as game:
            await game.startup()
            await game.register(PLAY)
            assert game.session_id is not None
            await browser.get(f"{info.control.local_url}/ui/games/{game.session_id}")
            await game.force("play", query="Your move", state="X . .")
            await browser.wait_for_text(".force", "Your move")
            # Neuro is choosing: no action sent, so no result timer yet.
            await browser.wait_for('.force .force-timer[data-running="no"]')
            await browser.wait_for_text(".force .force-retries", "2")
            await browser.screenshot("force")
            await browser.docs_screenshot("dashboard-game.png")
            # An action from the form generated from its schema.
            await browser.type(
                "form.action-form[data-action=play] input[name=cell]", "5"
            )
            await browser.click(
                "form.action-form[data-action=play] button[type=submit]"
            )
            action = await game.expect_action()
            assert (action.name, action.data_json) == ("play", '{"cell":5}')
            # Sent and not answered: the result timer runs (20 s by default).
            timer = await browser.wait_for('.force .force-timer[data-running="yes"]')
            left = await browser.run(lambda driver: timer.text)
            assert left.endswith(" s left")
            assert 0 < int(left.split()[0]) <= 20
            await game.result(action.id, True, "placed in the middle")
            await browser.wait_for_text(
                ".outcome[data-status=success]", "placed in the middle"
            )
            await browser.assert_clean()


async def test_pause_and_block_buttons_act_on_the_game(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_process(tmp_path) as (process, info):
        assert info.control is not None
        async with connect(info.games.local_url, "Chess") as game:
            await game.startup()
            await game.register(PLAY)
            await browser.get(f"{info.control.local_url}/ui/status")
            row = '[data-client="Chess"]'
            await browser.click(f'{row} button[data-op="pause"]')
            server = process.server
            await browser.wait_until(
                lambda driver: server.gates_holding("Chess") == ["paused"],
                message="not paused",
            )
            await browser.click(f'{row} button[data-op="resume"]')
            await browser.wait_until(
                lambda driver: server.gates_holding("Chess") == [],
                message="not resumed",
            )
            await browser.click(f'{row} button[data-op="block"]')
            closed = await game.expect_closed()
            assert closed.code == 1008
            await browser.assert_clean()


async def test_a_thousand_actions_with_a_huge_schema_do_not_freeze_the_page(
    tmp_path: Path, browser: Browser
) -> None:
    # A game may register 1,000 actions at most: 999 small ones and the huge.
    many = [Action(f"act_{n}", f"Action number {n}", None) for n in range(999)]
    enum = [f"choice {n:06d} " + "x" * 40 for n in range(16_000)]  # ~900 KB
    huge = Action(
        "huge",
        "An action with a huge schema",
        {
            "type": "object",
            "properties": {"pick": {"type": "string", "enum": enum}},
            "required": ["pick"],
        },
    )
    async with running_process(tmp_path) as (process, info):
        assert info.control is not None
        async with connect(info.games.local_url, "Big Game") as game:
            await game.startup()
            await game.register(*many[:500])
            await game.register(*many[500:])
            await game.register(huge)
            assert game.session_id is not None
            url = f"{info.control.local_url}/ui/games/{game.session_id}"
            client = process.server.get_client(game.session_id)
            assert client is not None
            await eventually(lambda: len(client.actions) == 1000)
            await browser.get(url)
            # Every action gets its card, the huge one too, in bounded time.
            count = "return document.querySelectorAll('[data-action-card]').length"
            await browser.wait_until(
                lambda driver: driver.execute_script(count) == 1000,
                message="not every action was rendered",
            )
            # The page still answers: the huge schema opens (cut), a link works.
            await browser.click(f"{HUGE} details.schema summary")
            shown = await browser.wait_for(
                '[data-action-card="huge"] details.schema pre'
            )
            text = await browser.run(lambda driver: shown.get_attribute("textContent"))
            assert text is not None
            assert 60_000 < len(text) <= 70_000  # cut to 64 KiB, with a note
            await browser.click('a[data-nav="diagnostics"]')
            await browser.wait_for('a[data-nav="diagnostics"][aria-current="page"]')
            await browser.assert_clean()
