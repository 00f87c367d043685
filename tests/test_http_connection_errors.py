"""One connection that trips Hypercorn's protocol code ends alone.

Real Hypercorn through ServerManager on 127.0.0.1 port 0; the requests that
tripped it (Hypercorn issue #225) are sent on raw loopback sockets, while a
WebSocket client stays connected: it must not be cut off, and the server
must go on answering.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from quart import websocket
from quart_trio import QuartTrio
from trio_websocket import open_websocket_url

from neuro_api.manager import ServerManager

pytestmark = pytest.mark.timeout(30)
UPGRADE: Final = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bKdPyn3u98cTfZJSh4TNeQ==\r\n"
)
TRIPS: Final = {
    # A byte of data after the upgrade request, before the handshake.
    "trailing data": UPGRADE + b"\r\nx",
    # A request sent on after an upgrade the app refuses (403).
    "a request after a refused upgrade": UPGRADE.replace(b"/ws", b"/refuse")
    + b"\r\n"
    + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
}


def app() -> QuartTrio:
    made = QuartTrio("test_http_connection_errors")

    @made.get("/ping")
    async def ping() -> dict[str, Any]:
        return {"pong": True}

    @made.websocket("/ws")
    async def echo() -> None:
        while True:
            await websocket.send(f"echo {await websocket.receive()!s}")

    @made.websocket("/refuse")
    async def refuse() -> Any:
        return "no", 403

    return made


@asynccontextmanager
async def serving() -> AsyncIterator[str]:
    manager = ServerManager()
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        info = await manager.start_http("tripped", app(), graceful_timeout=1)
        yield info.local_url
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("trip", TRIPS)
async def test_a_connection_that_trips_hypercorn_ends_alone(
    trip: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving() as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with open_websocket_url(ws_url) as live:
            await live.send_message("before")
            assert await live.get_message() == "echo before"
            parts = urlsplit(url)
            raw = await trio.open_tcp_stream(parts.hostname or "", parts.port or 0)
            async with raw:
                await raw.send_all(TRIPS[trip])
                with trio.fail_after(5):
                    while await raw.receive_some():  # until the server closes it
                        pass
            # The live connection and the server are still there.
            await live.send_message("after")
            assert await live.get_message() == "echo after"
            async with httpx.AsyncClient(base_url=url, timeout=5) as http:
                assert (await http.get("/ping")).json() == {"pong": True}
    messages = [record.getMessage() for record in caplog.records]
    assert any("a connection failed in Hypercorn" in m for m in messages), messages
