"""Attacks on the Realtime pool and its connections: races, leaks, hostile servers.

Rules as in the other Realtime tests: everything on 127.0.0.1, port 0;
timers on ``autojump_clock``; the fake Realtime API, or a small raw server
here when the fake cannot misbehave that way.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import trio
from fake_realtime import FakeRealtime, open_fake_realtime
from realtime_helpers import pool_config, running_pool
from status_helpers import eventually
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from neuro_api.realtime import (
    ConnectionLost,
    LeaseTimeout,
    PoolConfig,
    RealtimeAPIError,
    RealtimeError,
    RealtimePool,
    RealtimeUnavailable,
)

KEY = "sk-test-key-0123456789"


@pytest.fixture
async def fake() -> Any:
    async with open_fake_realtime(key=KEY) as fake:
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


async def read_until_lost(conn: Any) -> None:
    while True:
        await conn.receive()


async def acquire_or_fail(pool: RealtimePool, failures: list[BaseException]) -> None:
    try:
        pool.release(await pool.acquire())
    except RealtimeError as exc:
        failures.append(exc)


async def release_later(pool: RealtimePool, conn: Any) -> None:
    await trio.sleep(1)
    pool.release(conn)


def waiting(pool: RealtimePool, count: int) -> bool:
    return pool.waiting == count


async def lease_in_turn(pool: RealtimePool, n: int, served: list[int]) -> None:
    async with pool.connection_context():
        served.append(n)
        await trio.sleep(1)


async def lease_forever(pool: RealtimePool, cancel: trio.CancelScope) -> None:
    with cancel:
        async with pool.connection_context():
            await trio.sleep_forever()


def assert_settled(pool: RealtimePool, leased: int = 0) -> None:
    """Nothing of a cancelled caller is left in the pool's books."""
    stats = pool.stats()
    assert stats["waiting"] == 0
    assert stats["active_sessions"] == leased
    assert pool._opening == 0
    assert pool._awaiting_reset == 0
    assert not pool._line
    assert pool._slots.value == pool.config.max_connections - leased


def held_for(conn: Any) -> int:
    """Events waiting in ``conn``'s stream (read from its memory channel)."""
    stats: trio.MemoryChannelStatistics = conn._receiver.statistics()
    return stats.current_buffer_used


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def pool_on(url: str, **overrides: Any) -> AsyncIterator[RealtimePool]:
    options: dict[str, Any] = {
        "api_key": KEY,
        "url": url,
        "connect_timeout": 5.0,
        "close_timeout": 2.0,
        "lease_timeout": 10.0,
    }
    options.update(overrides)
    pool = RealtimePool(PoolConfig(**options))
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        yield pool
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def scripted_api(
    script: Callable[[WebSocketConnection], Awaitable[None]],
    *,
    accept_after: float = 0.0,
) -> AsyncIterator[str]:
    """A WebSocket server that accepts anyone (after ``accept_after``
    seconds) and runs ``script`` on each; yields its ``ws://`` URL."""

    async def handler(request: WebSocketRequest) -> None:
        await trio.sleep(accept_after)
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            await script(ws)
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(serve_websocket, handler, "127.0.0.1", 0, None)
        )
        yield f"ws://127.0.0.1:{server.port}/v1/realtime"
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def refusing_api(status: int) -> AsyncIterator[str]:
    """Refuses every handshake with ``status``, each body with its own request
    id (as the API's 500s say); yields its ``ws://`` URL."""
    count = itertools.count()

    async def handler(request: WebSocketRequest) -> None:
        body = {
            "error": {
                "type": "server_error",
                "code": None,
                "message": "The server had an error while processing your "
                f"request. (Please include the request ID req_{next(count):08x})",
            }
        }
        await request.reject(status, body=orjson.dumps(body))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(serve_websocket, handler, "127.0.0.1", 0, None)
        )
        yield f"ws://127.0.0.1:{server.port}/v1/realtime"
        nursery.cancel_scope.cancel()


async def silent_server(
    accepted: trio.Event, *, task_status: trio.TaskStatus[int]
) -> None:
    """Accepts TCP connections and never answers (a frozen API)."""

    async def handler(stream: trio.SocketStream) -> None:
        accepted.set()
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(port)


async def raw_server(answer: bytes, *, task_status: trio.TaskStatus[int]) -> None:
    """Answers any TCP connection with ``answer``, then closes it."""

    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(answer)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(port)


def error_event(message: str, code: str = "bad") -> str:
    return orjson.dumps(
        {
            "type": "error",
            "event_id": "event_1",
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
            },
        }
    ).decode()


# --- exclusivity and order ----------------------------------------------------


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


async def test_a_lease_released_by_another_task_ends_its_holders_wait(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        conn = await pool.acquire()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(release_later, pool, conn)
            with trio.fail_after(5), pytest.raises(ConnectionLost, match="lease ended"):
                await conn.receive()
        async with pool.connection_context() as again:
            assert again.id == conn.id


async def test_a_handle_given_to_another_pool_is_ignored(fake: FakeRealtime) -> None:
    async with running_pool(fake) as first, running_pool(fake) as second:
        conn = await first.acquire()
        second.release(conn)  # the wrong pool: nothing happens
        assert conn.current
        assert second.stats()["idle_connections"] == 0
        assert second._slots.value == second.config.max_connections
        first.release(conn)
        assert not conn.current


async def test_waiters_are_served_in_order_while_connections_are_reset(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(
        fake, max_connections=2, lease_timeout=60.0, max_sessions_per_connection=999
    ) as pool:
        for _ in range(20):  # Trio runs woken tasks in no fixed order
            holders = [await pool.acquire() for _ in range(2)]
            for holder in holders:  # both will need a reset
                await holder.send({"type": "input_audio_buffer.append", "audio": ""})
            served: list[int] = []
            async with trio.open_nursery() as nursery:
                for n in range(6):
                    nursery.start_soon(lease_in_turn, pool, n, served)
                    await eventually(functools.partial(waiting, pool, n + 1))
                for holder in holders:
                    pool.release(holder)
            assert served == sorted(served)


@pytest.mark.parametrize("dirty", [False, True])
async def test_a_caller_cancelled_anywhere_leaves_nothing_behind(
    fake: FakeRealtime, dirty: bool
) -> None:
    async with running_pool(fake, max_connections=2) as pool:
        for steps in range(0, 120, 3):
            holder = await pool.acquire()
            if dirty:
                await holder.send({"type": "input_audio_buffer.append", "audio": ""})
            async with trio.open_nursery() as nursery:
                cancel = trio.CancelScope()

                nursery.start_soon(lease_forever, pool, cancel)
                pool.release(holder)  # a connection to reset, or idle
                for _ in range(steps):
                    await trio.lowlevel.checkpoint()
                cancel.cancel()
            await eventually(lambda: not pool.stats()["resetting_connections"])
            assert_settled(pool)
        # Every slot is still there: two leases at once.
        async with pool.connection_context(), pool.connection_context():
            assert_settled(pool, leased=2)


# --- the reset between leases -------------------------------------------------


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


async def test_every_session_field_a_lease_set_is_put_back(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            await conn.send(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "prompt": {"id": "pmpt_secret_of_the_last_user"},
                        "include": ["item.input_audio_transcription.logprobs"],
                        "audio": {"output": {"voice": "ash"}},
                    },
                }
            )
        async with pool.connection_context() as again:
            assert again.id == conn.id
            served = fake.connections[0].session
            assert served["prompt"] is None
            assert served["include"] is None
            assert served["audio"]["output"]["voice"] == "alloy"


@pytest.mark.parametrize(
    "change", [{"tracing": "auto"}, {"something_new": 1}], ids=["tracing", "unknown"]
)
async def test_a_session_that_cannot_be_put_back_is_closed(
    fake: FakeRealtime, change: dict[str, Any]
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            await conn.send(
                {"type": "session.update", "session": {"type": "realtime", **change}}
            )
        async with pool.connection_context() as again:
            assert again.id != conn.id
        assert len(fake.connections) == 2


async def test_what_a_lease_does_to_its_copy_of_the_session_stays_its_own(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            with contextlib.suppress(TypeError):  # read-only, or a copy
                conn.session["instructions"] = "be a pirate"  # type: ignore[index]
            await conn.send({"type": "session.update", "session": {"type": "realtime"}})
        async with pool.connection_context() as again:
            assert again.id == conn.id
            assert fake.connections[0].session["instructions"] == ""
            assert again.session["instructions"] == ""


async def test_a_lease_cannot_hide_what_the_reset_must_undo(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            await conn.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "mine"}],
                    },
                }
            )
            while not conn.items:
                await conn.receive()
            with contextlib.suppress(AttributeError, TypeError):
                conn.items.clear()  # type: ignore[attr-defined]
        async with pool.connection_context():
            assert fake.connections[0].items == {}


async def test_what_the_api_adds_to_an_idle_connection_is_undone_before_a_lease(
    fake: FakeRealtime,
) -> None:
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            pass
        served = fake.connections[0]
        served.add_item(
            {
                "id": "item_from_nowhere",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "psst"}],
            }
        )
        await served.wait_sent("conversation.item.added")
        await eventually(lambda: "item_from_nowhere" in conn.items)
        async with pool.connection_context() as again:
            assert again.id == conn.id
            assert served.items == {}


async def test_a_send_cancelled_midway_does_not_corrupt_the_next_lease(
    fake: FakeRealtime,
) -> None:
    # Real time: megabytes on loopback, which autojump would skip over.
    huge = {"type": "conversation.item.retrieve", "item_id": "A" * (15 << 20)}
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            served = fake.connections[0]
            served.freeze()  # the API stops reading: the send blocks midway
            with trio.move_on_after(0.5) as scope:
                await conn.send(huge)
            assert scope.cancelled_caught
        served.thaw()
        async with pool.connection_context() as conn:
            await conn.send(retrieve("after"))
            with trio.fail_after(5):
                event = await conn.receive()
            assert event["type"] == "error"
            assert event["error"]["event_id"] == "after"


# --- handshakes and shutdown --------------------------------------------------


async def test_connect_timeout_bounds_the_whole_handshake(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def slow(ws: WebSocketConnection) -> None:
        await trio.sleep(3)
        await ws.send_message(
            orjson.dumps({"type": "session.created", "session": {}}).decode()
        )

    async with scripted_api(slow, accept_after=3) as url, pool_on(url) as pool:
        start = trio.current_time()
        with pytest.raises(RealtimeUnavailable, match="within 5 s"):
            await pool.acquire()
        assert trio.current_time() - start == pytest.approx(5, abs=0.1)


async def test_an_error_instead_of_session_created_fails_the_handshake_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def refuse(ws: WebSocketConnection) -> None:
        await ws.send_message(error_event("Model not found", "model_not_found"))

    async with scripted_api(refuse) as url, pool_on(url) as pool:
        start = trio.current_time()
        with pytest.raises(RealtimeUnavailable, match="model_not_found: Model not"):
            await pool.acquire()
        assert trio.current_time() - start < 1
        assert "model_not_found" in pool.health()["problem"]


async def test_garbage_before_session_created_is_tolerated(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def garbage(ws: WebSocketConnection) -> None:
        await ws.send_message("not json")
        await ws.send_message(b"\x00binary")
        await ws.send_message("[1, 2]")
        await ws.send_message('{"type": 3}')
        await ws.send_message(
            orjson.dumps(
                {"type": "session.created", "session": {"type": "realtime"}}
            ).decode()
        )

    async with scripted_api(garbage) as url, pool_on(url) as pool:
        async with pool.connection_context() as conn:
            assert conn.session == {"type": "realtime"}
        assert pool.stats()["malformed_events"] == 4


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"", "closed the connection during the handshake"),
        (b"\x00garbage\r\n\r\n", "handshake"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HTTP 200: hello"),
    ],
    ids=["closed", "garbage", "plain-http"],
)
async def test_a_handshake_the_server_ends_fails_at_once(
    autojump_clock: trio.abc.Clock, answer: bytes, reason: str
) -> None:
    async with trio.open_nursery() as server:
        port = await server.start(raw_server, answer)
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        async with pool_on(url, connect_timeout=100.0, lease_timeout=200.0) as pool:
            start = trio.current_time()
            with pytest.raises(RealtimeUnavailable) as caught:
                await pool.acquire()
            assert trio.current_time() - start < 1
            assert reason in str(caught.value)
        server.cancel_scope.cancel()


async def test_a_tls_failure_says_so(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as server:
        port = await server.start(raw_server, b"HTTP/1.1 400 Not TLS\r\n\r\n")
        url = f"wss://127.0.0.1:{port}/v1/realtime"
        async with pool_on(url, connect_timeout=100.0, lease_timeout=200.0) as pool:
            start = trio.current_time()
            with pytest.raises(RealtimeUnavailable, match="SSL") as caught:
                await pool.acquire()
            assert trio.current_time() - start < 1
            assert "handshake" in str(caught.value)
        server.cancel_scope.cancel()


async def test_garbage_from_the_api_never_stops_the_pool(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as server:
        port = await server.start(raw_server, b"\x00garbage\r\n\r\n")
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        async with pool_on(url) as pool:
            for _ in range(3):  # the monitor probes in between, on its own
                with pytest.raises(RealtimeUnavailable):
                    await pool.acquire()
                await trio.sleep(100)
            assert pool.stats()["connect_failures"] >= 4
        server.cancel_scope.cancel()


async def test_a_lease_timeout_during_a_handshake_does_not_blame_the_leases(
    autojump_clock: trio.abc.Clock,
) -> None:
    accepted = trio.Event()
    async with trio.open_nursery() as server:
        port = await server.start(silent_server, accepted)
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        async with pool_on(url, connect_timeout=100.0, lease_timeout=3.0) as pool:
            with pytest.raises(LeaseTimeout) as caught:
                await pool.acquire()
            assert "stayed leased" not in str(caught.value)
            assert "3 s" in str(caught.value)
        server.cancel_scope.cancel()


async def test_shutdown_is_bounded_with_a_connection_mid_handshake(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    accepted = trio.Event()
    failures: list[BaseException] = []
    async with trio.open_nursery() as server:
        port = await server.start(silent_server, accepted)
        pool = RealtimePool(
            PoolConfig(
                api_key="sk-x",
                url=f"ws://127.0.0.1:{port}/v1/realtime",
                connect_timeout=100.0,
                lease_timeout=100.0,
                close_timeout=2.0,
            )
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            # A caller outside the pool's nursery, not cancelled with it.
            server.start_soon(acquire_or_fail, pool, failures)
            await accepted.wait()
            start = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - start <= 2.5
        await trio.sleep(1)
        assert [type(exc) for exc in failures] == [RealtimeUnavailable]
        assert "closing" in str(failures[0])
        assert pool.problem is None  # not a failure of the API
        server.cancel_scope.cancel()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_waiters_fail_at_once_when_the_pool_stops(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    failures: list[BaseException] = []
    async with trio.open_nursery() as callers:
        async with running_pool(fake, max_connections=1, lease_timeout=100.0) as pool:
            holder = await pool.acquire()  # kept: its user is busy elsewhere
            callers.start_soon(acquire_or_fail, pool, failures)
            await eventually(lambda: pool.waiting == 1)
            start = trio.current_time()
        await eventually(lambda: bool(failures), within=200)
        assert trio.current_time() - start < 5
        assert "closing" in str(failures[0])
        pool.release(holder)


async def test_the_pool_runs_again_after_it_stopped(fake: FakeRealtime) -> None:
    pool = RealtimePool(pool_config(fake))
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            async with pool.connection_context() as conn:
                await conn.send(retrieve("x"))
                assert (await conn.receive())["type"] == "error"
            nursery.cancel_scope.cancel()
        assert pool.stats()["total_connections"] == 0
    assert pool.stats()["total_sessions_handled"] == 2


# --- health, backoff, logs and the key ----------------------------------------


@pytest.mark.parametrize("status", [403, 429, 500, 503])
async def test_refusals_back_off_quietly(
    fake: FakeRealtime,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG, "neuro_api.realtime")
    fake.reject_status = status
    async with running_pool(fake, backoff_max=60.0) as pool:
        for _ in range(300):  # a caller every second for five minutes
            with pytest.raises(RealtimeUnavailable, match=f"HTTP {status}"):
                await pool.acquire()
            await trio.sleep(1)
        assert pool.health()["status"] == "degraded"
        # 1, 2, 4 ... 60 s: about a dozen attempts, callers included.
        assert fake.handshakes <= 14
        fake.reject_status = None
        await trio.sleep(61)
        assert pool.health()["status"] == "healthy"
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) <= 3, [r.getMessage() for r in lines]
    assert len(caplog.records) <= 40


async def test_a_refused_tcp_connection_backs_off_quietly(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "neuro_api.realtime")
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with pool_on(f"ws://127.0.0.1:{port}/v1/realtime") as pool:
        for _ in range(300):
            with pytest.raises(RealtimeUnavailable, match="cannot reach"):
                await pool.acquire()
            await trio.sleep(1)
        assert pool.stats()["connect_failures"] <= 14
    assert len(caplog.records) <= 2


async def test_refusals_that_differ_only_in_detail_are_logged_once(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "neuro_api.realtime")
    async with refusing_api(500) as url, pool_on(url, backoff_max=10.0) as pool:
        for _ in range(600):
            with pytest.raises(RealtimeUnavailable, match="HTTP 500"):
                await pool.acquire()
            await trio.sleep(1)
        assert pool.stats()["connect_failures"] >= 50
        assert "req_" in pool.health()["problem"]  # the latest detail is shown
    assert len(caplog.records) <= 2, [r.getMessage() for r in caplog.records]


async def test_health_recovers_after_one_refusal_while_a_connection_works(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_connections=2, max_idle_time=3000.0) as pool:
        async with pool.connection_context():
            fake.reject_status = 500  # a passing hiccup, for a second connection
            with pytest.raises(RealtimeUnavailable, match="HTTP 500"):
                async with pool.connection_context():
                    pass
            fake.reject_status = None
        assert pool.health()["status"] == "degraded"
        await trio.sleep(300)  # no traffic: the first connection waits, idle
        assert pool.health()["status"] == "healthy"


@pytest.mark.parametrize("ending", ["close", "drop", "freeze"])
async def test_an_idle_connection_that_ends_leaves_the_pool_at_once(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock, ending: str
) -> None:
    async with running_pool(
        fake, ping_interval=1.0, ping_timeout=2.0, health_check_interval=1000.0
    ) as pool:
        async with pool.connection_context() as first:
            pass
        served = fake.connections[0]
        if ending == "close":
            await served.close(1000)
        elif ending == "drop":
            await served.drop()
        else:
            served.freeze()
        await trio.sleep(5)  # no health check meanwhile: the ending is seen
        assert pool.stats()["total_connections"] == 0
        served.thaw()
        async with pool.connection_context() as second:
            assert second.id != first.id
            await second.send(retrieve("x"))
            assert (await second.receive())["type"] == "error"


async def test_a_lessee_that_stops_reading_is_told_so(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with (
        running_pool(fake, event_queue=4, ping_interval=1.0, ping_timeout=2.0) as pool,
        pool.connection_context() as conn,
    ):
        served = fake.connections[0]
        for n in range(50):
            await served.send_event({"type": "response.output_text.delta", "n": n})
        await trio.sleep(10)  # the lessee is busy: its events pile up
        with pytest.raises(ConnectionLost, match="did not read"):
            await read_until_lost(conn)


async def test_the_key_is_not_shown_when_the_api_echoes_it(
    fake: FakeRealtime,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "neuro_api.realtime")
    async with running_pool(fake) as pool, pool.connection_context() as conn:
        served = fake.connections[0]
        await served.send_event(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "echo",
                    "message": f"your key {KEY} is wrong",
                    "param": KEY,
                },
            }
        )
        event = await conn.receive()
        assert KEY not in str(RealtimeAPIError(event["error"]))
        await served.close(4000, f"bye {KEY}")
        with pytest.raises(ConnectionLost) as lost:
            await conn.receive()
        assert KEY not in str(lost.value)
        shown = orjson.dumps([pool.stats(), pool.connections(), pool.health()])
        assert KEY.encode() not in shown
    assert KEY not in caplog.text
    assert "[redacted]" in caplog.text or "***" in caplog.text


async def test_the_key_is_not_shown_when_a_refusal_quotes_it(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "neuro_api.realtime")

    async def quote(ws: WebSocketConnection) -> None:
        await ws.send_message(error_event(f"key {KEY} is revoked", KEY))

    async with scripted_api(quote) as url, pool_on(url) as pool:
        with pytest.raises(RealtimeUnavailable, match="revoked") as caught:
            await pool.acquire()
        assert KEY not in str(caught.value)
        assert KEY.encode() not in orjson.dumps([pool.health(), pool.stats()])
    async with open_fake_realtime(key="other") as fake:
        fake.reject_status = 401
        fake.reject_body = orjson.dumps(
            {"error": {"code": "invalid_api_key", "message": f"bad key {KEY}"}}
        )
        async with running_pool(fake, api_key=KEY) as pool:
            with pytest.raises(RealtimeUnavailable, match="bad key") as caught:
                await pool.acquire()
            assert KEY not in str(caught.value)
            assert KEY.encode() not in orjson.dumps([pool.health(), pool.stats()])
    assert KEY not in caplog.text


# --- resources ----------------------------------------------------------------


async def test_a_slow_lessee_holds_a_bounded_number_of_bytes(
    fake: FakeRealtime,
) -> None:
    big = 100_000
    async with (
        running_pool(fake, max_message_size=1 << 20, event_buffer=1 << 20) as pool,
        pool.connection_context() as conn,
    ):
        served = fake.connections[0]
        for n in range(100):
            await served.send_event(
                {"type": "response.output_audio.delta", "n": n, "delta": "A" * big}
            )
        # Until the fake wrote them all, or stopped (it would wait for us).
        with trio.move_on_after(2):
            await served.wait_sent("response.output_audio.delta", 100)
        await trio.sleep(0.2)
        assert held_for(conn) * big <= (1 << 20) + big
        # Nothing was lost: the reader waited.
        for n in range(100):
            event = await conn.receive()
            assert event["n"] == n


async def test_a_flood_of_responses_is_not_tracked_without_bound(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, max_tracked_items=100) as pool:
        async with pool.connection_context() as conn:
            served = fake.connections[0]
            for n in range(1000):
                await served.send_event(
                    {"type": "response.created", "response": {"id": f"resp_{n}"}}
                )
            for _ in range(1000):
                await conn.receive()
            assert len(conn.open_responses) <= 100
        # Too much to undo: closed, not reset with a thousand cancels.
        await served.wait_closed()
        assert served.events("response.cancel") == []
        assert pool.stats()["resets"] == 0


async def test_huge_rate_limits_make_small_stats(fake: FakeRealtime) -> None:
    # Real time: a 10 MB message takes real time, which autojump would skip.
    async with running_pool(fake) as pool:
        async with pool.connection_context() as conn:
            await fake.connections[0].send_event(
                {
                    "type": "rate_limits.updated",
                    "rate_limits": [{"name": "x" * 100_000, "limit": 1, "remaining": 0}]
                    * 100,
                }
            )
            await conn.receive()
        assert len(orjson.dumps(pool.stats())) < 4096


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_no_descriptor_is_left_after_any_ending(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with running_pool(fake, ping_interval=1.0, ping_timeout=1.0) as pool:
        async with pool.connection_context():
            pass  # warm: the fake's listener and the first connection exist
        before = open_fds()
        for ending in ("drop", "close", "freeze", "refuse", "retire"):
            if ending == "refuse":
                fake.reject_status = 403
                with pytest.raises(RealtimeUnavailable):
                    async with pool.connection_context():
                        pass
                fake.reject_status = None
                await trio.sleep(120)  # the backoff passes
                continue
            async with pool.connection_context() as conn:
                served = fake.connections[-1]
                if ending == "drop":
                    await served.drop()
                elif ending == "close":
                    await served.close(1011, "bye")
                elif ending == "freeze":
                    served.freeze()
                else:
                    conn.lost("done with it")
                with pytest.raises(ConnectionLost):
                    await read_until_lost(conn)
            await trio.sleep(10)
            served.thaw()
        async with pool.connection_context():
            pass
        await trio.sleep(10)
        assert open_fds() <= before
