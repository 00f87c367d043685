"""The caller's ear: plays the server's audio at real time, returns its marks."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import mulaw
import trio

_RATE = mulaw.SAMPLE_RATE  # bytes (samples) a second


@dataclass(frozen=True)
class ReturnedMark:
    """A mark the fake sent back to the server.

    ``cleared``: it came back because a ``clear`` dropped the audio before
    it, not because that audio played (the message on the wire is the same;
    a bridge must tell them apart itself). ``heard_ms``: how much of the
    server's audio had played in all when it came back. ``time``:
    ``trio.current_time()`` then.
    """

    name: str
    cleared: bool
    heard_ms: float
    time: float


@dataclass
class _Audio:
    data: bytes
    arrived: float


class Player:
    """A queue of audio and marks, played in order at 8 bytes a millisecond.

    Audio that arrives while earlier audio plays starts right when that
    ends (no gap); audio that arrives to an idle line starts at once. A mark
    goes back (through ``send_mark``) once everything queued before it has
    played. :meth:`clear` drops the queue (the chunk playing is cut where
    it is) and returns the pending marks for the caller to send back at once.
    """

    def __init__(
        self, send_mark: Callable[[str], Awaitable[None]], notify: Callable[[], None]
    ) -> None:
        self.played = bytearray()
        """Every byte of the server's audio that played (cut chunks: their start)."""
        self.dropped = bytearray()
        """What clears dropped before it played."""
        self.marks: list[ReturnedMark] = []
        self._send_mark = send_mark
        self._notify = notify
        self._queue: collections.deque[_Audio | str] = collections.deque()
        self._last_end = -float("inf")
        self._playing: tuple[_Audio, float, trio.CancelScope] | None = None
        self._wake = trio.Event()

    @property
    def heard_ms(self) -> float:
        """Milliseconds of the server's audio played so far (the chunk playing
        counted up to now)."""
        heard = len(self.played)
        if self._playing is not None:
            audio, start, _ = self._playing
            heard += self._cut(audio, start, trio.current_time())
        return heard / mulaw.BYTES_PER_MS

    @property
    def queued_ms(self) -> float:
        """Milliseconds of audio still to play."""
        queued = sum(len(e.data) for e in self._queue if isinstance(e, _Audio))
        if self._playing is not None:
            audio, start, _ = self._playing
            queued -= self._cut(audio, start, trio.current_time())
        return queued / mulaw.BYTES_PER_MS

    @property
    def idle(self) -> bool:
        """Nothing queued: all audio played, all marks back."""
        return not self._queue

    def add_audio(self, data: bytes) -> None:
        self._queue.append(_Audio(data, trio.current_time()))
        self._wake.set()

    def add_mark(self, name: str) -> None:
        self._queue.append(name)
        self._wake.set()

    def clear(self) -> list[str]:
        """Drop the queued audio; return the marks to send back now, in order."""
        now = trio.current_time()
        if self._playing is not None:
            audio, start, scope = self._playing
            cut = self._cut(audio, start, now)
            self.played += audio.data[:cut]
            self.dropped += audio.data[cut:]
            scope.cancel()
            self._playing = None
            self._queue.popleft()
        pending = []
        for entry in self._queue:
            if isinstance(entry, str):
                pending.append(entry)
            else:
                self.dropped += entry.data
        self._queue.clear()
        self._last_end = now
        heard = self.heard_ms
        self.marks.extend(ReturnedMark(name, True, heard, now) for name in pending)
        self._notify()
        return pending

    async def run(self) -> None:
        """Play until cancelled."""
        while True:
            if not self._queue:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            entry = self._queue[0]
            if isinstance(entry, str):
                self._queue.popleft()
                self.marks.append(
                    ReturnedMark(entry, False, self.heard_ms, trio.current_time())
                )
                self._notify()
                await self._send_mark(entry)
                continue
            start = max(entry.arrived, self._last_end)
            end = start + len(entry.data) / _RATE
            playing = (entry, start, trio.CancelScope())
            self._playing = playing
            with playing[2]:
                await trio.sleep_until(end)
            if self._playing is not playing:
                # clear() took it out and counted what played (it may have
                # come between the deadline and this task running again).
                continue
            self._playing = None
            self._queue.popleft()
            self.played += entry.data
            self._last_end = end
            self._notify()

    @staticmethod
    def _cut(audio: _Audio, start: float, now: float) -> int:
        """How many bytes of ``audio`` (playing since ``start``) played by ``now``."""
        return max(0, min(len(audio.data), int((now - start) * _RATE)))
