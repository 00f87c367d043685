"""Sends from a connection's reader are timed by the connection's watchdog.

An engine that answers a force at once (``choose_force_action_now``) has its
``action`` sent by the reader task itself. A connection's first few sends get
a cancel scope each; after that, the connection's ReaderGuard task times them
instead. These tests pin what both ways must keep: a game that stops reading
is closed after ``send_timeout`` (not before, not much later), sends that do
finish never trip it however long the connection lives, and an idle game
costs no wake-ups.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from server_helpers import PASS, PLAY, RawGame, RecordingServer, connect, start_server

from neuro_api import command
from neuro_api.command import Action, ForcePriority

pytestmark = pytest.mark.timeout(30)

SEND_TIMEOUT = 2.0
WARM = pytest.mark.parametrize(
    "warm_rounds", [0, 6], ids=["first-sends", "guarded-sends"]
)
"""Round trips a game plays before the send under test: with 6, the
connection's guard is active (it starts after the first few sends)."""


class ImmediateServer(RecordingServer):
    """Answers every force at once, from the reader, with ``data[title]``."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.data: dict[str, str] = {}
        self.small_first: dict[str, int] = {}
        """Forces of a game answered with small data before ``data`` is used."""

    def choose_force_action_now(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None] | None:
        name = actions[0].name
        default = '{"cell": 1}' if name == "play" else None
        small = self.small_first.get(game_title, 0)
        if small:
            self.small_first[game_title] = small - 1
            return name, default
        return name, self.data.get(game_title, default)


class WhenLogged(logging.Handler):
    """Notes the Trio time of each "does not read" warning."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "does not read" in record.getMessage():
            self.times.append(trio.current_time())


class StepCounter(trio.abc.Instrument):
    """Counts the steps of tasks whose name contains ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.marker in task.name:
            self.steps += 1


async def _warm_up(slow: RawGame, rounds: int) -> None:
    """Play ``rounds`` force round trips on a raw game (registered: pass)."""
    for _ in range(rounds):
        await slow.send(
            command.actions_force_command("Slow", None, "q", ["pass"]).decode()
        )
        action = await slow.receive()
        if isinstance(action, command.StartupAcknowledgement):
            action = await slow.receive()
        assert isinstance(action, command.ActionMessage), action
        await slow.send(
            command.actions_result_command("Slow", action.id, True, "ok").decode()
        )


@WARM
async def test_a_game_that_stops_reading_is_closed_after_send_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, warm_rounds: int
) -> None:
    big = orjson.dumps({"blob": "x" * (16 << 20)}).decode()
    server = ImmediateServer(send_timeout=SEND_TIMEOUT, max_message_size=32 << 20)
    server.data["Slow"] = big
    server.small_first["Slow"] = warm_rounds
    info = await start_server(nursery, server)
    logged = WhenLogged()
    logger = logging.getLogger("neuro_api.server")
    logger.addHandler(logged)
    try:
        async with connect(info.url, "Good") as good:
            await good.startup()
            await good.register(PLAY)
            slow = await RawGame.connect(info.port, "Slow", rcvbuf=4096)
            try:
                await slow.send(command.startup_command("Slow").decode())
                await slow.send(
                    command.actions_register_command("Slow", [PASS]).decode()
                )
                await _warm_up(slow, warm_rounds)
                start = trio.current_time()
                await slow.send(
                    command.actions_force_command("Slow", None, "q", ["pass"]).decode()
                )
                await server.wait_until(
                    lambda: any(
                        c.pending_ids
                        for c in server.clients.values()
                        if c.game_title == "Slow"
                    )
                )
                # The reader of Slow is stuck in its send; Good is served.
                await good.force("play")
                action = await good.expect_action()
                await good.result(action.id, True, "ok")
                await server.wait_until(
                    lambda: all(
                        c.game_title != "Slow" for c in server.clients.values()
                    ),
                    within=60,
                )
            finally:
                await slow.aclose()
            await good.force("play")
            action = await good.expect_action()
            await good.result(action.id, True, "ok")
    finally:
        logger.removeHandler(logged)
    # The send began as the force arrived: the watchdog fires at its
    # deadline, once, not a period later.
    assert len(logged.times) == 1
    elapsed = logged.times[0] - start
    assert SEND_TIMEOUT <= elapsed <= SEND_TIMEOUT + 0.1, elapsed
    assert [o.status for game, o in server.outcomes if game == "Slow"] == [
        "success"
    ] * warm_rounds + ["disconnected"]
    assert server.diags(game="Good") == []


async def test_sends_that_finish_never_trip_the_watchdog(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Round trips at every spacing around the timeout keep the game."""
    server = ImmediateServer(send_timeout=SEND_TIMEOUT, max_message_size=32 << 20)
    info = await start_server(nursery, server)
    gaps = collections.deque(
        [0.0, 0.1, SEND_TIMEOUT / 2, SEND_TIMEOUT, SEND_TIMEOUT * 1.5, 5 * SEND_TIMEOUT]
        * 3
    )
    async with connect(info.url, "Steady") as game:
        await game.startup()
        await game.register(PLAY)
        rounds = 0
        while gaps:
            await trio.sleep(gaps.popleft())
            await game.force("play")
            action = await game.expect_action()
            await game.result(action.id, True, "ok")
            rounds += 1
        await server.settle(game)
        assert game.session_id in server.clients
    assert rounds == 18
    assert server.diags(game="Steady") == []


async def test_an_idle_game_costs_the_watchdog_no_wake_ups(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    counter = StepCounter("ReaderGuard.run")
    trio.lowlevel.add_instrument(counter)
    try:
        server = ImmediateServer(send_timeout=SEND_TIMEOUT, max_message_size=32 << 20)
        info = await start_server(nursery, server)
        async with connect(info.url, "Idle") as game:
            await game.startup()
            await game.register(PLAY)
            for _ in range(6):  # the guard starts after the first few sends
                await game.force("play")
                action = await game.expect_action()
                await game.result(action.id, True, "ok")
            await server.settle(game)
            await trio.sleep(3 * SEND_TIMEOUT)  # it parks after one period
            before = counter.steps
            await trio.sleep(1000 * SEND_TIMEOUT)
            idle_steps = counter.steps - before
            # It still watches once the game plays again.
            await game.force("play")
            action = await game.expect_action()
            await game.result(action.id, True, "ok")
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert before >= 1  # it ran (the marker names the real task)
    assert idle_steps == 0


@WARM
async def test_cancelling_the_server_mid_send_is_still_bounded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, warm_rounds: int
) -> None:
    """The reader's send is shielded from the server's cancellation (no half
    frame on the wire), so the watchdog must go on timing it: the stop waits
    for that send at most ``send_timeout`` (plus the short close), never
    forever."""
    big = orjson.dumps({"blob": "x" * (16 << 20)}).decode()
    server = ImmediateServer(send_timeout=SEND_TIMEOUT, max_message_size=32 << 20)
    server.data["Slow"] = big
    server.small_first["Slow"] = warm_rounds
    scope = trio.CancelScope()
    stopped = trio.Event()

    async def serve(*, task_status: trio.TaskStatus[Any]) -> None:
        try:
            with scope:
                await server.run("127.0.0.1", 0, task_status=task_status)
        finally:
            stopped.set()

    info = await nursery.start(serve)
    slow = await RawGame.connect(info.port, "Slow", rcvbuf=4096)
    try:
        await slow.send(command.startup_command("Slow").decode())
        await slow.send(command.actions_register_command("Slow", [PASS]).decode())
        await _warm_up(slow, warm_rounds)
        await slow.send(
            command.actions_force_command("Slow", None, "q", ["pass"]).decode()
        )
        await server.wait_until(
            lambda: any(c.pending_ids for c in server.clients.values())
        )
        start = trio.current_time()
        scope.cancel()
        with trio.fail_after(60):
            await stopped.wait()
        stopped_after = trio.current_time() - start
    finally:
        await slow.aclose()
    assert stopped_after <= SEND_TIMEOUT + 1, stopped_after
    assert server.clients == {}
