"""Size limits of the control plane: 413 for big bodies and for big frames.

The control plane is served as NeuroProcess serves it (ServerManager, real
Hypercorn on 127.0.0.1 port 0) and driven by real HTTP clients: httpx, and
Python's ``http.client``, which sends its whole body before it reads the
answer, so a server that closes early makes it fail with a reset or a broken
pipe instead of reading the 413. The server's ``max_message_size`` is small
here (:data:`MAX`), so a "big" body is a few MiB and a test takes
milliseconds. The middleware's timers are tested on its own, in virtual
time.
"""

from __future__ import annotations

import functools
import http.client
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import trio
from test_control import QuietServer, connect_game, recv
from trio_websocket import WebSocketConnection

from neuro_api import command
from neuro_api.control import create_app
from neuro_api.control._limits import (
    BODY_HEADROOM,
    DRAIN_SECONDS,
    BodyLimit,
    body_limit,
)
from neuro_api.manager import ServerManager
from neuro_api.server import ServerConfig

pytestmark = pytest.mark.timeout(30)

MAX = 1024
"""The server's max_message_size in these tests."""
LIMIT = body_limit(MAX)
BIG = 4 << 20
"""A body far over LIMIT (sent whole in a few milliseconds on loopback)."""
TOKEN = "limits-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def server(nursery: trio.Nursery) -> QuietServer:
    engine = QuietServer(ServerConfig(max_message_size=MAX))
    info = await nursery.start(engine.run, "127.0.0.1", 0)
    engine.url = info.url  # type: ignore[attr-defined]
    return engine


@pytest.fixture
async def game(server: QuietServer) -> AsyncIterator[WebSocketConnection]:
    async for ws in connect_game(server):
        yield ws


@pytest.fixture
async def control(nursery: trio.Nursery, server: QuietServer) -> str:
    """The control plane's base URL, served the way NeuroProcess serves it."""
    manager = ServerManager()
    await nursery.start(manager.run)
    info = await manager.start_http("control", create_app(server, token=TOKEN))
    return info.local_url


def chunks(size: int) -> Iterator[bytes]:
    piece = b"x" * 65536
    for _ in range(size // len(piece)):
        yield piece


def naive_post(url: str, path: str, chunked: bool) -> tuple[int, Any]:
    """POST ``BIG`` bytes with ``http.client``: the whole body, then the answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=10
    )
    try:
        if chunked:
            connection.request(
                "POST", path, body=chunks(BIG), headers=JSON, encode_chunked=True
            )
        else:
            connection.request("POST", path, body=b"x" * BIG, headers=JSON)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def assert_too_large(status: int, body: Any) -> None:
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert str(LIMIT) in body["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_client_that_writes_its_whole_body_first_reads_the_413(
    control: str, chunked: bool
) -> None:
    # Without the drain this is "[Errno 32] Broken pipe" (or a reset): the
    # server closed with the client's bytes unread.
    for _ in range(3):
        status, body = await trio.to_thread.run_sync(
            naive_post, control, "/games/*/reregister", chunked
        )
        assert_too_large(status, body)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_httpx_reads_the_413(control: str, chunked: bool) -> None:
    async def stream() -> AsyncIterator[bytes]:
        for piece in chunks(BIG):
            yield piece

    content: Any = stream() if chunked else b"x" * BIG
    async with httpx.AsyncClient(base_url=control, timeout=10) as http:
        response = await http.post("/", content=content, headers={**JSON, **AUTH})
    if chunked:
        assert response.request.headers["transfer-encoding"] == "chunked"
    assert_too_large(response.status_code, response.json())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/games"),
        ("GET", "/docs"),
        ("POST", "/"),
        ("POST", "/games/Tic Tac Toe/actions/play"),
        ("POST", "/games/*/reregister"),
        ("POST", "/games/*/shutdown/graceful"),
        ("POST", "/games/*/shutdown/immediate"),
        ("POST", "/games/*/speech-finished"),
        ("POST", "/no/such/route"),
    ],
)
async def test_every_route_refuses_a_body_over_the_limit(
    control: str, method: str, path: str
) -> None:
    # Before the token check too: the body is refused before any route runs.
    async with httpx.AsyncClient(base_url=control, timeout=10) as http:
        response = await http.request(
            method, path, content=b" " * (LIMIT + 1), headers=JSON
        )
    assert_too_large(response.status_code, response.json())
    assert response.headers["connection"] == "close"


async def test_a_body_at_the_limit_is_served(
    control: str, game: WebSocketConnection
) -> None:
    # JSON may carry whitespace: a body of exactly LIMIT bytes is read.
    payload = b'{"wants_shutdown": false}'
    padded = payload + b" " * (LIMIT - len(payload))
    async with httpx.AsyncClient(base_url=control, timeout=10) as http:
        response = await http.post(
            "/games/Tic Tac Toe/shutdown/graceful",
            content=padded,
            headers={**JSON, **AUTH},
        )
    assert response.status_code == 200, response.text
    assert await recv(game) == command.GracefulShutdown(wants_shutdown=False)
    assert LIMIT == MAX + BODY_HEADROOM


def injected(size: int) -> bytes:
    """An ``action`` message whose frame to the game is ``size`` bytes."""
    message = command.ActionMessage(id="big", name="play", data_json="")
    padding = size - len(message.to_frame().encode())
    message = command.ActionMessage(id="big", name="play", data_json="x" * padding)
    assert len(message.to_frame().encode()) == size
    return message.to_frame().encode()


async def test_a_frame_over_max_message_size_is_not_sent(
    control: str, game: WebSocketConnection
) -> None:
    async with httpx.AsyncClient(
        base_url=control, timeout=10, headers={**JSON, **AUTH}
    ) as http:
        refused = await http.post("/", content=injected(MAX + 1))
        assert refused.status_code == 413
        error = refused.json()["error"]
        assert error["code"] == "payload_too_large"
        assert f"would be {MAX + 1} bytes" in error["message"]
        assert "max_message_size" in error["message"]

        # Execute: the frame holds the data as an escaped JSON string, so a
        # body well under the body limit can still make too large a frame.
        quotes = {"data": {"text": '"' * (MAX // 2)}}
        assert len(orjson.dumps(quotes)) < LIMIT
        for body in (quotes, {"raw": "x" * MAX, "validate": False}):
            response = await http.post(
                "/games/Tic Tac Toe/actions/play", content=orjson.dumps(body)
            )
            assert response.status_code == 413, body
            assert "the action frame would be" in response.json()["error"]["message"]

        # Nothing of that reached the game; a frame of exactly MAX bytes does.
        accepted = await http.post("/", content=injected(MAX))
        assert accepted.status_code == 200, accepted.text
    message = await recv(game)
    assert isinstance(message, command.ActionMessage)
    assert message.id == "big"
    assert len(message.to_frame().encode()) == MAX


async def test_execute_under_the_frame_limit_is_sent(
    nursery: trio.Nursery, control: str, game: WebSocketConnection
) -> None:
    async def answer() -> None:
        message = await recv(game)
        assert isinstance(message, command.ActionMessage)
        await game.send_message(
            command.actions_result_command(
                "Tic Tac Toe", message.id, True, "ok"
            ).decode()
        )

    nursery.start_soon(answer)
    async with httpx.AsyncClient(base_url=control, timeout=10) as http:
        response = await http.post(
            "/games/Tic Tac Toe/actions/play",
            json={"data": {"cell": 5}},
            headers=AUTH,
        )
    assert response.json()["outcome"]["status"] == "success"


# --- the middleware on its own, in virtual time -------------------------------


class Exchange:
    """One request through :class:`BodyLimit`: what the client sends and gets."""

    def __init__(self, *parts: bytes, then: str = "wait") -> None:
        self.parts = list(parts)
        self.then = then
        """After the parts: ``"wait"`` (send nothing more), ``"more"`` (keep
        sending forever) or ``"leave"`` (disconnect)."""
        self.sent: list[dict[str, Any]] = []
        self.app_called = False

    async def receive(self) -> Any:
        await trio.lowlevel.checkpoint()
        if self.parts:
            body = self.parts.pop(0)
            return {"type": "http.request", "body": body, "more_body": True}
        if self.then == "leave":
            return {"type": "http.disconnect"}
        if self.then == "more":
            await trio.sleep(0.1)
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, message: Any) -> None:
        await trio.lowlevel.checkpoint()
        self.sent.append(message)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.app_called = True
        await trio.lowlevel.checkpoint()

    async def run(self, limit: int = 10, body_timeout: float | None = 60.0) -> float:
        scope: Any = {"type": "http", "headers": []}
        started = trio.current_time()
        await BodyLimit(self.app, limit, body_timeout)(scope, self.receive, self.send)
        return trio.current_time() - started

    def error(self) -> tuple[int, str]:
        start, body, *rest = self.sent
        end = {"type": "http.response.body", "body": b"", "more_body": False}
        assert rest in ([], [end])
        return start["status"], orjson.loads(body["body"])["error"]["code"]


async def test_a_body_that_stops_arriving_gets_408(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exchange = Exchange(b"12345")
    took = await exchange.run(body_timeout=60.0)
    assert took == pytest.approx(60.0)
    assert exchange.error() == (408, "request_timeout")
    assert not exchange.app_called


async def test_without_a_body_timeout_a_body_may_take_its_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exchange = Exchange(b"12345")
    with trio.move_on_after(24 * 3600):
        await exchange.run(body_timeout=None)  # Quart's BODY_TIMEOUT = None
    assert exchange.sent == []


async def test_a_client_that_leaves_mid_body_gets_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exchange = Exchange(b"12345", then="leave")
    await exchange.run()
    assert exchange.sent == []
    assert not exchange.app_called


async def test_the_drain_after_a_413_is_bounded_in_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A client that keeps sending, or that stops without closing, gets its
    # 413 and the connection closes after DRAIN_SECONDS at most.
    for then in ("more", "wait"):
        exchange = Exchange(b"x" * 11, then=then)
        took = await exchange.run()
        assert took == pytest.approx(DRAIN_SECONDS, abs=0.2)
        assert exchange.error() == (413, "payload_too_large")
        assert exchange.sent[-1]["more_body"] is False
        assert not exchange.app_called


async def test_a_complete_body_over_the_limit_is_not_drained(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exchange = Exchange()
    scope: Any = {"type": "http", "headers": []}

    async def receive() -> Any:
        await trio.lowlevel.checkpoint()
        return {"type": "http.request", "body": b"x" * 11, "more_body": False}

    started = trio.current_time()
    await BodyLimit(exchange.app, 10, 60.0)(scope, receive, exchange.send)
    assert trio.current_time() == started  # nothing left to wait for
    assert exchange.error() == (413, "payload_too_large")


async def test_bodies_held_at_once_are_bounded_across_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bodies are read before the token is checked: many clients each sending
    # a body just under the limit must not add up without bound.
    limit = BodyLimit(Exchange().app, 10, 60.0, max_buffered=15)
    slow = Exchange(b"x" * 8)  # holds 8 bytes, never finishes
    late = Exchange(b"y" * 8)  # would make 16 > 15
    scope: Any = {"type": "http", "headers": []}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(limit, scope, slow.receive, slow.send)
        await trio.sleep(1)
        assert limit.buffered == 8
        await limit(scope, late.receive, late.send)
        assert late.error() == (503, "server_busy")
        assert (b"retry-after", b"1") in late.sent[0]["headers"]
        assert not late.app_called
        assert limit.buffered == 8  # the refused body is not held
    assert slow.error() == (408, "request_timeout")
    assert limit.buffered == 0
    # Once the slow body is gone, the same body fits.
    again = Exchange(b"y" * 8, then="leave")
    await limit(scope, again.receive, again.send)
    assert again.sent == []  # the client left; nothing refused it as busy
    assert limit.buffered == 0


async def test_a_body_is_held_while_its_request_is_served() -> None:
    held: list[int] = []
    limit: BodyLimit

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == b"abc"
        held.append(limit.buffered)

    limit = BodyLimit(app, 10, 60.0)

    async def receive() -> Any:
        await trio.lowlevel.checkpoint()
        return {"type": "http.request", "body": b"abc", "more_body": False}

    async def send(message: Any) -> None:
        raise AssertionError(message)

    scope: Any = {"type": "http", "headers": []}
    await limit(scope, receive, send)
    assert held == [3]
    assert limit.buffered == 0


async def _complete(body: bytes) -> Any:
    await trio.lowlevel.checkpoint()
    return {"type": "http.request", "body": body, "more_body": False}


def _with(authorization: bytes | None) -> Any:
    headers = [] if authorization is None else [(b"authorization", authorization)]
    return {"type": "http", "headers": headers}


async def test_requests_with_the_token_have_their_own_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bodies are read before the route checks the token: without a budget
    # of their own, stalled bodies of anyone at all made the operator's
    # requests fail with 503.
    served: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append((await receive())["body"])

    token = TOKEN.encode()
    limit = BodyLimit(app, 10, 60.0, max_buffered=15, token=TOKEN)
    async with trio.open_nursery() as nursery:
        stalled = Exchange(b"x" * 8)
        nursery.start_soon(limit, _with(None), stalled.receive, stalled.send)
        await trio.sleep(1)
        for refused in (
            None,
            b"Bearer wrong-token",
            b"Bearer " + token[:-1],
            b"Bearer " + token + b"x",
            b"Basic " + token,
            token,
        ):
            late = Exchange(b"y" * 8)
            await limit(_with(refused), late.receive, late.send)
            assert late.error() == (503, "server_busy"), refused
        for good in (b"Bearer " + token, b"bearer  " + token):
            await limit(_with(good), functools.partial(_complete, b"z" * 8), _no_send)
        assert served == [b"z" * 8] * 2
        # Their own budget is bounded the same way.
        mine = Exchange(b"m" * 8)
        nursery.start_soon(limit, _with(b"Bearer " + token), mine.receive, mine.send)
        await trio.sleep(1)
        assert limit.buffered == 16
        late = Exchange(b"y" * 8)
        await limit(_with(b"Bearer " + token), late.receive, late.send)
        assert late.error() == (503, "server_busy")
    assert limit.buffered == 0


async def test_without_a_token_every_request_shares_one_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = BodyLimit(Exchange().app, 10, 60.0, max_buffered=15)
    async with trio.open_nursery() as nursery:
        stalled = Exchange(b"x" * 8)
        nursery.start_soon(limit, _with(None), stalled.receive, stalled.send)
        await trio.sleep(1)
        late = Exchange(b"y" * 8)
        await limit(_with(b"Bearer " + TOKEN.encode()), late.receive, late.send)
        assert late.error() == (503, "server_busy")
        nursery.cancel_scope.cancel()


async def _no_send(message: Any) -> None:
    raise AssertionError(message)


async def test_a_crowd_without_the_token_cannot_lock_out_the_operator(
    nursery: trio.Nursery, server: QuietServer, game: WebSocketConnection
) -> None:
    app = create_app(server, token=TOKEN)
    middleware = app.asgi_app
    assert isinstance(middleware, BodyLimit)
    stalled_size = LIMIT - 10
    middleware.max_buffered = 2 * stalled_size + 10  # two stalled bodies fill it
    manager = ServerManager()
    await nursery.start(manager.run)
    url = (await manager.start_http("control", app)).local_url
    port = urlsplit(url).port
    assert port is not None
    head = (
        "POST /games/Tic%20Tac%20Toe/speech-finished HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {LIMIT}\r\n\r\n"
    ).encode()
    crowd = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    try:
        for stream in crowd:  # most of a body, then nothing
            await stream.send_all(head + b" " * stalled_size)
        with trio.fail_after(10):
            while middleware.buffered < 2 * stalled_size:  # noqa: ASYNC110
                await trio.sleep(0.01)
        body = {"reason": "the crowd holds the shared budget"}
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            path = "/games/Tic Tac Toe/speech-finished"
            for headers in ({}, {"Authorization": "Bearer not-the-token"}):
                response = await http.post(path, json=body, headers=headers)
                assert response.status_code == 503, response.text
            response = await http.post(path, json=body, headers=AUTH)
            assert response.status_code == 200, response.text
        message = await recv(game)
        assert isinstance(message, command.SpeechFinished), message
    finally:
        for stream in crowd:
            await stream.aclose()
