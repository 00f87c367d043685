"""The responses of one connection: ``response.create``, the play, the cancel."""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import trio

from . import _wire
from ._audio import audio_format
from ._behaviours import (
    Audio,
    Behaviour,
    Close,
    Drop,
    Error,
    Failed,
    FunctionCall,
    RateLimits,
    Stall,
    Text,
)
from ._wire import ClientError

if TYPE_CHECKING:
    from ._connection import FakeConnection


@dataclass
class _Speech:
    """An audio item being streamed."""

    item: dict[str, Any]
    where: dict[str, Any]
    previous: str | None
    transcript: str = ""


@dataclass
class _Response:
    """A response being played."""

    id: str
    client_event_id: str | None
    params: dict[str, Any]
    resource: dict[str, Any]
    in_conversation: bool
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    speech: _Speech | None = None


def _split(text: str) -> list[str]:
    """``text`` in one or two chunks, as a model streams it."""
    if len(text) < 2:
        return [text]
    half = len(text) // 2
    return [text[:half], text[half:]]


def _shares(text: str, count: int) -> list[str]:
    """``text`` in ``count`` pieces of whole words (some may be empty)."""
    words = [word for word in re.split(r"(?<=\s)(?=\S)", text) if word]
    return [
        "".join(words[n * len(words) // count : (n + 1) * len(words) // count])
        for n in range(count)
    ]


class Responses:
    """One response at a time, its behaviours played in a task of ``nursery``.

    Every event is queued at once (the connection's writer sends them), so
    a cancelled play never leaves an output item half sent.
    """

    def __init__(self, connection: FakeConnection) -> None:
        self._conn = connection
        self.nursery: trio.Nursery | None = None
        """Set by the connection once it runs."""
        self.active: _Response | None = None

    def create(self, event: dict[str, Any]) -> None:
        params = event.get("response", {})
        if not isinstance(params, dict):
            raise _wire.wrong_type("response", "an object", params)
        self._conn.responses.append(params)
        _wire.check_response(params, self._conn.items)
        if self.active is not None:
            raise ClientError(
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before "
                "creating a new one.",
                "conversation_already_has_active_response",
            )
        client_event_id = event.get("event_id")
        if not isinstance(client_event_id, str):
            client_event_id = None
        self._begin(params, client_event_id)

    def create_automatic(self) -> None:
        """The response server VAD creates when speech stops (with the
        session's settings), unless one is running."""
        if self.active is None:
            self._begin({}, None)

    def _begin(self, params: dict[str, Any], client_event_id: str | None) -> None:
        behaviours = self._conn.fake.next_play(self._conn, params)
        # Rate limits and an error come before any response: an error first
        # means the request was refused, so no response is created.
        while behaviours:
            first = behaviours[0]
            if isinstance(first, Error):
                self._error(first, client_event_id)
                return
            if not isinstance(first, RateLimits):
                break
            self._conn.send(first.event())
            del behaviours[0]
        response = self._start(params, client_event_id)
        assert self.nursery is not None
        self.nursery.start_soon(self._play, response, behaviours)

    def _error(self, error: Error, client_event_id: str | None) -> None:
        self._conn.send(
            _wire.error_event(
                error.type, error.code, error.message, error.param, client_event_id
            )
        )

    def _start(self, params: dict[str, Any], client_event_id: str | None) -> _Response:
        in_conversation = params.get("conversation", "auto") == "auto"
        response_id = self._conn.fake.ids("resp")
        output = self._conn.session["audio"].get("output", {})
        resource: dict[str, Any] = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": self._conn.conversation_id if in_conversation else None,
            "output_modalities": params.get(
                "output_modalities", self._conn.session["output_modalities"]
            ),
            "max_output_tokens": params.get(
                "max_output_tokens", self._conn.session["max_output_tokens"]
            ),
            "audio": {
                "output": {"format": output.get("format"), "voice": output.get("voice")}
            },
            "usage": None,
            "metadata": params.get("metadata"),
        }
        response = _Response(
            response_id, client_event_id, params, resource, in_conversation
        )
        self.active = response
        self._conn.send(
            {"type": "response.created", "response": copy.deepcopy(resource)}
        )
        return response

    async def _play(self, response: _Response, behaviours: list[Behaviour]) -> None:
        with response.scope:
            for behaviour in behaviours:
                await trio.lowlevel.checkpoint()
                if not await self._play_one(response, behaviour):
                    return
            self._finish(response, "completed", None)

    async def _play_one(self, response: _Response, behaviour: Behaviour) -> bool:
        """Play one behaviour; whether the play goes on."""
        match behaviour:
            case FunctionCall(delay=delay) | Text(delay=delay):
                await trio.sleep(delay)
                self._output(response, behaviour)
            case Audio(delay=delay):
                await trio.sleep(delay)
                await self._speak(response, behaviour)
            case RateLimits():
                self._conn.send(behaviour.event())
            case Error():
                self._error(behaviour, response.client_event_id)
            case Failed(code=code, message=message, type=type_):
                details = {
                    "type": "failed",
                    "error": {"type": type_, "code": code, "message": message},
                }
                self._finish(response, "failed", details)
                return False
            case Stall():
                await trio.sleep_forever()
            case Drop():
                self._conn.queue_drop()
                return False
            case Close(code=code, reason=reason):
                self._conn.queue_close(code, reason)
                return False
        return True

    def _finish(
        self, response: _Response, status: str, details: dict[str, Any] | None
    ) -> None:
        resource = response.resource
        resource["status"] = status
        resource["status_details"] = details
        input_chars = len(orjson.dumps(response.params)) + len(
            self._conn.session.get("instructions") or ""
        )
        output_chars = len(orjson.dumps(resource["output"]))
        resource["usage"] = _wire.usage(input_chars, output_chars)
        self.active = None
        self._conn.send({"type": "response.done", "response": copy.deepcopy(resource)})

    def _output(self, response: _Response, behaviour: FunctionCall | Text) -> None:
        """All the events of one output item, at once (nothing to interrupt)."""
        index = len(response.resource["output"])
        item: dict[str, Any] = {
            "id": self._conn.fake.ids("item"),
            "object": "realtime.item",
            "status": "in_progress",
        }
        if isinstance(behaviour, FunctionCall):
            call_id = self._conn.fake.ids("call")
            item |= {"type": "function_call", "name": behaviour.name}
            item |= {"call_id": call_id, "arguments": ""}
        else:
            item |= {"type": "message", "role": "assistant", "content": []}
        where = {"response_id": response.id, "output_index": index}
        self._conn.send(
            {"type": "response.output_item.added", **where, "item": copy.deepcopy(item)}
        )
        previous = self._conn.add_item(item) if response.in_conversation else None
        if isinstance(behaviour, FunctionCall):
            self._stream_arguments(item, where, behaviour)
        else:
            self._stream_text(item, where, behaviour.text)
        item["status"] = "completed"
        if response.in_conversation:
            self._conn.item_done(item, previous)
        self._conn.send(
            {"type": "response.output_item.done", **where, "item": copy.deepcopy(item)}
        )
        response.resource["output"].append(copy.deepcopy(item))

    def _stream_arguments(
        self, item: dict[str, Any], where: dict[str, Any], call: FunctionCall
    ) -> None:
        ids = {**where, "item_id": item["id"], "call_id": item["call_id"]}
        for chunk in _split(call.arguments):
            self._conn.send(
                {
                    "type": "response.function_call_arguments.delta",
                    **ids,
                    "delta": chunk,
                }
            )
        self._conn.send(
            {
                "type": "response.function_call_arguments.done",
                **ids,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
        item["arguments"] = call.arguments

    def _stream_text(
        self, item: dict[str, Any], where: dict[str, Any], text: str
    ) -> None:
        ids = {**where, "item_id": item["id"], "content_index": 0}
        self._conn.send(
            {
                "type": "response.content_part.added",
                **ids,
                "part": {"type": "text", "text": ""},
            }
        )
        for chunk in _split(text):
            self._conn.send(
                {"type": "response.output_text.delta", **ids, "delta": chunk}
            )
        self._conn.send({"type": "response.output_text.done", **ids, "text": text})
        self._conn.send(
            {
                "type": "response.content_part.done",
                **ids,
                "part": {"type": "text", "text": text},
            }
        )
        item["content"] = [{"type": "output_text", "text": text}]

    def cancel(self, event: dict[str, Any]) -> None:
        response_id = event.get("response_id")
        if response_id is not None and not isinstance(response_id, str):
            raise _wire.wrong_type("response_id", "a string", response_id)
        active = self.active
        if active is None or response_id not in (None, active.id):
            raise ClientError(
                "Cancellation failed: no active response found",
                "response_cancel_not_active",
            )
        self._cancel(active, "client_cancelled")

    def interrupt(self) -> None:
        """Barge-in: the response running in the conversation is cancelled."""
        if self.active is not None and self.active.in_conversation:
            self._cancel(self.active, "turn_detected")

    def _cancel(self, active: _Response, reason: str) -> None:
        active.scope.cancel()
        if active.speech is not None:
            self._close_speech(active, active.speech, "incomplete")
        self._finish(active, "cancelled", {"type": "cancelled", "reason": reason})

    # -- audio ---------------------------------------------------------------

    async def _speak(self, response: _Response, audio: Audio) -> None:
        """An assistant audio item, streamed at the behaviour's pace."""
        conn = self._conn
        output = conn.session["audio"].get("output", {})
        fmt = audio_format(output.get("format"))
        data = audio.audio
        if data is None:
            data = fmt.tone(audio.ms or max(200, 60 * len(audio.transcript)))
        item: dict[str, Any] = {
            "id": conn.fake.ids("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        where = {
            "response_id": response.id,
            "output_index": len(response.resource["output"]),
        }
        conn.send(
            {"type": "response.output_item.added", **where, "item": copy.deepcopy(item)}
        )
        previous = conn.add_item(item) if response.in_conversation else None
        ids = {**where, "item_id": item["id"], "content_index": 0}
        conn.send(
            {
                "type": "response.content_part.added",
                **ids,
                "part": {"type": "audio", "transcript": ""},
            }
        )
        item["content"] = [{"type": "output_audio", "transcript": ""}]
        produced = conn.output_audio.setdefault(item["id"], bytearray())
        conn.audio_ms[item["id"]] = 0
        speech = _Speech(item, where, previous)
        response.speech = speech
        size = audio.chunk_ms * fmt.bytes_per_ms
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        for chunk, words in zip(
            chunks, _shares(audio.transcript, len(chunks)), strict=True
        ):
            if audio.pace is not None:  # each delta once its audio is made
                await trio.sleep(fmt.ms(chunk) / 1000 / audio.pace)
            conn.send(
                {
                    "type": "response.output_audio.delta",
                    **ids,
                    "delta": base64.b64encode(chunk).decode("ascii"),
                }
            )
            produced += chunk
            conn.audio_ms[item["id"]] = fmt.ms(produced)
            if words:
                conn.send(
                    {
                        "type": "response.output_audio_transcript.delta",
                        **ids,
                        "delta": words,
                    }
                )
                speech.transcript += words
        response.speech = None
        self._close_speech(response, speech, "completed")

    def _close_speech(self, response: _Response, speech: _Speech, status: str) -> None:
        """The end of an audio item: done events, into the response's output."""
        item = speech.item
        ids = {**speech.where, "item_id": item["id"], "content_index": 0}
        transcript = speech.transcript
        self._conn.send({"type": "response.output_audio.done", **ids})
        self._conn.send(
            {
                "type": "response.output_audio_transcript.done",
                **ids,
                "transcript": transcript,
            }
        )
        self._conn.send(
            {
                "type": "response.content_part.done",
                **ids,
                "part": {"type": "audio", "transcript": transcript},
            }
        )
        item["status"] = status
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        if response.in_conversation:
            self._conn.item_done(item, speech.previous)
        self._conn.send(
            {
                "type": "response.output_item.done",
                **speech.where,
                "item": copy.deepcopy(item),
            }
        )
        response.resource["output"].append(copy.deepcopy(item))
