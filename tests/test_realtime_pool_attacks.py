"""Attacks on the Realtime pool and its connections: races, leaks, hostile servers.

Rules as in the other Realtime tests: everything on 127.0.0.1, port 0;
timers on ``autojump_clock``; the fake Realtime API, or a small raw server
here when the fake cannot misbehave that way.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from fake_realtime import FakeRealtime, open_fake_realtime
from realtime_helpers import running_pool

from neuro_api.realtime import ConnectionLost


@pytest.fixture
async def fake() -> Any:
    async with open_fake_realtime(key="sk-test-key-0123456789") as fake:
        yield fake


def retrieve(event_id: str | None = None) -> dict[str, Any]:
    """A client event the fake answers with an ``error`` (no such item)."""
    event: dict[str, Any] = {"type": "conversation.item.retrieve", "item_id": "nope"}
    if event_id is not None:
        event["event_id"] = event_id
    return event


async def nothing_within(conn: Any, seconds: float) -> list[dict[str, Any]]:
    """Every event ``conn``'s holder receives within ``seconds``."""
    got: list[dict[str, Any]] = []
    with trio.move_on_after(seconds):
        while True:
            got.append(await conn.receive())
    return got


# --- exclusivity --------------------------------------------------------------


async def test_a_second_release_does_not_give_away_the_next_holders_lease(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        first = await pool.acquire()
        pool.release(first)
        second = await pool.acquire()
        assert second.id == first.id  # the same connection, leased again
        pool.release(first)  # the first holder's late, second release
        assert pool.stats()["active_sessions"] == 1
        with trio.move_on_after(1) as waited:
            third = await pool.acquire()
            pool.release(third)
        assert waited.cancelled_caught, "a third user got the leased connection"
        pool.release(second)


async def test_a_former_holder_cannot_read_or_write_on_the_next_lease(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as old:
            pass
        async with pool.connection_context() as new:
            # A task of the first holder that outlived its lease.
            with pytest.raises((ConnectionLost, RuntimeError)):
                await old.send(retrieve("from_the_past"))
            await new.send(retrieve("mine"))
            with pytest.raises((ConnectionLost, RuntimeError)):
                await old.receive()
            event = await new.receive()
            assert event["error"]["event_id"] == "mine"
        assert fake.connections[0].events("conversation.item.retrieve") == [
            retrieve("mine")
        ]


async def test_errors_about_the_last_holders_events_do_not_reach_the_next(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            await conn.send(retrieve())  # answered by an error, after the lease
            await conn.send(retrieve("given_id"))
        async with pool.connection_context() as conn:
            got = await nothing_within(conn, 2)
        assert got == []
        assert len(fake.connections[0].sent_events("error")) == 2


async def test_late_answers_to_the_last_lease_reach_neither_reset_nor_next(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            await conn.send({"type": "session.update", "session": {"type": "realtime"}})
            await conn.send(retrieve())  # its error comes during the reset
        async with pool.connection_context() as again:
            assert again.id == conn.id  # reset, not closed
            assert await nothing_within(again, 0.5) == []
        assert pool.stats()["resets"] == 1
        assert pool.stats()["closed_connections"] == 0


async def test_the_answer_to_the_resets_own_clear_does_not_reach_the_next(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            await conn.send({"type": "input_audio_buffer.append", "audio": "AAAA"})
            await conn.send({"type": "input_audio_buffer.clear"})
        async with pool.connection_context() as again:
            assert again.id == conn.id
            assert await nothing_within(again, 1) == []
        assert len(fake.connections[0].events("input_audio_buffer.clear")) == 2
