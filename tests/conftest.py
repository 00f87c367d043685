"""Shared fixtures."""

from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import tempfile
from typing import Any

import orjson
import pytest
import speech
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

# The client-status capability writes Data/Server_Data/ in the working
# directory by default: every process a test starts (in-process or a
# subprocess, which inherits the environment) writes in a directory of the
# run's instead. Tests that look at the files pass their own --data-dir.
if "NEURO_API_DATA_DIR" not in os.environ:
    _DATA = tempfile.mkdtemp(prefix="neuro-api-test-data-")
    atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
    os.environ["NEURO_API_DATA_DIR"] = _DATA
# The calls API's default port (3001) would be shared by every server a test
# starts: tests that want it pass --calls-port themselves.
os.environ.setdefault("NEURO_API_CALLS_PORT", "0")
# A developer's OpenAI key must not turn the Realtime pool on in tests (nor
# be sent anywhere): tests that want the pool give a fake's key themselves.
for _name in ("OPENAI_API_KEY", "OPENAI_REALTIME_URL", "NEURO_API_REALTIME_ENABLED"):
    os.environ.pop(_name, None)


def pytest_report_header() -> str:
    # Whether the phone-call tests hear real speech or the fallback tones.
    return speech.describe()


@pytest.fixture(autouse=True)
def _data_dir_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process tests that build their settings without the environment
    # get the default (./Data): make "." a directory of the run's.
    monkeypatch.chdir(os.environ["NEURO_API_DATA_DIR"])


# ---------------------------------------------------------------------------
# Game-side client tests (test_trio_ws.py, test_example.py): a minimal Neuro
# WebSocket server on 127.0.0.1, port 0. Every accepted connection is handed
# to the test, which plays Neuro on it; the connection stays open until the
# test (or the game) closes it or the test ends.
# ---------------------------------------------------------------------------


class FakeNeuro:
    """The server side of the game-client tests."""

    def __init__(self) -> None:
        self.port = 0
        self.handshakes = 0
        self.reject_next = 0
        """Reject this many of the next handshakes with HTTP 503."""
        self._handshake = trio.Event()
        self._send, self._receive = trio.open_memory_channel[WebSocketConnection](
            math.inf
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def accept(self) -> WebSocketConnection:
        """Return the next connection a game opened."""
        return await self._receive.receive()

    async def wait_handshakes(self, count: int) -> None:
        """Return once ``count`` handshakes (accepted or not) have begun."""
        while self.handshakes < count:
            await self._handshake.wait()

    async def handler(self, request: WebSocketRequest) -> None:
        # An exception escaping a handler would kill the whole server.
        self.handshakes += 1
        self._handshake.set()
        self._handshake = trio.Event()
        try:
            if self.reject_next > 0:
                self.reject_next -= 1
                await request.reject(503, body=b"not yet")
                return
            websocket = await request.accept()
        except ConnectionClosed:
            return
        self._send.send_nowait(websocket)
        await trio.sleep_forever()

    @staticmethod
    async def receive(websocket: WebSocketConnection) -> dict[str, Any]:
        """Return the next frame the game sent, parsed."""
        frame = await websocket.get_message()
        assert isinstance(frame, str), "games must send text frames"
        obj: dict[str, Any] = orjson.loads(frame)
        return obj


@pytest.fixture
async def fake_neuro(nursery: trio.Nursery) -> FakeNeuro:
    neuro = FakeNeuro()
    server = await nursery.start(
        functools.partial(serve_websocket, neuro.handler, "127.0.0.1", 0, None)
    )
    neuro.port = server.port
    return neuro
