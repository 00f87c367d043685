"""A WebSocket server that bounds its connections and frees dead ones at once.

``trio_websocket.serve_websocket`` keeps a socket that closes before its
opening handshake for the whole handshake timeout, and accepts every
connection it can: 5,000 connects and closes in half a second held 5,000
descriptors for ten seconds, and with ``ulimit -n 1024`` took the games,
``/health`` and the log file down with them. :func:`serve_websocket` here
takes the same arguments and serves the same handlers, with:

* dead sockets released at once: the end of the stream (or a reset) before
  the handshake ends the wait for it, and the socket is closed;
* a cap on open connections (``max_connections``, handshakes included):
  beyond it, a few more get an HTTP 503 saying so, and the rest are closed
  as soon as they are accepted, so a flood costs no descriptors beyond the
  cap and everything else in the process keeps some.

The handshake itself is trio-websocket's (``wrap_server_stream``).
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

__all__ = ["ConnectionLimit", "Listening", "serve_websocket"]

LOGGER: Final = logging.getLogger("neuro_api.server")

_REFUSAL_SLOTS: Final = 16
"""Connections over the cap still answered with a 503 at a time."""
_REFUSAL_TIMEOUT: Final = 2.0
"""Seconds a refused connection has to send its handshake request."""
_TOO_MANY: Final = 503
_WARN_EVERY: Final = 10.0
"""Seconds between two warnings that accepting connections fails."""

WebSocketHandler = Callable[[WebSocketRequest], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Listening:
    """What :func:`serve_websocket` reports once it listens."""

    host: str
    port: int
    """The port of the first listener (the one asked for, or the one picked)."""
    ports: tuple[int, ...]


class ConnectionLimit:
    """Open connections of one server, against a cap (``None``: none)."""

    def __init__(self, maximum: int | None) -> None:
        if maximum is not None and maximum < 1:
            raise ValueError(f"max_connections: must be >= 1, got {maximum!r}")
        self.maximum = maximum
        self.open = 0
        """Connections accepted and not closed yet (handshakes included)."""
        self.refusing = 0
        self.refused = 0
        """Connections refused for being over the cap, since start."""

    def acquire(self) -> bool:
        """Count one more connection, if the cap allows it."""
        if self.maximum is not None and self.open >= self.maximum:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """One connection closed."""
        self.open -= 1


class _WatchedStream(trio.abc.Stream):
    """A stream that says when its peer went away before the handshake."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.on_gone: Callable[[], None] | None = None
        """Called once when the peer closes or resets; cleared after the
        handshake (trio-websocket handles the rest)."""

    def _gone(self) -> None:
        on_gone, self.on_gone = self.on_gone, None
        if on_gone is not None:
            on_gone()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._gone()
            raise
        if not data:
            self._gone()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()

    def stop_watching(self) -> None:
        """After the handshake: every call goes straight to the socket.

        The instance's own attributes shadow the methods above, so a served
        connection pays no extra call per frame for a watch that is over.
        """
        self.on_gone = None
        stream = self.stream
        self.receive_some = stream.receive_some  # type: ignore[method-assign]
        self.send_all = stream.send_all  # type: ignore[method-assign]
        self.wait_send_all_might_not_block = (  # type: ignore[method-assign]
            stream.wait_send_all_might_not_block
        )


class _Tracked(WebSocketRequest):
    """The request the handler sees; remembers the connection it accepts.

    Its endpoints come from the socket itself: trio-websocket sees the
    watching wrapper, not a ``SocketStream``, and could only show its repr.
    """

    def __init__(
        self,
        request: WebSocketRequest,
        stream: trio.SocketStream,
        secure: bool,
        on_accept: Callable[[WebSocketConnection], None] | None,
    ) -> None:
        # Not calling super().__init__: this wraps the request, not copies it.
        self._request = request
        self._socket = stream.socket
        self._secure = secure
        self._on_accept = on_accept
        self.connection: WebSocketConnection | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """HTTP headers of the handshake."""
        return self._request.headers

    @property
    def path(self) -> str:
        """The requested URL path."""
        return self._request.path

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """Subprotocols the client proposed."""
        return self._request.proposed_subprotocols

    @property
    def local(self) -> Endpoint:
        """The connection's local endpoint."""
        address, port, *_ = self._socket.getsockname()
        return Endpoint(address, port, self._secure)

    @property
    def remote(self) -> Endpoint:
        """The connection's remote endpoint."""
        address, port, *_ = self._socket.getpeername()
        return Endpoint(address, port, self._secure)

    async def accept(
        self,
        *,
        subprotocol: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> WebSocketConnection:
        """Accept the handshake (and remember the connection, to close it)."""
        connection = await self._request.accept(
            subprotocol=subprotocol, extra_headers=extra_headers
        )
        self.connection = connection
        if self._on_accept is not None:
            self._on_accept(connection)
        return connection

    async def reject(
        self,
        status_code: int,
        *,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Reject the handshake with an HTTP status."""
        await self._request.reject(status_code, extra_headers=extra_headers, body=body)


@dataclasses.dataclass(slots=True)
class _Options:
    handler: WebSocketHandler
    ssl_context: ssl.SSLContext | None
    message_queue_size: int
    max_message_size: int
    receive_buffer_size: int | None
    connect_timeout: float
    disconnect_timeout: float
    limit: ConnectionLimit
    on_refused: Callable[[], None]
    on_accept: Callable[[WebSocketConnection], None] | None


async def _handshake(
    nursery: trio.Nursery,
    stream: _WatchedStream,
    options: _Options,
    seconds: float,
) -> WebSocketRequest | None:
    """The handshake request, or ``None`` (no request in ``seconds``, or gone)."""
    transport: trio.abc.Stream = stream
    with trio.move_on_after(seconds) as scope:
        stream.on_gone = scope.cancel
        if options.ssl_context is not None:
            transport = trio.SSLStream(
                stream, options.ssl_context, server_side=True, https_compatible=True
            )
        try:
            return await wrap_server_stream(
                nursery,
                transport,
                message_queue_size=options.message_queue_size,
                max_message_size=options.max_message_size,
                receive_buffer_size=options.receive_buffer_size,
            )
        finally:
            stream.stop_watching()
    return None


async def _serve_one(stream: trio.SocketStream, options: _Options) -> None:
    """One connection, from the handshake to the close; never raises."""
    watched = _WatchedStream(stream)
    try:
        async with trio.open_nursery() as nursery:
            tracked: _Tracked | None = None
            try:
                request = await _handshake(
                    nursery, watched, options, options.connect_timeout
                )
                if request is not None:
                    secure = options.ssl_context is not None
                    tracked = _Tracked(request, stream, secure, options.on_accept)
                    await _handle(tracked, options)
            finally:
                if tracked is None or tracked.connection is None:
                    nursery.cancel_scope.cancel()  # nothing more to read
                else:
                    # The connection's reader task ends with its closing
                    # handshake (others may be waiting for it): give it
                    # the time a close takes, no more.
                    nursery.cancel_scope.deadline = min(
                        nursery.cancel_scope.deadline,
                        trio.current_time() + options.disconnect_timeout,
                    )
    except Exception:  # a handshake the peer broke (bad TLS ...): its problem
        LOGGER.debug("a game connection failed before it was served", exc_info=True)
    finally:
        options.limit.release()
        await trio.aclose_forcefully(stream)


async def _handle(tracked: _Tracked, options: _Options) -> None:
    try:
        await options.handler(tracked)
    finally:
        if tracked.connection is not None:
            with trio.move_on_after(options.disconnect_timeout):
                # Ends the connection's reader task too, even when cancelled.
                await tracked.connection.aclose()


async def _refuse(stream: trio.SocketStream, options: _Options) -> None:
    """Answer an over-the-cap connection's handshake with a 503."""
    watched = _WatchedStream(stream)
    try:
        async with trio.open_nursery() as nursery:
            request = await _handshake(nursery, watched, options, _REFUSAL_TIMEOUT)
            if request is not None:
                body = (
                    f"neuro_api: too many connections (limit "
                    f"{options.limit.maximum}); try again later"
                ).encode()
                with trio.move_on_after(_REFUSAL_TIMEOUT):
                    await request.reject(_TOO_MANY, body=body)
            nursery.cancel_scope.cancel()
    except (Exception, ConnectionClosed):
        pass
    finally:
        options.limit.refusing -= 1
        await trio.aclose_forcefully(stream)


async def _accept_loop(
    listener: trio.SocketListener, nursery: trio.Nursery, options: _Options
) -> None:
    """Accept connections for ever; over the cap, refuse them."""
    limit = options.limit
    warned_at = -_WARN_EVERY
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                # Out of descriptors (or buffers): every other part of the
                # process needs them too; wait a little, as trio does.
                now = trio.current_time()
                if now - warned_at >= _WARN_EVERY:
                    warned_at = now
                    LOGGER.warning("accepting game connections failed: %s", exc)
                await trio.sleep(0.1)
                continue
            if limit.acquire():
                nursery.start_soon(_serve_one, stream, options)
                continue
            limit.refused += 1
            options.on_refused()
            if limit.refusing < _REFUSAL_SLOTS:
                limit.refusing += 1
                nursery.start_soon(_refuse, stream, options)
            else:
                await trio.aclose_forcefully(stream)


async def serve_websocket(
    handler: WebSocketHandler,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    handler_nursery: trio.Nursery | None = None,
    message_queue_size: int = 1,
    max_message_size: int = 1 << 20,
    receive_buffer_size: int | None = 4096,
    connect_timeout: float = 60.0,
    disconnect_timeout: float = 60.0,
    max_connections: int | None = None,
    limit: ConnectionLimit | None = None,
    on_refused: Callable[[], None] = lambda: None,
    on_accept: Callable[[WebSocketConnection], None] | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket connections on ``host:port`` until cancelled.

    As ``trio_websocket.serve_websocket`` (``handler`` gets each handshake
    request; an exception escaping it is the caller's to catch, here too
    per connection), plus ``max_connections`` (or a shared ``limit``) and
    ``on_refused``, called for each connection refused for being over it,
    and ``on_accept``, called with each connection its handler accepts. The
    request a handler gets has ``connection`` (None until accepted).
    Reports :class:`Listening` once listening. Raises :class:`OSError` when
    the address cannot be bound.
    """
    if limit is None:
        limit = ConnectionLimit(max_connections)
    options = _Options(
        handler,
        ssl_context,
        message_queue_size,
        max_message_size,
        receive_buffer_size,
        connect_timeout,
        disconnect_timeout,
        limit,
        on_refused,
        on_accept,
    )
    listeners = await trio.open_tcp_listeners(port, host=host)
    ports = tuple(listener.socket.getsockname()[1] for listener in listeners)
    async with trio.open_nursery() as accepting:
        handlers = handler_nursery or accepting
        for listener in listeners:
            accepting.start_soon(_accept_loop, listener, handlers, options)
        task_status.started(Listening(host or "", ports[0], ports))
