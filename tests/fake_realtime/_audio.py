"""Audio formats and the fake's voice activity detection (no I/O).

The VAD is an energy detector: the input audio is cut in 10 ms windows, a
window is speech when the RMS of its 16-bit samples reaches 1000 times the
session's ``threshold`` (500 for the default 0.5, about -36 dBFS); speech
stops after ``silence_duration_ms`` of windows below it.
"""

from __future__ import annotations

import array
import math
import sys
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import mulaw

from . import _wire
from ._wire import ClientError

WINDOW_MS: Final = 10
RMS_PER_THRESHOLD: Final = 1000.0
SERVER_VAD_DEFAULTS: Final[dict[str, Any]] = {
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: Final[dict[str, Any]] = {
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
# The fake's reading of semantic VAD's eagerness: a silence that long ends
# a turn (the real one listens to what is said, too).
EAGERNESS_SILENCE_MS: Final = {"low": 1000, "medium": 500, "auto": 500, "high": 250}


def _pcm_rms(data: bytes) -> float:
    samples = array.array("h", data[: len(data) // 2 * 2])
    if sys.byteorder == "big":  # pragma: no cover (the API's PCM is little-endian)
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def _pcm_tone(ms: int) -> bytes:
    step = 2 * math.pi * 440 / 24000
    samples = array.array(
        "h", (round(8000 * math.sin(step * n)) for n in range(ms * 24))
    )
    if sys.byteorder == "big":  # pragma: no cover
        samples.byteswap()
    return samples.tobytes()


def _mulaw_tone(ms: int) -> bytes:
    step = 2 * math.pi * 440 / mulaw.SAMPLE_RATE
    return mulaw.encode(round(8000 * math.sin(step * n)) for n in range(ms * 8))


@dataclass(frozen=True)
class AudioFormat:
    """An ``audio/…`` format of the session: its rate, and whether the fake
    can hear it (``audio/pcma`` is counted, not analysed)."""

    type: str
    bytes_per_ms: int
    analysed: bool

    def rms(self, data: bytes) -> float:
        """The RMS of ``data``'s samples (16-bit scale)."""
        if self.type == "audio/pcmu":
            return mulaw.rms(data)
        return _pcm_rms(data)

    def tone(self, ms: int) -> bytes:
        """``ms`` of a 440 Hz tone in this format: the fake's voice."""
        if self.type == "audio/pcm":
            return _pcm_tone(ms)
        if self.type == "audio/pcmu":
            return _mulaw_tone(ms)
        return bytes([0xD5]) * (ms * self.bytes_per_ms)  # A-law silence

    def ms(self, data: bytes | bytearray) -> int:
        """How many whole milliseconds ``data`` lasts."""
        return len(data) // self.bytes_per_ms


FORMATS: Final = {
    "audio/pcm": AudioFormat("audio/pcm", 48, True),  # 24 kHz, 16-bit
    "audio/pcmu": AudioFormat("audio/pcmu", 8, True),
    "audio/pcma": AudioFormat("audio/pcma", 8, False),
}


def audio_format(fmt: dict[str, Any] | None) -> AudioFormat:
    """The session's format object (checked by ``session.update``)."""
    return FORMATS[(fmt or {}).get("type", "audio/pcm")]


@dataclass(frozen=True)
class VadConfig:
    """What the VAD and the automatic responses follow."""

    rms_threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    create_response: bool
    interrupt_response: bool

    @classmethod
    def of(cls, turn_detection: dict[str, Any] | None) -> VadConfig | None:
        """The configuration of a session's ``turn_detection`` (``None``: off)."""
        if turn_detection is None:
            return None
        settings = {**SERVER_VAD_DEFAULTS, **turn_detection}
        if settings["type"] == "semantic_vad":
            # Listening to meaning is out of reach: the eagerness is a silence.
            settings["silence_duration_ms"] = EAGERNESS_SILENCE_MS[
                settings.get("eagerness", "auto")
            ]
            settings["threshold"] = SERVER_VAD_DEFAULTS["threshold"]
            settings["prefix_padding_ms"] = SERVER_VAD_DEFAULTS["prefix_padding_ms"]
        return cls(
            rms_threshold=RMS_PER_THRESHOLD * float(settings["threshold"]),
            prefix_padding_ms=int(settings["prefix_padding_ms"]),
            silence_duration_ms=int(settings["silence_duration_ms"]),
            create_response=bool(settings["create_response"]),
            interrupt_response=bool(settings["interrupt_response"]),
        )


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """``audio`` is the buffer up to the stop: committed with it."""

    audio_end_ms: int
    audio: bytes


VadEvent: TypeAlias = SpeechStarted | SpeechStopped


class InputAudio:
    """The input audio buffer and the VAD that listens to it.

    Times are milliseconds of all the audio appended in the session (the
    API's ``audio_start_ms``/``audio_end_ms``). A start reaches back
    ``prefix_padding_ms``, not before the buffer's start (the last commit
    or clear); a stop is where the silence that ended the speech ends, and
    the buffer up to there is committed at once (what follows stays).
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        """The audio since the last commit or clear."""
        self.speaking = False
        self.position_ms = 0.0
        """The session's audio looked at so far (whole windows)."""
        self.buffer_start_ms = 0.0
        self._unheard = 0  # bytes at the end of the buffer not in a window yet
        self._format: AudioFormat | None = None
        self._silent_ms = 0

    def append(
        self, data: bytes, fmt: AudioFormat, config: VadConfig | None
    ) -> list[VadEvent]:
        """Add ``data``; what it starts or stops (nothing without a config)."""
        if fmt is not self._format:
            self._skip()  # a new format: the old one's leftovers are not heard
            self._format = fmt
        self.buffer += data
        self._unheard += len(data)
        if config is None or not fmt.analysed:
            self._skip()
            return []
        size = fmt.bytes_per_ms * WINDOW_MS
        events: list[VadEvent] = []
        while self._unheard >= size:
            at = len(self.buffer) - self._unheard
            loud = fmt.rms(bytes(self.buffer[at : at + size])) >= config.rms_threshold
            self._unheard -= size
            start = self.position_ms
            self.position_ms += WINDOW_MS
            if not self.speaking:
                if loud:
                    self.speaking = True
                    self._silent_ms = 0
                    began = max(self.buffer_start_ms, start - config.prefix_padding_ms)
                    events.append(SpeechStarted(round(began)))
            elif loud:
                self._silent_ms = 0
            else:
                self._silent_ms += WINDOW_MS
                if self._silent_ms >= config.silence_duration_ms:
                    cut = len(self.buffer) - self._unheard
                    audio = bytes(self.buffer[:cut])
                    del self.buffer[:cut]
                    self._restart()
                    events.append(SpeechStopped(round(self.position_ms), audio))
        return events

    def take(self) -> bytes:
        """Commit (or clear) the whole buffer: its audio."""
        self._skip()
        audio = bytes(self.buffer)
        self.buffer.clear()
        self._restart()
        return audio

    def _restart(self) -> None:
        self.speaking = False
        self._silent_ms = 0
        self.buffer_start_ms = self.position_ms

    def _skip(self) -> None:
        """The bytes not heard yet count as time, unheard."""
        if self._format is not None:
            self.position_ms += self._unheard / self._format.bytes_per_ms
        self._unheard = 0


# -- session.update ----------------------------------------------------------


def check_session_audio(session: dict[str, Any]) -> None:
    """The ``audio`` of a ``session.update``; turn detections completed with
    their defaults (the API answers the whole object)."""
    if "audio" not in session:
        return
    audio = session["audio"]
    if not isinstance(audio, dict):
        raise _wire.wrong_type("session.audio", "an object", audio)
    for side in ("input", "output"):
        if side not in audio:
            continue
        part = audio[side]
        where = f"session.audio.{side}"
        if not isinstance(part, dict):
            raise _wire.wrong_type(where, "an object", part)
        if "format" in part:
            _check_format(part["format"], f"{where}.format")
    part = audio.get("input", {})
    if "turn_detection" in part:
        where = "session.audio.input.turn_detection"
        part["turn_detection"] = _turn_detection(part["turn_detection"], where)
    transcription = part.get("transcription")
    if transcription is not None and not isinstance(transcription, dict):
        raise _wire.wrong_type(
            "session.audio.input.transcription", "an object", transcription
        )


def _check_format(fmt: object, where: str) -> None:
    if not isinstance(fmt, dict):
        raise _wire.wrong_type(where, "an object", fmt)
    kind = fmt.get("type")
    if kind not in FORMATS:
        raise _wire.invalid_value(f"{where}.type", kind, tuple(FORMATS))
    if kind == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise _wire.invalid_value(f"{where}.rate", fmt["rate"], ("24000",))


def _turn_detection(value: object, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wire.wrong_type(where, "an object", value)
    kind = value.get("type")
    if kind is None:
        raise _wire.missing(f"{where}.type")
    if kind == "semantic_vad":
        eagerness = value.get("eagerness", "auto")
        if eagerness not in EAGERNESS_SILENCE_MS:
            raise _wire.invalid_value(
                f"{where}.eagerness", eagerness, tuple(EAGERNESS_SILENCE_MS)
            )
        complete = {"type": kind, **SEMANTIC_VAD_DEFAULTS, **value}
    elif kind == "server_vad":
        threshold = value.get("threshold", 0.5)
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise ClientError(
                f"Invalid '{where}.threshold': expected a number between 0 and "
                f"1, but got {threshold!r} instead.",
                "invalid_value",
                f"{where}.threshold",
            )
        for key in ("prefix_padding_ms", "silence_duration_ms"):
            if key in value:
                _wire.require_int(value, key, f"{where}.{key}")
        complete = {"type": kind, **SERVER_VAD_DEFAULTS, **value}
    else:
        raise _wire.invalid_value(f"{where}.type", kind, ("server_vad", "semantic_vad"))
    for key in ("create_response", "interrupt_response"):
        if not isinstance(complete[key], bool):
            raise _wire.wrong_type(f"{where}.{key}", "a boolean", complete[key])
    return complete
