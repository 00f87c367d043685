"""WebSocket servers: trio-websocket, with connection tracking and isolation."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
)

from neuro_api._wsserve import Listening, serve_websocket
from neuro_api.manager._info import host_port
from neuro_api.manager._service import Service

__all__ = ["WebSocketHandler", "WebSocketOptions", "WebSocketService"]

LOGGER = logging.getLogger("neuro_api.manager")

WebSocketHandler = Callable[[WebSocketRequest], Awaitable[None]]

# Going-away close code for connections still open when the server stops.
_GOING_AWAY = 1001
_INTERNAL_ERROR = 1011
_CLOSE_TIMEOUT = 2.0


class WebSocketOptions(TypedDict, total=False):
    """Server options the manager passes through unchanged.

    Those of ``trio_websocket.serve_websocket``, and the connection cap of
    :func:`neuro_api._wsserve.serve_websocket` (which serves them).
    """

    message_queue_size: int
    max_message_size: int
    receive_buffer_size: int | None
    connect_timeout: float
    disconnect_timeout: float
    max_connections: int | None
    on_refused: Callable[[], None]


class _TrackedRequest(WebSocketRequest):
    """The handshake the handler sees: records the connection it accepts.

    Delegates to the real request (public API only); anything else falls
    through ``__getattr__``.
    """

    def __init__(
        self,
        request: WebSocketRequest,
        on_accept: Callable[[WebSocketConnection], None],
    ) -> None:
        # Deliberately not calling super().__init__: this wraps, not copies.
        self._request = request
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
    def local(self) -> Any:
        """The connection's local endpoint."""
        return self._request.local

    @property
    def remote(self) -> Any:
        """The connection's remote endpoint."""
        return self._request.remote

    async def accept(
        self,
        *,
        subprotocol: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> WebSocketConnection:
        """Accept the handshake and start tracking the connection."""
        connection = await self._request.accept(
            subprotocol=subprotocol, extra_headers=extra_headers
        )
        self.connection = connection
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


class WebSocketService(Service):
    """A trio-websocket server whose handler errors stay per connection.

    Handlers run in a nursery of this server's own, so stopping the server
    ends them too.
    """

    kind = "websocket"

    def __init__(
        self,
        name: str,
        handler: WebSocketHandler,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        graceful_timeout: float,
        options: WebSocketOptions,
    ) -> None:
        super().__init__(name, host=host, port=port, graceful_timeout=graceful_timeout)
        self._handler = handler
        self._ssl_context = ssl_context
        self._options = options
        self._listen_scope = trio.CancelScope()
        # Insertion-ordered set of accepted connections.
        self._connections: dict[WebSocketConnection, None] = {}

    def connections(self) -> list[WebSocketConnection]:
        """Accepted connections not yet closed, oldest first."""
        return [conn for conn in self._connections if conn.closed is None]

    async def serve(self, *, task_status: trio.TaskStatus[str]) -> None:
        """Listen, report ``ws(s)://host:port``, serve until drained or cancelled."""
        async with trio.open_nursery() as handlers:
            listening = await handlers.start(self._listen, handlers)
            scheme = "ws" if self._ssl_context is None else "wss"
            task_status.started(f"{scheme}://{host_port(self.host, listening.port)}")

    async def _listen(
        self, handlers: trio.Nursery, *, task_status: trio.TaskStatus[Listening]
    ) -> None:
        # Its own scope, so draining can stop the listeners and leave the
        # handlers (in ``handlers``) running to close their connections.
        with self._listen_scope:
            await serve_websocket(
                self._handle,
                self.host,
                self.port,
                self._ssl_context,
                handler_nursery=handlers,
                task_status=task_status,
                **self._options,
            )

    async def _handle(self, request: WebSocketRequest) -> None:
        # The boundary: an exception escaping here would kill trio-websocket's
        # whole server (and every other connection with it).
        tracked = _TrackedRequest(request, self._track)
        try:
            await self._handler(tracked)
        except ConnectionClosed as exc:
            LOGGER.debug("%r: connection closed in handler: %s", self.name, exc.reason)
        except Exception:
            LOGGER.exception("websocket handler of server %r failed", self.name)
            if tracked.connection is not None:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await self._close(tracked.connection, _INTERNAL_ERROR)
        finally:
            if tracked.connection is not None:
                self._connections.pop(tracked.connection, None)

    def _track(self, connection: WebSocketConnection) -> None:
        self._connections[connection] = None

    async def drain(self) -> None:
        """Stop listening, close open connections with 1001, wait for handlers."""
        self._listen_scope.cancel()
        async with trio.open_nursery() as nursery:
            for connection in self.connections():
                nursery.start_soon(self._close, connection, _GOING_AWAY)
        await self.done.wait()

    async def _close(self, connection: WebSocketConnection, code: int) -> None:
        reason = "server shutting down" if code == _GOING_AWAY else "internal error"
        try:
            await connection.aclose(code, reason)
        except Exception:  # a broken connection is closed enough
            LOGGER.debug("%r: closing a connection failed", self.name, exc_info=True)
