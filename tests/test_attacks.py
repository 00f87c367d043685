"""Every attack of issue 10 at once, against the real command line.

A game asking for ten megabytes of data, nearly a megabyte of schema to check, a
catastrophic regular expression, a flood of bad frames and a flood of
connections, all while a steady game plays and ``/health`` is asked: both
must keep answering within a second, the log must stay small, and SIGTERM
must still drain.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from server_helpers import PASS, connect

from neuro_api.command import Action

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SECOND = 1.0
"""What "responsive" means here: an answer within this many seconds."""


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


HUGE = Action("huge", "Ten megabytes", obj(a={"type": "string", "minLength": 10**7}))
REDOS = Action(
    "redos",
    "Two patterns",
    obj(a={"type": "string", "allOf": [{"pattern": "^(a+)+$"}, {"pattern": "!"}]}),
)
WIDE = Action(
    "wide",
    "Nearly a megabyte of schema",
    {
        "type": "object",
        "properties": {
            f"p{i}": {"type": "integer", "minimum": 0} for i in range(22_000)
        },
    },
)


@asynccontextmanager
async def server() -> AsyncIterator[tuple[trio.Process, str, str, bytearray]]:
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
            "--max-connections",
            "64",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("NEURO_API_")},
    )
    log = bytearray()

    async def collect(stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some():
            log.extend(chunk)

    try:
        assert process.stdout is not None
        assert process.stderr is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, process.stderr)
            text = ""
            with trio.fail_after(30):
                while "control plane on" not in text or not text.endswith("\n"):
                    text += (await process.stdout.receive_some()).decode()
            lines = dict(
                line.split(" on ", 1) for line in text.splitlines() if " on " in line
            )
            yield (
                process,
                lines["neuro_api server listening"],
                lines["neuro_api control plane"],
                log,
            )
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(5, shield=True):
            await process.wait()


async def attack_with(url: str, title: str, action: Action, forces: int) -> None:
    async with connect(url, title) as game:
        await game.startup()
        await game.register(action)
        for _ in range(forces):
            await game.force(action.name)
            try:
                answer = await game.expect_action(within=15)
            except trio.TooSlowError:  # a force may be dropped: fine
                continue
            await game.result(answer.id, False, "no")


async def flood_frames(url: str) -> None:
    # The server reads the close only after the 3,000 frames before it, while
    # it also serves every other attack: give the closing handshake time.
    async with connect(url, "Flood", disconnect_timeout=60) as game:
        await game.startup()
        for _ in range(3000):
            await game.send("{not json")


async def flood_connections(port: int) -> None:
    for _ in range(1500):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
        except OSError:
            await trio.sleep(0.001)
        await trio.lowlevel.checkpoint()


async def test_every_attack_at_once_leaves_the_server_responsive() -> None:
    async with server() as (process, games, control, log):
        port = int(games.rsplit(":", 1)[1])
        async with (
            connect(games, "Steady") as steady,
            httpx.AsyncClient(base_url=control, timeout=5) as http,
        ):
            await steady.startup()
            await steady.register(PASS)
            slowest = 0.0
            async with trio.open_nursery() as attacks:
                attacks.start_soon(attack_with, games, "Greedy", HUGE, 3)
                attacks.start_soon(attack_with, games, "Regex", REDOS, 3)
                attacks.start_soon(attack_with, games, "Wide", WIDE, 1)
                attacks.start_soon(flood_frames, games)
                attacks.start_soon(flood_connections, port)
                for _ in range(15):
                    start = trio.current_time()
                    with trio.fail_after(SECOND):
                        assert (await http.get("/health")).status_code == 200
                    with trio.fail_after(SECOND):
                        await steady.force("pass")
                        action = await steady.expect_action()
                        await steady.result(action.id, True, "ok")
                    slowest = max(slowest, trio.current_time() - start)
                    await trio.sleep(0.1)
            games_now = (await http.get("/games")).json()["games"]
            assert "Steady" in [g["game"] for g in games_now]
        # SIGTERM drains: exit 0, in time.
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
    lines = bytes(log).decode(errors="replace").splitlines()
    # 3,000 bad frames and 1,500 connections: a few lines each, and summaries.
    assert len(lines) < 300, "\n".join(lines[-20:])
    assert any("more protocol.invalid-json from Flood" in line for line in lines)
    assert any("action.schema-unanswerable" in line for line in lines)
    assert slowest < 2 * SECOND
