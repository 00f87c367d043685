"""Size limits of the control plane: request bodies and the frames they become.

A game's WebSocket server refuses frames over ``max_message_size`` (1 MiB by
default), so the control plane refuses what would make a larger frame to a
game, and any request body much larger than that: 413 ``payload_too_large``.

The body limit is enforced by :class:`BodyLimit`, an ASGI middleware in front
of the whole app, so it holds for every route, whether it reads its body or
not. It reads the body before the app runs and refuses it as soon as it is
known to be too long: at once from ``Content-Length``, or once a chunked
body passes the limit. Bodies are read before the app checks the bearer token,
so what all requests together hold is bounded too (:data:`MAX_BUFFERED`): a
request whose body would pass that gets 503 ``server_busy`` with
``Retry-After``, and a crowd of clients sending large bodies cannot grow the
server's memory past it. With a token, requests that carry it have a budget of
their own: a crowd without the token cannot make them fail. The middleware
only picks the budget; the route still answers 401 to a wrong token.

Why the 413 needs care: Hypercorn closes the connection as soon as a response
ends. A client still sending its body then has unread bytes in the server's
socket, and closing such a socket makes the kernel send a TCP reset instead of
an orderly close. A client that writes its whole body before reading (Python's
``http.client`` and ``urllib`` do) gets "connection reset" or "broken pipe"
and never sees the 413. So the refusal sends the complete response at once
(its length is declared, so a client that reads early has all of it), then
reads and discards what the client still sends, for at most
:data:`DRAIN_SECONDS` and :data:`DRAIN_BYTES`, and only then ends the
response, which closes the connection with nothing unread.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
from typing import Final

import orjson
import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    HTTPScope,
    Scope,
)

from neuro_api._messages import action_frame
from neuro_api.control._auth import bearer_credentials
from neuro_api.control._errors import ApiError

__all__ = [
    "BODY_HEADROOM",
    "DRAIN_BYTES",
    "DRAIN_SECONDS",
    "MAX_BUFFERED",
    "BodyLimit",
    "body_limit",
    "check_action_frame",
    "check_frame",
]

BODY_HEADROOM: Final = 4096
"""Bytes a request body may have beyond ``max_message_size``: room for the
JSON around what becomes the frame (``{"data": ..., "validate": false}``)."""
DRAIN_SECONDS: Final = 5.0
"""Longest time spent discarding the rest of a refused body."""
DRAIN_BYTES: Final = 256 << 20
"""Most bytes of a refused body read and discarded (256 MiB)."""
MAX_BUFFERED: Final = 64 << 20
"""Most request-body bytes held at once by all requests together (64 MiB);
with a token, by those without it, and as much by those with it."""
_ID_ROOM: Final = "0" * 32
"""Stands for the action id the server picks (its ids are shorter)."""


def body_limit(max_message_size: int) -> int:
    """Largest request body accepted, for a server with ``max_message_size``."""
    return max_message_size + BODY_HEADROOM


def _too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


def check_frame(frame: str, max_message_size: int, what: str) -> None:
    """Raise 413 ``payload_too_large`` if ``frame`` is over ``max_message_size``.

    ``what`` names the frame in the message (``"the action frame"``).
    """
    size = len(frame.encode())
    if size > max_message_size:
        raise _too_large(
            f"{what} would be {size} bytes; games accept frames of up to "
            f"{max_message_size} bytes (the server's max_message_size)"
        )


def check_action_frame(action: str, data: str | None, max_message_size: int) -> None:
    """Raise 413 if the ``action`` frame sending ``data`` would be too large."""
    check_frame(
        action_frame(_ID_ROOM, action, data), max_message_size, "the action frame"
    )


def _header(scope: HTTPScope, wanted: bytes) -> bytes | None:
    """The first value of header ``wanted`` (lower case), as Quart reads it."""
    for name, value in scope["headers"]:
        if name.lower() == wanted:
            return value
    return None


def _declared_length(scope: HTTPScope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None  # Hypercorn (h11) refuses these before us


@dataclasses.dataclass(slots=True)
class _Budget:
    """Request-body bytes held now by one kind of request."""

    held: int = 0


class BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413, seen by the client.

    Other requests reach ``app`` with their whole body already read (one
    ``http.request`` message), then the server's messages as they come
    (``http.disconnect``). A body still incomplete after ``body_timeout``
    seconds (Quart's ``BODY_TIMEOUT``; ``None``: no limit) gets 408
    ``request_timeout``. The bodies of all requests in progress hold at most
    ``max_buffered`` bytes together; a body that would pass it gets 503
    ``server_busy`` (its request is refused, the others are unaffected).

    With a ``token`` (the control plane's), a request whose ``Authorization:
    Bearer`` header carries it has a budget of its own, ``max_buffered``
    bytes more: requests without it (which the app will refuse) cannot fill
    it. Nothing is refused for a wrong token here; the app answers 401.
    """

    def __init__(
        self,
        app: ASGIFramework,
        limit: int,
        body_timeout: float | None,
        max_buffered: int = MAX_BUFFERED,
        token: str | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.body_timeout = math.inf if body_timeout is None else body_timeout
        self.max_buffered = max_buffered
        """Most body bytes held at once by the requests of one budget."""
        self._token = None if token is None else token.encode()
        self._anonymous = _Budget()
        self._authenticated = _Budget()

    @property
    def buffered(self) -> int:
        """Body bytes held right now by all requests in progress."""
        return self._anonymous.held + self._authenticated.held

    def _budget(self, scope: HTTPScope) -> _Budget:
        """The token's budget for a request that carries it, else the shared one."""
        if self._token is None:
            return self._anonymous
        header = _header(scope, b"authorization")
        # Decoded as Quart decodes it for the route's own check (_auth).
        given = None if header is None else bearer_credentials(header.decode("latin-1"))
        if given is not None and hmac.compare_digest(given.encode(), self._token):
            return self._authenticated
        return self._anonymous

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Serve one connection scope (HTTP requests are limited)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(receive, send, self._limit_message(declared), False)
            return
        budget = self._budget(scope)
        held = 0
        body = bytearray()

        def release() -> None:
            # Refused or answered: the body is dropped before any drain.
            nonlocal held
            body.clear()
            budget.held -= held
            held = 0

        try:
            complete = False
            with trio.move_on_after(self.body_timeout):
                while not complete and len(body) <= self.limit:
                    event = await receive()
                    if event["type"] != "http.request":
                        return  # the client left: nobody to answer
                    chunk = event.get("body", b"")
                    if budget.held + len(chunk) > self.max_buffered:
                        release()
                        await self._refuse_busy(receive, send)
                        return
                    budget.held += len(chunk)
                    held += len(chunk)
                    body += chunk
                    complete = not event.get("more_body", False)
            if len(body) > self.limit:
                release()
                message = self._limit_message(None)
                await self._refuse(receive, send, message, complete)
                return
            if not complete:
                release()
                await _answer(
                    send,
                    408,
                    "request_timeout",
                    f"the request body did not arrive within {self.body_timeout:g} s",
                )
                return
            first: ASGIReceiveEvent | None = {
                "type": "http.request",
                "body": bytes(body),
                "more_body": False,
            }
            body.clear()  # the copy above is what the app holds

            async def replay() -> ASGIReceiveEvent:
                nonlocal first
                if first is None:
                    return await receive()
                message, first = first, None
                return message

            await self.app(scope, replay, send)
        finally:
            release()

    def _limit_message(self, declared: int | None) -> str:
        size = "" if declared is None else f" ({declared} bytes)"
        return (
            f"the request body{size} is over the limit of {self.limit} bytes "
            f"(the server's max_message_size + {BODY_HEADROOM})"
        )

    async def _refuse_busy(
        self, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        message = (
            f"the server holds {self.max_buffered} bytes of request bodies at "
            "most, and other requests fill it now; try again shortly"
        )
        await self._refuse(
            receive, send, message, False, status=503, code="server_busy"
        )

    async def _refuse(
        self,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        message: str,
        complete: bool,
        *,
        status: int = 413,
        code: str = "payload_too_large",
    ) -> None:
        await _answer(send, status, code, message, more=True)
        # The client has the whole answer; let it finish sending (or stop)
        # before the connection closes, so that it closes without a reset.
        drained = 0
        with trio.move_on_after(DRAIN_SECONDS):
            while not complete and drained <= DRAIN_BYTES:
                event = await receive()
                if event["type"] != "http.request":
                    break
                drained += len(event.get("body", b""))
                complete = not event.get("more_body", False)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _answer(
    send: ASGISendCallable, status: int, code: str, message: str, *, more: bool = False
) -> None:
    """Send a JSON error and close the connection after it.

    ``more=True`` leaves the response open (all its bytes are sent; the
    caller ends it with an empty body message).
    """
    body = orjson.dumps({"error": {"code": code, "message": message}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers,
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": more})
