"""The voice capability's state: calls announced, calls live, calls ended.

:class:`VoiceService` answers Twilio's webhooks (TwiML) and runs a
:class:`~neuro_api.voice._bridge.Bridge` for each media stream, with one
exclusive lease of the Realtime pool for the whole call. What it needs
from other capabilities comes in as small interfaces (:class:`PhoneRegistry`,
:class:`CallControl`), so it holds no other part's private state.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import orjson
import trio

from neuro_api.realtime import LeaseTimeout, RealtimePool, RealtimeUnavailable
from neuro_api.server import AbstractTrioNeuroServer, ContextMessage
from neuro_api.voice._bridge import (
    END_CALL,
    Bridge,
    BridgeLimits,
    CallEnd,
    MediaClosed,
    MediaSocket,
)
from neuro_api.voice._games import GameTools
from neuro_api.voice._twiml import connect_stream, reject, say_and_hang_up

__all__ = [
    "CallControl",
    "LiveCall",
    "PhoneRegistry",
    "VoiceConfig",
    "VoiceService",
]

LOGGER: Final = logging.getLogger("neuro_api.voice")
CALL_SID: Final = re.compile(r"CA[0-9a-fA-F]{32}\Z")
STREAM_SID: Final = re.compile(r"MZ[0-9a-fA-F]{32}\Z")
MAX_NUMBER: Final = 64
"""Characters of a caller's or callee's number kept."""
ENDED_KEPT: Final = 1024
"""Ended calls whose reason the end webhook can still look up."""
ANNOUNCED_TTL: Final = 60.0
"""Seconds an announced call (webhook answered) waits for its stream."""
START_TIMEOUT: Final = 10.0
"""Seconds a new media stream has to send ``connected`` and ``start``."""
CONTEXT_QUEUE: Final = 64
"""Game context messages waiting for a call (more are dropped, counted)."""
RECORD_TIMEOUT: Final = 4.0
"""Seconds one registry write may take (a webhook makes at most two, within
Twilio's 15 s)."""
FINISH_TIMEOUT: Final = 15.0
"""Seconds recording a call's end, or hanging it up at Twilio, may take."""
CLOSE_TIMEOUT: Final = 2.0
"""Seconds closing a media stream may take."""
SWEEP_EVERY: Final = 10.0
"""Seconds between two looks for announced calls whose stream never came."""
TOKEN: Final = "token"
"""The ``<Parameter>`` carrying a call's one-time value to its stream."""
BUSY: Final = "busy"
BLOCKED: Final = "blocked"
REALTIME_UNAVAILABLE: Final = "realtime_unavailable"
NO_STREAM: Final = "no_stream"


class PhoneRegistry(Protocol):
    """The calls registry as the voice capability records phone calls in it."""

    async def start_phone_call(self, call_sid: str, from_: str, to: str) -> Any:
        """Record a phone call that began (accepted now)."""
        ...

    async def end_phone_call(self, call_sid: str, reason: str) -> Any:
        """Record that it ended, with ``reason``."""
        ...


class CallControl(Protocol):
    """Twilio's REST API for a call in progress."""

    async def say_and_hang_up(self, call_sid: str, twiml: str) -> bool:
        """Replace the call's TwiML (ends the stream; ``<Hangup/>`` ends the call)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class VoiceConfig:
    """The capability's settings as the service uses them."""

    instructions: str
    voice: str = "marin"
    turn_detection: str = "server_vad"
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    game: str | None = None
    limits: BridgeLimits = dataclasses.field(default_factory=BridgeLimits)
    lease_wait: float = 2.0
    announced_only: bool = True
    """Bridge only streams of calls the webhook answered (off with
    ``--voice-insecure``, where anything local may open a stream)."""
    hang_up_tool: bool = True
    """Offer Neuro the ``end_call`` tool."""
    dtmf_action: str | None = None
    """The game action a keypad digit performs (None: a conversation item)."""
    busy_message: str = "Sorry, Neuro is on another call. Please try again later."
    goodbye_message: str = "That's all the time we have. Goodbye!"
    apology_message: str = "Sorry, something went wrong on our side. Goodbye."

    def session(self) -> dict[str, Any]:
        """The ``session`` of the call's first ``session.update``."""
        audio_in: dict[str, Any] = {
            "format": {"type": "audio/pcmu"},
            "turn_detection": {
                "type": self.turn_detection,
                "create_response": True,
                "interrupt_response": True,
            },
        }
        if self.transcription_model:
            audio_in["transcription"] = {"model": self.transcription_model}
        return {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "audio": {
                "input": audio_in,
                "output": {"format": {"type": "audio/pcmu"}, "voice": self.voice},
            },
        }

    def message(self, reason: str) -> str | None:
        """What the caller hears once a call ends for ``reason`` (None: nothing)."""
        if reason in (CallEnd.MAX_DURATION, CallEnd.ENDED_HERE):
            return self.goodbye_message
        if reason == BUSY:
            return self.busy_message
        if reason in (CallEnd.REALTIME_FAILED, REALTIME_UNAVAILABLE):
            return self.apology_message
        return None


@dataclasses.dataclass(slots=True)
class LiveCall:
    """A call announced by the webhook, then bridged."""

    call_sid: str
    caller: str
    callee: str
    announced: float
    token: str = ""
    """The one-time value the TwiML gave the stream (``<Parameter>``)."""
    started: float | None = None
    stream_sid: str | None = None
    bridge: Bridge | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        """The call as ``/health``, ``/stats`` and the console show it."""
        bridge = self.bridge
        shown: dict[str, Any] = {
            "call_sid": self.call_sid,
            "from": self.caller,
            "to": self.callee,
            "state": "bridged" if bridge is not None else "connecting",
            "seconds": round(now - (self.started or self.announced), 1),
        }
        if bridge is not None:
            shown.update(dataclasses.asdict(bridge.counters))
            shown["playing"] = bridge.playback.playing
        return shown


class VoiceService:
    """Phone calls to Neuro: webhooks answered, media streams bridged.

    ``registry`` records the calls (the calls capability's); ``control``
    updates a call through Twilio's REST API (None without credentials:
    a call we end gets its message through the TwiML that follows the
    stream); ``blocked(number)`` says whether a caller is blocked (the
    client-status lists); ``public_base()`` is the public ``http(s)://``
    base URL of the calls server.
    """

    def __init__(
        self,
        config: VoiceConfig,
        *,
        server: AbstractTrioNeuroServer,
        pool: RealtimePool,
        registry: PhoneRegistry,
        public_base: Callable[[], str],
        control: CallControl | None = None,
        blocked: Callable[[str], bool] = lambda number: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.server = server
        self.pool = pool
        self.registry = registry
        self.public_base = public_base
        self.control = control
        self.blocked = blocked
        self.clock = clock
        self.calls: dict[str, LiveCall] = {}
        self.ended: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.counters: collections.Counter[str] = collections.Counter()
        self.opening = 0
        """Streams accepted that have not sent their ``start`` yet."""
        self._unrecorded: collections.deque[str] = collections.deque()
        """Calls forgotten as ``no_stream``, to be ended in the registry (at
        most as many as may be announced between two sweeps)."""

    # -- the webhook ------------------------------------------------------------

    def _expire(self) -> None:
        """Forget announced calls whose stream never came.

        Their end is recorded by :meth:`run`, never in a webhook's time.
        """
        now = self.clock()
        for sid, call in list(self.calls.items()):
            if call.started is None and now - call.announced > ANNOUNCED_TTL:
                del self.calls[sid]
                # Recorded as begun by the webhook: without an end it would
                # stay "accepted" in the registry for ever.
                self._ended(sid, NO_STREAM)
                self._unrecorded.append(sid)

    async def _sweep(self) -> None:
        self._expire()
        while self._unrecorded:
            sid = self._unrecorded.popleft()
            await self._record_end(sid, NO_STREAM)

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sweep announced calls whose stream never came, every few seconds.

        A supervised service of the capability: ready at once, runs until
        cancelled. It ends them in the registry (reason ``no_stream``);
        webhooks only forget them (a webhook must answer within Twilio's
        15 s, whatever the registry does).
        """
        task_status.started()
        while True:
            await trio.sleep(SWEEP_EVERY)
            await self._sweep()

    def _capacity(self) -> bool:
        bridged = sum(1 for c in self.calls.values() if c.started is not None)
        return self.pool.problem is None and bridged < self.pool.config.max_connections

    def _ended(self, call_sid: str, reason: str) -> None:
        """Keep why ``call_sid`` ended (for the end webhook), count it."""
        self.ended[call_sid] = reason
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        self.counters[f"ended_{reason}"] += 1

    async def _record_end(self, call_sid: str, reason: str) -> None:
        with trio.move_on_after(RECORD_TIMEOUT) as waited:
            try:
                await self.registry.end_phone_call(call_sid, reason)
            except Exception as exc:  # the registry's trouble: said, not fatal
                LOGGER.warning("call %s: not recorded as ended: %s", call_sid, exc)
        if waited.cancelled_caught:
            LOGGER.warning("call %s: the registry took too long to end it", call_sid)

    async def _finish(self, call_sid: str, reason: str) -> None:
        self._ended(call_sid, reason)
        await self._record_end(call_sid, reason)

    async def answer(self, form: Mapping[str, str]) -> str:
        """The TwiML for ``POST /twilio/voice`` (the signature was checked).

        Raises :class:`ValueError` for a form without a valid ``CallSid``.
        """
        call_sid = form.get("CallSid", "")
        if not CALL_SID.match(call_sid):
            raise ValueError("CallSid is missing or not a call SID")
        caller = form.get("From", "")[:MAX_NUMBER]
        callee = form.get("To", "")[:MAX_NUMBER]
        self._expire()
        known = self.calls.get(call_sid)
        if known is not None and known.started is None:
            # Twilio asking again (a retry): the same answer, one call.
            return self._connect(known)
        if known is not None or call_sid in self.ended:
            # A signed webhook replayed: announcing the call again would let
            # a second stream (the upgrade signature is the same for every
            # stream) be bridged for a call that is live or over.
            self.counters["replayed"] += 1
            raise ValueError(f"call {call_sid} was answered already")
        self.counters["calls"] += 1
        if self.blocked(caller):
            self.counters["rejected"] += 1
            await self._record_start(call_sid, caller, callee)
            await self._finish(call_sid, BLOCKED)
            return reject()
        if (
            not self._capacity()
            or len(self.calls) >= 2 * self.pool.config.max_connections
        ):
            self.counters["busy"] += 1
            await self._record_start(call_sid, caller, callee)
            await self._finish(call_sid, BUSY)
            return say_and_hang_up(self.config.busy_message)
        # A one-time value the stream must bring back in its ``start``: the
        # upgrade's signature is the same for every stream, and a call SID
        # can be read where requests are logged (a tunnel's inspector).
        call = LiveCall(
            call_sid, caller, callee, self.clock(), token=secrets.token_urlsafe(16)
        )
        self.calls[call_sid] = call
        await self._record_start(call_sid, caller, callee)
        return self._connect(call)

    def _connect(self, call: LiveCall) -> str:
        return connect_stream(
            self.public_base(), {"callSid": call.call_sid, TOKEN: call.token}
        )

    async def _record_start(self, call_sid: str, caller: str, callee: str) -> None:
        with trio.move_on_after(RECORD_TIMEOUT) as waited:
            try:
                await self.registry.start_phone_call(call_sid, caller, callee)
            except Exception as exc:
                LOGGER.warning("call %s: not recorded: %s", call_sid, exc)
        if waited.cancelled_caught:
            LOGGER.warning("call %s: the registry took too long to record it", call_sid)

    def after_stream(self, form: Mapping[str, str]) -> str:
        """The TwiML for ``POST /twilio/voice/end``: the end's message, hang up."""
        reason = self.ended.get(form.get("CallSid", ""), "")
        return say_and_hang_up(self.config.message(reason))

    # -- the media stream --------------------------------------------------------

    async def _start(self, media: MediaSocket) -> dict[str, Any] | None:
        """The stream's ``start`` message (after ``connected``), or None."""
        with trio.move_on_after(START_TIMEOUT):
            for _ in range(3):  # connected, start (a mark or two at most before)
                try:
                    frame = await media.receive()
                except MediaClosed:
                    return None
                if not isinstance(frame, str) or len(frame) > 16384:
                    return None
                try:
                    message = orjson.loads(frame)
                except orjson.JSONDecodeError:
                    return None
                if isinstance(message, dict) and message.get("event") == "start":
                    start = message.get("start")
                    return start if isinstance(start, dict) else None
        return None

    def may_open(self) -> bool:
        """Whether one more stream may be accepted (checked before the upgrade).

        The upgrade's signature is the same for every stream of the URL:
        one seen once opens as many as wanted, each held up to
        ``START_TIMEOUT`` with frames queued, so the streams waiting for
        their ``start`` are bounded (as many as calls may be announced).
        """
        return self.opening < 2 * self.pool.config.max_connections

    async def stream(self, media: MediaSocket) -> str | None:
        """Bridge one media stream until the call ends; returns why (None: no start).

        The lease is taken for the whole call and returned when it ends,
        however it ends; the registry hears the end with its reason.
        """
        self.opening += 1
        try:
            start = await self._start(media)
        finally:
            self.opening -= 1
        if start is None:
            self.counters["bad_streams"] += 1
            return None
        call_sid, stream_sid = start.get("callSid"), start.get("streamSid")
        if not isinstance(call_sid, str) or not CALL_SID.match(call_sid):
            self.counters["bad_streams"] += 1
            return None
        if not isinstance(stream_sid, str) or not STREAM_SID.match(stream_sid):
            self.counters["bad_streams"] += 1
            return None
        call = self.calls.get(call_sid)
        if call is not None and call.token and not _same(call.token, start):
            # Not the stream our TwiML started (the call stays announced).
            self.counters["wrong_token_streams"] += 1
            return None
        if call is None or call.started is not None:
            # Twilio signs every upgrade over the same URL: a signature seen
            # once would open streams forever. Only a call our signed
            # webhook announced, and not streamed yet, is bridged.
            if self.config.announced_only:
                self.counters["unannounced_streams"] += 1
                return None
            call = self.calls[call_sid] = LiveCall(call_sid, "", "", self.clock())
            await self._record_start(call_sid, "", "")
        call.started = self.clock()
        call.stream_sid = stream_sid
        reason = CallEnd.STREAM_CLOSED
        try:
            reason = await self._bridge(call, media, stream_sid)
        finally:
            if call.bridge is not None and call.bridge.reason is not None:
                reason = call.bridge.reason  # cancelled from outside too
            self.calls.pop(call_sid, None)
            self._ended(call_sid, reason)
            # Shielded (the handler may be cancelled) and bounded in time.
            # The caller's side first, the registry beside it: a registry
            # that is slow or hangs never keeps the caller in silence.
            with trio.CancelScope(shield=True):
                await self._let_go(call_sid, reason, media)
        return reason

    async def _let_go(self, call_sid: str, reason: str, media: MediaSocket) -> None:
        """Hang up (or let Twilio go on to the end webhook) and record the end."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._record_end, call_sid, reason)  # bounded
            if self._hangs_up(reason):
                with trio.move_on_after(FINISH_TIMEOUT):
                    if await self._hang_up(call_sid, reason):
                        return
            # Closing the stream sends Twilio on to the ``<Redirect>``, whose
            # TwiML says the end's message (kept above) at once: without
            # Twilio's REST API, or when it did not take the hang-up.
            with trio.move_on_after(CLOSE_TIMEOUT):
                await media.close()

    async def _bridge(self, call: LiveCall, media: MediaSocket, stream_sid: str) -> str:
        try:
            with trio.fail_after(self.config.lease_wait):
                conn = await self.pool.acquire()
        except (trio.TooSlowError, LeaseTimeout):
            self.counters["busy"] += 1
            return BUSY
        except RealtimeUnavailable as exc:
            LOGGER.warning("call %s: Realtime unavailable: %s", call.call_sid, exc)
            return REALTIME_UNAVAILABLE
        send, receive = trio.open_memory_channel[ContextMessage](CONTEXT_QUEUE)
        game = self.config.game
        reserved = (END_CALL,) if self.config.hang_up_tool else ()
        tools = GameTools(self.server, game, reserved=reserved)

        def passed(message: ContextMessage) -> None:
            try:
                send.send_nowait(message)
            except trio.WouldBlock:
                self.counters["context_dropped"] += 1

        def heard(message: ContextMessage) -> None:
            if game is not None and message.game_title != game:
                return
            if tools.hold(message):
                return  # maybe this call's own result: its tool output says it
            passed(message)

        tools.release = passed
        unsubscribe = self.server.context_events.subscribe(heard)
        try:
            bridge = Bridge(
                media,
                conn,
                stream_sid,
                session=self.config.session(),
                tools=tools,
                limits=self.config.limits,
                context=receive,
                hang_up=self.config.hang_up_tool,
                dtmf_action=self.config.dtmf_action,
            )
            call.bridge = bridge
            return await bridge.run()
        finally:
            unsubscribe()
            send.close()
            receive.close()
            self.pool.release(conn)

    def _hangs_up(self, reason: str) -> bool:
        """Whether a call that ended for ``reason`` is hung up through REST."""
        return self.control is not None and reason != CallEnd.CALLER_HUNG_UP

    async def _hang_up(self, call_sid: str, reason: str) -> bool:
        """End the call at Twilio when we ended it (with its message).

        Returns whether Twilio took it (or the call was over there already).
        """
        if self.control is None:
            return False
        twiml = say_and_hang_up(self.config.message(reason))
        try:
            await self.control.say_and_hang_up(call_sid, twiml)
        except Exception as exc:  # one line; the call may have ended anyway
            LOGGER.warning(
                "call %s: Twilio did not take the hang-up: %s", call_sid, exc
            )
            return False
        return True

    def end_call(self, call_sid: str) -> bool:
        """End a call in progress from this side (it hears the goodbye).

        Returns False when no call ``call_sid`` is bridged now (or it is
        ending already, for another reason). The end is recorded and Twilio
        told as for any other end, by the task that runs the call.
        """
        call = self.calls.get(call_sid)
        if call is None or call.bridge is None or call.bridge.reason is not None:
            return False
        call.bridge.end(CallEnd.ENDED_HERE)
        return True

    # -- views --------------------------------------------------------------------

    def live(self) -> list[dict[str, Any]]:
        """The calls in progress, as shown."""
        now = self.clock()
        return [call.to_json(now) for call in self.calls.values()]

    def stats(self) -> dict[str, Any]:
        """Counters since start and the live calls."""
        return {**dict(self.counters), "live": self.live()}

    def describe(self) -> list[str]:
        """The console's ``calls`` lines: the counts, then each live call."""
        counts = self.counters
        lines = [
            f"phone calls: {len(self.calls)} live, {counts['calls']} since start "
            f"({counts['busy']} busy, {counts['rejected']} rejected, "
            f"{counts['forbidden']} refused unsigned)"
        ]
        for call in self.live():
            line = (
                f"  {call['call_sid']}: from {call['from'] or '?'}, "
                f"{call['state']} {call['seconds']:.0f} s"
            )
            if call["state"] == "bridged":
                line += (
                    f", {call['barge_ins']} barge-ins, {call['tool_calls']} tool "
                    f"calls, {call['audio_in_bytes'] // 8000} s heard from the caller"
                )
            lines.append(line)
        return lines


def _same(token: str, start: Mapping[str, Any]) -> bool:
    """Whether a stream's ``start`` brings back the call's one-time value."""
    parameters = start.get("customParameters")
    given = parameters.get(TOKEN) if isinstance(parameters, dict) else None
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), token.encode())
