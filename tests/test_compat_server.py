"""``neuro_api.server`` as its reference page and neuro-api 4.0.0 code use it.

The page's "Basic Server Implementation" subclasses
``AbstractTrioNeuroServer`` with a five-argument ``choose_force_action``
(no ``priority``), constructs it without arguments and runs it; code written
for 4.0.0 constructs it with a character id and calls its ``log_*``
methods. These run here with real games over loopback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import trio
from server_helpers import PASS, PLAY, connect

from neuro_api.command import Action, ForcePriority
from neuro_api.server import AbstractTrioNeuroServer, ServerConfig
from neuro_api.server._signatures import priority_style, takes_priority

pytestmark = pytest.mark.timeout(30)


class MyNeuroServer(AbstractTrioNeuroServer):
    """The reference page's example, as written there (plus a record)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context: list[tuple[str, str, bool]] = []
        self.forced: list[tuple[Any, ...]] = []

    def add_context(self, game_title, message, reply_if_not_busy):  # type: ignore[no-untyped-def]
        print(f"[{game_title}] Context: {message}")
        self.context.append((game_title, message, reply_if_not_busy))

    async def choose_force_action(  # type: ignore[no-untyped-def,override]
        self, game_title, state, query, ephemeral_context, actions
    ):
        self.forced.append((game_title, state, query, ephemeral_context, actions))
        selected_action = actions[0]  # Simple selection
        action_data = '{"param": "value"}'  # Generate data
        return selected_action.name, action_data


async def serve(nursery: trio.Nursery, server: AbstractTrioNeuroServer) -> str:
    info = await nursery.start(server.run, "127.0.0.1", 0)
    return str(info.url)


async def test_the_reference_pages_basic_server_answers_forces(
    nursery: trio.Nursery,
) -> None:
    server = MyNeuroServer()
    assert server.choose_priority is None
    url = await serve(nursery, server)
    async with connect(url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.context("hello", silent=False)
        await game.force("play", priority=ForcePriority.HIGH)
        action = await game.expect_action()
        assert (action.name, action.data_json) == ("play", '{"param": "value"}')
        await game.result(action.id, True, "done")
    [(title, state, query, ephemeral, actions)] = server.forced
    assert (title, state, query, ephemeral) == ("Game", None, "Your turn", False)
    assert [a.name for a in actions] == ["play"]
    assert ("Game", "hello", True) in server.context


async def test_hooks_with_priority_get_it() -> None:
    class WithPriority(AbstractTrioNeuroServer):
        def add_context(self, game_title: str, message: str, reply: bool) -> None:
            pass

        async def choose_force_action(
            self,
            game_title: str,
            state: str | None,
            query: str,
            ephemeral_context: bool,
            actions: tuple[Action, ...],
            priority: ForcePriority,
        ) -> tuple[str, str | None]:
            return actions[0].name, priority.value

    assert WithPriority.choose_priority == "positional"
    assert WithPriority.choose_now_priority == "positional"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(self, a, b, c, d, e): pass", None),
        ("def f(self, a, b, c, d, e, priority): pass", "positional"),
        ("def f(self, a, b, c, d, e, p): pass", "positional"),
        ("def f(self, a, b, c, d, e, *, priority=None): pass", "keyword"),
        ("def f(self, *args): pass", "positional"),
        ("def f(self, a, b, c, d, e, **kwargs): pass", None),
        ("def f(self, a, b, c, d, e, *, other=1): pass", None),
    ],
)
def test_priority_style(source: str, expected: str | None) -> None:
    space: dict[str, Any] = {}
    exec(source, space)
    assert priority_style(space["f"], 6) == expected
    assert takes_priority(space["f"], 6) is (expected is not None)


async def test_keyword_only_priority_is_passed_by_keyword(
    nursery: trio.Nursery,
) -> None:
    class KeywordEngine(MyNeuroServer):
        async def choose_force_action(  # type: ignore[no-untyped-def,override]
            self, game_title, state, query, ephemeral_context, actions, *, priority
        ):
            self.forced.append((priority,))
            return actions[0].name, None

    server = KeywordEngine()
    assert server.choose_priority == "keyword"
    url = await serve(nursery, server)
    async with connect(url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass", priority=ForcePriority.CRITICAL)
        action = await game.expect_action()
        await game.result(action.id, True, "ok")
    assert server.forced == [(ForcePriority.CRITICAL,)]


def test_unreadable_signatures_are_assumed_to_take_it() -> None:
    assert takes_priority(getattr, 6) is True


async def test_five_argument_engine_answering_now(nursery: trio.Nursery) -> None:
    class Quick(MyNeuroServer):
        def choose_force_action_now(  # type: ignore[no-untyped-def,override]
            self, game_title, state, query, ephemeral_context, actions
        ):
            return actions[-1].name, None

    server = Quick()
    assert server.choose_now_priority is None
    url = await serve(nursery, server)
    async with connect(url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await game.force("play", "pass")
        action = await game.expect_action()
        assert action.name == "pass"
        await game.result(action.id, True, "ok")
    assert server.forced == []  # answered at once, not through the task


def test_constructed_with_a_character_id() -> None:
    assert MyNeuroServer().character_id == "neuro"
    assert MyNeuroServer("evil").character_id == "evil"
    assert MyNeuroServer(character_id="evil").character_id == "evil"
    server = MyNeuroServer(ServerConfig(max_retries=1), character_id="evil")
    assert (server.character_id, server.config.max_retries) == ("evil", 1)
    with pytest.raises(TypeError, match="character_id given twice"):
        MyNeuroServer("evil", character_id="neuro")
    with pytest.raises(ValueError, match="character_id"):
        MyNeuroServer("")


async def test_upstream_constructor_runs(nursery: trio.Nursery) -> None:
    server = MyNeuroServer("evil")
    url = await serve(nursery, server)
    async with connect(url, "Game") as game:
        ack = await game.startup()
        assert ack.character_id == "evil"


def test_log_methods_go_to_logging_escaped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="neuro_api.server")
    server = MyNeuroServer()
    server.log_info("info \x1b[2J")
    server.log_warning("warning")
    server.log_critical("critical")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "info \\x1b[2J"),
        ("WARNING", "warning"),
        ("CRITICAL", "critical"),
    ]


def test_upstreams_log_lines_come_back_with_a_logging_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What docs/upstream.rst recommends (there with logging.basicConfig).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger = logging.getLogger("neuro_api")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        server = MyNeuroServer()
        server.log_info("Test info")
        server.log_warning("Test warning")
        server.log_critical("Test critical")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert capsys.readouterr().out.splitlines() == [
        "[INFO] Test info",
        "[WARNING] Test warning",
        "[CRITICAL] Test critical",
    ]


async def test_handle_client_connection_serves_an_accepted_websocket(
    nursery: trio.Nursery,
) -> None:
    # Upstream's seam: a server that accepts connections itself hands each
    # to handle_client_connection.
    from trio_websocket import serve_websocket  # noqa: PLC0415

    server = MyNeuroServer()

    async def handler(request: Any) -> None:
        await server.handle_client_connection(await request.accept())

    listener = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    async with connect(f"ws://127.0.0.1:{listener.port}", "Game") as game:
        await game.startup()
        assert [c.game_title for c in server.clients.values()] == ["Game"]
