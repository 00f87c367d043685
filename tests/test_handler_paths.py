"""Handler paths no test ran before (issue 10, items 25 and 27).

Each test here was written against a bug planted in a copy of the handler
that every other test let through: held context delivered when the first of
several results settles, a single held message too big to hold dropped, a
shorter result timeout that does not wake the connection's timer, an
engine answer sent for a force already replaced, a failure without a
message not reported.
"""

from __future__ import annotations

import functools

import trio
import trio.testing
from server_helpers import (
    PASS,
    PLAY,
    WAVE,
    RecordingServer,
    connect,
    start_server,
)

from neuro_api.command import Action, ForcePriority
from neuro_api.server import ActionOutcome, OutcomeStatus, TrioNeuroServerClient


async def test_held_context_waits_for_every_pending_result(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await server.settle(game)
        client = server.client_of(game)
        client.start_action("pass", None)
        first = await game.expect_action()
        client.start_action("wave", None)
        second = await game.expect_action()
        await game.context("held")
        await game.result(first.id, True, "passed")
        await server.wait_until(lambda: len(server.outcomes) == 1)
        await server.settle(game)
        # One result is still pending: the context is still held.
        assert "held" not in server.messages()
        await game.result(second.id, True, "waved")
        await server.wait_until(lambda: "held" in server.messages())
    assert server.messages()[-1] == "held"


async def test_a_single_held_message_over_the_size_limit_is_kept(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer(max_held_context_chars=100)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        await game.context("x" * 500)  # alone over the limit: still kept
        await server.settle(game)
        assert server.diags("context.dropped") == []
        await game.context("y" * 10)  # now the oldest goes
        await server.wait_diag("context.dropped", game="Game")
        await game.result(action.id, True, "done")
        await server.wait_until(lambda: "y" * 10 in server.messages())
    assert "x" * 500 not in server.messages()


async def test_a_shorter_timeout_wakes_the_timer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await server.settle(game)
        client = server.client_of(game)
        start = trio.current_time()
        nursery.start_soon(
            functools.partial(client.execute_action, "pass", None, result_timeout=100)
        )
        await game.expect_action()
        short = await _execute_later(nursery, client, "wave", 5)
        await game.expect_action()
        diag = await server.wait_diag("result.timeout", game="Game")
        elapsed = trio.current_time() - start
        assert "'wave'" in diag.message
        assert 5 <= elapsed < 6  # not at the 100 s of the first one
        outcome = await short.receive()
        assert outcome.status is OutcomeStatus.TIMEOUT


async def _execute_later(
    nursery: trio.Nursery, client: TrioNeuroServerClient, name: str, seconds: float
) -> trio.MemoryReceiveChannel[ActionOutcome]:
    send, receive = trio.open_memory_channel[ActionOutcome](1)

    async def run() -> None:
        outcome = await client.execute_action(name, None, result_timeout=seconds)
        await send.send(outcome)

    nursery.start_soon(run)
    return receive


class Stubborn(RecordingServer):
    """An engine that finishes its first choice even when it is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.release = trio.Event()
        self.first_done = trio.Event()

    async def choose_force_action(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None]:
        if query != "first":
            return await super().choose_force_action(
                game_title, state, query, ephemeral_context, actions, priority
            )
        with trio.CancelScope(shield=True):
            await self.release.wait()
        self.first_done.set()
        return "pass", None


async def test_an_answer_for_a_replaced_force_is_not_sent(
    nursery: trio.Nursery,
) -> None:
    server = Stubborn()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, PLAY)
        await game.force("pass", query="first")
        await server.settle(game)
        await game.force("play", query="second")  # replaces the first
        action = await game.expect_action()
        assert action.name == "play"
        server.release.set()  # the first force's answer comes now
        with trio.fail_after(5):
            await server.first_done.wait()
        await game.result(action.id, True, "played")
        await game.expect_silence(0.2)  # nothing sent for the old force
        await server.settle(game)
    assert [c.query for c in server.force_calls] == ["second"]


async def test_a_failure_without_a_message_is_reported(nursery: trio.Nursery) -> None:
    server = RecordingServer(max_retries=0)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        await game.result(action.id, False, None)
        diag = await server.wait_diag("result.failure-without-message", game="Game")
    assert "'pass'" in diag.message
    assert diag.severity.value == "warning"
