"""ServerManager tunnels: NgrokTunnels against the fake ngrok agent, and URL mapping.

pyngrok launches ``tests/fake_ngrok`` (never the real ngrok); everything
stays on 127.0.0.1. The fake records every API request, which is what these
tests assert on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from fake_ngrok import FakeNgrok
from pyngrok import process
from test_manager import BareApp, echo, quart_app, refused, running, server_tasks

from neuro_api.manager import NgrokTunnels, ServerManager, TunnelError
from neuro_api.manager._info import public_url, upstream_url

pytestmark = pytest.mark.timeout(20)

TOKEN = "fake-authtoken-0123456789abcdef"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeNgrok]:
    fake = FakeNgrok.create(tmp_path)
    yield fake
    leftovers = fake.running_pids()
    process.kill_process(str(fake.ngrok_path))  # pyngrok's table, after a failure
    fake.kill_leftovers()
    assert leftovers == [], f"fake ngrok agents left running: {leftovers}"


def ngrok_manager(fake: FakeNgrok) -> ServerManager:
    return ServerManager(
        tunnels=NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)
    )


async def endpoints(fake: FakeNgrok) -> list[dict[str, Any]]:
    """What the agent's own API lists."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{fake.api_url()}/api/endpoints")
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["endpoints"]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_tunnelled_servers_get_public_urls(fake: FakeNgrok) -> None:
    async with running(ngrok_manager(fake)) as manager:
        http = await manager.start_http(
            "api", BareApp(), tunnel=True, public_path="/hooks"
        )
        ws = await manager.start_websocket("games", echo, tunnel=True, public_path="ws")

        by_upstream = {e["upstream"]["url"]: e for e in await endpoints(fake)}
        http_endpoint = by_upstream[f"http://127.0.0.1:{http.port}"]
        ws_endpoint = by_upstream[f"http://127.0.0.1:{ws.port}"]
        assert http_endpoint["url"].startswith("https://")
        assert http.public_url == f"{http_endpoint['url']}/hooks"
        ws_host = ws_endpoint["url"].removeprefix("https://")
        assert ws.public_url == f"wss://{ws_host}/ws"
        assert (http.tunnel_error, ws.tunnel_error) == (None, None)
        assert manager.list() == [http, ws]
        # Named after the server; one agent for both tunnels, the token in
        # its config file (not on its command line).
        assert http_endpoint["name"].startswith("api-")
        [start] = fake.starts()
        assert start["argv"][:4] == ["start", "--none", "--log", "stdout"]
        assert TOKEN not in " ".join(start["argv"])
        assert f"authtoken: {json.dumps(TOKEN)}" in start["config"]["text"]


async def test_stop_closes_the_tunnel_and_the_last_one_stops_the_agent(
    fake: FakeNgrok,
) -> None:
    async with running(ngrok_manager(fake)) as manager:
        await manager.start_http("api", BareApp(), tunnel=True)
        ws = await manager.start_websocket("games", echo, tunnel=True)
        api_endpoint = next(
            e for e in await endpoints(fake) if e["name"].startswith("api-")
        )
        pid = fake.pid()
        assert pid is not None

        await manager.stop("api")

        assert [r["path"] for r in fake.requests("DELETE")] == [api_endpoint["uri"]]
        assert [e["upstream"]["url"] for e in await endpoints(fake)] == [
            f"http://127.0.0.1:{ws.port}"
        ]
        assert alive(pid)

        await manager.stop("games")

        assert len(fake.requests("DELETE")) == 2
        assert not alive(pid)
        assert manager.list() == []


async def test_tunnel_failure_keeps_the_local_server(fake: FakeNgrok) -> None:
    fake.set_mode("fail_connect")
    async with running(ngrok_manager(fake)) as manager:
        info = await manager.start_http("api", BareApp(), tunnel=True)

        assert info.public_url is None
        assert info.tunnel_error is not None
        assert "502" in info.tunnel_error
        assert "refuses new endpoints" in info.tunnel_error
        assert manager.list() == [info]
        async with httpx.AsyncClient() as client:
            response = await client.get(info.local_url)
        assert response.text == "hello"
        # The agent had no tunnel to keep it.
        assert fake.running_pids() == []


async def test_agent_start_failure_is_reported_without_the_token(
    fake: FakeNgrok,
) -> None:
    fake.set_mode("fail_start")
    async with running(ngrok_manager(fake)) as manager:
        info = await manager.start_websocket("games", echo, tunnel=True)

        assert info.public_url is None
        assert info.tunnel_error is not None
        assert "authentication failed" in info.tunnel_error
        assert TOKEN not in info.tunnel_error
        assert "***" in info.tunnel_error
        assert manager.list() == [info]
        assert not await refused(info.local_url)


async def test_required_tunnel_failure_leaves_nothing(fake: FakeNgrok) -> None:
    fake.set_mode("fail_connect")
    events: list[str] = []
    async with running(ngrok_manager(fake)) as manager:
        with pytest.raises(TunnelError, match="'api' requires a tunnel"):
            await manager.start_http("api", quart_app(events), require_tunnel=True)

        assert manager.list() == []
        assert server_tasks() == []
        [post] = fake.requests("POST")
        assert await refused(post["body"]["upstream"]["url"])
        assert fake.running_pids() == []
        assert events == ["before_serving", "after_serving"]  # a clean shutdown
        # The name is free again.
        await manager.start_http("api", BareApp())


async def test_a_cancelled_tunnelled_start_leaves_nothing(fake: FakeNgrok) -> None:
    fake.set_mode("ok", start_delay=0.3)
    async with running(ngrok_manager(fake)) as manager:
        with trio.move_on_after(0.1) as scope:
            await manager.start_http("api", BareApp(), tunnel=True)

        assert scope.cancelled_caught
        assert manager.list() == []
        assert server_tasks() == []
        await manager.start_http("api", BareApp())  # the name is free again
    # The abandoned tunnel opened later; the manager's final kill took it down.
    assert len(fake.requests("POST")) == 1
    assert fake.running_pids() == []


async def test_the_agent_never_outlives_the_manager(fake: FakeNgrok) -> None:
    async with running(ngrok_manager(fake)) as manager:
        await manager.start_http("api", BareApp(), tunnel=True)
        pid = fake.pid()
        assert pid is not None
        assert alive(pid)
    # Cancelled with the tunnel open: the manager killed (and reaped) it.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert fake.requests("DELETE") == []  # no time spent closing one by one


async def test_without_tunnels_ngrok_is_never_started(fake: FakeNgrok) -> None:
    async with running(ngrok_manager(fake)) as manager:
        await manager.start_http("api", BareApp())
        await manager.start_websocket("games", echo)
        await manager.stop("api")
    assert fake.events() == []
    assert fake.pid() is None


class RecordingProvider:
    """An in-process TunnelProvider: no ngrok at all."""

    def __init__(self, public: str) -> None:
        self.public = public
        self.opened: list[tuple[str, str]] = []
        self.closed: list[str] = []
        self.kills = 0

    async def open(self, upstream_url: str, *, name: str) -> str:
        await trio.lowlevel.checkpoint()
        self.opened.append((upstream_url, name))
        return f"{self.public}/{name}/"

    async def close(self, public_url: str) -> None:
        await trio.lowlevel.checkpoint()
        self.closed.append(public_url)

    async def kill(self) -> None:
        await trio.lowlevel.checkpoint()
        self.kills += 1


async def test_any_provider_can_be_injected() -> None:
    provider = RecordingProvider("https://edge.example.test")
    async with running(ServerManager(tunnels=provider)) as manager:
        http = await manager.start_http("api", BareApp(), tunnel=True)
        ws = await manager.start_websocket(
            "games", echo, tunnel=True, public_path="/ws/play"
        )
        local = await manager.start_http("local", BareApp())

        assert http.public_url == "https://edge.example.test/api"
        assert ws.public_url == "wss://edge.example.test/games/ws/play"
        assert local.public_url is None
        assert provider.opened == [
            (f"http://127.0.0.1:{http.port}", "api"),
            (f"http://127.0.0.1:{ws.port}", "games"),
        ]
        await manager.stop("games")
        assert provider.closed == ["https://edge.example.test/games/"]
        await manager.stop("local")
        assert provider.closed == ["https://edge.example.test/games/"]
        assert provider.kills == 0
    assert provider.kills == 1


@pytest.mark.parametrize(
    ("local", "upstream"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("ws://127.0.0.1:8001", "http://127.0.0.1:8001"),
        ("wss://127.0.0.1:8443", "https://127.0.0.1:8443"),
        ("http://0.0.0.0:80", "http://127.0.0.1:80"),
        ("ws://[::]:9000", "http://[::1]:9000"),
        ("ws://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_upstream_url(local: str, upstream: str) -> None:
    assert upstream_url(local) == upstream


@pytest.mark.parametrize(
    ("kind", "tunnel", "path", "expected"),
    [
        ("http", "https://a.ngrok.test", "", "https://a.ngrok.test"),
        ("http", "https://a.ngrok.test", "/hooks", "https://a.ngrok.test/hooks"),
        ("websocket", "https://a.ngrok.test", "ws", "wss://a.ngrok.test/ws"),
        ("websocket", "http://a.ngrok.test/", "/", "ws://a.ngrok.test/"),
        ("websocket", "https://a.ngrok.test", "/ws?v=1", "wss://a.ngrok.test/ws?v=1"),
    ],
)
def test_public_url(kind: Any, tunnel: str, path: str, expected: str) -> None:
    assert public_url(kind, tunnel, path) == expected
