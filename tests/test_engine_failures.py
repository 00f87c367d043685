"""A force always ends in a defined outcome, whatever the schema or the engine.

Before issue 10: a schema asking for ten megabytes froze the event loop (the
random engine generated it synchronously), ``multipleOf: 5e-324`` or an
integer ``minimum`` of 1e308 raised from the generator or the encoder, and
an exception in any engine left the game waiting for an action that never
came, with a traceback in the log.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from server_helpers import (
    PLAY,
    WAIT,
    RecordingServer,
    connect,
    start_server,
)

from neuro_api.command import Action
from neuro_api.diagnostics import Diagnostic
from neuro_api.schema import validate_action_data
from neuro_api.server import RandomNeuroServer, ServerConfig, UnanswerableForce


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


HUGE = Action(
    "huge", "Needs ten megabytes", obj(a={"type": "string", "minLength": 10**7})
)
BIG = Action("big", "Needs 30 kB", obj(a={"type": "string", "minLength": 30_000}))
OVERFLOW = Action(
    "tiny", "A tiny step", obj(a={"type": "number", "multipleOf": 5e-324})
)
HUGE_INT = Action("far", "A far integer", obj(a={"type": "integer", "minimum": 1e308}))


def diagnostics(server: RandomNeuroServer, game: str) -> list[Diagnostic]:
    return list(server.diagnostics.get(game, ()))


def ids(server: RandomNeuroServer, game: str) -> list[str]:
    return [d.id for d in diagnostics(server, game)]


async def test_an_unanswerable_schema_is_reported_at_registration_and_force(
    nursery: trio.Nursery,
) -> None:
    server = RandomNeuroServer(seed=1)
    info = await start_server(nursery, server)
    async with connect(info.url, "Greedy") as game:
        await game.startup()
        await game.register(HUGE)
        await game.force("huge")
        # The game gets an answer it can refuse, never silence.
        action = await game.expect_action()
        assert action.name == "huge"
        assert action.data_json == "{}"
        await game.result(action.id, False, "a must be 10 MB long")
        retry = await game.expect_action()
        assert retry.data_json == "{}"
        await game.result(retry.id, False, "still no")
    found = ids(server, "Greedy")
    assert "action.schema-unanswerable" in found
    assert "force.unanswerable" in found
    reported = next(
        d for d in diagnostics(server, "Greedy") if d.id == "force.unanswerable"
    )
    assert "more than 65536" in reported.message
    assert "sent 'huge' with data {} instead" in reported.message


async def test_another_forced_action_is_answered_when_one_is_unanswerable(
    nursery: trio.Nursery,
) -> None:
    server = RandomNeuroServer(seed=3)
    info = await start_server(nursery, server)
    async with connect(info.url, "Mixed") as game:
        await game.startup()
        await game.register(HUGE, PLAY)
        for _ in range(4):
            await game.force("huge", "play")
            action = await game.expect_action()
            assert action.name == "play"
            assert validate_action_data(PLAY.schema, action.data_json).ok
            await game.result(action.id, True, "ok")
    assert "force.unanswerable" not in ids(server, "Mixed")


async def test_large_data_is_generated_off_the_event_loop(
    nursery: trio.Nursery,
) -> None:
    server = RandomNeuroServer(seed=1)
    info = await start_server(nursery, server)
    async with connect(info.url, "Large") as game, connect(info.url, "Other") as other:
        await game.startup()
        await other.startup()
        await game.register(BIG)
        await other.register(PLAY)
        await game.force("big")
        await other.force("play")
        answer = await other.expect_action()
        assert answer.name == "play"
        action = await game.expect_action()
        assert validate_action_data(BIG.schema, action.data_json).ok
        assert len(action.data_json or "") > 30_000


@pytest.mark.parametrize("action", [OVERFLOW, HUGE_INT], ids=["multipleOf", "int"])
async def test_extreme_numbers_are_answered(
    nursery: trio.Nursery, action: Action
) -> None:
    server = RandomNeuroServer(seed=1)
    info = await start_server(nursery, server)
    async with connect(info.url, "Numbers") as game:
        await game.startup()
        await game.register(action)
        await game.force(action.name)
        sent = await game.expect_action()
        assert validate_action_data(action.schema, sent.data_json).ok
    assert "force.engine-error" not in ids(server, "Numbers")


async def test_generation_limits_come_from_the_config(nursery: trio.Nursery) -> None:
    config = ServerConfig(max_generated_size=1000, generate_timeout=0.5)
    server = RandomNeuroServer(config, seed=1)
    assert server.generator.max_size == 1000
    assert server.generator.timeout == 0.5
    info = await start_server(nursery, server)
    small = Action("small", "2 kB", obj(a={"type": "string", "minLength": 2000}))
    async with connect(info.url, "Tight") as game:
        await game.startup()
        await game.register(small)
        await game.force("small")
        action = await game.expect_action()
        assert action.data_json == "{}"
    assert "action.schema-unanswerable" in ids(server, "Tight")


async def test_an_engine_exception_is_one_diagnostic_not_a_traceback(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = RecordingServer()
    server.answers.append(RuntimeError("model offline"))
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        with caplog.at_level(logging.INFO):
            await game.force("play")
            found = await server.wait_diag("force.engine-error")
        assert "RuntimeError('model offline') at " in found.message
        assert "the force was dropped" in found.message
        assert client_force(server, game) is None
        # No traceback above debug level; the game is still served.
        assert not [
            r for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG
        ]
        await game.force("play")
        action = await game.expect_action()
        await game.result(action.id, True, "ok")


def client_force(server: RecordingServer, game: Any) -> Any:
    return server.client_of(game).active_force


async def test_unanswerable_without_fallback_drops_the_force(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    server.answers.append(UnanswerableForce("no idea"))
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.force("play")
        found = await server.wait_diag("force.unanswerable")
        assert "no idea; the force was dropped" in found.message
        assert client_force(server, game) is None
        await game.expect_silence(0.05)


async def test_unanswerable_with_fallback_sends_it(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    server.answers.append(
        UnanswerableForce("guessing", fallback=("play", '{"cell": 0}'))
    )
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.force("play")
        action = await game.expect_action()
        assert (action.name, action.data_json) == ("play", '{"cell": 0}')
        await game.result(action.id, True, "ok")
    found = await server.wait_diag("force.unanswerable")
    assert "sent 'play' with data {\"cell\": 0} instead" in found.message


class QuickFailing(RecordingServer):
    """Answers at once (in the reader) by raising."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def choose_force_action_now(self, *args: Any) -> tuple[str, str | None] | None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "diagnostic"),
    [
        (ValueError("bad"), "force.engine-error"),
        (UnanswerableForce("cannot"), "force.unanswerable"),
    ],
)
async def test_an_immediate_answer_that_raises(
    nursery: trio.Nursery, error: Exception, diagnostic: str
) -> None:
    server = QuickFailing(error)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.force("play")
        await server.wait_diag(diagnostic)
        assert client_force(server, game) is None
        assert server.force_calls == []  # the slow path was never asked
        # The connection still works.
        await game.context("still here")
        await server.wait_until(lambda: server.messages() == ["still here"])


async def test_a_large_registration_does_not_hold_other_games(
    nursery: trio.Nursery,
) -> None:
    # About a megabyte of schema: meta-validation alone took 12 s on the
    # event loop before; checks of large registrations now run in a thread.
    wide = Action(
        "wide",
        "Many options",
        {
            "type": "object",
            "properties": {f"p{i}": {"type": "integer"} for i in range(30_000)},
        },
    )
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Wide") as game, connect(info.url, "Quick") as other:
        await game.startup()
        await other.startup()
        await other.register(PLAY)
        await server.settle(other)
        with trio.fail_after(WAIT):
            await game.register(wide)
            for _ in range(3):
                await other.force("play")
                action = await other.expect_action()
                await other.result(action.id, True, "ok")
        await server.settle(game)
        assert "wide" in server.client_of(game).actions
