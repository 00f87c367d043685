"""Context hand-off to the engine over real WebSocket connections.

Rules: 127.0.0.1 port 0, a deadline on every wait, the game closes first
(see ``server_helpers``).
"""

from __future__ import annotations

import pytest
import trio
from server_helpers import PASS, ContextCall, RecordingServer, connect, start_server

from neuro_api.diagnostics import Severity

pytestmark = pytest.mark.timeout(30)


async def test_context_delivered_in_order_with_reply_flag(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.context("one", silent=True)
        await game.context("two", silent=False)
        await game.context("three", silent=True)
        await game.context("four", silent=False)
        await server.settle(game)
    assert server.context == [
        ContextCall("Game", "one", False),
        ContextCall("Game", "two", True),
        ContextCall("Game", "three", False),
        ContextCall("Game", "four", True),
    ]
    assert server.seen == []


async def test_context_of_two_games_is_kept_apart(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Chess") as chess, connect(info.url, "Go") as go:
        await chess.startup()
        await go.startup()
        for index in range(5):
            await chess.context(f"chess {index}")
            await go.context(f"go {index}", silent=False)
        await server.settle(chess)
        await server.settle(go)
    assert server.messages("Chess") == [f"chess {i}" for i in range(5)]
    assert server.messages("Go") == [f"go {i}" for i in range(5)]
    assert all(c.reply_if_not_busy for c in server.context if c.game == "Go")


async def test_context_held_while_a_result_is_pending(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.context("before")
        await game.force("pass")
        action = await game.expect_action()
        await game.context("held one", silent=False)
        await game.context("held two")
        await server.settle(game)
        assert server.messages() == ["before"]
        await game.result(action.id, True, "passed")
        await server.settle(game)
        await game.context("after")
        await server.settle(game)
    assert server.context == [
        ContextCall("Game", "before", False),
        ContextCall("Game", "Result of action 'pass': succeeded: passed", False),
        ContextCall("Game", "held one", True),
        ContextCall("Game", "held two", False),
        ContextCall("Game", "after", False),
    ]


async def test_held_context_reported_as_info(nursery: trio.Nursery) -> None:
    """The catalogue's ``context.held`` tells the developer why context waits."""
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        await game.context("held")
        await server.settle(game)
        await game.result(action.id)
        await server.settle(game)
    [held] = server.diags("context.held", game="Game")
    assert held.severity is Severity.INFO


async def test_context_held_until_the_result_times_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        await game.expect_action()
        start = trio.current_time()
        await game.context("held one")
        await game.context("held two")
        await server.settle(game)
        assert server.messages() == []
        await server.wait_until(lambda: len(server.context) == 2, within=60)
        elapsed = trio.current_time() - start
        assert server.diags("result.timeout", game="Game")
    assert 19 < elapsed < 21
    assert server.messages() == ["held one", "held two"]


async def test_held_context_flushed_between_retries(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer(max_retries=1)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        first = await game.expect_action()
        await game.context("during the first attempt")
        await game.result(first.id, False, "no")
        second = await game.expect_action()
        await game.context("during the retry")
        await game.result(second.id, False, "still no")
        await server.wait_diag("force.retries-exhausted", game="Game")
        await server.settle(game)
    assert server.messages() == [
        "Result of action 'pass': failed: no",
        "during the first attempt",
        "Result of action 'pass': failed: still no",
        "during the retry",
    ]
    # The engine saw the held context before it chose again.
    retry = server.force_calls[1]
    assert "during the first attempt" in server.messages()[: retry.context_seen]


async def test_context_spam_reported_once_per_window(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer(context_spam_count=3, context_spam_window=1.0)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        for index in range(3):
            await game.context(f"calm {index}")
        await server.settle(game)
        assert server.seen == []
        for index in range(10):
            await game.context(f"spam {index}")
        await server.settle(game)
        assert server.ids("Game") == ["behaviour.context-spam"]
        # A calm game is not reported again.
        await trio.sleep(5)
        await game.context("calm again")
        await server.settle(game)
        assert len(server.diags("behaviour.context-spam")) == 1
        # A new burst in a later window is.
        await trio.sleep(5)
        for index in range(5):
            await game.context(f"burst {index}")
        await server.settle(game)
    spam = server.diags("behaviour.context-spam", game="Game")
    assert len(spam) == 2
    assert spam[0].severity is Severity.WARNING
    # Spam is still delivered: the diagnostic is advice, not a filter.
    assert len(server.context) == 3 + 10 + 1 + 5


@pytest.mark.parametrize("message", ["", "   ", "\n\t"])
async def test_empty_context_reported(nursery: trio.Nursery, message: str) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.context(message)
        diag = await server.wait_diag("context.empty", game="Game")
    assert diag.severity is Severity.WARNING


async def test_add_context_raising_does_not_disconnect_the_game(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    server.context_errors["Game"] = RuntimeError("engine cannot read")
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.context("first")
        await game.context("second")
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        # The result's message goes through add_context too, which raises.
        await game.result(action.id, False, "failed")
        retry = await game.expect_action()
        await game.result(retry.id, True, "ok")
        ack = await game.startup()
        assert game.session_id in server.clients
    assert ack.session_id == game.session_id
    assert server.messages()[:2] == ["first", "second"]
    assert len(server.force_calls) == 2
