"""One phone call: Twilio's media stream bridged to a leased Realtime connection.

Both sides speak μ-law at 8 kHz (``audio/pcmu``), so audio passes through
as the base64 text it arrives in, both ways: no codec. Three tasks run in
the bridge's nursery until one of them ends the call:

* Twilio → Realtime: ``media`` frames of the inbound track become
  ``input_audio_buffer.append``; returned ``mark`` s tell the
  :class:`~neuro_api.voice._playback.Playback` what was heard; ``dtmf``
  digits become conversation items; ``stop`` ends the call.
* Realtime → Twilio: ``response.output_audio.delta`` becomes a ``media``
  frame followed by a ``mark``; ``input_audio_buffer.speech_started``
  while audio is still queued at Twilio is a barge-in: ``clear`` to
  Twilio and ``conversation.item.truncate`` at what the caller heard;
  a function call is a game action (:class:`~neuro_api.voice._games.GameTools`),
  its result sent back as ``function_call_output`` and ``response.create``.
* The games' context messages (``context``) become system items of the
  conversation, so Neuro knows what happens in the games she talks about.
* The clock: the call ends after ``max_duration``.

Everything is bounded: Twilio frames and API events by size, sends to
Twilio by ``send_timeout`` (a caller's network that stopped reading ends
the call instead of holding the lease), silence from Twilio by
``idle_timeout``, tool calls running at once by ``max_tool_calls``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol

import orjson
import trio

from neuro_api.realtime import ConnectionLost, RealtimeConnection
from neuro_api.server import ContextMessage
from neuro_api.voice._games import GameTools
from neuro_api.voice._playback import Playback

__all__ = [
    "END_CALL",
    "Bridge",
    "BridgeLimits",
    "CallEnd",
    "MediaClosed",
    "MediaSocket",
]

LOGGER: Final = logging.getLogger("neuro_api.voice")
MAX_TWILIO_FRAME: Final = 64 * 1024
"""Characters of one Twilio frame read (a 20 ms media frame is ~400)."""
MAX_AUDIO_PAYLOAD: Final = 16 * 1024
"""Base64 characters of one inbound media payload passed on (~12 KB, 1.5 s)."""
MAX_TRANSCRIPT: Final = 2000
"""Characters of one transcript line kept for the call's view."""
MAX_CONTEXT: Final = 2000
"""Characters of a game's context message passed to the call."""
TRANSCRIPT_LINES: Final = 50
"""Transcript lines a call keeps (the newest)."""
END_CALL: Final = "end_call"
"""The tool Neuro hangs up with (a game's action of that name is not offered)."""
END_CALL_TOOL: Final[dict[str, Any]] = {
    "type": "function",
    "name": END_CALL,
    "description": (
        "Hang up this phone call. Say goodbye first: the call ends once your "
        "last words have been heard."
    ),
    "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
}
HANG_UP_GRACE: Final = 15.0
"""Seconds Neuro's last words may take to be heard after ``end_call``."""


class MediaClosed(Exception):
    """Twilio's side of the media stream ended."""


class MediaSocket(Protocol):
    """Twilio's media stream as the bridge uses it (a WebSocket, server side)."""

    async def receive(self) -> str | bytes:
        """The next frame; :class:`MediaClosed` once the stream ended."""
        ...

    async def send(self, text: str) -> None:
        """Send a text frame; :class:`MediaClosed` if the stream ended."""
        ...

    async def close(self) -> None:
        """Close the stream from our side; nothing if it ended already.

        Twilio then goes on with the TwiML after ``<Connect>``.
        """
        ...


class CallEnd:
    """Why a call ended (the registry's ``end_reason``)."""

    CALLER_HUNG_UP: Final = "caller_hung_up"
    STREAM_CLOSED: Final = "stream_closed"
    MAX_DURATION: Final = "max_duration"
    REALTIME_FAILED: Final = "realtime_failed"
    TWILIO_STALLED: Final = "twilio_stalled"
    TWILIO_SILENT: Final = "twilio_silent"
    NEURO_HUNG_UP: Final = "neuro_hung_up"
    """Neuro called the ``end_call`` tool."""
    ENDED_HERE: Final = "ended_here"
    """Ended from this server (the dashboard, :meth:`VoiceService.end_call`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeLimits:
    """The bounds of one call (see the "Phone calls" docs page)."""

    max_duration: float = 1800.0
    send_timeout: float = 10.0
    """Seconds a send to Twilio may take (a stalled stream ends the call)."""
    idle_timeout: float = 30.0
    """Seconds without any frame from Twilio (it sends 50 a second)."""
    max_tool_calls: int = 4
    """Tool calls running at once; more are answered "busy"."""
    max_tool_calls_total: int = 100
    """Tool calls in one call (each may start a response: API cost); beyond,
    they are answered "refused" without a new response."""


@dataclasses.dataclass(slots=True)
class BridgeCounters:
    """What one call did (shown live and summed in ``/stats``)."""

    frames_in: int = 0
    audio_in_bytes: int = 0
    audio_out_bytes: int = 0
    barge_ins: int = 0
    tool_calls: int = 0
    dtmf: int = 0
    dtmf_dropped: int = 0
    context_items: int = 0
    api_errors: int = 0
    bad_frames: int = 0


def _b64_size(text: str) -> int:
    """Bytes of the base64 ``text`` decodes to (without decoding it)."""
    return len(text) * 3 // 4 - text[-2:].count("=")


class Bridge:
    """One call between ``media`` (Twilio) and ``conn`` (a Realtime lease).

    ``stream_sid`` is the stream's id from its ``start`` message (every
    frame sent to Twilio carries it). ``session`` is the ``session`` of the
    ``session.update`` sent first; ``tools`` the games' tools (None: no
    game actions). ``hang_up`` offers Neuro the ``end_call`` tool;
    ``dtmf_action`` names the game action a keypad digit performs (data
    ``{"digit": "5"}``; None: digits are conversation items and get an
    answer). :meth:`run` returns why the call ended.
    """

    def __init__(
        self,
        media: MediaSocket,
        conn: RealtimeConnection,
        stream_sid: str,
        *,
        session: Mapping[str, Any],
        tools: GameTools | None = None,
        limits: BridgeLimits | None = None,
        context: trio.MemoryReceiveChannel[ContextMessage] | None = None,
        hang_up: bool = True,
        dtmf_action: str | None = None,
    ) -> None:
        self.media = media
        self.conn = conn
        self.stream_sid = stream_sid
        self.session = dict(session)
        self.tools = tools
        self.context = context
        self.limits = limits or BridgeLimits()
        self.playback = Playback()
        self.counters = BridgeCounters()
        self.transcript: list[tuple[str, str]] = []
        """``(who, text)`` lines, newest last: ``caller`` and ``neuro``."""
        self.reason: str | None = None
        self._scope: trio.CancelScope | None = None
        self.hang_up = hang_up
        self.dtmf_action = dtmf_action if tools is not None else None
        self._tool_slots = trio.Semaphore(self.limits.max_tool_calls)
        self._responding = False
        self._hanging_up = False
        self._changed = trio.Event()
        """Set (and replaced) when a response ends or a mark comes back."""

    def end(self, reason: str) -> None:
        """End the call for ``reason`` (the first reason given wins)."""
        if self.reason is None:
            self.reason = reason
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> str:
        """Bridge until the call ends; returns why (a :class:`CallEnd` value).

        Configures the session first (``session.update`` with the audio
        formats, turn detection, voice, instructions and tools). Never
        raises for what Twilio or the API do; a cancel from outside (the
        stream's handler ended) sets ``stream_closed`` and propagates.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                if self.tools is not None:
                    self.tools.refresh()
                if self.tools is not None or self.hang_up:
                    self.session["tools"] = self._tools()
                    self.session["tool_choice"] = "auto"
                await self._to_api({"type": "session.update", "session": self.session})
                nursery.start_soon(self._from_twilio, nursery)
                nursery.start_soon(self._from_realtime, nursery)
                nursery.start_soon(self._clock)
                if self.tools is not None:
                    nursery.start_soon(self._watch_games)
                if self.context is not None:
                    nursery.start_soon(self._game_context, self.context)
        except trio.Cancelled:
            # From outside: the stream's handler ended (Twilio went away,
            # or the calls server is stopping and closes its streams).
            self.reason = self.reason or CallEnd.STREAM_CLOSED
            raise
        return self.reason or CallEnd.STREAM_CLOSED

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _tools(self) -> list[dict[str, Any]]:
        tools = [] if self.tools is None else list(self.tools.tools)
        if self.hang_up:
            tools.append(END_CALL_TOOL)
        return tools

    # -- sending --------------------------------------------------------------

    async def _to_api(self, event: Mapping[str, Any]) -> None:
        try:
            await self.conn.send(event)
        except ConnectionLost as exc:
            LOGGER.warning(
                "call %s: the Realtime connection ended: %s", self.stream_sid, exc
            )
            self.end(CallEnd.REALTIME_FAILED)
            await trio.lowlevel.checkpoint()

    async def _to_twilio(self, message: Mapping[str, Any]) -> None:
        text = orjson.dumps({**message, "streamSid": self.stream_sid}).decode()
        with trio.move_on_after(self.limits.send_timeout) as waited:
            try:
                await self.media.send(text)
            except MediaClosed:
                self.end(CallEnd.STREAM_CLOSED)
                return
        if waited.cancelled_caught:
            self.end(CallEnd.TWILIO_STALLED)

    # -- Twilio -> Realtime -----------------------------------------------------

    async def _from_twilio(self, nursery: trio.Nursery) -> None:
        while True:
            with trio.move_on_after(self.limits.idle_timeout) as waited:
                try:
                    frame = await self.media.receive()
                except MediaClosed:
                    self.end(CallEnd.STREAM_CLOSED)
                    return
            if waited.cancelled_caught:
                self.end(CallEnd.TWILIO_SILENT)
                return
            self.counters.frames_in += 1
            message = self._parse(frame)
            if message is None:
                continue
            kind = message.get("event")
            if kind == "media":
                await self._caller_audio(message.get("media"))
            elif kind == "mark":
                mark = message.get("mark")
                name = mark.get("name") if isinstance(mark, dict) else None
                if isinstance(name, str):
                    self.playback.marked(name)
                    self._pulse()
            elif kind == "dtmf":
                await self._digit(message.get("dtmf"), nursery)
            elif kind == "stop":
                self.end(CallEnd.CALLER_HUNG_UP)
                return

    def _parse(self, frame: str | bytes) -> dict[str, Any] | None:
        if not isinstance(frame, str) or len(frame) > MAX_TWILIO_FRAME:
            self.counters.bad_frames += 1
            return None
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.counters.bad_frames += 1
            return None
        if not isinstance(message, dict):
            self.counters.bad_frames += 1
            return None
        return message

    async def _caller_audio(self, media: object) -> None:
        if not isinstance(media, dict) or media.get("track", "inbound") != "inbound":
            return
        payload = media.get("payload")
        if not isinstance(payload, str) or not payload:
            return
        if len(payload) > MAX_AUDIO_PAYLOAD:
            self.counters.bad_frames += 1
            return
        self.counters.audio_in_bytes += _b64_size(payload)
        await self._to_api({"type": "input_audio_buffer.append", "audio": payload})

    async def _digit(self, dtmf: object, nursery: trio.Nursery) -> None:
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if (
            not isinstance(digit, str)
            or len(digit) != 1
            or digit not in "0123456789*#ABCD"
        ):
            self.counters.bad_frames += 1
            return
        self.counters.dtmf += 1
        if self.dtmf_action is None:
            await self._note(f"[The caller pressed {digit} on the keypad]", "user")
            if not self._responding:
                await self._to_api({"type": "response.create"})
            return
        try:
            self._tool_slots.acquire_nowait()
        except trio.WouldBlock:
            # Keys pressed faster than the game answers: dropped (a caller
            # holding a key down must not pile up actions).
            self.counters.dtmf_dropped += 1
            return
        nursery.start_soon(self._press, digit)

    async def _press(self, digit: str) -> None:
        """Perform the DTMF action for ``digit`` (holding a tool slot)."""
        assert self.tools is not None
        assert self.dtmf_action is not None
        try:
            data = orjson.dumps({"digit": digit}).decode()
            result = await self.tools.perform(self.dtmf_action, data)
            # Neuro learns what the key did; the caller's next words (not
            # every key) get an answer.
            await self._note(
                f"[The caller pressed {digit} on the keypad: {self.dtmf_action} "
                f"gave {result.output}]",
                "user",
            )
        finally:
            self._tool_slots.release()

    async def _note(self, text: str, role: str) -> None:
        """Add a message item to the conversation (no response asked)."""
        await self._to_api(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": role,
                    "content": [{"type": "input_text", "text": text}],
                },
            }
        )

    # -- Realtime -> Twilio -----------------------------------------------------

    async def _from_realtime(self, nursery: trio.Nursery) -> None:
        while True:
            # receive(), not the events() generator: a generator cancelled
            # mid-iteration is finalised later, outside this nursery.
            try:
                event = await self.conn.receive()
            except ConnectionLost:
                break
            kind = event.get("type")
            if kind == "response.output_audio.delta":
                await self._neuro_audio(event)
            elif kind == "input_audio_buffer.speech_started":
                await self._barge_in()
            elif kind == "response.created":
                self._responding = True
            elif kind == "response.done":
                self._responding = False
                self._pulse()
            elif kind == "response.function_call_arguments.done":
                await self._tool_call(event, nursery)
            elif kind == "conversation.item.input_audio_transcription.completed":
                self._said("caller", event.get("transcript"))
            elif kind == "response.output_audio_transcript.done":
                self._said("neuro", event.get("transcript"))
            elif kind == "error":
                self.counters.api_errors += 1
                error = event.get("error")
                message = error.get("message") if isinstance(error, dict) else None
                LOGGER.info(
                    "call %s: the Realtime API said: %s",
                    self.stream_sid,
                    str(message)[:300],
                )
        self.end(CallEnd.REALTIME_FAILED)

    async def _neuro_audio(self, event: Mapping[str, Any]) -> None:
        delta = event.get("delta")
        item_id = event.get("item_id")
        if not isinstance(delta, str) or not delta or not isinstance(item_id, str):
            return
        content_index = event.get("content_index")
        index = content_index if isinstance(content_index, int) else 0
        size = _b64_size(delta)
        self.counters.audio_out_bytes += size
        mark = self.playback.sent(item_id, index, size)
        await self._to_twilio({"event": "media", "media": {"payload": delta}})
        if mark is not None:
            await self._to_twilio({"event": "mark", "mark": {"name": mark}})

    async def _barge_in(self) -> None:
        cuts = self.playback.interrupt()
        if not cuts:
            return
        self._pulse()
        self.counters.barge_ins += 1
        await self._to_twilio({"event": "clear"})
        for cut in cuts:
            await self._to_api(
                {
                    "type": "conversation.item.truncate",
                    "item_id": cut.item_id,
                    "content_index": cut.content_index,
                    "audio_end_ms": cut.audio_end_ms,
                }
            )

    def _said(self, who: str, text: object) -> None:
        if not isinstance(text, str) or not text.strip():
            return
        self.transcript.append((who, text.strip()[:MAX_TRANSCRIPT]))
        del self.transcript[:-TRANSCRIPT_LINES]

    # -- tools ------------------------------------------------------------------

    async def _tool_call(self, event: Mapping[str, Any], nursery: trio.Nursery) -> None:
        call_id, name = event.get("call_id"), event.get("name")
        arguments = event.get("arguments")
        if not isinstance(call_id, str) or not isinstance(name, str):
            return
        self.counters.tool_calls += 1
        if name == END_CALL and self.hang_up:
            await self._end_call(call_id, nursery)  # starts no response
            return
        if self.counters.tool_calls > self.limits.max_tool_calls_total:
            # No new response: a model calling tools in a loop stops here
            # instead of costing a response per call until the call ends.
            output = orjson.dumps(
                {"status": "refused", "message": "no more actions in this call"}
            )
            await self._tool_output(call_id, output.decode(), respond=False)
            return
        text = arguments if isinstance(arguments, str) else "{}"
        if self.tools is None:
            output = orjson.dumps({"status": "unknown_tool", "message": name})
            await self._tool_output(call_id, output.decode())
            return
        try:
            self._tool_slots.acquire_nowait()
        except trio.WouldBlock:
            # Answered here, not in a task of its own: an API sending calls
            # faster than it reads our events then slows this reader down
            # instead of piling up tasks without bound.
            output = orjson.dumps(
                {"status": "busy", "message": "too many actions at once"}
            )
            await self._tool_output(call_id, output.decode())
            return
        nursery.start_soon(self._perform, call_id, name, text)

    async def _perform(self, call_id: str, name: str, arguments: str) -> None:
        """Run one tool call (holding one of the call's tool slots)."""
        assert self.tools is not None
        try:
            output = (await self.tools.call(name, arguments)).output
            # The slot is held until the output is sent, too: sends the API
            # does not take are bounded like the calls.
            await self._tool_output(call_id, output)
        finally:
            self._tool_slots.release()

    async def _tool_output(
        self, call_id: str, output: str, respond: bool = True
    ) -> None:
        await self._to_api(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": output,
                },
            }
        )
        if respond:
            await self._to_api({"type": "response.create"})

    async def _end_call(self, call_id: str, nursery: trio.Nursery) -> None:
        """Neuro hangs up: once her last words are heard (or a grace ends)."""
        output = orjson.dumps({"status": "success", "message": "the call ends"})
        await self._tool_output(call_id, output.decode(), respond=False)
        if self._hanging_up:
            return
        self._hanging_up = True
        nursery.start_soon(self._hang_up_when_heard)

    async def _hang_up_when_heard(self) -> None:
        # The call comes in the response that says goodbye: wait for that
        # response to end and for Twilio to return its marks (played).
        with trio.move_on_after(HANG_UP_GRACE):
            while self._responding or self.playback.playing:
                await self._changed.wait()
        self.end(CallEnd.NEURO_HUNG_UP)

    async def _watch_games(self) -> None:
        assert self.tools is not None
        while True:
            await trio.sleep(1.0)
            if self.tools.refresh():
                await self._to_api(
                    {
                        "type": "session.update",
                        "session": {
                            "type": "realtime",
                            "tools": self._tools(),
                            "tool_choice": "auto",
                        },
                    }
                )

    async def _game_context(
        self, messages: trio.MemoryReceiveChannel[ContextMessage]
    ) -> None:
        async for message in messages:
            text = message.message[:MAX_CONTEXT]
            await self._to_api(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "system",
                        "content": [
                            {
                                "type": "input_text",
                                "text": f"[{message.game_title}] {text}",
                            }
                        ],
                    },
                }
            )
            self.counters.context_items += 1

    # -- the clock --------------------------------------------------------------

    async def _clock(self) -> None:
        await trio.sleep(self.limits.max_duration)
        self.end(CallEnd.MAX_DURATION)
