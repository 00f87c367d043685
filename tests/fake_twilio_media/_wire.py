"""Media Streams messages: what Twilio sends, and the checks of what it gets.

No I/O here. Shapes follow Twilio's "Media Streams - WebSocket Messages":
every message from Twilio but ``connected`` carries ``sequenceNumber`` (a
string counting from ``"1"``, shared by all of them) and ``streamSid``;
``media.chunk`` counts from ``"1"`` and ``media.timestamp`` is milliseconds
since the stream started, both strings too.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import mulaw
import orjson

FRAME_MS: Final = 20
FRAME_BYTES: Final = FRAME_MS * mulaw.BYTES_PER_MS
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
MEDIA_FORMAT: Final = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}

# Twilio's error codes for what a server sends on a Media Stream.
PROTOCOL_ERROR: Final = 31924
"""ERROR "Stream - WebSocket - Protocol Error": a message that is not a
``media``, ``mark`` or ``clear``."""
MALFORMED_MESSAGE: Final = 31950
"""WARNING "Stream - Protocol - Malformed Message": a binary frame."""
INVALID_MESSAGE: Final = 31951
"""WARNING "Stream - Protocol - Invalid Message": not JSON, a missing or
extra field, a wrong ``streamSid``."""
ERROR_TITLES: Final = {
    PROTOCOL_ERROR: "Stream - WebSocket - Protocol Error",
    MALFORMED_MESSAGE: "Stream - Protocol - Malformed Message",
    INVALID_MESSAGE: "Stream - Protocol - Invalid Message",
}


def sid(prefix: str) -> str:
    """A random SID shaped like Twilio's: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def frames(audio: bytes) -> list[bytes]:
    """``audio`` cut in 20 ms frames, the last one filled up with silence."""
    chunks = [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
    if chunks and len(chunks[-1]) < FRAME_BYTES:
        chunks[-1] += bytes([mulaw.SILENCE]) * (FRAME_BYTES - len(chunks[-1]))
    return chunks


def connected() -> dict[str, Any]:
    """The first message, before any ``sequenceNumber``."""
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(
    *,
    account_sid: str,
    call_sid: str,
    stream_sid: str,
    tracks: list[str],
    custom_parameters: Mapping[str, str],
) -> dict[str, Any]:
    """The ``start`` message (without ``sequenceNumber``)."""
    return {
        "event": "start",
        "streamSid": stream_sid,
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": list(tracks),
            "customParameters": dict(custom_parameters),
            "mediaFormat": dict(MEDIA_FORMAT),
        },
    }


def media(stream_sid: str, frame: bytes, chunk: int) -> dict[str, Any]:
    """One inbound ``media`` frame (``chunk`` counts from 1)."""
    return {
        "event": "media",
        "streamSid": stream_sid,
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str((chunk - 1) * FRAME_MS),
            "payload": base64.b64encode(frame).decode("ascii"),
        },
    }


def dtmf(stream_sid: str, digit: str) -> dict[str, Any]:
    """A key the caller pressed."""
    return {
        "event": "dtmf",
        "streamSid": stream_sid,
        "dtmf": {"track": "inbound_track", "digit": digit},
    }


def mark(stream_sid: str, name: str) -> dict[str, Any]:
    """A mark sent back: the audio before it has played (or was cleared)."""
    return {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}


def stop(stream_sid: str, account_sid: str, call_sid: str) -> dict[str, Any]:
    """The last message: the stream (the call) ended."""
    return {
        "event": "stop",
        "streamSid": stream_sid,
        "stop": {"accountSid": account_sid, "callSid": call_sid},
    }


# -- what the server sends -------------------------------------------------


@dataclass(frozen=True)
class Media:
    """Audio to play (μ-law bytes)."""

    audio: bytes


@dataclass(frozen=True)
class Mark:
    """Send ``name`` back once the audio queued before it has played."""

    name: str


@dataclass(frozen=True)
class Clear:
    """Drop the queued audio, send the pending marks back."""


Outgoing: TypeAlias = Media | Mark | Clear


class ProtocolViolation(Exception):
    """A message Twilio would log an error or a warning for."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_KEYS: Final = {
    "media": {"event", "streamSid", "media"},
    "mark": {"event", "streamSid", "mark"},
    "clear": {"event", "streamSid"},
}


def parse(frame: str | bytes, stream_sid: str) -> Outgoing:
    """The server's message; :class:`ProtocolViolation` when Twilio would refuse it."""
    if isinstance(frame, bytes):
        raise ProtocolViolation(
            MALFORMED_MESSAGE, "binary frame: Media Streams messages are JSON text"
        )
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ProtocolViolation(INVALID_MESSAGE, "message is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(INVALID_MESSAGE, "message is not a JSON object")
    event = message.get("event")
    if event not in _KEYS:
        raise ProtocolViolation(
            PROTOCOL_ERROR,
            f"unsupported event {event!r}: a server may send media, mark and clear",
        )
    keys = set(message)
    if keys != _KEYS[event]:
        missing = sorted(_KEYS[event] - keys)
        extra = sorted(keys - _KEYS[event])
        raise ProtocolViolation(
            INVALID_MESSAGE, f"{event}: missing fields {missing}, extra fields {extra}"
        )
    if message["streamSid"] != stream_sid:
        raise ProtocolViolation(
            INVALID_MESSAGE, f"{event}: wrong streamSid {message['streamSid']!r}"
        )
    if event == "clear":
        return Clear()
    body = message[event]
    field = "payload" if event == "media" else "name"
    if not isinstance(body, dict) or set(body) != {field}:
        raise ProtocolViolation(
            INVALID_MESSAGE, f"{event}: {event} must be an object with only {field!r}"
        )
    value = body[field]
    if not isinstance(value, str):
        raise ProtocolViolation(INVALID_MESSAGE, f"{event}.{field} must be a string")
    if event == "mark":
        return Mark(value)
    try:
        audio = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ProtocolViolation(
            INVALID_MESSAGE, "media.payload is not base64"
        ) from None
    if not audio:
        raise ProtocolViolation(INVALID_MESSAGE, "media.payload is empty")
    return Media(audio)
