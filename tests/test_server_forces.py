"""Forces, results, retries and timeouts over real WebSocket connections.

Rules: 127.0.0.1 port 0, a deadline on every wait, the game closes first
(see ``server_helpers``). Timer tests run on the autojump clock: the 20 s
result timeout passes in virtual time, and "nothing more is sent" is checked
by waiting a long virtual while.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest
import trio
from server_helpers import (
    BLOCK,
    PASS,
    PLAY,
    WAVE,
    Gate,
    RawGame,
    RecordingServer,
    connect,
    start_server,
)

from neuro_api import command
from neuro_api.command import ActionMessage, ForcePriority, StartupAcknowledgement
from neuro_api.diagnostics import Severity
from neuro_api.server import ForcePolicy, OutcomeStatus

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("priority", list(ForcePriority))
async def test_priority_reaches_the_engine(
    nursery: trio.Nursery, priority: ForcePriority
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass", priority=priority)
        action = await game.expect_action()
        await game.result(action.id)
    [call] = server.force_calls
    assert call.priority is priority


async def test_priority_defaults_to_low(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.send_obj(
            {
                "command": "actions/force",
                "game": "Game",
                "data": {"query": "q", "action_names": ["pass"]},
            }
        )
        action = await game.expect_action()
        await game.result(action.id)
    [call] = server.force_calls
    assert call.priority is ForcePriority.LOW
    assert call.ephemeral_context is False
    assert call.state is None
    assert server.seen == []


@pytest.mark.parametrize("ephemeral", [True, False])
async def test_force_fields_reach_the_engine(
    nursery: trio.Nursery, ephemeral: bool
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await game.force(
            "play",
            "pass",
            state="X to move",
            query="Pick a cell",
            ephemeral_context=ephemeral,
            priority=ForcePriority.HIGH,
        )
        action = await game.expect_action()
        await game.result(action.id)
    [call] = server.force_calls
    assert call.game == "Game"
    assert call.ephemeral_context is ephemeral
    assert call.state == "X to move"
    assert call.query == "Pick a cell"
    assert call.actions == (PLAY, PASS)


async def test_engine_answer_sent_as_is(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    server.answers.append(("play", '{"cell": 5}'))
    server.answers.append(("play", "not json at all"))
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.force("play")
        first = await game.expect_action()
        await game.result(first.id)
        await game.force("play")
        second = await game.expect_action()
        await game.result(second.id, False, "Action data is not valid JSON")
        third = await game.expect_action()
        await game.result(third.id)
    assert (first.name, first.data_json) == ("play", '{"cell": 5}')
    assert second.data_json == "not json at all"
    assert len({first.id, second.id, third.id}) == 3


async def test_actions_sent_are_counted(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        for _ in range(3):
            await game.force("pass")
            action = await game.expect_action()
            await game.result(action.id)
    assert server.stats.forces == 3
    assert server.stats.actions_sent == 3


async def test_unknown_names_dropped_from_the_force(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await game.force("ghost", "pass", "phantom")
        action = await game.expect_action()
        await game.result(action.id)
    [diag] = server.diags("force.some-unregistered", game="Game")
    assert diag.severity is Severity.WARNING
    assert "ghost" in diag.message
    assert "phantom" in diag.message
    [call] = server.force_calls
    assert call.names == ("pass",)
    assert action.name == "pass"


async def test_force_of_no_registered_action_dropped(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.force("ghost", "phantom")
        diag = await server.wait_diag("force.none-registered", game="Game")
        await game.expect_silence(60)
        assert server.client_of(game).active_force is None
    assert diag.severity is Severity.ERROR
    assert server.force_calls == []


async def test_force_with_empty_names(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.send_obj(
            {
                "command": "actions/force",
                "game": "Game",
                "data": {"query": "q", "action_names": []},
            }
        )
        diag = await server.wait_diag("force.empty", game="Game")
        await game.expect_silence(60)
    assert diag.severity is Severity.ERROR
    assert server.force_calls == []


async def test_force_before_registration(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.force("play")
        diag = await server.wait_diag("force.before-registration", game="Game")
        await game.expect_silence(60)
        # Registering afterwards makes the next force work.
        await game.register(PLAY)
        await game.force("play")
        action = await game.expect_action()
        await game.result(action.id)
    assert diag.severity is Severity.ERROR
    assert len(server.force_calls) == 1


@pytest.mark.parametrize("max_retries", [0, 1, 2, 4])
async def test_failure_retried_max_retries_times(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, max_retries: int
) -> None:
    server = RecordingServer(max_retries=max_retries)
    info = await start_server(nursery, server)
    ids = []
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        for attempt in range(1, max_retries + 2):
            action = await game.expect_action()
            ids.append(action.id)
            await game.result(action.id, False, f"failure number {attempt}")
        exhausted = await server.wait_diag("force.retries-exhausted", game="Game")
        await game.expect_silence(120)
        assert server.client_of(game).active_force is None
    assert len(ids) == max_retries + 1
    assert len(set(ids)) == len(ids)
    assert len(server.force_calls) == max_retries + 1
    assert len(server.diags("force.retry")) == max_retries
    assert exhausted.severity is Severity.WARNING
    assert server.ids().count("force.retries-exhausted") == 1


async def test_failure_message_reaches_the_engine_before_the_retry(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer(max_retries=2)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        for attempt in (1, 2, 3):
            action = await game.expect_action()
            await game.result(action.id, False, f"failure number {attempt}")
        await server.wait_diag("force.retries-exhausted", game="Game")
    first, second, third = server.force_calls
    seen_before = [
        server.messages()[: call.context_seen] for call in server.force_calls
    ]
    assert first.context_seen == 0
    assert any("failure number 1" in m for m in seen_before[1])
    assert not any("failure number 2" in m for m in seen_before[1])
    assert any("failure number 2" in m for m in seen_before[2])
    # The retry offers the same actions and keeps the force's fields.
    assert second.names == third.names == ("pass",)
    assert second.query == first.query


async def test_retry_then_success_ends_the_force(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        first = await game.expect_action()
        await game.result(first.id, False, "not now")
        second = await game.expect_action()
        await game.result(second.id, True, "ok")
        await game.expect_silence(120)
    assert len(server.force_calls) == 2
    assert "force.retries-exhausted" not in server.ids()
    assert [o.status for _, o in server.outcomes] == [
        OutcomeStatus.FAILURE,
        OutcomeStatus.SUCCESS,
    ]


async def test_success_ends_the_force(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        assert server.client_of(game).active_force is not None
        await game.result(action.id, True, "passed")
        await game.expect_silence(120)
        client = server.client_of(game)
        assert client.active_force is None
        assert client.pending_ids == ()
    assert len(server.force_calls) == 1
    assert server.ids() == []
    assert server.messages() == ["Result of action 'pass': succeeded: passed"]


async def test_timeout_fails_without_retry_and_late_result_discarded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        start = trio.current_time()
        await game.force("pass")
        action = await game.expect_action()
        diag = await server.wait_diag("result.timeout", game="Game", within=60)
        elapsed = trio.current_time() - start
        await game.expect_silence(120)
        assert server.client_of(game).active_force is None
        await game.result(action.id, True, "finally done")
        late = await server.wait_diag("result.late", game="Game")
        # The game keeps working: the next force is answered.
        await game.force("pass")
        again = await game.expect_action()
        await game.result(again.id)
    assert 20 <= elapsed < 21
    assert diag.severity is Severity.ERROR
    assert action.id in late.message
    assert len(server.force_calls) == 2
    assert "force.retry" not in server.ids()
    assert "force.retries-exhausted" not in server.ids()
    assert not any("finally done" in m for m in server.messages())
    assert [o.status for _, o in server.outcomes] == [
        OutcomeStatus.TIMEOUT,
        OutcomeStatus.SUCCESS,
    ]


async def test_result_timeout_is_configurable(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer(result_timeout=3)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        start = trio.current_time()
        await game.force("pass")
        await game.expect_action()
        await server.wait_diag("result.timeout", game="Game")
        elapsed = trio.current_time() - start
    assert 3 <= elapsed < 4


async def test_result_with_unknown_id(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.result("no-such-id", True, "hm")
        diag = await server.wait_diag("result.unknown-id", game="Game")
        # A pending action is not settled by a wrong id.
        await game.force("pass")
        action = await game.expect_action()
        await game.result(action.id + "x", False, "wrong id")
        await server.wait_diag("result.unknown-id", game="Game", count=2)
        assert server.client_of(game).pending_ids == (action.id,)
        await game.result(action.id)
        await game.expect_silence(60)
    assert diag.severity is Severity.WARNING
    assert server.messages() == ["Result of action 'pass': succeeded: done"]


async def test_result_answered_twice_is_stale(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        await game.result(action.id, True, "first")
        await game.result(action.id, False, "second")
        diag = await server.wait_diag("result.stale-id", game="Game")
        await game.expect_silence(60)
    assert diag.severity is Severity.WARNING
    assert len(server.force_calls) == 1
    assert not any("second" in m for m in server.messages())


async def test_new_force_replaces_the_active_one(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    server.answers.extend([BLOCK, ("wave", None)])
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await game.force("pass", query="first")
        first = await server.wait_force_calls(1)
        await game.force("wave", query="second")
        diag = await server.wait_diag("force.while-active", game="Game")
        action = await game.expect_action()
        await server.wait_until(lambda: first.cancelled)
        await game.result(action.id)
        await game.expect_silence(60)
    assert diag.severity is Severity.WARNING
    assert "replaced" in diag.message
    assert action.name == "wave"
    second = server.force_calls[1]
    assert second.query == "second"
    assert len(server.force_calls) == 2


async def test_new_force_replaces_one_waiting_for_its_result(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await game.force("pass")
        old = await game.expect_action()
        await game.force("wave")
        await server.wait_diag("force.while-active", game="Game")
        new = await game.expect_action()
        # The replaced force's action is still answered normally, and its
        # failure is not retried: that force is gone.
        await game.result(old.id, False, "too late to pass")
        await game.result(new.id, True, "waved")
        await game.expect_silence(120)
    assert (old.name, new.name) == ("pass", "wave")
    assert "result.unknown-id" not in server.ids()
    assert len(server.force_calls) == 2


async def test_queue_policy_runs_the_second_force_after_the_first(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer(force_policy=ForcePolicy.QUEUE)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await game.force("pass")
        first = await game.expect_action()
        await game.force("wave")
        diag = await server.wait_diag("force.while-active", game="Game")
        await game.expect_silence(5)
        assert len(server.force_calls) == 1
        await game.result(first.id, True, "passed")
        second = await game.expect_action()
        await game.result(second.id, True, "waved")
        await game.expect_silence(60)
    assert "queued" in diag.message
    assert (first.name, second.name) == ("pass", "wave")
    call_one, call_two = server.force_calls
    assert not call_one.cancelled
    assert any("passed" in m for m in server.messages()[: call_two.context_seen])


async def test_unregister_cancels_the_force(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    server.answers.append(BLOCK)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE, PLAY)
        await game.force("pass", "wave")
        call = await server.wait_force_calls(1)
        await game.unregister("pass")
        await server.settle(game)
        assert not call.cancelled  # "wave" is still registered
        await game.unregister("wave")
        diag = await server.wait_diag("force.cancelled-by-unregister", game="Game")
        await server.wait_until(lambda: call.cancelled)
        await game.expect_silence(120)
        assert server.client_of(game).active_force is None
    assert diag.severity is Severity.INFO
    assert len(server.force_calls) == 1


async def test_unregister_before_the_result_keeps_the_force_until_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The official SDK unregisters an action before answering it.

    The force waits for that result: a success ends it, a failure would
    retry it, and with nothing left to retry it ends then (no endless
    retries of actions that no longer exist).
    """
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        await game.unregister("pass")
        await server.settle(game)
        assert server.client_of(game).active_force is not None
        assert "force.cancelled-by-unregister" not in server.ids()
        await game.result(action.id, False, "no longer possible")
        await server.wait_diag("force.cancelled-by-unregister", game="Game")
        # No retry of an action that no longer exists.
        await game.expect_silence(120)
        assert server.client_of(game).active_force is None
    assert len(server.force_calls) == 1
    assert "force.retry" not in server.ids()


async def test_unregister_then_success_ends_the_force_quietly(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await game.force("pass")
        action = await game.expect_action()
        await game.unregister("pass", "wave")
        await game.result(action.id, True, "passed")
        await server.wait_until(lambda: bool(server.outcomes))
        await server.settle(game)
        assert server.client_of(game).active_force is None
        await game.expect_silence(60)
    assert server.ids() == [
        "result.success-without-message"
    ] or "force" not in " ".join(server.ids())


async def test_a_retry_whose_actions_were_all_unregistered_ends_the_force(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await game.force("pass", "wave")
        action = await game.expect_action()
        # One action gone before the result, the other too.
        await game.unregister("pass")
        await game.unregister("wave")
        await game.result(action.id, False, "both gone")
        await server.wait_diag("force.cancelled-by-unregister", game="Game")
        await game.expect_silence(60)
    assert len(server.force_calls) == 1


async def test_startup_cancels_the_active_force(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    server.answers.append(BLOCK)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        call = await server.wait_force_calls(1)
        await game.startup()
        await server.wait_until(lambda: call.cancelled)
        await game.expect_silence(60)
        assert server.client_of(game).active_force is None


async def test_engine_error_reported_and_game_keeps_working(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    server.answers.append(RuntimeError("engine exploded"))
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        diag = await server.wait_diag("force.engine-error", game="Game")
        await game.expect_silence(30)
        assert server.client_of(game).active_force is None
        await game.force("pass")
        action = await game.expect_action()
        await game.result(action.id)
        await game.context("still here")
        await server.wait_until(lambda: "still here" in server.messages())
    assert diag.severity is Severity.ERROR
    assert "engine exploded" in diag.message
    assert action.name == "pass"


async def test_force_while_an_unforced_result_is_pending(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await server.settle(game)
        server.client_of(game).start_action("wave", None)
        unforced = await game.expect_action()
        await game.force("pass")
        diag = await server.wait_diag("force.while-result-pending", game="Game")
        forced = await game.expect_action()
        await game.result(unforced.id)
        await game.result(forced.id)
    assert diag.severity is Severity.WARNING
    assert "wave" in diag.message
    assert forced.name == "pass"


async def test_slow_engine_answer_still_sent(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()
    server = RecordingServer()
    server.answers.append(Gate(gate, ("pass", None)))
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        await server.wait_force_calls(1)
        await game.expect_silence(300)
        gate.set()
        action = await game.expect_action()
        await game.result(action.id)
    assert action.name == "pass"


async def test_replacing_a_force_mid_write_keeps_the_stream_valid(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelling a force must not cut its ``action`` frame in half.

    The first force's answer is a large frame that the game is slow to read;
    while the server is still writing it, a second force replaces the first.
    Whatever the server does with the first frame, the game must then be able
    to read a valid ``action`` for the second force.
    """
    big = orjson.dumps({"blob": "x" * (16 << 20)}).decode()
    server = RecordingServer(max_message_size=32 << 20)  # big is allowed
    server.answers.extend([("pass", big), ("wave", None)])
    info = await start_server(nursery, server)
    raw = await RawGame.connect(info.port, "Game", rcvbuf=4096)
    try:
        await raw.send(command.startup_command("Game").decode())
        await raw.send(command.actions_register_command("Game", [PASS, WAVE]).decode())
        await raw.send(
            command.actions_force_command("Game", None, "q", ["pass"]).decode()
        )
        await server.wait_until(
            lambda: any(c.pending_ids for c in server.clients.values())
        )
        # Virtual time only passes once every task waits: the server is then
        # stuck writing the big frame to a game that does not read.
        await trio.sleep(1)
        await raw.send(
            command.actions_force_command("Game", None, "q", ["wave"]).decode()
        )
        await server.wait_diag("force.while-active", game="Game")
        assert isinstance(await raw.receive(), StartupAcknowledgement)
        names = []
        while "wave" not in names:
            message = await raw.receive(within=30)
            assert isinstance(message, ActionMessage)
            names.append(message.name)
    finally:
        await raw.aclose()
    assert names in (["wave"], ["pass", "wave"])


async def test_custom_result_timeout_reported_in_diagnostic(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """``execute_action(result_timeout=5)`` times out after 5 s and says so."""
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(WAVE)
        await server.settle(game)
        client = server.client_of(game)
        start = trio.current_time()
        nursery.start_soon(
            functools.partial(client.execute_action, "wave", None, result_timeout=5)
        )
        action = await game.expect_action()
        diag = await server.wait_diag("result.timeout", game="Game")
        elapsed = trio.current_time() - start
        await game.result(action.id, True, "late")
        late = await server.wait_diag("result.late", game="Game")
    assert 5 <= elapsed < 6
    assert "within 5 s" in diag.message
    assert "after the 5 s timeout" in late.message


@pytest.mark.parametrize(
    "answer",
    [("pass", {"cell": 1}), ("pass", 5), (None, None), ("pass", b"{}")],
    ids=["dict-data", "int-data", "no-name", "bytes-data"],
)
async def test_engine_answer_of_the_wrong_type_is_an_engine_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, answer: Any
) -> None:
    """An engine that breaks its contract must not put invalid frames on the
    wire: ``data`` is a JSON *string* and ``name`` a string, or the game
    receives an ``action`` it cannot even parse.
    """
    server = RecordingServer()
    server.answers.append(answer)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        with trio.move_on_after(5):
            # Whatever arrives must be a valid Neuro frame.
            message = await game.receive()
            raise AssertionError(f"sent {message!r} for a broken answer")
        await server.wait_diag("force.engine-error", game="Game")
        # And the game keeps working.
        await game.force("pass")
        action = await game.expect_action()
        await game.result(action.id)


async def test_queued_forces_not_started_after_disconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Forces queued by a game that disconnected are dropped, not started.

    Starting them calls the engine (which may show or announce the force)
    for a game that is gone.
    """
    server = RecordingServer(force_policy=ForcePolicy.QUEUE)
    server.answers.append(BLOCK)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, WAVE)
        await game.force("pass", query="first")
        first = await server.wait_force_calls(1)
        await game.force("wave", query="second")
        await game.force("pass", query="third")
        await server.wait_diag("force.while-active", game="Game", count=2)
        await game.drop()
    await server.wait_until(lambda: not server.clients)
    await trio.sleep(60)
    assert first.cancelled
    assert [call.query for call in server.force_calls] == ["first"]
    assert server.stats.forces == 1
