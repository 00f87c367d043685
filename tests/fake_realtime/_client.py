"""A bare trio-websocket client for the fake, one that never leaks its socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, wrap_client_stream

from neuro_api._shared import leaves, raise_one

from ._server import MAX_MESSAGE_SIZE, PATH, FakeRealtime


@contextlib.asynccontextmanager
async def open_client(
    fake: FakeRealtime,
    *,
    key: str | None = None,
    send_key: bool = True,
    model: str | None = "gpt-realtime",
    path: str = PATH,
) -> AsyncIterator[WebSocketConnection]:
    """Connect to ``fake`` as a client would (``key`` defaults to ``fake.key``).

    trio-websocket 0.12's own ``open_websocket_url``/``connect_websocket_url``
    leak their socket when the server refuses the handshake or closes first
    (a ``ResourceWarning``, an error under this suite's warning filter): this
    client owns its TCP stream and always closes it. A refusal is raised as
    one :class:`ConnectionRejected` (trio-websocket raises it twice, from the
    handshake and from its reader task). At exit the WebSocket is closed
    (code 1000, at most a second) if the server has not closed it.
    """
    headers = []
    if send_key:
        headers.append((b"Authorization", f"Bearer {key or fake.key}".encode()))
    resource = path if model is None else f"{path}?model={model}"
    stream = await trio.open_tcp_stream("127.0.0.1", fake.port)
    async with stream:
        try:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    "127.0.0.1",
                    resource,
                    extra_headers=headers,
                    max_message_size=MAX_MESSAGE_SIZE,
                )
                try:
                    yield ws
                finally:
                    with trio.move_on_after(1):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            rejected, others = group.split(ConnectionRejected)
            if rejected is not None and others is None:
                raise next(leaves(rejected)) from None
            raise_one(group)
