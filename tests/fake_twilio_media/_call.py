"""One phone call's Media Stream, as Twilio runs it: what it sends, hears, records."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import mulaw
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from valve import Valve

from . import _wire
from ._player import Player, ReturnedMark
from ._wire import Clear, Mark, Media, ProtocolViolation

CLOSE_TIMEOUT: Final = 2.0
"""Seconds the fake waits for the server's answer to its close frame."""
PROTOCOL_CLOSE_CODE: Final = 1002
"""What the fake closes with after a protocol error (Twilio does not say)."""
MAX_MESSAGE_SIZE: Final = 1 << 20
RESYNC: Final = 0.1
"""A microphone this many seconds late starts its 20 ms ticks afresh."""


@dataclass(frozen=True)
class ProtocolError:
    """What Twilio would log for a message the server sent (``frame``, raw)."""

    code: int
    title: str
    message: str
    frame: str | bytes


class FakeTwilioCall:
    """The Twilio side of one Media Stream; see the package docstring."""

    def __init__(
        self,
        websocket: WebSocketConnection,
        valve: Valve,
        *,
        url: str,
        signed_url: str,
        signature: str | None,
        account_sid: str,
        call_sid: str,
        stream_sid: str,
        tracks: Sequence[str],
        custom_parameters: Mapping[str, str],
        microphone: bool,
        strict: bool,
    ) -> None:
        self.url = url
        self.signed_url = signed_url
        self.signature = signature
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.tracks = list(tracks)
        self.custom_parameters = dict(custom_parameters)
        self.microphone = microphone
        self.strict = strict
        self.sent: list[dict[str, Any]] = []
        self.frames: list[str | bytes] = []
        self.received: list[dict[str, Any]] = []
        self.protocol_errors: list[ProtocolError] = []
        self.media_received = bytearray()
        self.clears = 0
        self.started = False
        self.stopped = False
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: str | None = None
        self.player = Player(self._send_mark, self._notify)
        self._ws = websocket
        self._valve = valve
        self._sequence = 0
        self._chunk = 0
        self._send_lock = trio.Lock()
        self._speech = bytearray()
        self._speech_queued = 0
        self._speech_sent = 0
        self._speaking = trio.Event()
        self._start_sent = trio.Event()
        self._stop_sent = False
        self._changed = trio.Event()
        self._closing = False
        self._tasks = trio.CancelScope()
        self._finished = trio.Event()

    def __repr__(self) -> str:
        return f"<FakeTwilioCall {self.call_sid} closed={self.closed}>"

    # -- what the test reads -------------------------------------------------

    @property
    def marks(self) -> list[ReturnedMark]:
        """Every mark sent back, in order (see :class:`ReturnedMark`)."""
        return self.player.marks

    @property
    def played(self) -> bytes:
        """The server's audio that played, in order (cut chunks: their start)."""
        return bytes(self.player.played)

    @property
    def heard_ms(self) -> float:
        """Milliseconds of the server's audio played so far."""
        return self.player.heard_ms

    @property
    def queued_ms(self) -> float:
        """Milliseconds of the server's audio waiting to play."""
        return self.player.queued_ms

    @property
    def ending(self) -> bool:
        """Whether the stream ended or is ending (nothing can be sent)."""
        return self.closed or self._closing

    @property
    def frozen(self) -> bool:
        """Whether the network is stalled (see :meth:`freeze`)."""
        return self._valve.frozen

    def events(self, event: str) -> list[dict[str, Any]]:
        """The server's valid messages of type ``event`` so far."""
        return [message for message in self.received if message["event"] == event]

    # -- waiting -------------------------------------------------------------

    async def wait_for(self, event: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th valid message of type ``event`` from the server,
        once it came. :class:`RuntimeError` if the stream ends first."""
        await self._until(
            lambda: len(self.events(event)) >= count,
            f"{count} {event!r} message(s)",
        )
        return self.events(event)[count - 1]

    async def wait_mark(self, name: str) -> ReturnedMark:
        """The mark ``name`` once it was sent back (played or cleared)."""
        await self._until(
            lambda: any(mark.name == name for mark in self.marks), f"mark {name!r}"
        )
        return next(mark for mark in self.marks if mark.name == name)

    async def wait_heard(self, ms: float) -> None:
        """Until ``ms`` milliseconds of the server's audio have played."""
        while self.heard_ms < ms:
            if self.closed:
                raise RuntimeError(
                    f"the stream of {self.call_sid} ended after {self.heard_ms} ms "
                    f"heard, not {ms}"
                )
            # Played audio is counted as it plays: look again a frame later.
            with trio.move_on_after(_wire.FRAME_MS / 1000):
                await self._changed.wait()

    async def wait_played(self) -> None:
        """Until every audio queued has played and every mark is back."""
        await self._until(lambda: self.player.idle, "the queued audio to play")

    async def wait_closed(self) -> None:
        """Until the WebSocket is closed, whoever closed it."""
        await self._finished.wait()

    # -- what the test does ----------------------------------------------------

    async def send_start(self) -> None:
        """Send ``connected`` and ``start`` (done at once unless asked not to)."""
        self._check_open()
        await self._send(_wire.connected())
        await self._send(
            _wire.start(
                account_sid=self.account_sid,
                call_sid=self.call_sid,
                stream_sid=self.stream_sid,
                tracks=self.tracks,
                custom_parameters=self.custom_parameters,
            )
        )
        self.started = True
        self._start_sent.set()

    async def say(self, audio: bytes, *, wait: bool = True) -> None:
        """The caller says ``audio`` (μ-law): the microphone sends it in 20 ms
        frames at real time, after what is queued already. With ``wait``,
        returns once its last frame was sent."""
        self._check_open()
        self._speech += audio
        self._speech_queued += len(audio)
        target = self._speech_queued
        self._speaking.set()
        if wait:
            await self._until(
                lambda: self._speech_sent >= target, "the microphone to send it"
            )

    async def send_audio(self, audio: bytes) -> None:
        """Send ``audio`` in 20 ms frames now, as fast as the socket takes them
        (no pacing; frames of the microphone may come between)."""
        self._check_open()
        for frame in _wire.frames(audio):
            await self._send_media(frame)

    async def send_dtmf(self, digit: str) -> None:
        """The caller presses ``digit`` (0-9, ``*``, ``#``, A-D)."""
        if digit not in _wire.DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        self._check_open()
        await self._send(_wire.dtmf(self.stream_sid, digit))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send any frame as is (no ``sequenceNumber`` added): a broken Twilio."""
        self._check_open()
        async with self._send_lock:
            await self._ws.send_message(frame)

    async def hang_up(self) -> None:
        """The caller hangs up: ``stop``, then the close (code 1000).

        Returns once the WebSocket is closed; nothing if it is already.
        """
        if self.closed or self._closing:
            await self.wait_closed()
            return
        self._closing = True  # the microphone sends nothing more
        if self.started:
            await self._send(
                _wire.stop(self.stream_sid, self.account_sid, self.call_sid)
            )
            self.stopped = True
        await self._close(1000, None)

    async def drop(self) -> None:
        """The TCP connection ends now, no ``stop``, no close frame (1006)."""
        if not self.closed:
            self._record_close(1006, None, "twilio")
            await trio.aclose_forcefully(self._valve)
            # trio-websocket's reader may be held by a frozen valve: end the
            # call's tasks here rather than wait for it to notice.
            self._tasks.cancel()
        await self.wait_closed()

    def freeze(self) -> None:
        """Stall the network: nothing read or sent until :meth:`thaw`."""
        self._valve.freeze()

    def thaw(self) -> None:
        """Undo :meth:`freeze`: what waited goes through, in order."""
        self._valve.thaw()

    # -- the tasks -------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Read, listen and speak until the WebSocket closes; ``started()`` at once."""
        try:
            with self._tasks:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read)
                    nursery.start_soon(self.player.run)
                    nursery.start_soon(self._microphone)
                    task_status.started()
        finally:
            self.closed = True
            self._record_close(1006, None, "server")
            self._finished.set()
            self._notify()

    async def _read(self) -> None:
        while True:
            try:
                frame = await self._ws.get_message()
            except ConnectionClosed as closed:
                reason = closed.reason
                self._record_close(
                    1006 if reason is None else reason.code,
                    None if reason is None else reason.reason,
                    "twilio" if self._closing else "server",
                )
                self._tasks.cancel()
                return
            self.frames.append(frame)
            try:
                message = _wire.parse(frame, self.stream_sid)
            except ProtocolViolation as violation:
                if await self._protocol_error(violation, frame):
                    return
                continue
            self.received.append(orjson.loads(frame))
            match message:
                case Media(audio=audio):
                    self.media_received += audio
                    self.player.add_audio(audio)
                case Mark(name=name):
                    self.player.add_mark(name)
                case Clear():
                    self.clears += 1
                    for name in self.player.clear():
                        await self._send_mark(name)
            self._notify()

    async def _protocol_error(
        self, violation: ProtocolViolation, frame: str | bytes
    ) -> bool:
        """Record it; close if Twilio would end the stream (whether it did)."""
        code = violation.code
        self.protocol_errors.append(
            ProtocolError(code, _wire.ERROR_TITLES[code], violation.message, frame)
        )
        self._notify()
        if not self.strict and code != _wire.PROTOCOL_ERROR:
            return False  # a warning in Twilio's log; the stream goes on
        self._closing = True
        await self._close(PROTOCOL_CLOSE_CODE, f"Twilio error {code}")
        return True

    async def _microphone(self) -> None:
        await self._start_sent.wait()
        tick = trio.current_time()
        while not self._closing:
            if not self._speech and not self.microphone:
                self._speaking = trio.Event()
                await self._speaking.wait()
                tick = trio.current_time()
                continue
            spoken = bytes(self._speech[: _wire.FRAME_BYTES])
            del self._speech[: _wire.FRAME_BYTES]
            frame = spoken + bytes([mulaw.SILENCE]) * (_wire.FRAME_BYTES - len(spoken))
            await self._send_media(frame)
            self._speech_sent += len(spoken)
            self._notify()
            tick += _wire.FRAME_MS / 1000
            now = trio.current_time()
            if now - tick > RESYNC:
                tick = now
            await trio.sleep_until(tick)

    # -- sending ---------------------------------------------------------------

    async def _send_media(self, frame: bytes) -> None:
        async with self._send_lock:
            self._chunk += 1
            await self._send_locked(_wire.media(self.stream_sid, frame, self._chunk))

    async def _send_mark(self, name: str) -> None:
        await self._send(_wire.mark(self.stream_sid, name))

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._send_locked(message)

    async def _send_locked(self, message: dict[str, Any]) -> None:
        if self._stop_sent:
            return  # nothing follows a stop
        if message["event"] != "connected":
            self._sequence += 1
            message = {
                "event": message["event"],
                "sequenceNumber": str(self._sequence),
                **message,
            }
        try:
            await self._ws.send_message(orjson.dumps(message).decode())
        except ConnectionClosed:
            return  # the reader saw it too and ends the call
        self._stop_sent = message["event"] == "stop"
        self.sent.append(message)

    async def _close(self, code: int, reason: str | None) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(code, reason)
        self._record_close(code, reason, "twilio")
        self._tasks.cancel()
        await self.wait_closed()

    # -- plumbing --------------------------------------------------------------

    def _record_close(self, code: int, reason: str | None, by: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.closed_by = by

    def _check_open(self) -> None:
        if self.ending:
            raise trio.ClosedResourceError(f"the stream of {self.call_sid} ended")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _until(self, done: Callable[[], bool], what: str) -> None:
        while not done():
            if self.closed:
                raise RuntimeError(f"the stream of {self.call_sid} ended before {what}")
            await self._changed.wait()
