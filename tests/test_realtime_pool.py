"""The Realtime pool on the fake Realtime API: exclusive leases, reuse, health."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest
import trio
from fake_realtime import (
    Drop,
    FakeRealtime,
    FunctionCall,
    RateLimits,
    Stall,
    open_fake_realtime,
)
from realtime_helpers import pool_config, running_pool
from status_helpers import eventually

from neuro_api.realtime import (
    ConnectionLost,
    LeaseTimeout,
    PoolConfig,
    RealtimePool,
    RealtimeUnavailable,
)

OUT_OF_BAND: dict[str, Any] = {
    "conversation": "none",
    "output_modalities": ["text"],
    "tools": [
        {
            "type": "function",
            "name": "jump",
            "description": "Jump",
            "parameters": {"type": "object", "properties": {}},
        }
    ],
    "tool_choice": "required",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "jump"}],
        }
    ],
}


async def ask(conn: Any) -> dict[str, Any]:
    """One out-of-band response on ``conn``; returns its response.done."""
    await conn.send({"type": "response.create", "response": OUT_OF_BAND})
    while True:
        event = await conn.receive_ok()
        if event["type"] == "response.done":
            return dict(event)


def waiting(pool: RealtimePool, count: int) -> bool:
    return pool.waiting == count


@pytest.fixture
async def fake() -> Any:
    async with open_fake_realtime(key="sk-test-key-0123456789") as fake:
        yield fake


# --- leases -----------------------------------------------------------------


async def test_a_lease_talks_to_the_api_with_the_key_and_model(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, model="gpt-realtime-mini") as pool:
        async with pool.connection_context() as conn:
            assert conn.session["type"] == "realtime"
            done = await ask(conn)
            assert done["response"]["status"] == "completed"
            assert done["response"]["output"][0]["name"] == "jump"
            assert pool.stats()["active_sessions"] == 1
        stats = pool.stats()
    (served,) = fake.connections
    assert served.headers["authorization"] == "Bearer sk-test-key-0123456789"
    assert served.model == "gpt-realtime-mini"
    assert stats["active_sessions"] == 0
    assert stats["total_sessions_handled"] == 1
    assert stats["total_connections"] == 1


async def test_connections_are_reused_one_lease_after_another(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake) as pool:
        ids = []
        for _ in range(3):
            async with pool.connection_context() as conn:
                ids.append(conn.id)
                await ask(conn)
        assert len(set(ids)) == 1
        assert len(fake.connections) == 1
        assert pool.stats()["total_sessions_handled"] == 3


async def test_concurrent_leases_get_different_connections(
    fake: FakeRealtime,
) -> None:
    held: list[str] = []
    both = trio.Event()

    async def lease(pool: RealtimePool) -> None:
        async with pool.connection_context() as conn:
            held.append(conn.id)
            if len(held) == 2:
                both.set()
            await both.wait()
            await ask(conn)

    async with (
        running_pool(fake, max_connections=2) as pool,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(lease, pool)
        nursery.start_soon(lease, pool)
    assert len(set(held)) == 2
    assert len(fake.connections) == 2


async def test_a_full_pool_makes_callers_wait_and_never_evicts(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    order: list[str] = []
    async with running_pool(fake, max_connections=1, lease_timeout=60.0) as pool:
        first_in = trio.Event()

        async def first() -> None:
            async with pool.connection_context() as conn:
                first_in.set()
                await trio.sleep(20)  # a long phone call
                await ask(conn)  # still its own, still open
                order.append(f"first done on {conn.id}")

        async def second() -> None:
            await first_in.wait()
            async with pool.connection_context() as conn:
                order.append(f"second got {conn.id}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            nursery.start_soon(second)
            await first_in.wait()
            await eventually(lambda: pool.waiting == 1)
            assert pool.stats()["waiting"] == 1
    (only,) = fake.connections
    assert not only.closed or only.close_code == 1000
    assert order == ["first done on " + order[0].split()[-1], order[1]]
    assert order[0].split()[-1] == order[1].split()[-1]


async def test_waiters_are_served_first_come_first_served(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    served: list[int] = []
    async with running_pool(fake, max_connections=1, lease_timeout=60.0) as pool:
        hold = await pool.acquire()
        async with trio.open_nursery() as nursery:

            async def wait_in_turn(n: int) -> None:
                async with pool.connection_context():
                    served.append(n)
                    await trio.sleep(1)

            for n in range(4):
                nursery.start_soon(wait_in_turn, n)
                await eventually(functools.partial(waiting, pool, n + 1))
            await trio.sleep(5)
            assert served == []  # nobody is served while the lease is held
            pool.release(hold)
    assert served == [0, 1, 2, 3]


async def test_a_lease_times_out_when_every_connection_stays_leased(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_connections=1, lease_timeout=3.0) as pool:
        async with pool.connection_context() as conn:
            start = trio.current_time()
            with pytest.raises(LeaseTimeout, match="stayed leased for 3 s"):
                async with pool.connection_context():
                    pass
            assert trio.current_time() - start == pytest.approx(3.0, abs=0.1)
            await ask(conn)  # the holder was not disturbed
        assert pool.stats()["lease_timeouts"] == 1
        assert pool.waiting == 0
        # The slot given up by the waiter is not lost.
        async with pool.connection_context():
            pass


async def test_a_connection_serves_its_maximum_of_leases_then_is_closed(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_sessions_per_connection=2) as pool:
        ids = []
        for _ in range(3):
            async with pool.connection_context() as conn:
                ids.append(conn.id)
        assert ids[0] == ids[1] != ids[2]
        first = fake.connections[0]
        await first.wait_closed()
        assert first.close_code == 1000  # a closing handshake, not a drop
        assert pool.stats()["closed_connections"] == 1


async def test_a_connection_that_ages_out_while_leased_is_closed_when_returned(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(
        fake, max_connection_age=10.0, health_check_interval=1.0
    ) as pool:
        async with pool.connection_context() as conn:
            await trio.sleep(30)  # three times its age, many health checks
            assert not fake.connections[0].closed
            await ask(conn)  # still usable by its holder
        await fake.connections[0].wait_closed()
        async with pool.connection_context() as again:
            assert again.id != conn.id


async def test_idle_connections_are_closed_after_the_idle_time(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_idle_time=5.0, health_check_interval=1.0) as pool:
        async with pool.connection_context():
            pass
        await trio.sleep(3)
        assert pool.stats()["total_connections"] == 1
        await trio.sleep(4)
        assert pool.stats()["total_connections"] == 0
        assert fake.connections[0].close_code == 1000


async def test_no_pong_makes_the_lease_fail_and_the_connection_replaced(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, ping_interval=1.0, ping_timeout=2.0) as pool:
        async with pool.connection_context() as conn:
            fake.connections[0].freeze()
            with pytest.raises(ConnectionLost, match="no pong within 2 s"):
                await conn.receive()
        assert pool.stats()["total_connections"] == 0
        async with pool.connection_context() as conn:
            await ask(conn)
        assert len(fake.connections) == 2


async def test_a_connection_dropped_mid_lease_raises_and_is_replaced(
    fake: FakeRealtime,
) -> None:
    fake.script(Drop())
    async with running_pool(fake) as pool:
        async with pool.connection_context() as conn:
            with pytest.raises(ConnectionLost, match=r"the connection ended|1006"):
                await ask(conn)
            with pytest.raises(ConnectionLost):
                await conn.send({"type": "response.create"})
        async with pool.connection_context() as conn:
            await ask(conn)
        assert len(fake.connections) == 2


# --- the reset between leases ------------------------------------------------------


async def test_what_a_lease_changed_is_undone_before_the_next(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake) as pool:
        async with pool.connection_context() as conn:
            await conn.send(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "instructions": "be a pirate"},
                }
            )
            await conn.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "secret"}],
                    },
                }
            )
            while not conn.items:
                await conn.receive()
        served = fake.connections[0]
        async with pool.connection_context() as again:
            assert again.id == conn.id
            assert served.items == {}
            assert served.session["instructions"] == ""
        assert pool.stats()["resets"] == 1
        deletes = served.events("conversation.item.delete")
        assert len(deletes) == 1


async def test_a_lease_of_out_of_band_responses_needs_no_reset(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake) as pool:
        for _ in range(2):
            async with pool.connection_context() as conn:
                await ask(conn)
        served = fake.connections[0]
        assert served.events("session.update") == []
        assert pool.stats()["resets"] == 0


async def test_a_response_still_running_is_cancelled_before_reuse(
    fake: FakeRealtime,
) -> None:
    fake.script(Stall())
    async with running_pool(fake) as pool:
        async with pool.connection_context() as conn:
            await conn.send({"type": "response.create", "response": OUT_OF_BAND})
            while not conn.open_responses:
                await conn.receive()
        async with pool.connection_context() as again:
            assert again.id == conn.id
            assert conn.open_responses == {}
            await ask(again)  # no "already has an active response"
        assert fake.connections[0].events("response.cancel")


async def test_a_response_asked_for_but_not_created_yet_does_not_leak(
    fake: FakeRealtime,
) -> None:
    fake.script(Stall())
    async with running_pool(fake) as pool:
        async with pool.connection_context() as conn:
            # Returned before the API even said the response was created.
            await conn.send({"type": "response.create", "response": OUT_OF_BAND})
        async with pool.connection_context() as again:
            assert again.id == conn.id
            await ask(again)  # not "conversation_already_has_active_response"
        assert fake.connections[0].events("response.cancel")


async def test_a_connection_that_cannot_be_reset_is_closed(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, reset_timeout=2.0) as pool:
        async with pool.connection_context() as conn:
            await conn.send({"type": "session.update", "session": {"type": "realtime"}})
            await conn.receive()  # session.updated
            fake.connections[0].freeze()  # the reset will get no answer
        async with pool.connection_context() as again:
            assert again.id != conn.id
        assert pool.stats()["closed_connections"] == 1


# --- errors ------------------------------------------------------------------------


async def test_a_wrong_key_is_reported_and_retried_with_backoff(
    fake: FakeRealtime,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "neuro_api.realtime")
    config = pool_config(fake, api_key="sk-wrong-key-000000000", backoff_max=8.0)
    pool = RealtimePool(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        with pytest.raises(RealtimeUnavailable, match="HTTP 401") as caught:
            await pool.acquire()
        assert "sk-wrong-key-000000000" not in str(caught.value)
        health = pool.health()
        assert health["status"] == "degraded"
        assert "HTTP 401" in health["problem"]
        # Meanwhile leases fail at once, without a new handshake.
        attempts = fake.handshakes
        with pytest.raises(RealtimeUnavailable, match="next attempt"):
            await pool.acquire()
        assert fake.handshakes == attempts
        # The pool tries again by itself, less and less often.
        await trio.sleep(120)
        retries = fake.handshakes - attempts
        assert 3 <= retries <= 120 // 8 + 4
        # Fixed: it recovers on its own.
        fake.key = "sk-wrong-key-000000000"
        await eventually(lambda: pool.health()["status"] == "healthy", within=20)
        async with pool.connection_context() as conn:
            await ask(conn)
        nursery.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]


async def test_an_unreachable_api_is_a_clear_reason() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = PoolConfig(api_key="sk-x", url=f"ws://127.0.0.1:{port}/v1/realtime")
    pool = RealtimePool(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        with pytest.raises(RealtimeUnavailable, match="cannot reach the API"):
            await pool.acquire()
        nursery.cancel_scope.cancel()


async def test_error_events_and_rate_limits_are_counted(fake: FakeRealtime) -> None:
    fake.script([RateLimits(requests_remaining=0), FunctionCall("jump")])
    async with running_pool(fake) as pool:
        async with pool.connection_context() as conn:
            await ask(conn)
            await fake.connections[0].send_event(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "bad_thing",
                        "message": "something was wrong",
                    },
                }
            )
            await eventually(lambda: pool.stats()["api_errors"] == 1)
        stats = pool.stats()
    assert stats["rate_limited"] == 1
    assert {limit["name"] for limit in stats["rate_limits"]} == {"requests", "tokens"}
    assert stats["last_api_error"]["code"] == "bad_thing"


# --- shutdown --------------------------------------------------------------------


async def test_shutdown_closes_every_connection_gracefully(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_connections=3) as pool:
        conns = [await pool.acquire() for _ in range(3)]
        pool.release(conns[0])
    for served in fake.connections:
        await served.wait_closed()
        assert served.close_code == 1000
    with pytest.raises(RealtimeUnavailable, match="not running"):
        await pool.acquire()


async def test_shutdown_is_bounded_by_the_close_timeout(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, close_timeout=2.0) as pool:
        async with pool.connection_context():
            pass
        fake.connections[0].freeze()  # it will not answer the close frame
        start = trio.current_time()
    assert trio.current_time() - start <= 2.5


async def test_health_and_config_have_the_seed_fields(fake: FakeRealtime) -> None:
    async with running_pool(fake, max_connections=4) as pool:
        health = pool.health()
        assert health == {
            "status": "healthy",
            "websocket_manager": {
                "healthy_connections": 0,
                "total_connections": 0,
                "max_connections": 4,
            },
            "message": "Service is operational",
        }
        shown = pool.config.shown()
        assert shown["websocket_url"] == fake.url + "?model=gpt-realtime"
        assert fake.key not in repr(pool.config)
        assert fake.key not in str(shown)
        assert set(shown) >= {
            "max_connections",
            "max_connection_age",
            "max_idle_time",
            "health_check_interval",
            "max_sessions_per_connection",
            "ping_interval",
            "ping_timeout",
            "close_timeout",
            "openai_model",
        }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("api_key", "", "api_key"),
        ("url", "https://api.openai.com/v1/realtime", "ws:// or wss://"),
        ("max_connections", 0, "max_connections"),
        ("ping_timeout", 0.0, "ping_timeout"),
        ("lease_timeout", float("nan"), "lease_timeout"),
    ],
)
def test_bad_configurations_are_refused(field: str, value: Any, message: str) -> None:
    options: dict[str, Any] = {"api_key": "sk-x", field: value}
    with pytest.raises(ValueError, match=message):
        PoolConfig(**options)
