"""``python -m neuro_api.server`` as a whole process: services, signals, tunnels.

Real subprocesses on 127.0.0.1 with every port 0; the tunnel test launches
the fake ngrok of ``tests/fake_ngrok`` (never the real one).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from fake_ngrok import FakeNgrok
from test_ngrok_path import pyngrok_script
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from neuro_api import command

WAIT = 20.0
BASE = [sys.executable, "-m", "neuro_api.server", "--engine", "random"]
PORTS = ["--port", "0", "--http-port", "0"]


class Process:
    """A running server process and what it printed."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out = ""
        self.lines: dict[str, str] = {}

    async def read_until(self, prefix: str) -> str:
        """Read stdout until a line starting with ``prefix``; return that line."""
        assert self.process.stdout is not None
        with trio.fail_after(WAIT):
            while True:
                for line in self.out.splitlines(keepends=True):
                    if line.startswith(prefix) and line.endswith("\n"):
                        return line.rstrip("\n")
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"stdout ended before {prefix!r}: {self.out}")
                self.out += chunk.decode()

    async def url(self, prefix: str) -> str:
        return (await self.read_until(prefix)).rsplit(" ", 1)[1]


@contextlib.asynccontextmanager
async def server(
    *flags: str, env: dict[str, str] | None = None, stderr: Path | None = None
) -> AsyncIterator[Process]:
    """Run the command; its stderr goes to the file ``stderr`` if given."""
    err = open(stderr, "wb") if stderr else None  # noqa: SIM115, ASYNC230
    process = await trio.lowlevel.open_process(
        [*BASE, *PORTS, *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err or subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    try:
        yield Process(process)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(WAIT, shield=True):
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
        if err is not None:
            err.close()


@contextlib.asynccontextmanager
async def game(url: str) -> AsyncIterator[WebSocketConnection]:
    """A game connection whose socket is always closed (trio-websocket 0.12's
    client leaks it when the server closes first)."""
    host, port = re.match(r"ws://([^:]+):(\d+)", url).groups()  # type: ignore[union-attr]
    stream = await trio.open_tcp_stream(host, int(port))
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(nursery, stream, host, "/")
            yield ws
            await ws.aclose()
    finally:
        await stream.aclose()


async def test_health_and_games_over_http() -> None:
    async with server() as proc:
        games_url = await proc.url("neuro_api server listening on")
        control = await proc.url("neuro_api control plane on")
        async with game(games_url) as ws, httpx.AsyncClient(base_url=control) as http:
            await ws.send_message(command.startup_command("Proc Game").decode())
            await ws.get_message()
            health = (await http.get("/health")).json()
            assert health["status"] == "healthy"
            states = {s["name"]: s["state"] for s in health["services"]}
            assert states == {
                "server-manager": "running",
                "control-plane": "running",
                "games": "running",
                "engine": "running",
                "status": "running",
                "calls-registry": "running",
                "calls-sync": "running",
                "calls": "running",
            }
            games = {s["name"]: s for s in health["services"]}["games"]
            assert games["info"]["local_url"] == games_url
            listed = (await http.get("/games")).json()["games"]
            assert [g["game"] for g in listed] == ["Proc Game"]
            # Loopback only and no tunnel: mutating routes need no token.
            response = await http.post("/games/*/reregister")
            assert response.json() == {"sent_to": ["Proc Game"]}
            assert isinstance(
                command.parse_neuro_frame(await ws.get_message()), command.ReregisterAll
            )
        proc.process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            assert await proc.process.wait() == 0


async def test_sigterm_drains_games_and_exits_zero() -> None:
    async with server("--shutdown-grace", "3") as proc:
        games_url = await proc.url("neuro_api server listening on")
        async with game(games_url) as ws:
            await ws.send_message(command.startup_command("Drained").decode())
            await ws.get_message()
            started = time.monotonic()
            proc.process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(WAIT):
                await ws.get_message()
            reason = closed.value.reason
            assert reason is not None
            assert reason.code == 1001  # going away, not a drop
            with trio.fail_after(WAIT):
                assert await proc.process.wait() == 0
            assert time.monotonic() - started < 3 + 1


@contextlib.asynccontextmanager
async def silent_game(url: str) -> AsyncIterator[trio.SocketStream]:
    """A game that completes the WebSocket handshake, then never reads again,
    so it never answers the server's close frame."""
    host, port = re.match(r"ws://([^:]+):(\d+)", url).groups()  # type: ignore[union-attr]
    stream = await trio.open_tcp_stream(host, int(port))
    try:
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        with trio.fail_after(WAIT):
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 101")
        yield stream
    finally:
        await stream.aclose()


async def test_second_signal_stops_at_once() -> None:
    async with server("--shutdown-grace", "30") as proc:
        games_url = await proc.url("neuro_api server listening on")
        async with silent_game(games_url):
            proc.process.send_signal(signal.SIGINT)
            # The drain waits for the game's close reply (up to the grace)...
            await trio.sleep(1)
            assert proc.process.returncode is None
            # ... unless a second signal says not to.
            started = time.monotonic()
            proc.process.send_signal(signal.SIGINT)
            with trio.fail_after(5):
                assert await proc.process.wait() == 0
            assert time.monotonic() - started < 2


async def test_drain_is_bounded_by_the_grace() -> None:
    async with server("--shutdown-grace", "1.5") as proc:
        games_url = await proc.url("neuro_api server listening on")
        async with silent_game(games_url):
            started = time.monotonic()
            proc.process.send_signal(signal.SIGTERM)
            with trio.fail_after(WAIT):
                assert await proc.process.wait() == 0
            assert 1 <= time.monotonic() - started < 1.5 + 1.5


async def test_event_stream_does_not_hold_the_drain() -> None:
    async with server("--shutdown-grace", "30") as proc:
        control = await proc.url("neuro_api control plane on")
        async with (
            httpx.AsyncClient(base_url=control, timeout=WAIT) as http,
            http.stream("GET", "/events") as events,
        ):
            assert events.status_code == 200
            lines = events.aiter_lines()
            assert await anext(lines) == ": connected"
            started = time.monotonic()
            proc.process.send_signal(signal.SIGTERM)
            with trio.fail_after(WAIT):
                async for _ in lines:
                    pass  # the stream ends: the server closed it
                assert await proc.process.wait() == 0
            assert time.monotonic() - started < 3


def test_print_config_hides_secrets(tmp_path: Path) -> None:
    config = tmp_path / "neuro.toml"
    config.write_text('api_token = "file-secret-1234567"\nport = 9123\n')
    result = subprocess.run(
        [*BASE, "--config", str(config), "--print-config"],
        capture_output=True,
        timeout=WAIT,
        env={**os.environ, "NGROK_AUTHTOKEN": "env-secret-456"},
        check=False,
    )
    assert result.returncode == 0
    shown = orjson.loads(result.stdout)
    assert shown["port"] == 9123
    assert shown["api_token"] == "***"
    assert shown["ngrok_authtoken"] == "***"
    for value in (b"file-secret-1234567", b"env-secret-456"):
        assert value not in result.stdout + result.stderr


def test_bad_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "neuro.toml"
    config.write_text("prot = 1\n")
    result = subprocess.run(
        [*BASE, "--config", str(config)], capture_output=True, timeout=WAIT, check=False
    )
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        f"neuro_api.server: error: --config: {config}: unknown setting 'prot'"
    ]


async def test_tunnel_requires_the_token_and_leaves_no_ngrok(tmp_path: Path) -> None:
    fake = FakeNgrok.create(tmp_path)
    try:
        async with server(
            "--tunnel",
            "--ngrok-path",
            str(fake.ngrok_path),
            env={"NGROK_AUTHTOKEN": "ngrok-token-for-tests"},
        ) as proc:
            control = await proc.url("neuro_api control plane on")
            public_games = await proc.url("neuro_api public games URL:")
            public_control = await proc.url("neuro_api public control URL:")
            token = await proc.url("neuro_api control plane token:")
            assert public_games.startswith("wss://")
            assert public_control.startswith("https://")
            assert len(token) >= 32
            async with httpx.AsyncClient(base_url=control) as http:
                refused = await http.post("/games/*/reregister")
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "unauthorized"
                allowed = await http.post(
                    "/games/*/reregister", headers={"Authorization": f"Bearer {token}"}
                )
                assert allowed.status_code == 200
                assert (await http.get("/health")).status_code == 200
            assert fake.running_pids()  # the agent runs while tunnels are open
            proc.process.send_signal(signal.SIGTERM)
            with trio.fail_after(WAIT):
                assert await proc.process.wait() == 0
        assert fake.running_pids() == []  # no orphan ngrok
        # Every tunnel closed: the games', the control plane's, the calls API's.
        assert len(fake.requests("DELETE")) == 3
    finally:
        fake.kill_leftovers()


async def test_tunnel_in_a_virtualenv_skips_pyngrok_s_script(tmp_path: Path) -> None:
    # As in an activated virtualenv: pyngrok's script first on PATH, then
    # the real agent (the fake).
    marker = tmp_path / "ran"
    script = pyngrok_script(tmp_path / "venv" / "bin", marker)
    fake = FakeNgrok.create(tmp_path)
    path = os.pathsep.join([str(script.parent), str(tmp_path), os.defpath])
    try:
        async with server(
            "--tunnel", env={"PATH": path, "NGROK_AUTHTOKEN": "ngrok-token-for-tests"}
        ) as proc:
            public_games = await proc.url("neuro_api public games URL:")
            assert public_games.startswith("wss://")
            proc.process.send_signal(signal.SIGTERM)
            with trio.fail_after(WAIT):
                assert await proc.process.wait() == 0
        assert len(fake.starts()) == 1
        assert fake.running_pids() == []
        assert not marker.exists()
    finally:
        fake.kill_leftovers()


async def test_secrets_stay_out_of_the_logs(tmp_path: Path) -> None:
    # The fake agent, like the real one, repeats the auth token in its error,
    # and pyngrok logs that line; the process's log handler must hide it.
    fake = FakeNgrok.create(tmp_path, mode="fail_start")
    stderr = tmp_path / "stderr.txt"
    secret = "ngrok-token-that-must-not-leak"
    api_token = "control-token-that-must-not-leak"
    try:
        async with server(
            "--tunnel",
            "--ngrok-path",
            str(fake.ngrok_path),
            "--log-level",
            "debug",
            env={"NGROK_AUTHTOKEN": secret, "NEURO_API_TOKEN": api_token},
            stderr=stderr,
        ) as proc:
            line = await proc.read_until("neuro_api games: no tunnel:")
            assert secret not in line
            proc.process.send_signal(signal.SIGTERM)
            with trio.fail_after(WAIT):
                assert await proc.process.wait() == 0
        logged = stderr.read_text()
        assert "authentication failed" in logged  # the agent's error is logged
        assert "***" in logged
        assert secret not in logged
        assert api_token not in logged + proc.out
    finally:
        fake.kill_leftovers()
