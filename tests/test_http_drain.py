"""Draining a Quart-Trio app under Hypercorn: idle keep-alive connections.

Real Hypercorn through ServerManager on 127.0.0.1 port 0, clients through
httpx and raw loopback sockets. ``GRACE`` is long enough that a stop which
waits for it is plainly told from one which does not.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from neuro_api.manager import ServerManager

pytestmark = pytest.mark.timeout(30)

GRACE = 5.0
"""graceful_timeout of every server here."""

FAST = 1.5
"""A stop that did not wait for ``GRACE`` ends well within this."""


@asynccontextmanager
async def running(manager: ServerManager) -> AsyncIterator[ServerManager]:
    """Run ``manager`` for the duration of the block, then cancel it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        yield manager
        nursery.cancel_scope.cancel()


class Probe:
    """What the app saw: lifespan steps and the slow routes' progress."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.slow_started = trio.Event()
        self.hang_started = trio.Event()
        self.hang_cancelled = trio.Event()


def drain_app(probe: Probe, slow_seconds: float = 0.5) -> QuartTrio:
    app = QuartTrio("test_http_drain")

    @app.before_serving
    async def startup() -> None:
        probe.events.append("before_serving")

    @app.after_serving
    async def shutdown() -> None:
        probe.events.append("after_serving")

    @app.get("/ping")
    async def ping() -> dict[str, Any]:
        return {"pong": True}

    @app.get("/slow")
    async def slow() -> dict[str, Any]:
        probe.slow_started.set()
        await trio.sleep(slow_seconds)
        return {"slow": True}

    @app.get("/hang")
    async def hang() -> dict[str, Any]:
        probe.hang_started.set()
        try:
            await trio.sleep_forever()
        finally:
            probe.hang_cancelled.set()

    return app


async def open_raw(url: str) -> trio.SocketStream:
    parts = urlsplit(url)
    return await trio.open_tcp_stream(parts.hostname or "", parts.port or 0)


async def keep_alive_get(stream: trio.SocketStream, path: str) -> bytes:
    """Send one keep-alive GET on ``stream`` and read its whole response."""
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    received = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in received:
            received += await stream.receive_some()
        head, _, body = received.partition(b"\r\n\r\n")
        match = re.search(rb"content-length: *(\d+)", head.lower())
        assert match is not None
        length = int(match[1])
        while len(body) < length:
            chunk = await stream.receive_some()
            assert chunk, "the server closed a keep-alive connection"
            body += chunk
    assert b"connection: close" not in head.lower()
    return head


async def test_stop_closes_an_idle_keep_alive_connection_at_once() -> None:
    probe = Probe()
    async with running(ServerManager()) as manager:
        info = await manager.start_http(
            "control", drain_app(probe), graceful_timeout=GRACE
        )
        async with httpx.AsyncClient(base_url=info.local_url, timeout=5) as http:
            response = await http.get("/ping")
            assert response.json() == {"pong": True}
            assert "close" not in response.headers.get("connection", "")
            raw = await open_raw(info.local_url)
            async with raw:
                assert b" 200 " in await keep_alive_get(raw, "/ping")

                started = trio.current_time()
                await manager.stop("control")
                elapsed = trio.current_time() - started

                # The server closed the idle connection (end of stream).
                with trio.fail_after(1):
                    assert await raw.receive_some() == b""

    assert elapsed < FAST
    assert probe.events == ["before_serving", "after_serving"]


async def test_an_in_flight_request_still_finishes_during_the_drain() -> None:
    probe = Probe()
    responses: list[httpx.Response] = []
    async with running(ServerManager()) as manager:
        info = await manager.start_http(
            "control", drain_app(probe, slow_seconds=0.5), graceful_timeout=GRACE
        )
        async with (
            httpx.AsyncClient(base_url=info.local_url, timeout=5) as idle,
            httpx.AsyncClient(base_url=info.local_url, timeout=5) as busy,
            trio.open_nursery() as nursery,
        ):
            assert (await idle.get("/ping")).status_code == 200  # stays open

            async def request() -> None:
                responses.append(await busy.get("/slow"))

            nursery.start_soon(request)
            await probe.slow_started.wait()
            started = trio.current_time()
            await manager.stop("control")
            elapsed = trio.current_time() - started

    assert [(r.status_code, r.json()) for r in responses] == [(200, {"slow": True})]
    assert 0.3 < elapsed < FAST
    assert probe.events == ["before_serving", "after_serving"]


async def test_a_client_leaving_mid_request_still_cancels_the_handler() -> None:
    # The disconnect that is held back at the end of a response must not be
    # held while the response has not been written yet.
    probe = Probe()
    async with running(ServerManager()) as manager:
        info = await manager.start_http(
            "control", drain_app(probe), graceful_timeout=GRACE
        )
        raw = await open_raw(info.local_url)
        async with raw:
            await raw.send_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                await probe.hang_started.wait()
        with trio.fail_after(2):
            await probe.hang_cancelled.wait()
        await manager.stop("control")
