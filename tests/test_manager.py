"""ServerManager with real servers on 127.0.0.1, port 0, and no tunnels.

Rules: loopback only, port 0 (a taken port is made by the test itself), a
deadline on every test, HTTP through httpx, WebSockets through trio-websocket
clients (see ``ws_client`` for why they wrap their own TCP stream).
"""

from __future__ import annotations

import errno
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart_trio import QuartTrio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    WebSocketRequest,
    wrap_client_stream,
)

from neuro_api.manager import (
    ServerBindError,
    ServerInfo,
    ServerManager,
    ServerStartError,
)

pytestmark = pytest.mark.timeout(20)


# Helpers shared in spirit with test_manager_tunnels.py (kept local: tests/
# has no conftest of ours).


@asynccontextmanager
async def running(manager: ServerManager) -> AsyncIterator[ServerManager]:
    """Run ``manager`` for the duration of the block, then cancel it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        yield manager
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def ws_client(
    url: str, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client whose TCP stream is always closed.

    trio-websocket 0.12's own client never closes its stream when the
    *server* closes first (aclose() returns early once a close reason is
    set), which leaks a socket and, with warnings as errors, fails a later
    test. Owning the stream avoids that.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stream: trio.abc.Stream
    if ssl_context is None:
        stream = await trio.open_tcp_stream(host, port)
    else:
        stream = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=ssl_context, https_compatible=True
        )
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, host, parts.path or "/")
        try:
            yield ws
        finally:
            with trio.move_on_after(1):
                await ws.aclose()
            nursery.cancel_scope.cancel()


def close_code(closed: ConnectionClosed) -> int | None:
    """The close code a client saw."""
    return None if closed.reason is None else closed.reason.code


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds (manager state seen from outside)."""
    with trio.fail_after(5):
        while True:
            if check():
                return
            await trio.sleep(0.01)


def server_tasks() -> list[trio.lowlevel.Task]:
    """Every live task the manager runs a server in."""
    found: list[trio.lowlevel.Task] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if task.name.endswith("ServerManager._run"):
            found.append(task)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found


async def refused(url: str) -> bool:
    """Whether nothing listens at ``url`` any more."""
    parts = urlsplit(url)
    try:
        stream = await trio.open_tcp_stream(parts.hostname or "", parts.port or 0)
    except OSError:
        return True
    await stream.aclose()
    return False


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port some other socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class BareApp:
    """A framework-free ASGI app: ``/`` says hello, ``/slow`` waits."""

    def __init__(self, slow_seconds: float = 0.5) -> None:
        self.slow_seconds = slow_seconds
        self.lifespan: list[str] = []
        self.slow_started = trio.Event()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.lifespan.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.lifespan.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        body = b"hello"
        if scope["path"] == "/slow":
            self.slow_started.set()
            await trio.sleep(self.slow_seconds)
            body = b"slow hello"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
                "trailers": False,
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def quart_app(events: list[str], *, fail_startup: bool = False) -> QuartTrio:
    app = QuartTrio("test_manager")

    @app.before_serving
    async def startup() -> None:
        events.append("before_serving")
        if fail_startup:
            raise RuntimeError("database unreachable")

    @app.after_serving
    async def shutdown() -> None:
        events.append("after_serving")

    @app.get("/ping")
    async def ping() -> dict[str, Any]:
        return {"pong": True}

    return app


async def echo(request: WebSocketRequest) -> None:
    """Echo text; ``boom`` makes the handler raise."""
    ws = await request.accept()
    while True:
        message = await ws.get_message()
        if message == "boom":
            raise RuntimeError("handler bug")
        await ws.send_message(message)


# HTTP servers.


async def test_bare_asgi_app_start_list_stop() -> None:
    app = BareApp()
    async with running(ServerManager()) as manager:
        info = await manager.start_http("api", app)

        assert info.name == "api"
        assert info.kind == "http"
        assert info.local_url == f"http://127.0.0.1:{info.port}"
        assert info.port > 0
        assert (info.public_url, info.tunnel_error) == (None, None)
        assert manager.list() == [info]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{info.local_url}/")
        assert (response.status_code, response.text) == (200, "hello")

        await manager.stop("api")

        assert manager.list() == []
        assert app.lifespan == ["startup", "shutdown"]
        assert await refused(info.local_url)
        assert server_tasks() == []


async def test_quart_trio_app_runs_its_startup_and_shutdown() -> None:
    events: list[str] = []
    async with running(ServerManager()) as manager:
        info = await manager.start_http("control", quart_app(events))
        async with httpx.AsyncClient(base_url=info.local_url) as client:
            response = await client.get("/ping")
        assert response.json() == {"pong": True}
        assert events == ["before_serving"]

        await manager.stop("control")

    assert events == ["before_serving", "after_serving"]


async def test_graceful_stop_lets_an_in_flight_request_finish() -> None:
    app = BareApp(slow_seconds=0.5)
    responses: list[httpx.Response] = []
    async with running(ServerManager()) as manager:
        info = await manager.start_http("api", app, graceful_timeout=3.0)
        async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:

            async def request() -> None:
                responses.append(await client.get(f"{info.local_url}/slow"))

            nursery.start_soon(request)
            await app.slow_started.wait()
            started = trio.current_time()
            await manager.stop("api")
            elapsed = trio.current_time() - started

    assert [(r.status_code, r.text) for r in responses] == [(200, "slow hello")]
    assert 0.3 < elapsed < 3.0
    assert app.lifespan == ["startup", "shutdown"]


async def test_stop_cuts_a_request_slower_than_graceful_timeout() -> None:
    app = BareApp(slow_seconds=60)
    failures: list[Exception] = []
    async with running(ServerManager()) as manager:
        info = await manager.start_http("api", app, graceful_timeout=0.2)
        async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:

            async def request() -> None:
                try:
                    await client.get(f"{info.local_url}/slow")
                except httpx.HTTPError as exc:
                    failures.append(exc)

            nursery.start_soon(request)
            await app.slow_started.wait()
            with trio.fail_after(5):
                await manager.stop("api")

    assert len(failures) == 1
    assert manager.list() == []


async def test_lifespan_failure_is_a_start_error_and_leaves_nothing() -> None:
    events: list[str] = []
    async with running(ServerManager()) as manager:
        with pytest.raises(ServerStartError, match="database unreachable") as caught:
            await manager.start_http("control", quart_app(events, fail_startup=True))

        assert not isinstance(caught.value, OSError)
        assert "'control'" in str(caught.value)
        assert manager.list() == []
        assert server_tasks() == []
        # The name is free again.
        await manager.start_http("control", quart_app([]))


# WebSocket servers.


async def test_websocket_start_list_connections_stop() -> None:
    async with running(ServerManager()) as manager:
        info = await manager.start_websocket("games", echo)

        assert info.kind == "websocket"
        assert info.local_url == f"ws://127.0.0.1:{info.port}"
        assert manager.list() == [info]
        assert manager.connections("games") == []
        async with (
            ws_client(info.local_url) as first,
            ws_client(info.local_url) as second,
        ):
            for ws in (first, second):
                await ws.send_message("hi")
                assert await ws.get_message() == "hi"
            assert len(manager.connections("games")) == 2

            await first.aclose()
            await eventually(lambda: len(manager.connections("games")) == 1)
            assert manager.connections("games")[0].closed is None

        await eventually(lambda: manager.connections("games") == [])
        await manager.stop("games")
        assert manager.list() == []
        assert await refused(info.local_url)


async def test_handler_exception_closes_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(ServerManager()) as manager:
        info = await manager.start_websocket("games", echo)
        async with ws_client(info.local_url) as bystander:
            async with ws_client(info.local_url) as victim:
                await victim.send_message("boom")
                with pytest.raises(ConnectionClosed) as closed:
                    await victim.get_message()
                assert close_code(closed.value) == 1011

            await bystander.send_message("still here")
            assert await bystander.get_message() == "still here"
            async with ws_client(info.local_url) as newcomer:
                await newcomer.send_message("hello")
                assert await newcomer.get_message() == "hello"

        assert [info] == manager.list()
    assert any(
        record.levelno == logging.ERROR and "'games'" in record.getMessage()
        for record in caplog.records
    )


async def test_handler_sees_the_handshake_and_may_reject_it() -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []

    async def only_play(request: WebSocketRequest) -> None:
        seen.append((request.path, request.proposed_subprotocols))
        if request.path != "/play":
            await request.reject(403, body=b"no")
            return
        ws = await request.accept()
        await ws.send_message("welcome")
        await ws.get_message()

    async with running(ServerManager()) as manager:
        info = await manager.start_websocket("games", only_play)
        forbidden = pytest.RaisesExc(
            ConnectionRejected, check=lambda e: (e.status_code, e.body) == (403, b"no")
        )
        # The client's reader task raises it too, inside ws_client's nursery.
        with pytest.RaisesGroup(forbidden, flatten_subgroups=True):
            async with ws_client(f"{info.local_url}/admin"):
                pass  # pragma: no cover
        assert manager.connections("games") == []

        async with ws_client(f"{info.local_url}/play") as ws:
            assert await ws.get_message() == "welcome"
            assert len(manager.connections("games")) == 1
    assert seen == [("/admin", ()), ("/play", ())]


async def test_stop_all_closes_websockets_with_going_away() -> None:
    async with running(ServerManager()) as manager:
        ws_info = await manager.start_websocket("games", echo)
        await manager.start_http("api", BareApp())
        async with ws_client(ws_info.local_url) as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"

            await manager.stop_all()

            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert close_code(closed.value) == 1001
        assert manager.list() == []
        assert server_tasks() == []
        # The manager itself keeps running.
        again = await manager.start_websocket("games", echo)
        assert manager.list() == [again]


async def test_cancellation_stops_every_server() -> None:
    handler_ended = trio.Event()

    async def wait_forever(request: WebSocketRequest) -> None:
        await request.accept()
        try:
            await trio.sleep_forever()
        finally:
            handler_ended.set()

    infos: list[ServerInfo] = []
    async with trio.open_nursery() as outer:
        manager = ServerManager()
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            infos.append(await manager.start_http("api", BareApp()))
            infos.append(await manager.start_websocket("games", wait_forever))
            client = await outer.start(_hold_connection, infos[1].local_url)
            await eventually(lambda: len(manager.connections("games")) == 1)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()

    assert handler_ended.is_set()
    assert client.closed is not None
    assert manager.list() == []
    assert server_tasks() == []
    for info in infos:
        assert await refused(info.local_url)


async def _hold_connection(
    url: str, *, task_status: trio.TaskStatus[WebSocketConnection]
) -> None:
    async with ws_client(url) as ws:
        task_status.started(ws)
        with pytest.raises(ConnectionClosed):
            await ws.get_message()


# Errors, and nothing half-started.


async def test_duplicate_name_is_refused() -> None:
    async with running(ServerManager()) as manager:
        first = await manager.start_http("main", BareApp())
        with pytest.raises(ValueError, match="'main'"):
            await manager.start_websocket("main", echo)
        with pytest.raises(ValueError, match="'main'"):
            await manager.start_http("main", BareApp())
        assert manager.list() == [first]
        assert len(server_tasks()) == 1


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_port_in_use_is_a_clear_os_error(kind: str) -> None:
    events: list[str] = []
    async with running(ServerManager()) as manager:

        async def start(port: int) -> ServerInfo:
            if kind == "http":
                return await manager.start_http("b", quart_app(events), port=port)
            return await manager.start_websocket("b", echo, port=port)

        with taken_port() as port, pytest.raises(ServerBindError) as caught:
            await start(port)

        error = caught.value
        assert isinstance(error, OSError)
        assert error.errno == errno.EADDRINUSE
        assert f"127.0.0.1:{port}" in str(error)
        assert f"{kind} server 'b'" in str(error)
        assert (error.host, error.port, error.name) == ("127.0.0.1", port, "b")
        assert manager.list() == []
        assert server_tasks() == []
        assert events == []  # Quart's startup never ran for nothing
        await manager.start_websocket("b", echo)


async def test_tunnel_without_a_provider_is_refused() -> None:
    async with running(ServerManager()) as manager:
        with pytest.raises(ValueError, match="no provider"):
            await manager.start_http("api", BareApp(), tunnel=True)
        with pytest.raises(ValueError, match="no provider"):
            await manager.start_websocket("ws", echo, require_tunnel=True)
        assert manager.list() == []
        assert server_tasks() == []


async def test_lookups_of_unknown_or_wrong_servers() -> None:
    manager = ServerManager()
    with pytest.raises(RuntimeError, match="not running"):
        await manager.start_http("api", BareApp())
    async with running(manager):
        await manager.start_http("api", BareApp())
        with pytest.raises(KeyError, match="nope"):
            await manager.stop("nope")
        with pytest.raises(KeyError, match="nope"):
            manager.connections("nope")
        with pytest.raises(ValueError, match="HTTP server"):
            manager.connections("api")
        with pytest.raises(RuntimeError, match="already running"):
            await manager.run()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client TLS context for a throwaway 127.0.0.1 certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_websocket_over_tls_is_wss(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    async with running(ServerManager()) as manager:
        info = await manager.start_websocket("secure", echo, ssl_context=server_context)

        assert info.local_url == f"wss://127.0.0.1:{info.port}"
        async with ws_client(info.local_url, client_context) as ws:
            await ws.send_message("over tls")
            assert await ws.get_message() == "over tls"
