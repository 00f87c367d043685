"""Races and edges of force gates, admission and close codes (a second review)."""

from __future__ import annotations

from typing import ClassVar

import pytest
import trio
import trio.testing
import wsproto.events
from server_helpers import (
    PASS,
    Gate,
    RawGame,
    RecordingClient,
    RecordingServer,
    connect,
    start_server,
    start_stoppable,
)

from neuro_api.server import (
    ConnectionEvent,
    ConnectionEventKind,
    ForceGate,
    Refusal,
)

pytestmark = pytest.mark.timeout(30)


# --- A. a graceful drain reports every game that answered as a network error --


async def test_a_drain_the_game_answers_is_a_clean_close(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    events: list[ConnectionEvent] = []
    server.connection_events.subscribe(events.append)
    info, stopped = await start_stoppable(nursery, server)
    async with connect(info.url, "G") as game:
        await game.startup()
        server.request_stop()
        # The game reads the server's close frame and answers it (the
        # trio-websocket client echoes it): a complete close handshake.
        assert (await game.expect_closed()).code == 1001
        with trio.fail_after(10):
            await stopped.wait()
    gone = events[-1]
    assert gone.kind is ConnectionEventKind.DISCONNECTED
    # Before the fix: 1001, clean=False (network_error=True), close_reason=None
    assert (gone.close_code, gone.clean, gone.network_error) == (1001, True, False), (
        gone
    )


# --- B. an action let go by a release goes out after the game is held again ---


async def test_a_held_action_does_not_reach_a_game_held_again(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    gate = server.add_force_gate(ForceGate("t"))
    gate.hold("G")
    info = await start_server(nursery, server)
    async with connect(info.url, "G") as game:
        await game.startup()
        await game.register(PASS)
        await server.settle(game)
        client = server.client_of(game)
        client.start_action("pass", None)  # held: waits its turn
        await trio.testing.wait_all_tasks_blocked()
        # An operator (or a status sync) unpauses and pauses again at once.
        gate.release("G")
        gate.hold("G")
        assert client.forces_held
        # before the fix: AssertionError: unexpected frame: '{"command":"action",...'
        await game.expect_silence(1.0)
        gate.release("G")
        assert (await game.expect_action()).name == "pass"


# --- C. a wrongly typed engine answer while held leaves the force for ever -----


async def test_a_bad_answer_given_while_held_ends_the_force(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    gate = server.add_force_gate(ForceGate("t"))
    thinking = trio.Event()
    # A buggy engine returns None from choose_force_action (user code).
    server.answers.append(Gate(thinking, None))  # type: ignore[arg-type]
    info = await start_server(nursery, server)
    async with connect(info.url, "G") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        await server.wait_force_calls(1)
        gate.hold("G")
        thinking.set()  # the engine answers None while the game is held
        await trio.testing.wait_all_tasks_blocked()
        gate.release("G")
        # Not held, the same answer is a force.engine-error and the force
        # ends (the next force is answered). Held, it is kept as "no answer":
        # before the fix: TooSlowError, the force stays active for ever, unanswered.
        await server.wait_diag("force.engine-error", game="G", within=2)
        assert server.client_of(game).active_force is None


# --- D. the close reason is not that of the close code reported -------------


async def test_a_refusal_answered_with_another_reason_reports_ours(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    server.add_admission_check(lambda client, title: Refusal("go away", 4003))
    events: list[ConnectionEvent] = []
    server.connection_events.subscribe(events.append)
    info = await start_server(nursery, server)
    game = await RawGame.connect(info.port, "Refused")
    try:
        await game.send('{"command": "startup", "game": "Refused"}')
        with trio.fail_after(10):
            event = await game._next_event()
            assert isinstance(event, wsproto.events.CloseConnection), event
            # The game answers with a close frame of its own words.
            await game.stream.send_all(
                game.protocol.send(
                    wsproto.events.CloseConnection(code=1000, reason="bye from game")
                )
            )
        await server.wait_until(lambda: len(events) == 2)
    finally:
        await game.aclose()
    gone = events[-1]
    # before the fix: (4003, 'bye from game'): our code with the game's reason
    assert (gone.close_code, gone.close_reason) == (4003, "go away"), gone


# --- E. every force replaced while held actions drain parks a task ------------


async def test_forces_during_a_stalled_drain_do_not_pile_up_tasks(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer(send_timeout=5.0)
    gate = server.add_force_gate(ForceGate("t"))
    gate.hold("G")
    info = await start_server(nursery, server)
    game = await RawGame.connect(info.port, "G", rcvbuf=4096)
    try:
        await game.send('{"command":"startup","game":"G"}')
        await game.receive()
        await game.send(
            '{"command":"actions/register","game":"G","data":{"actions":'
            '[{"name":"pass","description":"Pass"}]}}'
        )

        def registered() -> bool:
            client = server.get_client("G")
            return client is not None and "pass" in client.actions

        await server.wait_until(registered)
        client = server.get_client("G")
        assert isinstance(client, RecordingClient)
        big = '"' + "x" * 900_000 + '"'
        for _ in range(8):  # held: sent on release
            client.start_action("pass", big)
        await trio.testing.wait_all_tasks_blocked()
        gate.release("G")  # they go out, but the game does not read
        await trio.sleep(0.2)
        handled = client.handled
        force = (
            '{"command":"actions/force","game":"G",'
            '"data":{"query":"q","action_names":["pass"]}}'
        )
        for _ in range(2000):  # each replaces the last (production policy)
            await game.send(force)
        await server.wait_until(lambda: client.handled >= handled + 2000)
        assert client._nursery is not None
        tasks = len(client._nursery.child_tasks)
        # before the fix: 2009 tasks (one _resume_force per replaced force, each with a
        # turn in the gate), for as long as send_timeout lets the drain stall
        assert tasks < 50, tasks
    finally:
        await game.aclose()


# --- F. a failing send in a resume task kills the connection's reader ---------


class SlowContext(RecordingClient):
    """Its reader is busy with the context "slow" until ``proceed``."""

    proceed = trio.Event()
    entered = trio.Event()

    async def handle_context(self, game_title: str, message: str, silent: bool) -> None:
        if message == "slow":
            SlowContext.entered.set()
            await SlowContext.proceed.wait()
        await super().handle_context(game_title, message, silent)


class SlowServer(RecordingServer):
    client_class = SlowContext


async def test_a_kept_answer_failing_to_send_does_not_cut_the_reader(
    nursery: trio.Nursery,
) -> None:
    SlowContext.proceed, SlowContext.entered = trio.Event(), trio.Event()
    server = SlowServer()
    gate = server.add_force_gate(ForceGate("t"))
    thinking = trio.Event()
    server.answers.append(Gate(thinking, ("pass", None)))
    info = await start_server(nursery, server)
    async with connect(info.url, "G") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        await server.wait_force_calls(1)
        gate.hold("G")
        thinking.set()
        await trio.testing.wait_all_tasks_blocked()  # the answer is kept
        await game.context("slow")
        with trio.fail_after(5):
            await SlowContext.entered.wait()
        await game.context("last words")
        await game.ws.aclose()  # the game leaves cleanly
        gate.release("G")  # the resume task's send raises ConnectionClosed
        await trio.testing.wait_all_tasks_blocked()
        SlowContext.proceed.set()
        await server.wait_until(lambda: server.disconnected)
    # Without the kept answer both are delivered (context survives a close);
    # before the fix: [] -- the exception cancelled the connection's nursery, reader too
    assert server.messages() == ["slow", "last words"], server.messages()


# --- G. an unknown (custom) command is handled before admission -----------------


class CustomCommands(RecordingClient):
    calls: ClassVar[list[tuple[str | None, str]]] = []

    async def handle_unknown_command(
        self, command: str, data: dict[str, object] | None
    ) -> None:
        CustomCommands.calls.append((self.game_title, command))


class CustomServer(RecordingServer):
    client_class = CustomCommands


async def test_a_refused_title_gets_no_custom_command_handled(
    nursery: trio.Nursery,
) -> None:
    CustomCommands.calls = []
    server = CustomServer()
    server.add_admission_check(
        lambda client, title: Refusal("blocked", 4003) if title == "Blocked" else None
    )
    info = await start_server(nursery, server)
    async with connect(info.url, "Blocked") as game:
        await game.send('{"command": "custom/cheat", "game": "Blocked", "data": {}}')
        await server.wait_until(
            lambda: any(
                isinstance(c, RecordingClient) and c.handled
                for c in server.clients.values()
            )
        )
        # before the fix: [(None, 'custom/cheat')] -- the frame names the game, but no
        # admission ran; the game stays connected and unchecked
        assert CustomCommands.calls == []
