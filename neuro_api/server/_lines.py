"""Console input: standard input as a Trio stream, read as lines."""

from __future__ import annotations

import os
import sys
from typing import Final

import trio

__all__ = ["LineReader", "stdin_stream"]

_READ_SIZE: Final = 65536
_MAX_LINE: Final = 1 << 20


class _StdinStream(trio.abc.ReceiveStream):
    """A file descriptor as a Trio stream, read by ``os.read`` in a thread.

    The descriptor is never made non-blocking (a terminal is shared with
    the shell) and never closed. A read pending at cancellation is abandoned:
    its thread ends with the process, and anything it reads is lost.
    """

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._limiter = trio.CapacityLimiter(1)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await trio.to_thread.run_sync(
            os.read,
            self._fd,
            max_bytes or _READ_SIZE,
            limiter=self._limiter,
            abandon_on_cancel=True,
        )

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class _EndedStream(trio.abc.ReceiveStream):
    """No input at all: every read is the end of input."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def stdin_stream() -> trio.abc.ReceiveStream:
    """The process's standard input, or an ended stream if it has none.

    Python sets ``sys.stdin`` to ``None`` when descriptor 0 was closed at
    start; reading descriptor 0 then would read whatever Trio opened there
    (its epoll descriptor, a socket), so it is never touched.
    """
    try:
        if sys.stdin is not None:
            return _StdinStream(sys.stdin.fileno())
    except (OSError, ValueError):  # a replaced stdin without a descriptor
        pass
    return _EndedStream()


class LineReader:
    """Splits a byte stream into text lines (UTF-8, bad bytes replaced)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._ended = False

    async def readline(self) -> str | None:
        """Return the next line without its end, or ``None`` at end of input.

        A last line without a newline still counts; a line longer than
        1 MiB is cut there.
        """
        await trio.lowlevel.checkpoint()
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                return self._take(end, end + 1)
            if len(self._buffer) >= _MAX_LINE:
                return self._take(_MAX_LINE, _MAX_LINE)
            if self._ended:
                size = len(self._buffer)
                return self._take(size, size) if size else None
            chunk = await self._stream.receive_some(_READ_SIZE)
            if chunk:
                self._buffer += chunk
            else:
                self._ended = True

    def _take(self, end: int, skip: int) -> str:
        line = bytes(self._buffer[:end])
        del self._buffer[:skip]
        return line.decode("utf-8", "replace").rstrip("\r")
