"""The realtime engine on the fake Realtime API, with real games connected."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
import pytest
import trio
from fake_realtime import (
    Error,
    Failed,
    FakeConnection,
    FakeRealtime,
    FunctionCall,
    Stall,
    Text,
    open_fake_realtime,
)
from realtime_helpers import pool_config
from server_helpers import PASS, PLAY, WAVE, Game, connect, start_server
from status_helpers import eventually

from neuro_api.command import Action, ForcePriority
from neuro_api.realtime import RealtimeNeuroServer, RealtimePool, tool_name
from neuro_api.server import ServerConfig

KEY: Final = "sk-engine-tests-0123456789"


class Engine:
    def __init__(self, fake: FakeRealtime, server: RealtimeNeuroServer, url: str):
        self.fake = fake
        self.server = server
        self.url = url

    def requests(self) -> list[dict[str, Any]]:
        """Every response.create the fake got, in order, across connections."""
        return [r for conn in self.fake.connections for r in conn.responses]

    def prompt(self, n: int = -1) -> str:
        request = self.requests()[n]
        return str(request["input"][0]["content"][0]["text"])

    def diagnostics(self, game: str) -> list[Any]:
        return list(self.server.diagnostics.get(game, ()))


@contextlib.asynccontextmanager
async def engine(
    fake: FakeRealtime | None = None,
    *,
    pool_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Engine]:
    async with contextlib.AsyncExitStack() as stack:
        if fake is None:
            fake = await stack.enter_async_context(open_fake_realtime(key=KEY))
        pool = RealtimePool(pool_config(fake, **(pool_options or {})))
        options.setdefault("seed", 7)
        server = RealtimeNeuroServer(ServerConfig(max_retries=0), pool=pool, **options)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            info = await start_server(nursery, server)
            yield Engine(fake, server, info.url)
            nursery.cancel_scope.cancel()


async def started(game: Game, *actions: Action) -> None:
    await game.startup()
    await game.register(*actions)


# --- a force, answered by the model -------------------------------------------------


async def test_a_force_is_one_out_of_band_response_with_the_actions_as_tools() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        fake.script(FunctionCall("play", '{"cell": 5}'))
        await started(game, PLAY, PASS)
        await game.context("The board is empty.")
        await game.force(
            "play", "pass", query="Your move", state="X . . / . . . / . . .",
            priority=ForcePriority.HIGH,
        )  # fmt: skip
        action = await game.expect_action()
        assert (action.name, orjson.loads(action.data_json or "")) == (
            "play",
            {"cell": 5},
        )
        (request,) = e.requests()
    assert request["conversation"] == "none"
    assert request["tool_choice"] == "required"
    assert request["output_modalities"] == ["text"]
    tools = {tool["name"]: tool for tool in request["tools"]}
    assert set(tools) == {"play", "pass"}
    assert tools["play"]["parameters"] == PLAY.schema
    assert tools["play"]["description"] == PLAY.description
    prompt = request["input"][0]["content"][0]["text"]
    for text in ("Tic Tac Toe", "The board is empty.", "X . . / . . .", "Your move"):
        assert text in prompt
    assert "urgent" in request["instructions"]
    assert "Neuro-sama" in request["instructions"]
    assert e.server.counts["answered"] == 1
    assert e.server.counts["fallbacks"] == 0


async def test_action_names_the_api_refuses_are_mapped_and_back() -> None:
    odd = Action("place piece!", "Place a piece", None)
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Chess") as game,
    ):
        fake.script(FunctionCall(tool_name(odd.name), "{}"))
        await started(game, odd)
        await game.force(odd.name)
        action = await game.expect_action()
        assert action.name == "place piece!"
        assert action.data_json is None
        (request,) = e.requests()
    (tool,) = request["tools"]
    assert tool["name"] != odd.name
    assert tool["parameters"]["type"] == "object"


# --- invalid answers ---------------------------------------------------------------


async def test_invalid_arguments_get_one_retry_with_the_error_as_feedback() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        fake.script(
            FunctionCall("play", '{"cell": 42}'), FunctionCall("play", '{"cell": 3}')
        )
        await started(game, PLAY)
        await game.force("play")
        action = await game.expect_action()
        assert orjson.loads(action.data_json or "") == {"cell": 3}
        assert len(e.requests()) == 2
        feedback = e.prompt(1)
        assert "invalid" in feedback
        assert "42" in feedback
        assert e.server.counts["retried"] == 1
        assert e.server.counts["fallbacks"] == 0
        assert len(fake.connections) == 1  # both on one lease


async def test_wrong_twice_falls_back_to_valid_random_data() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        fake.script(FunctionCall("play", '{"cell": 0}'), FunctionCall("nope", "{}"))
        await started(game, PLAY)
        await game.force("play")
        action = await game.expect_action()
        assert action.name == "play"
        cell = orjson.loads(action.data_json or "")["cell"]
        assert 1 <= cell <= 9
        (diagnostic,) = [
            d for d in e.diagnostics("Tic Tac Toe") if d.id == "force.engine-fallback"
        ]
        assert "wrong twice" in diagnostic.message
        assert "'nope' is not one of the functions" in diagnostic.message
        assert e.server.fallback_reasons == {"invalid": 1}


@pytest.mark.parametrize(
    ("play", "reason"),
    [
        (Error("server_error", "The server had an error"), "server_error"),
        (Failed(message="out of quota"), "failed: out of quota"),
        (Text("I would rather not."), "called no function"),
    ],
)
async def test_a_model_that_cannot_answer_falls_back(play: Any, reason: str) -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        fake.responder = lambda connection, response: play
        await started(game, PLAY)
        await game.force("play")
        action = await game.expect_action()
        assert action.name == "play"
        (diagnostic,) = [
            d for d in e.diagnostics("Tic Tac Toe") if d.id == "force.engine-fallback"
        ]
        assert reason in diagnostic.message


async def test_a_wrong_key_falls_back_at_once_and_says_why() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake, pool_options={"api_key": "sk-wrong"}) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        await started(game, PLAY)
        await game.force("play")
        action = await game.expect_action()
        assert action.name == "play"
        (diagnostic,) = [
            d for d in e.diagnostics("Tic Tac Toe") if d.id == "force.engine-fallback"
        ]
        assert "HTTP 401" in diagnostic.message
        assert "sk-wrong" not in diagnostic.message
        assert e.server.fallback_reasons == {"unavailable": 1}


async def test_a_slow_model_is_cancelled_and_the_game_gets_an_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake, answer_timeout=5.0) as e,
    ):
        fake.script(Stall())
        async with connect(e.url, "Tic Tac Toe") as game:
            await started(game, PLAY)
            start = trio.current_time()
            await game.force("play")
            action = await game.expect_action(within=30)
            assert trio.current_time() - start == pytest.approx(5.0, abs=0.5)
            assert action.name == "play"
            served = fake.connections[0]
            await served.wait_event("response.cancel")
            assert e.server.fallback_reasons == {"timeout": 1}
            # The connection is clean again: the next force uses it.
            fake.script(FunctionCall("play", '{"cell": 9}'))
            await game.result(action.id, True, "ok")
            await game.force("play")
            action = await game.expect_action()
            assert [d.message for d in e.diagnostics("Tic Tac Toe")][1:] == []
            assert orjson.loads(action.data_json or "") == {"cell": 9}
            assert len(fake.connections) == 1


async def test_a_replaced_force_cancels_the_response_and_frees_the_lease(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake, pool_options={"max_connections": 1}) as e,
    ):
        fake.script(Stall(), FunctionCall("pass", "{}"))
        async with connect(e.url, "Tic Tac Toe") as game:
            await started(game, PLAY, PASS)
            await game.force("play")
            served: FakeConnection = await _first_connection(fake)
            await served.wait_event("response.create")
            await game.force("pass")  # replaces the first
            await served.wait_event("response.cancel")
            action = await game.expect_action()
            assert action.name == "pass"
            assert e.server.counts["cancelled"] == 1
            assert [
                d.message
                for d in e.diagnostics("Tic Tac Toe")
                if d.id != "force.while-active"
            ] == []
            assert e.server.counts["fallbacks"] == 0
            assert e.server.pool.stats()["active_sessions"] == 0


async def _first_connection(fake: FakeRealtime) -> FakeConnection:
    await fake.wait_connections(1)
    return fake.connections[0]


# --- context ---------------------------------------------------------------------


async def test_an_ephemeral_force_leaves_nothing_behind() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Quiz") as game,
    ):
        await started(game, PASS)
        await game.force(
            "pass", query="SECRET-QUERY", state="SECRET-STATE",
            ephemeral_context=True,
        )  # fmt: skip
        first = await game.expect_action()
        await game.result(first.id, True, None)
        await game.force("pass", query="KEPT-QUERY", state="KEPT-STATE")
        second = await game.expect_action()
        await game.result(second.id, True, None)
        await game.force("pass", query="third")
        await game.expect_action()
        assert "SECRET" in e.prompt(0)
        later = e.prompt(1) + e.prompt(2)
        assert "SECRET" not in later
        assert "KEPT-STATE" in e.prompt(2)
        assert "KEPT-QUERY" in e.prompt(2)
        assert fake.connections[0].items == {}


async def test_action_results_come_back_as_context() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Tic Tac Toe") as game,
    ):
        await started(game, PASS)
        await game.force("pass")
        action = await game.expect_action()
        await game.result(action.id, False, "You cannot pass on the first move")
        await game.force("pass")
        await game.expect_action()
        assert "You cannot pass on the first move" in e.prompt(1)


async def test_context_is_bounded_per_game() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake, context_chars=1000) as e,
        connect(e.url, "Chatty") as game,
    ):
        await started(game, PASS)
        for n in range(200):
            await game.context(f"line {n:03d} " + "x" * 50)
        await game.force("pass")
        await game.expect_action()
        prompt = e.prompt()
        assert "line 199" in prompt
        assert "line 000" not in prompt
        assert len(prompt) < 1000 + 500


async def test_many_games_share_one_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_realtime(key=KEY) as fake, engine(
        fake, pool_options={"max_connections": 1, "lease_timeout": 60.0},
        answer_timeout=60.0,
    ) as e:  # fmt: skip
        fake.responder = lambda connection, response: FunctionCall(
            "pass", "{}", delay=0.5
        )
        async with contextlib.AsyncExitStack() as stack:
            games = [
                await stack.enter_async_context(connect(e.url, f"Game {n}"))
                for n in range(6)
            ]
            for game in games:
                await started(game, PASS)
            for game in games:
                await game.force("pass")
            for game in games:
                action = await game.expect_action(within=60)
                assert action.name == "pass"
        assert len(fake.connections) == 1
        assert e.server.counts["answered"] == 6
        titles = {p.split("\n")[0] for p in (e.prompt(n) for n in range(6))}
        assert len(titles) == 6  # each request carried its own game


# --- unforced ----------------------------------------------------------------------


async def test_the_model_may_act_unforced_or_not() -> None:
    async with (
        open_fake_realtime(key=KEY) as fake,
        engine(fake) as e,
        connect(e.url, "Stream") as game,
    ):
        fake.script(FunctionCall("wave", "{}"), Text("Not now."))
        await started(game, WAVE)
        await eventually(
            lambda: bool(e.server.games()) and bool(e.server.games()[0].actions)
        )
        assert await e.server.act_unforced()
        action = await game.expect_action()
        assert action.name == "wave"
        await game.result(action.id, True, None)
        assert not await e.server.act_unforced()
        request = e.requests()[0]
        assert request["tool_choice"] == "auto"
        assert "Nothing is asked of you now" in e.prompt(0)
        assert e.server.counts["unforced"] == 1
