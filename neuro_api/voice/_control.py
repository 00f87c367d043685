"""The voice capability's control-plane routes (``/voice/...``).

The phone calls in progress as the dashboard's "Phone calls" page shows
them (what ``/stats`` shows, plus what was said), and a way to end one.
They are on the control plane, under its auth (the token, or the
dashboard's login with its CSRF token), never on the calls server that
Twilio reaches.
"""

from __future__ import annotations

from typing import Any, Final

from quart import Blueprint, request

from neuro_api._numbers import whole_number
from neuro_api.control import ApiError
from neuro_api.voice._bridge import TRANSCRIPT_LINES, CallEnd
from neuro_api.voice._playback import BYTES_PER_MS
from neuro_api.voice._service import CALL_SID, VoiceService

__all__ = ["SHOWN_COUNTERS", "TRANSCRIPT_SHOWN", "voice_control_routes"]

TRANSCRIPT_SHOWN: Final = 10
"""Transcript lines of each call ``GET /voice/calls`` shows by default."""
SHOWN_COUNTERS: Final = ("calls", "busy", "rejected", "forbidden", "replayed")
"""Counters always in the answer (0 until they count something)."""


def _lines() -> int:
    """The ``lines`` query argument, checked (0 to the transcript's 50)."""
    raw = request.args.get("lines", str(TRANSCRIPT_SHOWN))
    lines = whole_number(raw, at_most=TRANSCRIPT_LINES)
    if lines is None:
        raise ApiError(
            400,
            "invalid_request",
            f"lines must be a whole number 0 to {TRANSCRIPT_LINES}",
        )
    return lines


def live_calls(service: VoiceService, lines: int) -> list[dict[str, Any]]:
    """``service.live()``, each bridged call with its last ``lines`` said.

    A bridged call also gets ``heard_ms`` (Neuro's audio the caller heard,
    from Twilio's marks) and ``transcript``: ``[{"who": "caller" |
    "neuro", "text"}]``, oldest first.
    """
    shown = service.live()
    for call in shown:
        live = service.calls.get(call["call_sid"])
        bridge = None if live is None else live.bridge
        if bridge is None:
            continue
        call["heard_ms"] = bridge.playback.heard_bytes // BYTES_PER_MS
        said = bridge.transcript[-lines:] if lines else []
        call["transcript"] = [{"who": who, "text": text} for who, text in said]
    return shown


def voice_control_routes(service: VoiceService) -> Blueprint:
    """The ``/voice`` blueprint of ``service`` (the control plane's auth)."""
    routes = Blueprint("voice_control", __name__)

    @routes.get("/calls")
    async def calls() -> Any:
        """The phone calls in progress and the counters since the start.

        ``{"calls": [...], "count": N, "counters": {...}}``. Each call has
        ``call_sid``, ``from``, ``to``, ``state`` (``connecting`` until its
        media stream starts, then ``bridged``) and ``seconds``; a bridged
        call also its counters (``barge_ins``, ``tool_calls``, ``dtmf``,
        audio bytes in and out…), ``playing`` (Neuro's audio still queued
        at Twilio), ``heard_ms`` and ``transcript``, the last ``?lines=``
        (0 to 50, default 10) lines said: ``{"who": "caller" | "neuro",
        "text"}``, oldest first. ``counters`` always has ``calls``,
        ``busy``, ``rejected``, ``forbidden`` (refused unsigned) and
        ``replayed``, then one ``ended_<reason>`` per end reason seen.
        """
        lines = _lines()
        shown = live_calls(service, lines)
        counters = dict.fromkeys(SHOWN_COUNTERS, 0)
        counters.update(service.counters)
        return {"calls": shown, "count": len(shown), "counters": counters}

    @routes.post("/calls/<call_sid>/end")
    async def end(call_sid: str) -> Any:
        """End a bridged call from this side: the caller hears the goodbye.

        ``{"call_sid", "reason": "ended_here"}`` once the call is told to
        end; the registry records the end (reason ``ended_here``) and
        Twilio is told as for any other end, a moment later. 400
        ``invalid_request`` for a malformed call SID, 404 ``unknown_call``
        for a call that is not bridged now (unknown, still connecting, or
        over).
        """
        if not CALL_SID.match(call_sid):
            raise ApiError(
                400, "invalid_request", "call_sid is CA followed by 32 hex digits"
            )
        if not service.end_call(call_sid):
            raise ApiError(
                404, "unknown_call", f"no phone call {call_sid} is bridged now"
            )
        return {"call_sid": call_sid, "reason": CallEnd.ENDED_HERE}

    return routes
