"""WebSocket servers: trio-websocket, with connection tracking and isolation."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TypedDict

import trio
from trio_websocket import (
    WebSocketConnection,
    WebSocketRequest,
)

from neuro_api._shared import StatusCallback
from neuro_api._wsgroup import ConnectionGroup
from neuro_api._wsserve import Listening
from neuro_api.manager._info import host_port
from neuro_api.manager._service import Service

__all__ = ["WebSocketHandler", "WebSocketOptions", "WebSocketService"]

LOGGER = logging.getLogger("neuro_api.manager")

WebSocketHandler = Callable[[WebSocketRequest], Awaitable[None]]


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


class WebSocketService(Service):
    """A trio-websocket server whose handler errors stay per connection.

    Its connections are a :class:`~neuro_api._wsgroup.ConnectionGroup`
    (the same a server run on its own uses): handlers run in a nursery of
    the server's own, so stopping the server ends them too.
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
        self._group = ConnectionGroup(name, handler)
        self._ssl_context = ssl_context
        self._options = options

    def connections(self) -> list[WebSocketConnection]:
        """Accepted connections not yet closed, oldest first."""
        return self._group.connections()

    async def serve(self, *, task_status: trio.TaskStatus[str]) -> None:
        """Listen, report ``ws(s)://host:port``, serve until drained or cancelled."""
        scheme = "ws" if self._ssl_context is None else "wss"

        def report(listening: Listening) -> None:
            task_status.started(f"{scheme}://{host_port(self.host, listening.port)}")

        await self._group.serve(
            self.host,
            self.port,
            self._ssl_context,
            task_status=StatusCallback(report),
            **self._options,
        )

    async def drain(self) -> None:
        """Stop listening, close open connections with 1001, wait for handlers."""
        self._group.stop_listening()
        await self._group.close_all()
        await self.done.wait()
