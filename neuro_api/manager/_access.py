"""The access log: one line per HTTP request, written by us, not by Hypercorn.

Hypercorn 0.18 can log one request twice: when the client closes the
connection as the response ends (curl does), the stream's close is handled
while the end of the response is still being sent, and is logged first, with
no status (``"- -"``), then the response is logged again (Hypercorn issue
#357). So its own access log is off, and :class:`AccessLog` writes the line,
once, when the app is done with the request.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
    WWWScope,
)

__all__ = ["ACCESS_LOGGER", "AccessLog", "access_line"]

ACCESS_LOGGER: Final = logging.getLogger("neuro_api.manager.access")
"""Where access lines go, at INFO level (``python -m neuro_api.server``
keeps them out of its console: see its ``--access-log``)."""

_DISCONNECTS: Final = frozenset({"http.disconnect", "websocket.disconnect"})


def _quoted(text: str) -> str:
    """``text`` safe inside a log line's quotes: no control characters."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if escaped.isprintable():
        return escaped
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)


def _header(scope: WWWScope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return _quoted(value.decode("latin-1"))
    return "-"


def access_line(
    scope: WWWScope, status: int | None, sent: int, started: float, duration: float
) -> str:
    """One request in the Combined Log Format, plus its duration in seconds.

    ``started`` is the wall-clock time (:func:`time.time`) it arrived;
    ``status`` None and ``sent`` 0 show as ``-``. The target is shown as the
    client sent it (percent-encoded), and everything the client chose is
    escaped, so a request cannot forge a line.
    """
    client = scope.get("client")
    host = f"{client[0]}:{client[1]}" if client else "-"
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(started))
    method = scope["method"] if scope["type"] == "http" else "GET"
    target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    request = f"{method} {_quoted(target)} HTTP/{scope['http_version']}"
    return (
        f'{host} - - [{when}] "{request}" {status or "-"} {sent or "-"} '
        f'"{_header(scope, b"referer")}" "{_header(scope, b"user-agent")}" '
        f"{duration:.6f}"
    )


class AccessLog:
    """Wraps an ASGI app; logs each HTTP request (and WebSocket) once.

    The line goes to :data:`ACCESS_LOGGER` when the app returns (a
    WebSocket's when it closes), with the status it answered: a request
    the app left unanswered or failed shows the 500 Hypercorn sends for it,
    or ``-`` if the client had already gone. Costs nothing while that
    logger is off for INFO.
    """

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan" or not ACCESS_LOGGER.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started, clock = time.time(), time.monotonic()
        status: int | None = None
        sent = 0
        gone = False

        async def watched_receive() -> ASGIReceiveEvent:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] in _DISCONNECTS
            return message

        async def watched_send(message: ASGISendEvent) -> None:
            nonlocal status, sent
            if (
                message["type"] == "http.response.start"
                or message["type"] == "websocket.http.response.start"
            ):
                status = int(message["status"])
            elif (
                message["type"] == "http.response.body"
                or message["type"] == "websocket.http.response.body"
            ):
                sent += len(message.get("body", b""))
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and status is None:
                status = 403  # closed during the handshake: Hypercorn denies it
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            if status is None and not gone:
                status = 500  # what Hypercorn answers for the app
            ACCESS_LOGGER.info(
                "%s",
                access_line(scope, status, sent, started, time.monotonic() - clock),
            )
