"""The random engine over real sockets: delay, unforced actions, churn.

Timers run on the autojump clock; the churn test runs in real time because
it is about interleavings of real connects and disconnects.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from server_helpers import WAIT, connect, start_server

from neuro_api.command import Action, ActionMessage
from neuro_api.schema import validate_action_data
from neuro_api.server import RandomNeuroServer

MOVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["cell"],
}
MOVE = Action("move", "Place a mark", MOVE_SCHEMA)


async def test_delay_holds_each_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_server(nursery, RandomNeuroServer(delay=5.0, seed=1))
    async with connect(info.url, "Slow") as game:
        await game.startup()
        await game.register(MOVE)
        started = trio.current_time()
        await game.force("move")
        action = await game.expect_action()
        assert trio.current_time() - started >= 5.0
        assert validate_action_data(MOVE_SCHEMA, action.data_json).ok
        await game.result(action.id, True, "ok")


async def test_delay_is_not_retried_early_after_a_failure(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_server(nursery, RandomNeuroServer(delay=2.0, seed=1))
    async with connect(info.url, "Picky") as game:
        await game.startup()
        await game.register(MOVE)
        await game.force("move")
        first = await game.expect_action()
        failed_at = trio.current_time()
        await game.result(first.id, False, "cell taken")
        retry = await game.expect_action()
        assert retry.id != first.id
        assert trio.current_time() - failed_at >= 2.0


async def test_unforced_actions_come_now_and_then(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_server(nursery, RandomNeuroServer(unforced_interval=3.0, seed=7))
    async with connect(info.url, "Idle") as game:
        await game.startup()
        await game.register(MOVE)
        seen: list[ActionMessage] = []
        started = trio.current_time()
        while len(seen) < 3:
            action = await game.expect_action(within=120)
            assert validate_action_data(MOVE_SCHEMA, action.data_json).ok
            await game.result(action.id, True, "ok")
            seen.append(action)
        assert len({a.id for a in seen}) == 3
        # About one per 3 s on average: three in well under two minutes.
        assert trio.current_time() - started < 120


async def test_no_unforced_actions_without_the_setting(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_server(nursery, RandomNeuroServer(seed=7))
    async with connect(info.url, "Quiet") as game:
        await game.startup()
        await game.register(MOVE)
        await game.expect_silence(600)


async def test_unforced_actions_survive_games_coming_and_going(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: the engine used to pick a game whose connection was ending
    # and crash the whole server with "Nursery is closed to new arrivals".
    caplog.set_level(logging.WARNING)
    server = RandomNeuroServer(unforced_interval=0.0005, seed=3)
    info = await start_server(nursery, server)

    async def churn(n: int) -> None:
        for i in range(15):
            async with connect(info.url, f"Churn {n}") as game:
                await game.startup()
                await game.register(Action(f"act_{n}_{i}", "Act"))
                if i % 2:
                    await game.drop()  # abrupt, with actions pending

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as games:
            for n in range(4):
                games.start_soon(churn, n)
    # The server still serves: a fresh game gets its forced action.
    async with connect(info.url, "After") as game:
        await game.startup()
        await game.register(MOVE)
        await game.force("move")
        while True:
            action = await game.expect_action()
            await game.result(action.id, True, "ok")
            if action.name == "move":
                break
    assert not [r for r in caplog.records if "Nursery is closed" in r.getMessage()]
