"""The access log of HTTP servers run by ServerManager: one line per request.

Real Hypercorn on 127.0.0.1 port 0; clients on raw loopback sockets, so a
test decides exactly when a connection closes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from quart import websocket
from quart_trio import QuartTrio
from trio_websocket import open_websocket_url

from neuro_api.manager import ServerManager

pytestmark = pytest.mark.timeout(30)
WAIT = 10.0
ACCESS = "neuro_api.manager.access"
LINE = re.compile(
    r"^127\.0\.0\.1:\d+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
    r'"(?P<request>[^"\\]*(?:\\.[^"\\]*)*)" (?P<status>\d+|-) (?P<sent>\d+|-) '
    r'"(?P<referer>[^"\\]*(?:\\.[^"\\]*)*)" "(?P<agent>[^"\\]*(?:\\.[^"\\]*)*)" '
    r"\d+\.\d{6}$"
)


class App:
    """A Quart-Trio app whose slow route tells when it started."""

    def __init__(self) -> None:
        self.slow_started = trio.Event()
        self.app = QuartTrio("test_access_log")
        self.app.get("/ping")(self.ping)
        self.app.get("/fail")(self.fail)
        self.app.get("/slow")(self.slow)
        self.app.websocket("/ws")(self.echo)

    async def ping(self) -> str:
        return "pong"

    async def fail(self) -> str:
        raise RuntimeError("broken route")

    async def slow(self) -> str:
        self.slow_started.set()
        await trio.sleep(WAIT * 2)
        return "late"

    async def echo(self) -> None:
        await websocket.send(await websocket.receive())


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    """Serve ``app``; yields its port."""
    manager = ServerManager()
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        info = await manager.start_http("web", app.app, port=0, graceful_timeout=1)
        yield int(info.local_url.rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS)
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    found = [r.getMessage() for r in caplog.records if r.name == ACCESS]
    matches = [LINE.match(line) for line in found]
    assert all(matches), found
    return [m for m in matches if m]


async def get_and_leave(port: int, target: str, headers: str = "") -> bytes:
    """Send one request, read the whole response, close at once (as curl does)."""
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            request = f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
            await stream.send_all(request.encode("latin-1"))
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some()
            head, body = data.split(b"\r\n\r\n", 1)
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            assert length is not None
            while len(body) < int(length[1]):
                body += await stream.receive_some()
    return head.split(b"\r\n", 1)[0]


async def wait_for_lines(caplog: pytest.LogCaptureFixture, count: int) -> None:
    # A line is written once the app is done, just after the response.
    with trio.fail_after(WAIT):
        while True:
            if len([r for r in caplog.records if r.name == ACCESS]) >= count:
                return
            await trio.sleep(0.01)


async def test_a_client_closing_as_the_response_ends_is_logged_once(
    access: pytest.LogCaptureFixture,
) -> None:
    count = 30
    async with serving(App()) as port:
        for _ in range(count):
            assert await get_and_leave(port, "/ping") == b"HTTP/1.1 200 "
        await wait_for_lines(access, count)
        await trio.sleep(0.2)  # a second line per request would come now
    assert len([r for r in access.records if r.name == ACCESS]) == count
    found = lines(access)
    assert {(m["request"], m["status"], m["sent"]) for m in found} == {
        ("GET /ping HTTP/1.1", "200", "4")
    }


async def test_failed_and_abandoned_requests_get_one_line_each(
    access: pytest.LogCaptureFixture,
) -> None:
    app = App()
    async with serving(app) as port:
        assert await get_and_leave(port, "/fail") == b"HTTP/1.1 500 "
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await app.slow_started.wait()
            await stream.aclose()  # the client leaves before any answer
        await wait_for_lines(access, 2)
        await trio.sleep(0.2)
    found = {m["request"]: m["status"] for m in lines(access)}
    assert found == {"GET /fail HTTP/1.1": "500", "GET /slow HTTP/1.1": "-"}


async def test_what_the_client_sends_cannot_forge_a_line(
    access: pytest.LogCaptureFixture,
) -> None:
    async with serving(App()) as port:
        await get_and_leave(
            port, "/ping%0A127.0.0.1%20forged?q=%22", 'User-Agent: a\x1b[31m"b\r\n'
        )
        await wait_for_lines(access, 1)
    (line,) = lines(access)
    assert line["request"] == "GET /ping%0A127.0.0.1%20forged?q=%22 HTTP/1.1"
    assert line["agent"] == 'a\\x1b[31m\\"b'
    assert "\x1b" not in line[0]


async def test_websocket_and_keep_alive_requests(
    access: pytest.LogCaptureFixture,
) -> None:
    async with serving(App()) as port:
        url = f"127.0.0.1:{port}"
        async with open_websocket_url(f"ws://{url}/ws") as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"
        async with httpx.AsyncClient(base_url=f"http://{url}") as http:
            for _ in range(3):
                assert (await http.get("/ping")).status_code == 200
        await wait_for_lines(access, 4)
        await trio.sleep(0.2)
    found = [(m["request"], m["status"]) for m in lines(access)]
    assert found == [
        ("GET /ws HTTP/1.1", "101"),
        *[("GET /ping HTTP/1.1", "200")] * 3,
    ]


async def test_nothing_is_made_while_the_logger_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=ACCESS)
    async with serving(App()) as port:
        assert await get_and_leave(port, "/ping") == b"HTTP/1.1 200 "
    assert [r for r in caplog.records if r.name == ACCESS] == []
