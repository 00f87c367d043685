"""Opening a connection to the Realtime API: the stream, the handshake, why it failed.

The pool owns the TCP (or TLS) stream of each connection: trio-websocket's
own connect leaves the socket open when the handshake is refused, and its
handshake waits until the deadline when the server closed first or
answered garbage. Failures become one sentence (:func:`describe`) and a
kind (:func:`failure_kind`), so the pool logs a refusal once per kind.
"""

from __future__ import annotations

import ssl
from typing import Final, cast

import h11
import orjson
import trio
import trio_websocket
import wsproto.utilities
from trio_websocket import ConnectionRejected, HandshakeError

from neuro_api._shared import find_exception
from neuro_api._text import printable
from neuro_api.realtime._config import PoolConfig
from neuro_api.realtime._connection import Link, PoolCounters
from neuro_api.realtime._errors import RealtimeUnavailable

__all__ = [
    "BadHandshake",
    "OpenFailed",
    "describe",
    "failure_kind",
    "handshake",
    "is_failure",
    "open_stream",
]

WS_QUEUE: Final = 4
"""trio-websocket's own queue; the reader empties it at once."""


class BadHandshake(Exception):
    """The API ended the handshake, or sent no ``session.created`` after it."""


_PROTOCOL_ERRORS: Final = (h11.ProtocolError, wsproto.utilities.ProtocolError)
"""What trio-websocket's handshake raises for an answer that is not HTTP."""
_FAILURES: Final = (
    HandshakeError,
    OSError,
    BadHandshake,
    trio.TooSlowError,
    *_PROTOCOL_ERRORS,
)


class OpenFailed(RealtimeUnavailable):
    """A connection could not be opened.

    ``kind`` is the reason without its details, which may change every
    time (a request id).
    """

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


def is_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection could not be opened (not a cancel)."""
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.split(trio.Cancelled)[1]
        return rest is not None and all(is_failure(inner) for inner in rest.exceptions)
    return isinstance(exc, _FAILURES)


class Watched(trio.abc.Stream):
    """``stream``, and an event set once its peer ended it or it broke."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ended = trio.Event()
        self.why = "the API closed the connection during the handshake"

    def _broke(self, exc: BaseException) -> None:
        if not self.ended.is_set():
            cause = exc.__cause__ or exc  # the TLS error, if it is one
            detail = printable(str(cause))[:200] or type(cause).__name__
            self.why = f"the connection broke during the handshake: {detail}"
            self.ended.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._broke(exc)
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._broke(exc)
            raise
        if not data:
            self.ended.set()
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_stream(
    config: PoolConfig,
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """The TCP stream to the API (TLS for ``wss://``), as trio-websocket opens it."""
    if not config.secure:
        return await trio.open_tcp_stream(config.host, config.port)
    return await trio.open_ssl_over_tcp_stream(
        config.host,
        config.port,
        ssl_context=ssl.create_default_context(),
        https_compatible=True,
    )


def failure_kind(exc: BaseException) -> str:
    """What kind of failure ``exc`` is (see :func:`_describe`), in a word."""
    rejected = find_exception(exc, ConnectionRejected)
    if rejected is not None:
        return f"HTTP {rejected.status_code}"
    for kind in _FAILURES:
        if find_exception(exc, kind) is not None:
            return kind.__name__
    return type(exc).__name__


def describe(exc: BaseException, config: PoolConfig) -> str:
    """Why a connection could not be opened, in a sentence (no secret)."""
    rejected = find_exception(exc, ConnectionRejected)
    if rejected is not None:
        status = rejected.status_code
        text = f"the API refused the connection: HTTP {status}"
        detail = error_message(rejected.body)
        if status in (401, 403):
            text += " (check OPENAI_API_KEY and the model's access)"
        return f"{text}: {detail}" if detail else text
    if find_exception(exc, trio.TooSlowError) is not None:
        return f"no handshake within {config.connect_timeout:g} s"
    bad = find_exception(exc, BadHandshake)
    if bad is not None:
        return str(bad)
    oserror = find_exception(exc, OSError)
    if oserror is not None:
        why = oserror.strerror or str(oserror) or type(oserror).__name__
        return f"cannot reach the API: {why}"
    if any(find_exception(exc, kind) for kind in _PROTOCOL_ERRORS):
        # (The error's own text is about trio-websocket's attempt to answer.)
        return "the API's answer to the handshake is not HTTP"
    handshake = find_exception(exc, HandshakeError)
    if handshake is not None:
        return f"handshake failed: {handshake!r}"[:300]
    return f"cannot connect: {exc!r}"[:300]


def error_message(body: bytes | None) -> str:
    if not body:
        return ""
    try:
        data = orjson.loads(body[:65536])
    except orjson.JSONDecodeError:
        return printable(body[:200].decode("utf-8", "replace"))
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        message = str(error.get("message") or "")[:200]
        return printable(f"{code}: {message}" if code else message)
    return ""


async def handshake(
    nursery: trio.Nursery,
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
    deadline: float,
    config: PoolConfig,
    counters: PoolCounters,
) -> Link:
    """The WebSocket handshake on ``stream``, then ``session.created``.

    The connection's reader runs in ``nursery``. Raises
    :class:`BadHandshake` when the server ends the stream or answers
    garbage, or sends no ``session.created`` before ``deadline``.
    """
    # trio-websocket's handshake waits for an answer until the deadline
    # when the server closed first or answered garbage: watch for that.
    watched = Watched(stream)
    cut = trio.CancelScope()
    watch = trio.CancelScope()

    async def cut_short() -> None:
        with watch:
            await watched.ended.wait()
            cut.cancel()

    nursery.start_soon(cut_short)
    with trio.fail_at(deadline), cut:
        websocket = await trio_websocket.wrap_client_stream(
            nursery,
            # Any stream works (the type says sockets: it reads .socket
            # for .local and .remote only, falling back to repr()).
            cast("trio.SocketStream", watched),
            config.host_header,
            config.resource,
            extra_headers=config.headers(),
            message_queue_size=WS_QUEUE,
            max_message_size=config.max_message_size,
        )
    watch.cancel()
    if cut.cancelled_caught:
        raise BadHandshake(watched.why)
    conn = Link(
        websocket,
        counters=counters,
        queue_size=config.event_queue,
        max_items=config.max_tracked_items,
        buffer=config.event_buffer,
        secret=config.api_key,
    )
    nursery.start_soon(conn.read)
    with trio.move_on_at(deadline):
        await conn.wait_created()
    if conn.initial_session is None:
        raise BadHandshake(
            conn.problem or f"no session.created within {config.connect_timeout:g} s"
        )
    return conn
