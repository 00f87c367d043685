"""A stream a test can freeze: a stalled network, honestly (for the fakes).

trio-websocket answers pings in its own reader task, below any handler: to
make pings go unanswered, a fake must stop *reading the socket*. The valve
sits between the TCP stream and the fake's WebSocket (the fake Realtime
server's, the fake Twilio client's): while it is frozen, bytes the other
side sends stay unread (in the valve or the kernel) and nothing is
written, so the other side's ``ping()`` waits for a pong that does not
come, and its messages get no answer. Thawing lets everything through, in
order, as a network that recovers would.
"""

from __future__ import annotations

import trio


class Valve(trio.abc.Stream):
    """Wraps ``stream``; :meth:`freeze` stops both directions, :meth:`thaw` resumes.

    A read that was waiting when the valve froze keeps what it got until the
    thaw; a write that had started finishes.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._open = trio.Event()
        self._open.set()

    @property
    def frozen(self) -> bool:
        """Whether the valve is closed."""
        return not self._open.is_set()

    def freeze(self) -> None:
        """Stop reading and writing (idempotent)."""
        if self._open.is_set():
            self._open = trio.Event()

    def thaw(self) -> None:
        """Let everything through again (idempotent)."""
        self._open.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self._open.wait()
        data = await self.stream.receive_some(max_bytes)
        # What arrived while frozen is held back until the thaw.
        await self._open.wait()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._open.wait()
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._open.wait()
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()
