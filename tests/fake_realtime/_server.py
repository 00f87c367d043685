"""The fake server: the listener, the handshake, the connections."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, wrap_server_stream
from valve import Valve

from neuro_api._shared import raise_one

from ._behaviours import Behaviour, Play, Responder, default_responder, plays
from ._connection import FakeConnection
from ._wire import Ids

LOGGER = logging.getLogger(__name__)
PATH: Final = "/v1/realtime"
DEFAULT_MODEL: Final = "gpt-realtime"
MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
DEFAULT_TRANSCRIPT: Final = "Hello."
"""What the fake hears in a user's audio turn when no transcript is scripted."""
SHUTDOWN_TIMEOUT: Final = 5.0

# What the API answers a refused handshake with, by HTTP status.
_REJECTIONS: Final[dict[int, tuple[str, str | None, str]]] = {
    400: ("invalid_request_error", None, "Bad request."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", None, "Invalid URL"),
    429: (
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded."),
}


def _error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": param}}
    )


def _masked(key: str) -> str:
    """A key as the API echoes it: the ends only (short keys: nothing)."""
    if len(key) < 12:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


class FakeRealtime:
    """The fake's state and settings; see the package docstring."""

    def __init__(self, key: str, *, model_required: bool = True) -> None:
        self.key = key
        self.model_required = model_required
        self.port = 0
        self.connections: list[FakeConnection] = []
        self.handshakes = 0
        self.reject_status: int | None = None
        self.reject_body: bytes | None = None
        self.responder: Responder = default_responder
        self.scripted: collections.deque[Play] = collections.deque()
        self.transcripts: collections.deque[str] = collections.deque()
        self.ids = Ids()
        self._changed = trio.Event()
        self._listener_scope = trio.CancelScope()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/realtime`` (append ``?model=...``)."""
        return f"ws://127.0.0.1:{self.port}{PATH}"

    def script(self, *plays: Play) -> None:
        """Queue plays for the next ``response.create`` events, in order
        (any connection); the responder answers once they are used up."""
        self.scripted.extend(plays)

    def script_transcripts(self, *texts: str) -> None:
        """Queue what the next user audio turns say (any connection), for
        input transcription; :data:`DEFAULT_TRANSCRIPT` once used up."""
        self.transcripts.extend(texts)

    def next_transcript(self) -> str:
        """The transcript of the next user audio turn."""
        if self.transcripts:
            return self.transcripts.popleft()
        return DEFAULT_TRANSCRIPT

    def next_play(
        self, connection: FakeConnection, response: dict[str, Any]
    ) -> list[Behaviour]:
        """What the next valid ``response.create`` gets."""
        if self.scripted:
            return plays(self.scripted.popleft())
        return plays(self.responder(connection, response))

    async def wait_connections(self, count: int) -> None:
        """Return once ``count`` connections were accepted (in all)."""
        while len(self.connections) < count:
            await self._changed.wait()

    async def wait_handshakes(self, count: int) -> None:
        """Return once ``count`` handshakes (accepted or not) were answered."""
        while self.handshakes < count:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- serving --------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1, port 0; ``started()`` once :attr:`url` works."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as handlers:
            # Connections outlive the listener (shutdown stops it first).
            with self._listener_scope:
                async with trio.open_nursery() as listening:
                    await listening.start(
                        functools.partial(
                            trio.serve_listeners,
                            self._handle_tcp,
                            listeners,
                            handler_nursery=handlers,
                        )
                    )
                    task_status.started()
            await trio.sleep_forever()

    async def shutdown(self) -> None:
        """Stop listening; close every connection (drop the frozen ones)."""
        self._listener_scope.cancel()
        for connection in self.connections:
            connection.shutdown()
        with trio.move_on_after(SHUTDOWN_TIMEOUT):
            for connection in self.connections:
                await connection.wait_closed()

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        valve = Valve(stream)
        connection: FakeConnection | None = None
        try:
            async with trio.open_nursery() as nursery:
                # The WebSocket's reader lives in this nursery, which outlives
                # the connection's own tasks: the closing handshake needs it.
                request = await wrap_server_stream(
                    nursery, valve, max_message_size=MAX_MESSAGE_SIZE
                )
                connection = await self._handshake(request, valve)
                if connection is not None:
                    await connection.run()
                    await connection.finish()
                nursery.cancel_scope.cancel()
        finally:
            # No close frame from here: a dropped connection just ends.
            await trio.aclose_forcefully(valve)
            if connection is not None:
                connection.ended()

    async def _handshake(
        self, request: WebSocketRequest, valve: Valve
    ) -> FakeConnection | None:
        """Accept the request (the connection) or reject it (``None``)."""
        self.handshakes += 1
        self._notify()
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in request.headers
        }
        target = urlsplit(request.path)
        models = parse_qs(target.query).get("model", [])
        model = models[0] if models and models[0] else None
        refusal = self._refusal(target.path, headers, model)
        try:
            if refusal is not None:
                status, body = refusal
                LOGGER.debug("fake realtime: handshake refused with %s", status)
                await request.reject(
                    status,
                    extra_headers=[(b"content-type", b"application/json")],
                    body=body,
                )
                return None
            websocket = await request.accept()
        except ConnectionClosed:
            return None
        connection = FakeConnection(
            self,
            len(self.connections),
            websocket,
            valve,
            model=model or DEFAULT_MODEL,
            path=request.path,
            headers=headers,
        )
        self.connections.append(connection)
        self._notify()
        return connection

    def _refusal(
        self, path: str, headers: dict[str, str], model: str | None
    ) -> tuple[int, bytes] | None:
        """The status and body a handshake is refused with, if it is."""
        authorization = headers.get("authorization", "")
        given = authorization.removeprefix("Bearer ")
        if self.reject_status is not None:
            status = self.reject_status
            if self.reject_body is not None:
                return status, self.reject_body
            if status == 401:
                return status, self._unauthorized(given)
            type_, code, message = _REJECTIONS.get(
                status, ("invalid_request_error", None, f"HTTP {status}")
            )
            return status, _error_body(message, type_, code)
        if path != PATH:
            return 404, _error_body(
                f"Invalid URL (GET {path})", "invalid_request_error", None
            )
        if not authorization.startswith("Bearer "):
            return 401, _error_body(
                "You didn't provide an API key. You need to provide your API key "
                "in an Authorization header using Bearer auth (i.e. "
                "Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
            )
        if given != self.key:
            return 401, self._unauthorized(given)
        if model is None and self.model_required:
            return 400, _error_body(
                "Missing required parameter: 'model'.",
                "invalid_request_error",
                "missing_required_parameter",
                "model",
            )
        return None

    @staticmethod
    def _unauthorized(given: str) -> bytes:
        return _error_body(
            f"Incorrect API key provided: {_masked(given)}. You can find your API "
            "key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )


@contextlib.asynccontextmanager
async def open_fake_realtime(
    key: str = "sk-test", *, model_required: bool = True
) -> AsyncIterator[FakeRealtime]:
    """Run a :class:`FakeRealtime` on 127.0.0.1 for the ``async with`` block.

    At exit, every connection still open is closed (code 1001; a frozen one
    is dropped) and the listener stops. Errors from the block, or from the
    fake (a responder that raised), come out as themselves, not in an
    :class:`ExceptionGroup` of the fake's nursery.
    """
    fake = FakeRealtime(key, model_required=model_required)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            try:
                yield fake
            finally:
                with trio.CancelScope(shield=True):
                    await fake.shutdown()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_one(group)
