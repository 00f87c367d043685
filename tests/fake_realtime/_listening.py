"""The input audio of one connection: the buffer, the VAD, the user's turns."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _wire
from ._audio import InputAudio, SpeechStarted, VadConfig, audio_format
from ._wire import ClientError

if TYPE_CHECKING:
    from ._connection import FakeConnection


@dataclass(frozen=True)
class Turn:
    """A user audio item made from the input buffer.

    ``by``: ``"vad"`` (speech stopped) or ``"commit"`` (the client's).
    ``audio``: the buffer committed (from the last commit or clear).
    ``audio_start_ms``/``audio_end_ms``, in ms of the session's input audio:
    for a VAD turn speech_started's ``audio_start_ms`` (padding included)
    and speech_stopped's ``audio_end_ms``; for a commit, where the buffer
    began and ended. ``transcript``: ``None`` without input transcription.
    """

    item_id: str
    by: str
    audio: bytes
    audio_start_ms: int
    audio_end_ms: int
    transcript: str | None


class Listener:
    """``input_audio_buffer.*`` events and what server VAD makes of them."""

    def __init__(self, connection: FakeConnection) -> None:
        self._conn = connection
        self.input = InputAudio()
        self.audio = bytearray()
        """Every byte appended in the session, in order."""
        self.turns: list[Turn] = []
        self._speech_item: str | None = None
        self._speech_start = 0

    def append(self, event: dict[str, Any]) -> None:
        audio = _wire.require_str(event, "audio", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except binascii.Error:
            raise ClientError(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                "invalid_value",
                "audio",
            ) from None
        self.audio += data
        settings = self._conn.session["audio"].get("input", {})
        config = VadConfig.of(settings.get("turn_detection"))
        fmt = audio_format(settings.get("format"))
        for vad_event in self.input.append(data, fmt, config):
            assert config is not None  # no VAD events without one
            if isinstance(vad_event, SpeechStarted):
                self._speech_item = self._conn.fake.ids("item")
                self._speech_start = vad_event.audio_start_ms
                self._conn.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": vad_event.audio_start_ms,
                        "item_id": self._speech_item,
                    }
                )
                if config.interrupt_response:
                    self._conn.interrupt()
                continue
            item_id = self._speech_item or self._conn.fake.ids("item")
            self._speech_item = None
            self._conn.send(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": vad_event.audio_end_ms,
                    "item_id": item_id,
                }
            )
            self._commit(
                item_id,
                "vad",
                vad_event.audio,
                self._speech_start,
                vad_event.audio_end_ms,
            )
            if config.create_response:
                self._conn.respond()

    def clear(self, event: dict[str, Any]) -> None:
        self.input.take()
        self._speech_item = None
        self._conn.send({"type": "input_audio_buffer.cleared"})

    def commit(self, event: dict[str, Any]) -> None:
        if not self.input.buffer:
            raise ClientError(
                "Error committing input audio buffer: buffer too small. Expected "
                "at least 100ms of audio, but buffer only has 0.00ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        start = round(self.input.buffer_start_ms)
        audio = self.input.take()
        self._speech_item = None
        item_id = self._conn.fake.ids("item")
        self._commit(item_id, "commit", audio, start, round(self.input.position_ms))

    def _commit(
        self, item_id: str, by: str, audio: bytes, start_ms: int, end_ms: int
    ) -> None:
        """``committed``, the user's item, its transcription if on."""
        conn = self._conn
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        conn.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": conn.last_item_id(),
                "item_id": item_id,
            }
        )
        previous = conn.add_item(item)
        conn.item_done(item, previous)
        transcript = None
        if conn.session["audio"].get("input", {}).get("transcription") is not None:
            transcript = conn.fake.next_transcript()
            self._transcribe(item, transcript, end_ms - start_ms)
        self.turns.append(Turn(item_id, by, audio, start_ms, end_ms, transcript))

    def _transcribe(self, item: dict[str, Any], transcript: str, ms: int) -> None:
        where = {"item_id": item["id"], "content_index": 0}
        if transcript:
            self._conn.send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    **where,
                    "delta": transcript,
                }
            )
        self._conn.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **where,
                "transcript": transcript,
                "usage": {"type": "duration", "seconds": ms / 1000},
            }
        )
        item["content"][0]["transcript"] = transcript
