"""The server's public hooks on their own: turns, refusals, listeners, serving."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from server_helpers import connect

from neuro_api.manager import ServerBindError, ServerManager
from neuro_api.server import (
    ConnectionEvent,
    ConnectionEventKind,
    ConnectionEvents,
    ForceGate,
    RandomNeuroServer,
    Refusal,
)
from neuro_api.server._turns import HeldTurns

pytestmark = pytest.mark.timeout(30)


async def test_held_turns_go_in_arrival_order_one_at_a_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    turns = HeldTurns()
    order: list[int] = []
    inside = 0

    async def take(number: int) -> None:
        nonlocal inside
        async with turns.turn():
            inside += 1
            assert inside == 1  # one at a time
            await trio.sleep(0.1)  # a send that takes a while
            order.append(number)
            inside -= 1

    async with trio.open_nursery() as nursery:
        for number in range(20):
            nursery.start_soon(take, number)
            await trio.sleep(0.01)  # they arrive in this order
        await trio.sleep(1)
        assert order == []  # held
        assert len(turns) == 20
        turns.release()
    assert order == list(range(20))
    assert turns.idle


async def test_a_turn_cancelled_while_waiting_does_not_stop_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    turns = HeldTurns()
    order: list[str] = []

    async def take(name: str) -> None:
        async with turns.turn():
            order.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "first")
        await trio.sleep(0.01)
        cancelled = trio.CancelScope()

        async def cancellable() -> None:
            with cancelled:
                await take("cancelled")

        nursery.start_soon(cancellable)
        await trio.sleep(0.01)
        nursery.start_soon(take, "last")
        await trio.sleep(0.01)
        cancelled.cancel()
        await trio.sleep(0.01)
        turns.release()
    assert order == ["first", "last"]


async def test_holding_again_stops_after_the_turn_in_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    turns = HeldTurns()
    order: list[int] = []

    async def take(number: int) -> None:
        async with turns.turn():
            await trio.sleep(0.1)
            order.append(number)

    async with trio.open_nursery() as nursery:
        for number in range(3):
            nursery.start_soon(take, number)
            await trio.sleep(0.01)
        turns.release()
        await trio.sleep(0.05)  # the first is sending
        turns.held = True
        await trio.sleep(1)
        assert order == [0]
        turns.release()
    assert order == [0, 1, 2]


async def test_abandon_wakes_every_turn(autojump_clock: trio.testing.MockClock) -> None:
    turns = HeldTurns()
    woke = 0

    async def take() -> None:
        nonlocal woke
        async with turns.turn():
            woke += 1

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(take)
        await trio.sleep(1)
        turns.abandon()
    assert woke == 5


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (1006, "x", "cannot be sent"),
        (1005, "x", "cannot be sent"),
        (2000, "x", "cannot be sent"),
        (5000, "x", "cannot be sent"),
        (1008, "é" * 62, "at most 123 bytes"),
    ],
)
def test_a_refusal_must_fit_a_close_frame(code: int, reason: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Refusal(reason, code)
    assert Refusal("é" * 61, 4000).code == 4000


def test_a_failing_listener_is_logged_once_and_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = ConnectionEvents()
    heard: list[ConnectionEvent] = []

    def broken(event: ConnectionEvent) -> None:
        raise RuntimeError("listener bug")

    events.subscribe(broken)
    unsubscribe = events.subscribe(heard.append)
    event = ConnectionEvent(ConnectionEventKind.CONNECTED, "s", None)
    with caplog.at_level(logging.DEBUG, "neuro_api.server"):
        for _ in range(3):
            events.publish(event)
    assert heard == [event] * 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    unsubscribe()
    events.publish(event)
    assert len(heard) == 3
    assert len(events) == 1


async def test_an_admission_check_that_raises_refuses_with_1011(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = RandomNeuroServer()

    def broken(client: object, title: str) -> Refusal | None:
        raise RuntimeError("check bug")

    server.add_admission_check(broken)
    info = await nursery.start(server.run, "127.0.0.1", 0)
    async with connect(info.url, "Any") as game:
        await game.send_obj({"command": "startup", "game": "Any"})
        reason = await game.expect_closed()
    assert reason.code == 1011
    assert any("admission check" in r.getMessage() for r in caplog.records)


async def test_a_gate_holds_games_that_start_later_and_by_title_only(
    nursery: trio.Nursery,
) -> None:
    server = RandomNeuroServer()
    gate = server.add_force_gate(ForceGate("test"))
    gate.hold("Later")
    info = await nursery.start(server.run, "127.0.0.1", 0)
    async with connect(info.url, "Later") as later, connect(info.url, "Free") as free:
        await later.startup()
        await free.startup()
        assert server.get_client("Later").forces_held  # type: ignore[union-attr]
        assert not server.get_client("Free").forces_held  # type: ignore[union-attr]
        gate.hold("Free")
        gate.release("Later")
        assert not server.get_client("Later").forces_held  # type: ignore[union-attr]
        assert server.get_client("Free").forces_held  # type: ignore[union-attr]
        assert gate.held == {"Free"}


async def test_serving_in_the_callers_task_raises_a_bind_error_there(
    nursery: trio.Nursery,
) -> None:
    manager = await nursery.start(ServerManager().run)
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def handler(request: object) -> None:
            raise AssertionError("never called")

        with pytest.raises(ServerBindError):
            await manager.serve_websocket("busy", handler, port=port)
    assert manager.list() == []


async def test_serving_in_the_callers_task_returns_once_stopped(
    nursery: trio.Nursery,
) -> None:
    manager = await nursery.start(ServerManager().run)
    server = RandomNeuroServer()
    ended = trio.Event()

    async def serve(*, task_status: trio.TaskStatus[object]) -> None:
        await manager.serve_websocket(
            "games",
            server.handle_websocket_request,
            task_status=task_status,
            graceful_timeout=1,
        )
        ended.set()

    info = await nursery.start(serve)
    async with connect(info.local_url, "Stays") as game:
        await game.startup()
        assert [s.name for s in manager.list()] == ["games"]
        await manager.stop("games")
        assert (await game.expect_closed()).code == 1001
    with trio.fail_after(5):
        await ended.wait()
    assert manager.list() == []
