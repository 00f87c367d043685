"""The dashboard attacked: what a hostile game, web page or client can do.

Each test is an attack on a real process (real sockets on 127.0.0.1 port 0,
real Hypercorn) through the parts an attacker controls: a game's frames, a
browser page of another origin (requests with its ``Origin``, no custom
header), or raw HTTP. Browser attacks run in the real headless Chromium of
``browser_helpers``. Marker elements (``id="pwn..."``) show markup that got
into the DOM even when the page's Content-Security-Policy would stop its
script from running.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import quote, urljoin

import httpx
import hypercorn.config
import hypercorn.trio
import orjson
import pytest
import trio
from browser_helpers import Browser, browser, browser_driver, running_process
from quart_trio import QuartTrio
from selenium.webdriver.common.by import By
from server_helpers import Game, connect
from status_helpers import eventually

from neuro_api.app import ControlPlaneCapability, NeuroProcess, ProcessInfo
from neuro_api.command import Action
from neuro_api.server import RandomNeuroServer

__all__ = ["browser", "browser_driver"]  # the fixtures, imported to be found

WAIT: Final = 10.0


def payload(where: str) -> str:
    """Markup that leaves an element ``#pwn-<where>`` if it is ever parsed."""
    return (
        f'<img src=x id="pwn-{where}" onerror=alert(1)>'
        f'"><svg id="pwn-{where}-q" onload=alert(2)>'
        f"</script><script id='pwn-{where}-s'>alert(3)</script>{{{{7*7}}}}"
    )


TITLE: Final = payload("title")
HOSTILE_SCHEMA: Final = {
    "type": "object",
    "title": payload("schema-title"),
    "description": payload("schema-description"),
    "properties": {
        payload("property"): {
            "type": "string",
            "enum": [payload("enum"), "javascript:alert(4)"],
            "description": payload("property-description"),
        },
        "link": {"type": "string", "format": "uri", "default": "javascript:alert(5)"},
    },
}
HOSTILE: Final = Action(payload("name"), payload("description"), HOSTILE_SCHEMA)
CLEAN: Final = Action("clean", payload("clean-description"), None)


def css_string(text: str) -> str:
    """``text`` as a CSS string literal (for attribute selectors)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


MARKERS: Final = "return document.querySelectorAll('[id^=pwn]').length"


async def hostile_game(game: Game) -> str:
    """Start ``game``, register the hostile actions, send hostile frames."""
    await game.startup()
    await game.register(HOSTILE, CLEAN)
    await game.context(payload("context"))
    # Unregistering a name never registered: the diagnostic quotes it.
    await game.unregister(payload("unknown"))
    assert game.session_id is not None
    return game.session_id


async def no_markup(browser: Browser, page: str) -> None:
    """The page shows no element parsed from game data, no alert."""
    assert await browser.alert_text() is None, page
    count = await browser.run(lambda driver: driver.execute_script(MARKERS))
    assert count == 0, page
    assert await browser.run(
        lambda driver: driver.execute_script(
            "return window.__pwned === undefined && ({}).polluted === undefined"
        )
    ), page


async def test_nothing_a_game_sends_becomes_markup_on_any_page(
    tmp_path: Path, browser: Browser
) -> None:
    slow = RandomNeuroServer(delay=600)  # the force stays open meanwhile
    async with running_process(tmp_path, server=slow) as (process, info):
        assert info.control is not None
        base = info.control.local_url
        async with connect(info.games.local_url, TITLE) as game:
            session = await hostile_game(game)
            client = process.server.get_client(session)
            assert client is not None
            await eventually(lambda: len(client.actions) == 2)
            await eventually(lambda: client.diagnostics)
            await browser.get(f"{base}/ui/")
            title = await browser.wait_for(
                f'#games [data-session="{session}"] .game-title'
            )
            assert await browser.run(lambda driver: title.text) == TITLE
            await no_markup(browser, "games")
            await browser.get(f"{base}/ui/games/{session}")
            await game.force(
                HOSTILE.name, query=payload("query"), state=payload("state")
            )
            await browser.wait_for_text("#force-box .force-query", "pwn-query")
            card = f"[data-action-card={css_string(HOSTILE.name)}]"
            await browser.click(f"{card} details.schema summary")
            await browser.wait_for(f"{card} details.schema pre")
            await browser.click(f"{card} button[data-generate]")
            await browser.wait_for("#diagnostics [data-diagnostic]")
            await no_markup(browser, "game")
            # An action from the form; the game's result message is hostile.
            await browser.run(
                lambda driver: driver.execute_script(
                    "const s = document.querySelector(arguments[0] + ' select');"
                    "s.value = '0'; s.dispatchEvent(new Event('change'));",
                    card,
                )
            )
            await browser.click(f"{card} form button[type=submit]")
            action = await game.expect_action()
            sent = orjson.loads(action.data_json or "null")
            assert sent[payload("property")] == payload("enum")
            await game.result(action.id, False, payload("result"))
            await browser.wait_for_text(".outcome[data-status=failure]", "pwn-result")
            await no_markup(browser, "game")
            for path in ("/ui/diagnostics", "/ui/services", "/ui/status"):
                await browser.get(base + path)
                await browser.wait_for("main#main")
                await no_markup(browser, path)
            await browser.wait_for(f"[data-client={css_string(TITLE)}]")
            await no_markup(browser, "status rows")
            await browser.assert_clean()


PROTO: Final = Action(
    "proto",
    "Keys that are special to JavaScript objects",
    {
        "type": "object",
        "properties": {
            "__proto__": {
                "type": "object",
                "properties": {"polluted": {"type": "string"}},
                "required": ["polluted"],
            },
            "constructor": {"type": "string"},
        },
        "required": ["__proto__", "constructor"],
    },
)


async def test_special_property_names_are_sent_as_data_and_pollute_nothing(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_process(tmp_path) as (_, info):
        assert info.control is not None
        async with connect(info.games.local_url, "Proto") as game:
            await game.startup()
            await game.register(PROTO)
            assert game.session_id is not None
            await browser.get(f"{info.control.local_url}/ui/games/{game.session_id}")
            form = "form.action-form[data-action=proto]"
            await browser.type(f"{form} input[name=polluted]", "yes")
            await browser.type(f"{form} input[name=constructor]", "typed by hand")
            await browser.click(f"{form} button[type=submit]")
            action = await game.expect_action()
            assert orjson.loads(action.data_json or "null") == {
                "__proto__": {"polluted": "yes"},
                "constructor": "typed by hand",
            }
            await game.result(action.id, True, "ok")
            await browser.wait_for(".outcome[data-status=success]")
            # Generated data goes through the form's fields the same way.
            await browser.click(f"{form} button[data-generate]")
            await browser.wait_until(
                lambda driver: driver.execute_script(
                    "return document.querySelector(arguments[0]).value "
                    "!== 'typed by hand'",
                    f"{form} input[name=constructor]",
                ),
                message="no data generated",
            )
            await browser.click(f"{form} button[type=submit]")
            action = await game.expect_action()
            data = orjson.loads(action.data_json or "null")
            assert set(data) == {"__proto__", "constructor"}
            assert set(data["__proto__"]) == {"polluted"}
            await no_markup(browser, "game")
            await browser.assert_clean()


# -- HTTP attacks --------------------------------------------------------------


@dataclass
class Plane:
    """A running process (every capability) and an httpx client for its
    control plane."""

    process: NeuroProcess
    info: ProcessInfo
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        assert self.info.control is not None
        return self.info.control.local_url

    async def game(self, game: Game, *actions: Action) -> str:
        """Start ``game``, register ``actions``, wait until they are; its session."""
        await game.startup()
        await game.register(*actions)
        assert game.session_id is not None
        client = self.process.server.get_client(game.session_id)
        assert client is not None
        await eventually(lambda: len(client.actions) == len(actions))
        return game.session_id


@asynccontextmanager
async def plane(
    tmp_path: Path, *argv: str, server: RandomNeuroServer | None = None
) -> AsyncIterator[Plane]:
    """A :class:`Plane` for the test's block."""
    async with running_process(tmp_path, *argv, server=server) as (process, info):
        assert info.control is not None
        async with httpx.AsyncClient(
            base_url=info.control.local_url, timeout=WAIT
        ) as http:
            yield Plane(process, info, http)


async def answered(
    game: Game, request: Callable[[], Awaitable[httpx.Response]]
) -> tuple[str, httpx.Response]:
    """Send ``request`` (it performs an action), answer the action as the
    game; the action's name and the response."""
    responses: list[httpx.Response] = []

    async def send() -> None:
        responses.append(await request())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        action = await game.expect_action()
        await game.result(action.id, True, "ok")
    return action.name, responses[0]


def segment(name: str) -> str:
    """``name`` as one path segment, as the page's ``encodeURIComponent``."""
    return quote(name, safe="!'()*-._~")


async def test_actions_named_with_slashes_are_reachable(tmp_path: Path) -> None:
    # Names a game may register (the server warns, Neuro takes them): the
    # page encodes the "/" and the routes must still find the action, the
    # very one: "/lead" was merged into "lead" and redirected (308, the POST
    # repeated) to the action "lead".
    names = ["a/b", "x/generate", "end/", "a//b", "/lead", "lead", "/"]
    actions = [Action(n, "slashes", {"type": "object"}) for n in names]
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "Slashes") as game:
        session = await p.game(game, *actions)
        for name in names:
            path = f"/games/{session}/actions/{segment(name)}"
            generated = await p.http.get(f"/ui/api{path}/generate")
            assert generated.status_code == 200, (name, generated.text)
            checked = await p.http.post(f"/ui/api{path}/validate", json={"data": {}})
            assert checked.json() == {"ok": True, "reason": None}, name
            sent, response = await answered(
                game, functools.partial(p.http.post, path, json={"data": {}})
            )
            assert (sent, response.status_code) == (name, 200)


# -- cross-origin requests without a token (loopback) -----------------------------


async def test_pages_of_other_local_origins_change_nothing(tmp_path: Path) -> None:
    # A page served by another program of this machine (a dev server on
    # another port, a game's web build) is another origin: what it can make
    # the browser send without reading answers (a form, a no-cors fetch:
    # POST, text/plain or no body, no custom header) must change nothing.
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "Victim") as game:
        session = await p.game(game, Action("jump", "Jump", None))
        host = p.url.removeprefix("http://")
        port = int(host.rsplit(":", 1)[1])
        raw = '{"command": "actions/reregister_all"}'
        forged = [
            ("/", raw),
            ("/games/*/shutdown/immediate", ""),
            ("/games/*/reregister", ""),
            (f"/games/{session}/actions/jump", ""),
            (f"/ui/api/games/{session}/actions/jump/validate", '{"data": 1}'),
            ("/ui/logout", "csrf_token="),
        ]
        for origin in (
            f"http://127.0.0.1:{port + 1}",
            f"http://localhost:{port}",
            f"http://app.localhost:{port}",
            "http://[::1]",
        ):
            for path, body in forged:
                refused = await p.http.post(
                    path,
                    content=body,
                    headers={"Origin": origin, "Content-Type": "text/plain"},
                )
                assert refused.status_code == 403, (origin, path, refused.text)
                assert refused.json()["error"]["code"] == "forbidden_origin"
        await game.expect_silence(0.2)
        # The dashboard's own pages (same origin) and programs (no Origin).
        own = {"Origin": p.url}
        assert (await p.http.post("/", content=raw, headers=own)).status_code == 200
        assert (await p.http.post("/", content=raw)).status_code == 200


# -- with a token: the login and the session ----------------------------------------

TOKEN: Final = "an-attack-test-token-long-enough-0123456789"


async def login(p: Plane, http: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await http.post(
        "/ui/login", data={"token": TOKEN, **form}, headers={"Origin": p.url}
    )


async def test_next_never_leaves_the_site_nor_breaks_the_redirect(
    tmp_path: Path,
) -> None:
    async with plane(tmp_path, "--api-token", TOKEN) as p:
        for target in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "https:evil.example",
            "/%2F%2Fevil.example",
            "/%5Cevil.example",
            "/\t/evil.example",
            "/ui/\u0100",
            "/ui/\u2028",
        ]:
            async with httpx.AsyncClient(base_url=p.url, timeout=WAIT) as http:
                form = await http.get("/ui/login", params={"next": target})
                assert form.status_code == 200, (target, form.text)
                done = await login(p, http, next=target)
                assert done.status_code == 303, (target, done.text)
                location = done.headers["location"]
                # A browser reads "\\" as "/" and drops tabs and newlines.
                cleaned = re.sub(r"[\t\r\n]", "", location).replace("\\", "/")
                assert urljoin(p.url + "/ui/login", cleaned).startswith(p.url + "/")
                again = await http.get("/ui/login", params={"next": target})
                assert again.status_code == 303, (target, again.text)


def page_csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert found is not None
    return found.group(1)


async def test_a_session_is_never_one_the_attacker_chose_nor_outlives_logout(
    tmp_path: Path,
) -> None:
    async with plane(tmp_path, "--api-token", TOKEN) as p:
        async with httpx.AsyncClient(
            base_url=p.url, timeout=WAIT, cookies={"neuro_ui": "chosen-by-attacker"}
        ) as victim:
            assert (await victim.get("/games")).status_code == 401
            done = await login(p, victim)
            assert done.status_code == 303
            session = done.cookies["neuro_ui"]
            assert session != "chosen-by-attacker"
            victim.cookies.clear()
            victim.cookies.set("neuro_ui", session)
            async with httpx.AsyncClient(
                base_url=p.url, cookies={"neuro_ui": "chosen-by-attacker"}
            ) as attacker:
                assert (await attacker.get("/games")).status_code == 401
            csrf = page_csrf((await victim.get("/ui/")).text)
            done = await victim.post(
                "/ui/logout", data={"csrf_token": csrf}, headers={"Origin": p.url}
            )
            assert done.status_code == 303
        async with httpx.AsyncClient(
            base_url=p.url, timeout=WAIT, cookies={"neuro_ui": session}
        ) as replay:
            assert (await replay.get("/games")).status_code == 401
            assert (await replay.get("/ui/")).status_code == 303


async def test_with_a_session_pages_of_other_origins_change_nothing(
    tmp_path: Path,
) -> None:
    # SameSite=Strict keeps other sites' pages from sending the cookie; a
    # page on another port of this machine is the same site, and its
    # requests carry the cookie: the Origin and the CSRF token stop them.
    async with (
        plane(tmp_path, "--api-token", TOKEN) as p,
        connect(p.info.games.local_url, "Victim") as game,
    ):
        session = await p.game(game, Action("jump", "Jump", None))
        await login(p, p.http)
        csrf = page_csrf((await p.http.get("/ui/")).text)
        port = int(p.url.rsplit(":", 1)[1])
        other = f"http://127.0.0.1:{port + 1}"
        forged = [
            ("POST", "/", '{"command": "actions/reregister_all"}'),
            ("POST", "/games/*/shutdown/immediate", ""),
            ("POST", f"/games/{session}/actions/jump", ""),
            ("POST", f"/ui/api/games/{session}/actions/jump/validate", ""),
            ("PUT", "/status/paused/Victim", ""),
            ("POST", "/ui/logout", f"csrf_token={csrf}"),
        ]
        for method, path, body in forged:
            for headers in (
                {"Origin": other},  # a form: no custom header
                {"Origin": other, "X-CSRF-Token": csrf},  # had it leaked
                {"Origin": "null"},
                {},
            ):
                refused = await p.http.request(
                    method,
                    path,
                    content=body,
                    headers={"Content-Type": "text/plain", **headers},
                )
                assert refused.status_code == 403, (method, path, headers)
        await game.expect_silence(0.2)
        assert (await p.http.get("/games")).status_code == 200  # still logged in
        # A login posted by another local page: no session for it either.
        async with httpx.AsyncClient(base_url=p.url, timeout=WAIT) as fresh:
            forced = await fresh.post(
                "/ui/login", data={"token": TOKEN}, headers={"Origin": other}
            )
            assert forced.status_code == 403
            assert "neuro_ui" not in fresh.cookies


# -- bounds ---------------------------------------------------------------------------


def wide(width: int, depth: int) -> dict[str, Any]:
    """An object schema ``depth`` levels deep, ``width`` properties each."""
    if depth == 0:
        return {}
    names = [f"p{n}" for n in range(width)]
    return {"type": "object", "properties": {n: wide(width, depth - 1) for n in names}}


CONTROLS: Final = (
    "return document.querySelectorAll(arguments[0] + ' input,' + arguments[0] + "
    "' textarea:not([name=raw]),' + arguments[0] + ' select').length"
)


async def test_wide_deep_schemas_make_bounded_forms(
    tmp_path: Path, browser: Browser
) -> None:
    # 10 properties on each of 4 levels: 10,000 inputs from 120 KB of schema
    # (16 on 4 levels: 65,536 from 700 KB), which the server takes without a
    # word; and forty more actions of 1,000 inputs each. Made whole, the
    # page held 50,000 inputs (measured: 2 s for the first 10,000).
    big = Action("big", "A wide and deep schema", wide(10, 4))
    more = [Action(f"more_{n}", "Wide", wide(10, 3)) for n in range(40)]
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "Wide") as game:
        session = await p.game(game, big, *more)
        await browser.get(f"{p.url}/ui/games/{session}")
        await browser.wait_until(
            lambda driver: (
                driver.execute_script(
                    "return document.querySelectorAll('[data-action-card]').length"
                )
                == 41
            ),
            message="not every action was rendered",
        )
        form = "form.action-form[data-action=big]"
        mine = await browser.run(lambda driver: driver.execute_script(CONTROLS, form))
        everyone = await browser.run(
            lambda driver: driver.execute_script(CONTROLS, "#actions")
        )
        assert 10 <= mine <= 300  # 200 a form, a few more as JSON boxes
        assert everyone <= 5_500  # 5,000 a page, then one JSON box a form
        # The form still works: its first input (the deepest: JSON) sends.
        await browser.type(f"{form} textarea", "7")
        await browser.click(f"{form} button[type=submit]")
        action = await game.expect_action()
        assert orjson.loads(action.data_json or "null")["p0"]["p0"]["p0"]["p0"] == 7
        await browser.assert_clean()


async def test_generated_data_makes_no_more_inputs_than_a_form_may(
    tmp_path: Path, browser: Browser
) -> None:
    # Arrays get their items from generated data: 20 rows of 20 cells of 10
    # numbers are 4,000 inputs (28 KB of data, within the generator's 64 KiB).
    cell = {
        "type": "object",
        "properties": {f"n{n}": {"type": "integer"} for n in range(10)},
        "required": [f"n{n}" for n in range(10)],
    }
    row = {"type": "array", "items": cell, "minItems": 20, "maxItems": 20}
    grid = {"type": "array", "items": row, "minItems": 20, "maxItems": 20}
    table = Action(
        "table",
        "A grid",
        {"type": "object", "properties": {"grid": grid}, "required": ["grid"]},
    )
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "Grid") as game:
        session = await p.game(game, table)
        await browser.get(f"{p.url}/ui/games/{session}")
        form = "form.action-form[data-action=table]"
        await browser.click(f"{form} button[data-generate]")
        # The form cannot hold it: the data is shown as raw JSON instead.
        raw = await browser.wait_for(f"{form} textarea[name=raw]")
        text = await browser.run(lambda driver: raw.get_attribute("value"))
        assert len(orjson.loads(text or "null")["grid"]) == 20
        controls = await browser.run(
            lambda driver: driver.execute_script(CONTROLS, form)
        )
        assert controls <= 250
        await browser.click(f"{form} button[type=submit]")
        action = await game.expect_action()
        assert orjson.loads(action.data_json or "null") == orjson.loads(text or "null")
        await browser.assert_clean()


# -- requests other pages make the browser send (without a token) ------------------


@asynccontextmanager
async def other_page(html: str) -> AsyncIterator[str]:
    """An HTTP server of its own on 127.0.0.1 (another origin, the same site)
    serving ``html`` at ``/``; its URL."""
    app = QuartTrio("other_page")

    @app.get("/")
    async def index() -> Any:
        return html

    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(
                hypercorn.trio.serve, app, config, shutdown_trigger=trio.sleep_forever
            )
        )
        yield str(binds[0])
        nursery.cancel_scope.cancel()


def spy_on_generation(p: Plane) -> list[object]:
    """The schemas the server generates data for from now on."""
    calls: list[object] = []
    generator = p.process.server.generator
    generate = generator.generate_json

    async def spy(schema: Any) -> str | None:
        calls.append(schema)
        return await generate(schema)

    generator.generate_json = spy  # type: ignore[method-assign]
    return calls


async def embed_and_follow(browser: Browser, p: Plane, session: str) -> None:
    """Open a page of another origin that embeds the control plane's
    routes as images, then follow its link to the dashboard."""
    target = f"{p.url}/ui/api/games/Tic%20Tac%20Toe/actions/play/generate"
    html = (
        f'<img src="{target}"><img src="{p.url}/games">'
        f'<a id="go" href="{p.url}/ui/games/{session}">the dashboard</a>'
    )
    async with other_page(html) as url:
        await browser.get(url)
        await browser.wait_for_request("/games$")
        await browser.wait_for_request("/generate$")
        # A link followed is the user's doing: the page opens and works.
        await browser.click("#go")
        await browser.wait_for("form.action-form[data-action=play]")


@pytest.mark.parametrize("token", [False, True])
async def test_pages_elsewhere_cannot_make_the_browser_spend_server_time(
    tmp_path: Path, browser: Browser, token: bool
) -> None:
    # A page of another origin cannot read the answers, but an <img> makes
    # the browser send a GET without an Origin (and, from another port of
    # this machine, the same site, with the session cookie): games are
    # found by title ("Tic Tac Toe" is no secret), and every such GET makes
    # the server generate data (up to 2 s of a thread the engine shares) or
    # encode every game's actions (megabytes). The browser says who asked
    # (Sec-Fetch-Site): only the control plane's own pages, and the user
    # (typing an address, following a link), are served.
    argv = ("--api-token", TOKEN) if token else ()
    async with (
        plane(tmp_path, *argv) as p,
        connect(p.info.games.local_url, "Tic Tac Toe") as game,
    ):
        session = await p.game(game, Action("play", "Play", {"type": "object"}))
        if token:
            await browser.get(f"{p.url}/ui/login")
            await browser.type("form#login input[name=token]", TOKEN)
            await browser.click("form#login button[type=submit]")
            await browser.wait_for("#games")
        calls = spy_on_generation(p)
        await embed_and_follow(browser, p, session)
        assert calls == []
        await browser.click("form.action-form[data-action=play] button[data-generate]")
        await eventually(lambda: len(calls) == 1)


@pytest.mark.parametrize(
    ("headers", "served"),
    [
        ({}, True),  # a program
        ({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, True),
        ({"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, True),
        (
            {
                "Sec-Fetch-Site": "cross-site",
                "Sec-Fetch-Mode": "navigate",
                "Sec-Fetch-Dest": "document",
            },
            True,
        ),
        (
            {
                "Sec-Fetch-Site": "cross-site",
                "Sec-Fetch-Mode": "no-cors",
                "Sec-Fetch-Dest": "image",
            },
            False,
        ),
        ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}, False),
        (
            {
                "Sec-Fetch-Site": "cross-site",
                "Sec-Fetch-Mode": "navigate",
                "Sec-Fetch-Dest": "embed",
            },
            False,
        ),
    ],
)
async def test_fetch_metadata_says_who_may_be_served(
    tmp_path: Path, headers: dict[str, str], served: bool
) -> None:
    async with plane(tmp_path) as p:
        for path in ("/games", "/ui/", "/events"):
            if path == "/events" and served:
                continue  # a stream: it would not end
            answer = await p.http.get(path, headers=headers)
            assert (answer.status_code != 403) is served, (path, answer.text)


# -- headers ---------------------------------------------------------------------


async def test_what_the_dashboard_serves_is_never_sniffed_framed_or_cached(
    tmp_path: Path,
) -> None:
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "G") as game:
        session = await p.game(game, Action("play", "Play", {"type": "object"}))
        pages = ["/ui/", f"/ui/games/{session}", "/ui/diagnostics", "/ui/services"]
        pages += ["/ui/status", "/ui/games/%3Cb%3Eunknown"]
        for path in pages:
            answer = await p.http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["cache-control"] == "no-store", path
            assert "<b>unknown" not in answer.text
        for path in [
            "/ui/static/dashboard.js",
            "/ui/static/dashboard.css",
            f"/ui/api/games/{session}/actions/play/generate",
        ]:
            answer = await p.http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["x-content-type-options"] == "nosniff", path


# -- many dashboard tabs --------------------------------------------------------------


async def test_many_tabs_share_one_event_stream_and_all_load(
    tmp_path: Path, browser: Browser
) -> None:
    # Each tab's EventSource held one of the six connections a browser opens
    # to a host: the seventh tab did not load at all (nor any fetch of the
    # six). Tabs share one stream now; the frames reach every tab, and when
    # the tab reading the stream closes, another takes over.
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "Tabs") as game:
        session = await p.game(game, Action("play", "Play", None))
        first = await browser.run(lambda driver: driver.current_window_handle)
        loading = await browser.run(lambda driver: driver.timeouts.page_load)
        # A tab that cannot load fails the test in seconds, not in five minutes.
        await browser.run(lambda driver: driver.set_page_load_timeout(WAIT))
        try:
            await browser.get(f"{p.url}/ui/")
            await browser.wait_for("#games [data-session]")
            for _ in range(7):
                await browser.run(lambda driver: driver.switch_to.new_window("tab"))
                await browser.get(f"{p.url}/ui/games/{session}")
                await browser.wait_for("form.action-form[data-action=play]")
            await game.context("seen by the last tab")
            await browser.wait_for_text("#frames", "seen by the last tab")
            assert len(p.process.server.events.subscribers()) == 1
            # The first tab reads the stream: close it, the others go on.
            last = await browser.run(lambda driver: driver.current_window_handle)
            await browser.run(lambda driver: driver.switch_to.window(first))
            await browser.run(lambda driver: driver.close())
            await browser.run(lambda driver: driver.switch_to.window(last))
            await game.context("after the first tab closed")
            await browser.wait_for_text("#frames", "after the first tab closed")
            await browser.assert_clean()
        finally:

            def close_tabs(driver: Any) -> None:
                handles = driver.window_handles
                for handle in handles[1:]:
                    driver.switch_to.window(handle)
                    driver.close()
                driver.switch_to.window(handles[0])
                driver.set_page_load_timeout(loading)

            await browser.run(close_tabs)


async def open_stream(url: str, *headers: str) -> trio.SocketStream:
    """A raw ``GET /events`` whose response head has arrived (200, or an
    AssertionError naming the status line)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    lines = "".join(f"{header}\r\n" for header in headers)
    await stream.send_all(
        f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n{lines}\r\n".encode()
    )
    received = b""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in received:
            received += await stream.receive_some()
    if not received.startswith(b"HTTP/1.1 200"):
        await stream.aclose()
        raise AssertionError(received.split(b"\r\n", 1)[0])
    return stream


async def test_event_streams_closed_by_the_browser_are_freed(tmp_path: Path) -> None:
    # Tabs come and go; their streams must not stay counted against the 32
    # the server allows, or the dashboard would lose its live events.
    async with plane(tmp_path) as p:
        events = p.process.server.events
        for _ in range(3):
            streams = [await open_stream(p.url) for _ in range(events.max_subscribers)]
            with pytest.raises(AssertionError, match="503"):
                await open_stream(p.url)
            for stream in streams:
                await stream.aclose()
            await eventually(lambda: not events.subscribers())


async def test_the_verdict_route_answers_any_body_with_a_clear_error(
    tmp_path: Path,
) -> None:
    # Nested deeper than the JSON libraries go (orjson encodes 254 levels,
    # Python's json recurses until RecursionError): a 400, never a 500.
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "G") as game:
        session = await p.game(game, Action("play", "Play", {"type": "object"}))
        path = f"/ui/api/games/{session}/actions/play/validate"
        json = {"Content-Type": "application/json"}
        for depth in (300, 2_000, 100_000):
            body = '{"data": ' + "[" * depth + "]" * depth + "}"
            answer = await p.http.post(path, content=body, headers=json)
            assert answer.status_code == 400, (depth, answer.text)
            assert answer.json()["error"]["code"] in {"invalid_json", "invalid_request"}
        for body in ("", "[]", '{"date": 1}', "{", '{"data": NaN}'):
            answer = await p.http.post(path, content=body, headers=json)
            assert answer.status_code == 400, (body, answer.text)
        huge = '{"data": "' + "x" * (2 << 20) + '"}'
        assert (await p.http.post(path, content=huge, headers=json)).status_code == 413
        fine = await p.http.post(path, content='{"data": {"a": [[1]]}}', headers=json)
        assert fine.json() == {"ok": True, "reason": None}


async def test_a_stream_of_frames_never_keeps_the_server_busy(
    tmp_path: Path, browser: Browser
) -> None:
    # Every frame of the game asks its page for a refresh: the whole game,
    # megabytes when its actions are large (measured: 0.1 s of the server's
    # event loop for 8 MB), asked for every 250 ms however long the last
    # answer took (the browser queues them: the server answered back to
    # back). The page waits four times as long as the last answer took.
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "Busy") as game:
        session = await p.game(game, Action("play", "Play", None))
        control = next(
            c for c in p.process.capabilities if isinstance(c, ControlPlaneCapability)
        )
        assert control.app is not None
        views = control.app.view_functions
        describe = cast("Callable[..., Awaitable[Any]]", views["games.get_game"])
        calls: list[float] = []

        async def slow(**kwargs: Any) -> Any:
            calls.append(trio.current_time())
            await trio.sleep(0.5)  # half a second of the server's time
            return await describe(**kwargs)

        await browser.get(f"{p.url}/ui/games/{session}")
        await browser.wait_for("form.action-form[data-action=play]")
        views["games.get_game"] = slow
        for n in range(60):  # 3 s of frames
            await game.context(f"frame {n}")
            await trio.sleep(0.05)
        await browser.wait_for_text("#frames", "frame 59")
        await trio.sleep(0.5)
        # Back to back, 7; paced, 2 (at 0.25 s and at 2.75 s).
        assert 1 <= len(calls) <= 3, calls


def changed(before: str, driver: Any) -> bool:
    """Whether the page's live state says something else than ``before``."""
    text: str = driver.find_element(By.CSS_SELECTOR, "#live-state").text
    return text != before


async def test_the_status_rows_keep_the_keyboard_focus(
    tmp_path: Path, browser: Browser
) -> None:
    # The page refreshes every 2 s; rows made anew each time took the focus
    # from the button a keyboard user was on (and a click landing meanwhile
    # met a row that was gone: the pause test failed now and then), and so
    # did rows made anew when their states changed.
    async with plane(tmp_path) as p, connect(p.info.games.local_url, "Chess") as game:
        await p.game(game, Action("play", "Play", None))
        await browser.get(f"{p.url}/ui/status")
        button = '[data-client="Chess"] button[data-op="pause"]'
        await browser.wait_for(button)
        await browser.run(
            lambda driver: driver.execute_script(
                "document.querySelector(arguments[0]).focus()", button
            )
        )
        for _ in range(2):  # two refreshes
            await browser.wait_until(
                functools.partial(changed, await browser.text("#live-state")),
                within=5,
                message="no refresh",
            )
        # Its states change (from elsewhere): the row, and the focus, stay.
        assert (await p.http.put("/status/paused/Chess")).status_code == 200
        await browser.wait_for_text('[data-client="Chess"] .states', "paused")
        focused = await browser.run(
            lambda driver: driver.execute_script(
                "return document.activeElement.matches(arguments[0])", button
            )
        )
        assert focused


async def test_a_title_with_a_leading_slash_never_gets_another_game_blocked(
    tmp_path: Path,
) -> None:
    # The status page sends /status/blocked/ + the row's name, encoded: for
    # a game titled "/Victim" that is "//Victim" once decoded, merged into
    # "/Victim" and redirected (308, the PUT repeated): blocking the row of
    # the hostile game blocked the game "Victim".
    async with (
        plane(tmp_path) as p,
        connect(p.info.games.local_url, "Victim") as victim,
        connect(p.info.games.local_url, "/Victim") as hostile,
    ):
        await p.game(victim, Action("play", "Play", None))
        await p.game(hostile, Action("play", "Play", None))
        paused = await p.http.put(f"/status/paused/{segment('/Victim')}")
        assert paused.json()["client"] == "/Victim"
        blocked = await p.http.put(f"/status/blocked/{segment('/Victim')}")
        assert blocked.json()["client"] == "/Victim"
        assert (await hostile.expect_closed()).code == 1008
        await victim.expect_silence(0.2)
        assert p.process.server.gates_holding("Victim") == []
        report = (await p.http.get("/status")).json()
        assert report["lists"]["blocked"] == ["/Victim"]
        assert report["lists"]["paused"] == ["/Victim"]


async def test_a_logout_ends_the_event_streams_of_its_session(tmp_path: Path) -> None:
    # The stream checked the cookie when it opened, never again: a tab left
    # open (or a stolen cookie's stream) went on receiving every frame after
    # the logout, the session's end or its eviction.
    async with (
        plane(tmp_path, "--api-token", TOKEN) as p,
        connect(p.info.games.local_url, "Talker") as game,
    ):
        await p.game(game, Action("play", "Play", None))
        await login(p, p.http)
        session = p.http.cookies["neuro_ui"]
        stream = await open_stream(p.url, f"Cookie: neuro_ui={session}")
        async with stream:
            await game.context("before the logout")
            with trio.fail_after(WAIT):
                received = b""
                while b"before the logout" not in received:
                    received += await stream.receive_some()
            csrf = page_csrf((await p.http.get("/ui/")).text)
            done = await p.http.post(
                "/ui/logout", data={"csrf_token": csrf}, headers={"Origin": p.url}
            )
            assert done.status_code == 303
            await game.context("after the logout")
            received = b""
            with trio.fail_after(WAIT):
                while b"after the logout" not in received:
                    chunk = await stream.receive_some()
                    if not chunk:
                        break  # the stream ended
                    received += chunk
            assert b"after the logout" not in received


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        ((), "cannot_generate_data"),  # over the generator's 64 KiB
        (("--max-generated-size", "4000000"), "data_too_large"),  # the form's 1 MiB
    ],
)
async def test_generated_data_for_the_form_is_bounded(
    tmp_path: Path, argv: tuple[str, ...], code: str
) -> None:
    # Too large for the generator, or for the form: a short 400, at once.
    # (1.5 MB of string took a minute to make, past the generator's 2 s:
    # the route answered in time, its thread went on for the minute.)
    long = Action(
        "long",
        "Needs 1.5 MB",
        {
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1_500_000}},
            "required": ["text"],
        },
    )
    async with (
        plane(tmp_path, *argv) as p,
        connect(p.info.games.local_url, "G") as game,
    ):
        session = await p.game(game, long)
        with trio.fail_after(4):
            answer = await p.http.get(f"/ui/api/games/{session}/actions/long/generate")
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == code, answer.text
        assert len(answer.content) < 1000
