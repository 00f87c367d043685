"""One WebSocket server's connections: the boundary, tracking, closing them all.

Written once for both ways a games' server runs: by the ServerManager
(``python -m neuro_api.server``) and by
:meth:`~neuro_api.server.AbstractTrioNeuroServer.run` on its own.
:class:`ConnectionGroup` serves a handler with :func:`serve_websocket` in a
nursery of its own, keeps every accepted connection, makes sure nothing a
handler raises can reach the listener (or any other connection), and
drains: stop listening, close every connection with 1001 (going away), let
the handlers return.
"""

from __future__ import annotations

import logging
import ssl
import weakref
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from neuro_api._wsserve import Listening, WebSocketHandler, serve_websocket

__all__ = [
    "ABNORMAL_CLOSURE",
    "GOING_AWAY",
    "ConnectionGroup",
    "close",
    "how_it_closed",
]

LOGGER: Final = logging.getLogger("neuro_api.manager")
GOING_AWAY: Final = 1001
"""The close code of connections still open when their server stops."""
ABNORMAL_CLOSURE: Final = 1006
"""The close code of a connection lost without a close handshake."""
_INTERNAL_ERROR: Final = 1011
_CLOSE_TIMEOUT: Final = 2.0


class _Begun:
    """A close this side began: what it sent, and whether the peer answered."""

    __slots__ = ("answered", "code", "done", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        self.done = trio.Event()
        self.answered = False


# trio-websocket shows 1000 as the close reason of a close we began until
# the peer answers, so what we sent is kept here, per connection.
_BEGUN: Final[weakref.WeakKeyDictionary[WebSocketConnection, _Begun]] = (
    weakref.WeakKeyDictionary()
)


async def close(connection: WebSocketConnection, code: int, reason: str) -> None:
    """Close ``connection`` with ``code``, remembering it if this side is first.

    Waits for the peer's close frame as trio-websocket does (bound the call
    to wait less). If this side began a close already, waits for that one
    to end instead (trio-websocket would return at once, before the answer).
    See :func:`how_it_closed`.
    """
    begun = _BEGUN.get(connection)
    if begun is not None:
        await begun.done.wait()
        return
    if connection.closed is not None:
        return  # the peer closed first: nothing to send
    begun = _BEGUN[connection] = _Begun(code, reason)
    try:
        await connection.aclose(code, reason)
        begun.answered = True
    finally:
        begun.done.set()


def how_it_closed(connection: WebSocketConnection) -> tuple[int, str | None, bool]:
    """``(close code, reason, clean)`` of a connection that ended.

    The code and reason are those of the first close frame either side sent
    (ours when we began, through :func:`close`), or 1006 when it was lost
    without one; ``clean`` is whether the close handshake completed (the
    peer answered ours, or we answered theirs) rather than the stream
    ending.
    """
    closed = connection.closed
    code = ABNORMAL_CLOSURE if closed is None else closed.code
    begun = _BEGUN.get(connection)
    if begun is not None:
        return begun.code, begun.reason, begun.answered and code != ABNORMAL_CLOSURE
    reason = None if closed is None else closed.reason
    return code, reason, code != ABNORMAL_CLOSURE


class ConnectionGroup:
    """Serves ``handler`` and keeps the connections it accepts.

    ``name`` names the server in log lines. An exception escaping the
    handler is logged and closes only its own connection (1011).
    """

    def __init__(self, name: str, handler: WebSocketHandler) -> None:
        self.name = name
        self._handler = handler
        self._listen_scope = trio.CancelScope()
        # Insertion-ordered set of accepted connections.
        self._connections: dict[WebSocketConnection, None] = {}
        # While close_all runs: where a connection accepted meanwhile (its
        # handshake began before listening stopped) is closed too.
        self._closing: trio.Nursery | None = None
        self._close_code = GOING_AWAY

    def connections(self) -> list[WebSocketConnection]:
        """Accepted connections not yet closed, oldest first."""
        return [conn for conn in self._connections if conn.closed is None]

    async def serve(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        *,
        task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
        **options: Any,
    ) -> None:
        """Listen (reporting :class:`Listening`) and serve until drained.

        ``options`` are those of :func:`~neuro_api._wsserve.serve_websocket`.
        Handlers run in a nursery of this call's own: it returns once
        :meth:`drain` stopped the listener and every handler returned, or
        when cancelled. Raises :class:`OSError` if the address cannot be
        bound.
        """
        async with trio.open_nursery() as handlers:
            listening = await handlers.start(
                self._listen, handlers, host, port, ssl_context, options
            )
            task_status.started(listening)

    async def _listen(
        self,
        handlers: trio.Nursery,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        options: dict[str, Any],
        *,
        task_status: trio.TaskStatus[Listening],
    ) -> None:
        # Its own scope, so draining can stop the listeners and leave the
        # handlers (in ``handlers``) running to close their connections.
        with self._listen_scope:
            await serve_websocket(
                self._handle,
                host,
                port,
                ssl_context,
                handler_nursery=handlers,
                on_accept=self._track,
                task_status=task_status,
                **options,
            )

    async def _handle(self, request: WebSocketRequest) -> None:
        # The boundary: an exception escaping here would kill the listener
        # (and every other connection with it).
        try:
            await self._handler(request)
        except ConnectionClosed as exc:
            LOGGER.debug("%r: connection closed in handler: %s", self.name, exc.reason)
        except Exception:
            LOGGER.exception("websocket handler of server %r failed", self.name)
            connection = _accepted(request)
            if connection is not None:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await self._close(connection, _INTERNAL_ERROR)
        finally:
            connection = _accepted(request)
            if connection is not None:
                self._connections.pop(connection, None)

    def _track(self, connection: WebSocketConnection) -> None:
        self._connections[connection] = None
        if self._closing is not None:
            self._closing.start_soon(self._close, connection, self._close_code)

    def stop_listening(self) -> None:
        """Accept no more connections (those open stay)."""
        self._listen_scope.cancel()

    async def close_all(self, code: int = GOING_AWAY) -> None:
        """Close every open connection with ``code``, concurrently.

        A connection accepted meanwhile (its handshake began before
        listening stopped) is closed too. A game that does not answer its
        close frame is waited for as trio-websocket waits; bound the call to
        wait less.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._closing, self._close_code = nursery, code
                for connection in self.connections():
                    nursery.start_soon(self._close, connection, code)
        finally:
            self._closing = None

    async def _close(self, connection: WebSocketConnection, code: int) -> None:
        reason = "server shutting down" if code == GOING_AWAY else "internal error"
        try:
            await close(connection, code, reason)
        except Exception:  # a broken connection is closed enough
            LOGGER.debug("%r: closing a connection failed", self.name, exc_info=True)


def _accepted(request: WebSocketRequest) -> WebSocketConnection | None:
    """The connection ``request`` accepted (serve_websocket's requests know)."""
    connection: WebSocketConnection | None = getattr(request, "connection", None)
    return connection
