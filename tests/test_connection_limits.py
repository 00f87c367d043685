"""Connections are bounded, and dead ones cost nothing (issue 10, item 4).

Before: a socket closing before its WebSocket handshake was held for the
whole handshake timeout (10 s), and every connection was accepted while
descriptors lasted; at ``ulimit -n 1024`` 5,000 connects and closes in
0.6 s took games and ``/health`` down for about 40 s.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from server_helpers import PASS, RecordingServer, connect, handshake, start_server
from trio_websocket import WebSocketRequest, open_websocket_url

from neuro_api import _fds
from neuro_api._wsserve import ConnectionLimit, Listening, serve_websocket
from neuro_api.server import ServerConfig

WAIT = 5.0


async def echo(request: WebSocketRequest) -> None:
    websocket = await request.accept()
    while True:
        await websocket.send_message(await websocket.get_message())


async def until(check: object, within: float = WAIT) -> None:
    with trio.fail_after(within):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110
            await trio.sleep(0.01)


def raw_connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


async def test_a_socket_closed_before_the_handshake_is_released_at_once(
    nursery: trio.Nursery,
) -> None:
    limit = ConnectionLimit(None)
    listening: Listening = await nursery.start(
        functools.partial(
            serve_websocket, echo, "127.0.0.1", 0, None, limit=limit, connect_timeout=60
        )
    )
    sockets = [raw_connect(listening.port) for _ in range(20)]
    await until(lambda: limit.open == 20)
    for sock in sockets:
        sock.close()
    # Not after the 60 s handshake timeout: now.
    await until(lambda: limit.open == 0)
    # A reset counts as gone too.
    reset = raw_connect(listening.port)
    await until(lambda: limit.open == 1)
    reset.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    reset.close()
    await until(lambda: limit.open == 0)


async def test_a_silent_socket_is_closed_at_the_handshake_timeout(
    nursery: trio.Nursery,
) -> None:
    limit = ConnectionLimit(None)
    listening: Listening = await nursery.start(
        functools.partial(
            serve_websocket,
            echo,
            "127.0.0.1",
            0,
            None,
            limit=limit,
            connect_timeout=0.2,
        )
    )
    sock = raw_connect(listening.port)
    await until(lambda: limit.open == 1)
    await until(lambda: limit.open == 0)
    sock.settimeout(WAIT)
    assert sock.recv(1) == b""  # the server closed it
    sock.close()


async def test_over_the_cap_a_connection_gets_a_503(nursery: trio.Nursery) -> None:
    refused: list[int] = []
    limit = ConnectionLimit(3)
    listening: Listening = await nursery.start(
        functools.partial(
            serve_websocket,
            echo,
            "127.0.0.1",
            0,
            None,
            limit=limit,
            on_refused=lambda: refused.append(1),
        )
    )
    url = f"ws://127.0.0.1:{listening.port}"
    held = [raw_connect(listening.port) for _ in range(3)]
    await until(lambda: limit.open == 3)
    answer = await handshake(listening.port)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert answer.endswith(b"too many connections (limit 3); try again later")
    assert len(refused) == limit.refused == 1
    held.pop().close()
    await until(lambda: limit.open == 2)
    async with open_websocket_url(url, connect_timeout=WAIT) as websocket:
        await websocket.send_message("still served")
        assert await websocket.get_message() == "still served"
    for sock in held:
        sock.close()


async def test_a_flood_over_the_cap_costs_no_descriptors(nursery: trio.Nursery) -> None:
    limit = ConnectionLimit(5)
    listening: Listening = await nursery.start(
        functools.partial(serve_websocket, echo, "127.0.0.1", 0, None, limit=limit)
    )
    held = [raw_connect(listening.port) for _ in range(5)]
    await until(lambda: limit.open == 5)
    flood = [raw_connect(listening.port) for _ in range(100)]
    await until(lambda: limit.refused == 100)
    # The refused ones are closed by the server (a 503 for the first few).
    assert limit.open == 5
    await until(lambda: limit.refusing == 0, within=WAIT * 2)
    for sock in [*held, *flood]:
        sock.close()
    await until(lambda: limit.open == 0)


async def test_the_server_caps_games_and_shows_refusals(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="neuro_api.server")
    server = RecordingServer(ServerConfig(max_connections=2))
    info = await start_server(nursery, server)
    async with connect(info.url, "One") as one, connect(info.url, "Two"):
        assert (await handshake(info.port)).startswith(b"HTTP/1.1 503 ")
        await one.startup()
        await one.register(PASS)
        await one.force("pass")
        action = await one.expect_action()
        await one.result(action.id, True, "still served")
    assert "a game connection was refused: 2 are open (max_connections)" in (
        caplog.messages
    )


def test_the_cap_stays_below_the_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
        assert _fds.connection_budget() == 200 - _fds.RESERVED
        options = RecordingServer(ServerConfig(max_connections=5000)).serve_options()
        assert options["max_connections"] == 200 - _fds.RESERVED
        assert (
            RecordingServer(ServerConfig(max_connections=7)).serve_options()[
                "max_connections"
            ]
            == 7
        )
        if hard != resource.RLIM_INFINITY:
            assert _fds.raise_open_file_limit() == hard
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- the whole server, at a low ulimit --------------------------------------------


def _low_ulimit() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@asynccontextmanager
async def server_at_low_ulimit() -> AsyncIterator[tuple[str, str]]:
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "neuro_api.server",
            "--engine",
            "random",
            "--port",
            "0",
            "--http-port",
            "0",
            "--log-level",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=_low_ulimit,
        env={k: v for k, v in os.environ.items() if not k.startswith("NEURO_API_")},
    )
    try:
        assert process.stdout is not None
        text = ""
        with trio.fail_after(30):
            while "control plane on" not in text or not text.endswith("\n"):
                text += (await process.stdout.receive_some()).decode()
        lines = {
            line.split(" on ")[0]: line.split(" on ")[1]
            for line in text.splitlines()
            if " on " in line
        }
        games = lines["neuro_api server listening"]
        control = lines["neuro_api control plane"]
        yield games, control
    finally:
        process.terminate()
        with trio.move_on_after(WAIT, shield=True):
            await process.wait()
        if process.returncode is None:  # pragma: no cover
            process.kill()


@pytest.mark.slow
async def test_a_connection_flood_leaves_health_and_games_working() -> None:
    async with server_at_low_ulimit() as (games, control):
        port = int(games.rsplit(":", 1)[1])
        async with (
            connect(games, "Steady") as steady,
            httpx.AsyncClient(base_url=control, timeout=WAIT) as http,
        ):
            await steady.startup()
            await steady.register(PASS)

            async def flood() -> None:
                # Far more than the 256 descriptors the server has.
                for _ in range(2000):
                    try:
                        raw_connect(port).close()
                    except OSError:
                        await trio.sleep(0.001)
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                for _ in range(5):
                    with trio.fail_after(1):
                        health = await http.get("/health")
                    assert health.status_code == 200
                    with trio.fail_after(1):
                        await steady.force("pass")
                        action = await steady.expect_action()
                        await steady.result(action.id, True, "ok")
                    await trio.sleep(0.05)
            # Afterwards, new games are served again.
            async with connect(games, "Late") as late:
                await late.startup()
            assert (await http.get("/health")).json()["status"] == "healthy"


async def test_a_served_connection_reads_its_socket_directly() -> None:
    # The watch for a peer leaving mid-handshake ends with the handshake;
    # afterwards no frame pays for a wrapper call.
    from neuro_api._wsserve import _WatchedStream  # noqa: PLC0415 (private)

    left, right = trio.testing.memory_stream_pair()
    gone: list[bool] = []
    watched = _WatchedStream(left)
    watched.on_gone = lambda: gone.append(True)
    watched.stop_watching()
    watched._gone()  # what a reset would call: nothing is watching now
    assert watched.receive_some == left.receive_some
    assert watched.send_all == left.send_all
    await watched.send_all(b"hi")
    assert await right.receive_some() == b"hi"
    await right.aclose()
    assert await watched.receive_some() == b""
    assert gone == []  # no longer watched
