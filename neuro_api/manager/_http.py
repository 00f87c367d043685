"""HTTP servers: any ASGI app (Quart-Trio included) under Hypercorn."""

from __future__ import annotations

import logging
import socket

import hypercorn.config
import hypercorn.trio
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from neuro_api.manager._access import AccessLog
from neuro_api.manager._info import host_port
from neuro_api.manager._service import Service, StatusCallback

__all__ = ["HttpService"]

ERROR_LOGGER = logging.getLogger("neuro_api.manager.hypercorn")
MAX_WEBSOCKET_MESSAGE = 64 * 1024
"""Bytes of one WebSocket message an HTTP server reads (larger: close 1009)."""


class _OneConnection(hypercorn.trio.tcp_server.TCPServer):
    """Hypercorn's handler of one connection, whose failure ends it alone.

    Hypercorn 0.18's ``TCPServer.run`` lets anything but ``OSError`` escape
    into the server's nursery, so one connection that trips its protocol
    code stops the whole server, and every other connection with it (a
    supervised server is restarted, its clients cut off). One request does
    it: a WebSocket upgrade followed by a byte of data, or a request sent on
    the connection of a refused upgrade (h11's ``LocalProtocolError``;
    Hypercorn issue #225). Here that failure is logged and the connection is
    closed (``run`` closes its stream in a ``finally``).
    """

    async def run(self) -> None:
        try:
            await super().run()
        except Exception as exc:  # one connection's failure: logged, closed
            ERROR_LOGGER.warning(
                "a connection failed in Hypercorn and was closed: %s: %s",
                type(exc).__name__,
                exc,
            )


# worker_serve makes each connection's handler from this module global.
setattr(hypercorn.trio.run, "TCPServer", _OneConnection)  # noqa: B010


class _LifespanWatch:
    """Passes everything to ``app``; remembers a ``lifespan.startup.failed``.

    Hypercorn reports itself started even when the app's startup failed (the
    server dies right after), so the manager checks this first. HTTP requests
    go through :func:`_hold_disconnect_while_finishing`.
    """

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app
        self.startup_failure: str | None = None

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http":
            await _hold_disconnect_while_finishing(self.app, scope, receive, send)
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched_send(message: ASGISendEvent) -> None:
            if message["type"] == "lifespan.startup.failed":
                self.startup_failure = message.get("message", "") or "failed"
            await send(message)

        await self.app(scope, receive, watched_send)


def _is_last(message: ASGISendEvent) -> bool:
    if message["type"] == "http.response.body":
        return not message.get("more_body", False)
    if message["type"] == "http.response.trailers":
        return not message.get("more_trailers", False)
    return False


async def _hold_disconnect_while_finishing(
    app: ASGIFramework,
    scope: Scope,
    receive: ASGIReceiveCallable,
    send: ASGISendCallable,
) -> None:
    """Run one HTTP request, holding ``http.disconnect`` during the last send.

    Hypercorn does its end-of-response work inside the app's last ``send``:
    it queues ``http.disconnect`` for the app, then starts (with
    ``nursery.start``) the task that closes the idle keep-alive connection
    when the server drains or ``keep_alive_timeout`` passes, or closes the
    connection if the server is draining already. Quart-Trio cancels its
    request nursery as soon as it reads that ``http.disconnect``, which
    cancels the ``send`` still running; a task started from a cancelled scope
    stays in it and ends at once. The connection is then left in a read with
    no timeout, and the drain waits the whole ``graceful_timeout`` for it.
    So the app gets that disconnect only once its last ``send`` returned. A
    disconnect while the response is still being written (the client left)
    is passed on at once.
    """
    finishing: trio.Event | None = None

    async def held_receive() -> ASGIReceiveEvent:
        message = await receive()
        if message["type"] == "http.disconnect" and finishing is not None:
            await finishing.wait()
        return message

    async def watched_send(message: ASGISendEvent) -> None:
        nonlocal finishing
        if not _is_last(message):
            await send(message)
            return
        finishing = trio.Event()
        try:
            await send(message)
        finally:
            finishing.set()

    await app(scope, held_receive, watched_send)


def hypercorn_config(
    host: str, port: int, graceful_timeout: float
) -> hypercorn.config.Config:
    """A Hypercorn config for one loopback-by-default HTTP server."""
    config = hypercorn.config.Config()
    config.bind = [host_port(host, port)]
    # Hypercorn's access log can write a request twice: AccessLog writes it.
    config.accesslog = None
    config.errorlog = ERROR_LOGGER
    config.graceful_timeout = graceful_timeout
    # Hypercorn's default is 16 MiB a WebSocket message, 10 queued: 160 MiB a
    # connection before the app reads one. Our HTTP servers' WebSockets
    # (Twilio's media streams: ~400-byte frames) need far less.
    config.websocket_max_message_size = MAX_WEBSOCKET_MESSAGE
    return config


async def _check_bindable(host: str, port: int) -> None:
    # Hypercorn runs the app's startup (Quart's before_serving) before it
    # binds; failing early on a taken port keeps that from running for
    # nothing. Same options as Hypercorn's own socket.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with trio.socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind((host, port))


class HttpService(Service):
    """Hypercorn serving one ASGI app; drained through its shutdown trigger."""

    kind = "http"

    def __init__(
        self,
        name: str,
        app: ASGIFramework,
        *,
        host: str,
        port: int,
        graceful_timeout: float,
    ) -> None:
        super().__init__(name, host=host, port=port, graceful_timeout=graceful_timeout)
        self._app = _LifespanWatch(AccessLog(app))
        self._shutdown = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[str]) -> None:
        """Bind, run the app's startup, report the first bound URL, serve."""
        if self.port:
            await _check_bindable(self.host, self.port)
        config = hypercorn_config(self.host, self.port, self.graceful_timeout)

        def report(binds: list[str]) -> None:
            # Held back on a failed startup: serve() is about to raise it.
            if self._app.startup_failure is None:
                task_status.started(binds[0])

        await hypercorn.trio.serve(
            self._app,
            config,
            shutdown_trigger=self._shutdown.wait,
            task_status=StatusCallback(report),
            mode="asgi",
        )

    async def drain(self) -> None:
        """Trigger Hypercorn's graceful shutdown and wait for it.

        Idle keep-alive connections are closed at once; in-flight requests
        get ``graceful_timeout`` (a never-ending one, such as an event
        stream its owner did not end first, holds the drain that long), then
        the app's shutdown (Quart's ``after_serving``) runs.
        """
        self._shutdown.set()
        await self.done.wait()

    def startup_failure(self) -> str | None:
        """The app's ``lifespan.startup.failed`` message, if it sent one."""
        return self._app.startup_failure
