"""The realtime engine attacked: hostile games, a misbehaving model, races."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any, Final

import orjson
import pytest
import trio
from fake_realtime import (
    Behaviour,
    Close,
    Error,
    Failed,
    FakeConnection,
    FakeRealtime,
    FunctionCall,
    open_fake_realtime,
)
from server_helpers import PASS, PLAY, WAVE, connect
from status_helpers import eventually
from test_realtime_engine import KEY, engine, started

from neuro_api.command import Action
from neuro_api.realtime import GameContexts
from neuro_api.realtime._tools import MAX_TOOLS_BYTES


def _fallbacks(server: Any, game: str) -> list[Any]:
    return [
        d for d in server.diagnostics.get(game, ()) if d.id == "force.engine-fallback"
    ]


# --- the key never shows ------------------------------------------------------------


ECHOES: Final[list[Behaviour]] = [
    Error("invalid_api_key", f"Incorrect API key provided: {KEY}"),
    Failed(code="server_error", message=f"bad key {KEY}"),
    Close(1008, f"key {KEY} revoked"),
]


async def test_a_key_the_api_echoes_is_not_in_the_fallback_diagnostic() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        await started(game, PASS)
        for play in ECHOES:
            fake.script(play)
            await game.force("pass")
            action = await game.expect_action()
            await game.result(action.id, True, None)
        found = _fallbacks(e.server, "Tic Tac Toe")
        assert len(found) == len(ECHOES)
        for diagnostic in found:
            assert KEY not in str(diagnostic)
            assert "***" in diagnostic.message


async def test_a_key_the_api_echoes_is_not_logged_by_unforced_acting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "neuro_api.realtime")
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Stream") as game,
    ):
        fake.script(Error("invalid_api_key", f"Incorrect API key provided: {KEY}"))
        await started(game, WAVE)
        await eventually(
            lambda: bool(e.server.games()[:1] and e.server.games()[0].actions)
        )
        assert not await e.server.act_unforced()
    (record,) = [r for r in caplog.records if "not acting unforced" in r.getMessage()]
    assert "invalid_api_key" in record.getMessage()
    assert KEY not in record.getMessage()


# --- unforced acting: the game may change while the model thinks ---------------------


async def _unforced_while(
    change: str, autojump_clock: trio.abc.Clock
) -> tuple[bool, list[str]]:
    """Offer a game its actions; ``change`` it while the model thinks.

    Returns what act_unforced said and the actions the game got.
    """
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Stream") as game,
    ):
        fake.script(FunctionCall("wave", "{}", delay=2.0), FunctionCall("pass"))
        await started(game, WAVE, PASS)
        await eventually(
            lambda: len(e.server.games()[:1] and e.server.games()[0].actions) == 2
        )
        client = e.server.games()[0]
        results: list[bool] = []
        async with trio.open_nursery() as nursery:

            async def act() -> None:
                results.append(await e.server.act_unforced())

            nursery.start_soon(act)
            await fake.wait_connections(1)
            await fake.connections[0].wait_event("response.create")
            if change == "held":
                client.hold_forces()
            elif change == "forced":
                await game.force("pass")
            elif change == "unregistered":
                await game.unregister("wave")
                await eventually(lambda: "wave" not in client.actions)
        got: list[str] = []
        if change == "held":
            client.release_forces()
        with trio.move_on_after(5):
            while True:
                got.append((await game.expect_action(within=5)).name)
        return results[0], got


async def test_no_unforced_action_for_a_game_held_meanwhile(
    autojump_clock: trio.abc.Clock,
) -> None:
    assert await _unforced_while("held", autojump_clock) == (False, [])


async def test_no_unforced_action_for_a_game_forced_meanwhile(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Only the force's own answer reaches the game.
    assert await _unforced_while("forced", autojump_clock) == (False, ["pass"])


async def test_no_unforced_action_that_was_unregistered_meanwhile(
    autojump_clock: trio.abc.Clock,
) -> None:
    assert await _unforced_while("unregistered", autojump_clock) == (False, [])


# --- a misbehaving model -----------------------------------------------------------

SAY: Final = Action(
    "say",
    "Say something",
    {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
)


async def test_arguments_too_large_to_send_get_a_retry_not_a_dropped_force() -> None:
    # Under max_message_size as text, over it once quoted in the action frame.
    huge = orjson.dumps({"text": '"' * 400_000}).decode()
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Chat") as game,
    ):
        fake.script(FunctionCall("say", huge), FunctionCall("say", '{"text": "hi"}'))
        await started(game, SAY)
        await game.force("say")
        action = await game.expect_action()
        assert orjson.loads(action.data_json or "") == {"text": "hi"}
        assert "too large" in e.prompt(1)
        assert e.server.counts["retried"] == 1


# --- a hostile game: floods ----------------------------------------------------------


def test_context_memory_follows_the_character_budget() -> None:
    # Tiny lines: without care each costs a str object (~50 bytes) for 2
    # characters of budget, and a flood keeps 20 times the budget alive.
    budget, games = 16000, 5
    tracemalloc.start()
    try:
        contexts = GameContexts(budget)
        for game in range(games):
            for _ in range(budget // 2):
                contexts.add(f"game {game}", orjson.loads(b'"ab"'))
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used < 2 * budget * games
    text = contexts.text("game 0")
    assert set(text.split("\n")) == {"ab"}
    assert len(text) <= budget
    assert contexts.chars("game 0") == len(text) + 1


# --- a cancel that comes too late --------------------------------------------------


async def test_a_late_cancel_of_a_replaced_force_does_not_fail_the_next(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The force is replaced just as its response ends (its events are read
    # but not taken yet): the connection is clean, the next force gets it at
    # once, and the API answers the first force's cancel with "no active
    # response". That error must not be taken by the next force as its own.
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake, pool_options={"max_connections": 1}) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        fake.script(FunctionCall("play", '{"cell": 1}', delay=1.0))
        fake.script(FunctionCall("pass", "{}", delay=1.0))
        await started(game, PLAY, PASS)
        await game.force("play")
        served = await _first(fake)
        await served.wait_event("response.create")
        await trio.sleep(1.0)  # the very moment the response ends
        await game.force("pass")
        action = await game.expect_action()
        assert action.name == "pass"
        errors = served.sent_events("error")
        assert [x["error"]["code"] for x in errors] == ["response_cancel_not_active"]
        assert e.server.fallback_reasons == {}
        assert e.server.counts["answered"] == 1


async def _first(fake: FakeRealtime) -> FakeConnection:
    await fake.wait_connections(1)
    return fake.connections[0]


# --- a hostile game: schemas too large for the model ------------------------------

HUGE: Final = Action(
    "huge",
    "A schema far larger than a model's context",
    {
        "type": "object",
        "properties": {"pick": {"enum": [f"choice number {n}" for n in range(20_000)]}},
    },
)


async def test_tools_too_large_for_a_request_are_left_out() -> None:
    # A request the model's context cannot hold fails at the API, after
    # megabytes were encoded and sent: the huge action is not offered.
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Quiz") as game,
    ):
        fake.script(FunctionCall("pass"))
        await started(game, HUGE, PASS)
        await game.force("huge", "pass")
        action = await game.expect_action()
        assert action.name == "pass"
        (request,) = e.requests()
    assert [tool["name"] for tool in request["tools"]] == ["pass"]
    assert len(orjson.dumps(request["tools"])) <= MAX_TOOLS_BYTES


async def test_a_force_whose_tools_cannot_fit_falls_back_without_a_request() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Quiz") as game,
    ):
        await started(game, HUGE)
        await game.force("huge")
        action = await game.expect_action()
        assert action.name == "huge"
        assert e.requests() == []
        (diagnostic,) = _fallbacks(e.server, "Quiz")
        assert "too large" in diagnostic.message
