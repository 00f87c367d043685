"""The fake Realtime server's audio (tests/fake_realtime): server VAD on
μ-law input, spoken answers, barge-in, truncation, transcripts.

Rules: everything on 127.0.0.1, port 0; a reader task drains the client's
socket into a list and every wait has a deadline; paced audio runs under
``autojump_clock``; every event the fake sent is checked against OpenAI's
own types at the end of each test, and every event the test sends as it
is sent (tests/realtime_shapes.py).
"""

from __future__ import annotations

import base64
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import mulaw
import orjson
import pytest
import trio
import trio.testing
from fake_realtime import (
    DEFAULT_TRANSCRIPT,
    Audio,
    FakeConnection,
    FakeRealtime,
    FunctionCall,
    Stall,
    Text,
    Turn,
    open_client,
    open_fake_realtime,
)
from fake_twilio_media import open_fake_twilio_media
from realtime_helpers import running_pool
from realtime_shapes import check_client_event, check_server_event
from speech import noise, silence, speech, tone
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

KEY = "sk-test-key-0123456789"
DEADLINE = 5.0
PCMU = {"type": "audio/pcmu"}
TOOL = {
    "type": "function",
    "name": "play",
    "description": "Play a cell.",
    "parameters": {"type": "object", "properties": {"cell": {"type": "integer"}}},
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtime]:
    async with open_fake_realtime(KEY) as server:
        yield server
    for connection in server.connections:
        for event in connection.sent:
            check_server_event(event)


@dataclass
class Client:
    """A client of the fake, its events read as they come."""

    ws: WebSocketConnection
    connection: FakeConnection
    session: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    async def send(self, *, valid: bool = True, **event: Any) -> None:
        """Send ``event`` (checked against the API's types unless not ``valid``)."""
        if valid:
            check_client_event(event)
        await self.ws.send_message(orjson.dumps(event).decode())

    async def append(self, audio: bytes, frame_ms: int = 20) -> None:
        """``audio`` appended in frames, as a bridge passes Twilio's on."""
        size = frame_ms * mulaw.BYTES_PER_MS
        for i in range(0, len(audio), size):
            chunk = base64.b64encode(audio[i : i + size]).decode()
            await self.send(type="input_audio_buffer.append", audio=chunk)

    async def wait(self, type_: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th event of ``type_``, once it came."""
        with trio.fail_after(DEADLINE):
            while len(self.of(type_)) < count:
                await self.changed.wait()
        return self.of(type_)[count - 1]

    async def settle(self) -> None:
        """Until the fake has answered everything sent so far."""
        await self.send(type="conversation.item.retrieve", item_id="no_such_item")
        self.events.remove(await self.wait("error", len(self.of("error")) + 1))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == type_]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                self.events.append(orjson.loads(await self.ws.get_message()))
                self.changed.set()
                self.changed = trio.Event()


@contextlib.asynccontextmanager
async def phone(fake: FakeRealtime, **session: Any) -> AsyncIterator[Client]:
    """A session set up as a phone bridge sets it up (μ-law both ways,
    server VAD), ``session`` merged over that; events from the update on."""
    settings: dict[str, Any] = {
        "type": "realtime",
        "audio": {
            "input": {
                "format": PCMU,
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            },
            "output": {"format": PCMU, "voice": "marin"},
        },
    }
    for key, value in session.items():
        if key == "audio":
            for side, part in value.items():
                settings["audio"][side].update(part)
        else:
            settings[key] = value
    async with open_client(fake, key=KEY) as ws, trio.open_nursery() as nursery:
        client = Client(ws, fake.connections[-1])  # accepted: it is there
        nursery.start_soon(client.read)
        await client.wait("session.created")
        await client.send(type="session.update", session=settings)
        client.session = (await client.wait("session.updated"))["session"]
        client.events.clear()
        yield client
        nursery.cancel_scope.cancel()


def deltas(client: Client) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in client.of("response.output_audio.delta")
    )


# -- session.update ----------------------------------------------------------------


async def test_a_phone_session(fake: FakeRealtime) -> None:
    async with phone(fake) as client:
        session = client.session
    audio = session["audio"]
    assert audio["input"]["format"] == PCMU  # replaced whole: no "rate" left
    assert audio["output"] == {"format": PCMU, "voice": "marin", "speed": 1.0}
    assert audio["input"]["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


async def test_semantic_vad_replaces_server_vad(fake: FakeRealtime) -> None:
    async with phone(fake) as client:
        await client.send(
            type="session.update",
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
            },
        )
        updated = await client.wait("session.updated")
    assert updated["session"]["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }


@pytest.mark.parametrize(
    ("audio", "code", "param"),
    [
        ({"input": {"format": {"type": "audio/mp3"}}}, "invalid_value", "format.type"),
        (
            {"output": {"format": {"type": "audio/pcm", "rate": 16000}}},
            "invalid_value",
            "format.rate",
        ),
        ({"input": {"format": "audio/pcmu"}}, "invalid_type", "input.format"),
        (
            {"input": {"turn_detection": {"threshold": 0.5}}},
            "missing_required_parameter",
            "turn_detection.type",
        ),
        (
            {"input": {"turn_detection": {"type": "loud"}}},
            "invalid_value",
            "turn_detection.type",
        ),
        (
            {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}},
            "invalid_value",
            "threshold",
        ),
        (
            {
                "input": {
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": -1}
                }
            },
            "integer_below_min_value",
            "silence_duration_ms",
        ),
        (
            {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "now"}}},
            "invalid_value",
            "eagerness",
        ),
        (
            {
                "input": {
                    "turn_detection": {"type": "server_vad", "create_response": "yes"}
                }
            },
            "invalid_type",
            "create_response",
        ),
        ({"input": {"transcription": "on"}}, "invalid_type", "transcription"),
        ({"input": []}, "invalid_type", "session.audio.input"),
        ([], "invalid_type", "session.audio"),
    ],
)
async def test_bad_audio_settings_are_refused(
    fake: FakeRealtime, audio: Any, code: str, param: str
) -> None:
    async with phone(fake) as client:
        before = orjson.dumps(client.connection.session)
        await client.send(
            type="session.update",
            session={"type": "realtime", "audio": audio},
            valid=False,
        )
        error = await client.wait("error")
    assert error["error"]["code"] == code
    assert error["error"]["param"].endswith(param)
    assert orjson.dumps(client.connection.session) == before


# -- server VAD ----------------------------------------------------------------------


async def test_speech_makes_a_turn_and_an_automatic_response(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    words = speech("Put an X in the middle please")
    fake.script_transcripts("put an x in the middle please")
    fake.script(Audio("Done.", ms=600))
    async with phone(
        fake, audio={"input": {"transcription": {"model": "gpt-4o-transcribe"}}}
    ) as client:
        await client.append(silence(1000) + words + silence(700))
        done = await client.wait("response.done")
    started = client.of("input_audio_buffer.speech_started")[0]
    stopped = client.of("input_audio_buffer.speech_stopped")[0]
    item_id = started["item_id"]
    assert started["audio_start_ms"] == 700  # 1000 ms in, 300 ms of padding
    words_ms = mulaw.ms(words)
    # Speech ends within a few windows of the audio's end (its quietest
    # sounds are below the threshold), then 500 ms of silence.
    assert stopped["audio_end_ms"] == pytest.approx(1000 + words_ms + 500, abs=50)
    assert stopped["item_id"] == item_id
    assert client.types()[:8] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
    ]
    user = client.of("conversation.item.added")[0]["item"]
    assert user["id"] == item_id
    assert (user["role"], user["content"]) == (
        "user",
        [{"type": "input_audio", "transcript": None}],
    )
    completed = client.of("conversation.item.input_audio_transcription.completed")[0]
    assert completed["transcript"] == "put an x in the middle please"
    connection = client.connection
    assert (
        connection.items[item_id]["content"][0]["transcript"] == completed["transcript"]
    )
    [turn] = connection.turns
    assert turn == Turn(
        item_id,
        "vad",
        turn.audio,
        700,
        stopped["audio_end_ms"],
        "put an x in the middle please",
    )
    assert turn.audio == (silence(1000) + words + silence(700))[: len(turn.audio)]
    assert connection.audio_buffer == len(silence(1000) + words + silence(700)) - len(
        turn.audio
    )  # the silence after the stop stays in the buffer
    assert connection.input_audio == silence(1000) + words + silence(700)
    assert done["response"]["status"] == "completed"
    assert connection.responses == []  # automatic: no response.create
    assert mulaw.ms(deltas(client)) == 600


async def test_quiet_noise_is_not_speech_and_the_threshold_counts(
    fake: FakeRealtime,
) -> None:
    async with phone(fake) as client:
        await client.append(noise(2000) + tone(1000, amplitude=500) + silence(600))
        await client.settle()
        assert client.of("input_audio_buffer.speech_started") == []  # RMS 354 < 500
        await client.send(
            type="session.update",
            session={
                "type": "realtime",
                "audio": {
                    "input": {
                        "turn_detection": {"type": "server_vad", "threshold": 0.3}
                    }
                },
            },
        )
        await client.wait("session.updated")
        await client.append(tone(1000, amplitude=500) + silence(300))
        started = await client.wait("input_audio_buffer.speech_started")
        stopped = await client.wait("input_audio_buffer.speech_stopped")
    assert started["audio_start_ms"] == 3600 - 300
    assert stopped["audio_end_ms"] == 3600 + 1000 + 200  # the default silence


async def test_speech_at_once_starts_at_the_buffer(fake: FakeRealtime) -> None:
    async with phone(
        fake,
        audio={
            "input": {
                "turn_detection": {"type": "server_vad", "create_response": False}
            }
        },
    ) as client:
        await client.append(tone(300) + silence(200))
        stopped = await client.wait("input_audio_buffer.speech_stopped")
        await client.append(silence(1000) + tone(300) + silence(200))
        second = await client.wait("input_audio_buffer.speech_started", 2)
        await client.settle()
    assert client.of("input_audio_buffer.speech_started")[0]["audio_start_ms"] == 0
    assert stopped["audio_end_ms"] == 500
    # Not before the buffer's start: the first turn ended at 500 ms.
    assert second["audio_start_ms"] == 500 + 1000 - 300
    assert client.of("response.created") == []  # create_response false
    assert [turn.by for turn in client.connection.turns] == ["vad", "vad"]


async def test_semantic_vad_waits_by_eagerness(fake: FakeRealtime) -> None:
    vad = {"type": "semantic_vad", "eagerness": "high", "create_response": False}
    async with phone(fake, audio={"input": {"turn_detection": vad}}) as client:
        await client.append(tone(400) + silence(240))
        await client.settle()
        assert client.of("input_audio_buffer.speech_stopped") == []
        await client.append(silence(20))
        stopped = await client.wait("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == 400 + 250


async def test_without_turn_detection_audio_is_only_buffered(
    fake: FakeRealtime,
) -> None:
    fake.script_transcripts("by hand")
    settings = {"turn_detection": None, "transcription": {"model": "whisper-1"}}
    async with phone(fake, audio={"input": settings}) as client:
        await client.append(silence(200) + tone(1000) + silence(1000))
        await client.settle()
        assert client.of("input_audio_buffer.speech_started") == []
        assert client.connection.audio_buffer == 2200 * 8
        await client.send(type="input_audio_buffer.commit")
        completed = await client.wait(
            "conversation.item.input_audio_transcription.completed"
        )
        await client.settle()
    [turn] = client.connection.turns
    assert (turn.by, turn.audio_start_ms, turn.audio_end_ms) == ("commit", 0, 2200)
    assert completed["transcript"] == turn.transcript == "by hand"
    assert completed["usage"] == {"type": "duration", "seconds": 2.2}
    assert client.connection.audio_buffer == 0
    assert client.of("response.created") == []


async def test_clear_forgets_the_speech(fake: FakeRealtime) -> None:
    async with phone(fake) as client:
        await client.append(tone(300))
        await client.wait("input_audio_buffer.speech_started")
        speaking = [client.connection.speaking]
        await client.send(type="input_audio_buffer.clear")
        await client.wait("input_audio_buffer.cleared")
        speaking.append(client.connection.speaking)
        await client.append(silence(1000))
        await client.settle()
    assert speaking == [True, False]
    assert client.of("input_audio_buffer.speech_stopped") == []
    assert client.connection.turns == []


async def test_pcm_input_is_heard_and_pcma_only_counted(fake: FakeRealtime) -> None:
    pcm = {"type": "audio/pcm", "rate": 24000}
    async with phone(fake, audio={"input": {"format": pcm}}) as client:
        loud = b"".join(
            (8000 if n % 20 < 10 else -8000).to_bytes(2, "little", signed=True)
            for n in range(24 * 300)
        )
        # 300 ms of speech, 500 of silence: the turn takes all the buffer.
        await client.append(loud + bytes(48 * 500), frame_ms=20 * 6)
        stopped = await client.wait("input_audio_buffer.speech_stopped")
        assert stopped["audio_end_ms"] == 300 + 500
        await client.send(
            type="session.update",
            session={
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcma"}}},
            },
        )
        await client.wait("session.updated", 1)
        await client.append(b"\x00" * 8000)  # loud in A-law, but not analysed
        await client.settle()
    assert len(client.of("input_audio_buffer.speech_started")) == 1
    assert client.connection.audio_buffer == 8000


# -- spoken answers ----------------------------------------------------------------


async def test_audio_events_in_order_at_their_pace(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    voice = tone(250, frequency=300)
    fake.script(Audio("Here you go, all done.", audio=voice, chunk_ms=100, pace=2.0))
    async with phone(fake) as client:
        began = trio.current_time()
        await client.send(type="response.create")
        done = await client.wait("response.done")
        took = trio.current_time() - began
    assert took == pytest.approx(0.125)  # 250 ms made at twice real time
    item_id = client.of("response.output_item.added")[0]["item"]["id"]
    assert client.types() == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
    ]
    assert [
        len(base64.b64decode(e["delta"]))
        for e in client.of("response.output_audio.delta")
    ] == [800, 800, 400]
    assert deltas(client) == voice == client.connection.output_audio[item_id]
    transcript = "".join(
        e["delta"] for e in client.of("response.output_audio_transcript.delta")
    )
    assert transcript == "Here you go, all done."
    for event in client.of("response.output_audio.delta"):
        assert (event["item_id"], event["output_index"], event["content_index"]) == (
            item_id,
            0,
            0,
        )
    [item] = done["response"]["output"]
    assert item["status"] == "completed"
    assert item["content"] == [{"type": "output_audio", "transcript": transcript}]
    assert client.connection.audio_ms[item_id] == 250
    assert client.connection.items[item_id] == item


async def test_audio_at_once_and_its_default_length(fake: FakeRealtime) -> None:
    fake.script(Audio("Hello there.", pace=None))  # 12 characters: 720 ms
    async with phone(fake) as client:
        await client.send(type="response.create")
        await client.wait("response.done")
    audio = deltas(client)
    assert mulaw.ms(audio) == 720
    assert mulaw.rms(audio) > 5000  # a tone, not silence
    assert len(client.of("response.output_audio.delta")) == 8


async def test_a_function_call_within_a_spoken_answer(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    fake.script(
        [Audio("Let me play that.", ms=300), FunctionCall("play", '{"cell": 5}')]
    )
    async with phone(fake, tools=[TOOL]) as client:
        await client.append(tone(500) + silence(600))
        done = await client.wait("response.done")
    audio_item, call = done["response"]["output"]
    assert audio_item["type"] == "message"
    assert (call["type"], call["name"], call["arguments"]) == (
        "function_call",
        "play",
        '{"cell": 5}',
    )
    arguments = client.of("response.function_call_arguments.done")[0]
    assert arguments["output_index"] == 1
    assert client.of("response.output_audio.delta")[0]["output_index"] == 0


async def test_a_phone_session_answers_with_speech_by_default(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    async with phone(fake, tools=[TOOL]) as client:
        await client.send(type="response.create")
        first = await client.wait("response.done")
        await client.send(type="response.create", response={"tool_choice": "required"})
        second = await client.wait("response.done", 2)
        named = {"type": "function", "name": "play"}
        await client.send(type="response.create", response={"tool_choice": named})
        third = await client.wait("response.done", 3)
    assert first["response"]["output"][0]["content"][0]["transcript"] == "OK."
    assert second["response"]["output"][0]["name"] == "play"
    assert third["response"]["output"][0]["name"] == "play"


async def test_a_text_session_still_gets_text(fake: FakeRealtime) -> None:
    async with phone(fake, output_modalities=["text"]) as client:
        await client.send(type="response.create")
        done = await client.wait("response.done")
    assert done["response"]["output"][0]["content"] == [
        {"type": "output_text", "text": "OK."}
    ]


def test_audio_needs_a_positive_chunk_and_pace() -> None:
    with pytest.raises(ValueError, match="chunk_ms"):
        Audio(chunk_ms=0)
    with pytest.raises(ValueError, match="pace"):
        Audio(pace=0)


# -- barge-in and truncation ---------------------------------------------------------


async def test_barge_in_cancels_the_answer_and_truncate_follows_the_rule(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    fake.script(Audio("One two three four five six.", ms=1200, pace=1.0), Text("Yes?"))
    async with phone(fake) as client:
        await client.append(tone(500) + silence(500))
        await client.wait("response.output_audio.delta", 4)  # 400 ms made
        item_id = client.of("response.output_item.added")[0]["item"]["id"]
        await client.append(tone(100))  # the caller talks over the answer
        started = await client.wait("input_audio_buffer.speech_started", 2)
        cancelled = await client.wait("response.done")
        made = client.connection.audio_ms[item_id]
        # Too long: the API's own words, and nothing changes.
        await client.send(
            type="conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=made + 1,
        )
        error = await client.wait("error")
        assert client.connection.audio_ms[item_id] == made
        await client.send(
            type="conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=250,
        )
        truncated = await client.wait("conversation.item.truncated")
        await client.append(silence(600))
        await client.wait("response.done", 2)
    barge_in = client.types().index("input_audio_buffer.speech_started", 1)
    assert client.types()[barge_in : barge_in + 7] == [
        "input_audio_buffer.speech_started",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
    ]
    # The padding reaches back to the buffer's start: the first turn's end.
    assert started["audio_start_ms"] == 1000
    response = cancelled["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {
        "type": "cancelled",
        "reason": "turn_detected",
    }
    [item] = response["output"]
    assert item["status"] == "incomplete"
    # 400 ms of 1200 made: two words of six.
    assert item["content"][0]["transcript"] == "One two "
    assert made == mulaw.ms(deltas(client)) == 400
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": f"Audio content of {made}ms is already shorter than {made + 1}ms",
        "param": "audio_end_ms",
        "event_id": None,
    }
    assert truncated == {
        "type": "conversation.item.truncated",
        "event_id": truncated["event_id"],
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 250,
    }
    assert client.connection.audio_ms[item_id] == 250
    # The speech that interrupted became a turn, and was answered.
    assert len(client.connection.turns) == 2
    assert client.of("response.done")[1]["response"]["status"] == "completed"


async def test_the_known_bug_of_the_samples(fake: FakeRealtime) -> None:
    """Truncating at the time since the answer began, not what was heard:
    past the audio's end, refused with the API's own message."""
    fake.script(Audio("Sure.", ms=13600, pace=None))
    async with phone(fake) as client:
        await client.send(type="response.create")
        done = await client.wait("response.done")
        item_id = done["response"]["output"][0]["id"]
        await client.send(
            type="conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=55960,
        )
        error = await client.wait("error")
        await client.send(
            type="conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=13600,
        )
        await client.wait("conversation.item.truncated")
    assert error["error"]["message"] == (
        "Audio content of 13600ms is already shorter than 55960ms"
    )


async def test_speech_after_the_answer_was_made_cancels_nothing(
    fake: FakeRealtime,
) -> None:
    fake.script(Audio("Hi.", ms=2000, pace=None))
    async with phone(fake) as client:
        await client.append(tone(300) + silence(500))
        await client.wait("response.done")
        await client.append(tone(300))  # still playing at the caller's: not here
        await client.wait("input_audio_buffer.speech_started", 2)
        await client.settle()
    assert len(client.of("response.done")) == 1


async def test_without_interrupt_response_the_answer_goes_on(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    fake.script(Audio("A long answer.", ms=1000, pace=1.0))
    vad = {
        "type": "server_vad",
        "interrupt_response": False,
        "silence_duration_ms": 200,
    }
    async with phone(fake, audio={"input": {"turn_detection": vad}}) as client:
        await client.append(tone(300) + silence(200))
        await client.wait("response.output_audio.delta")
        await client.append(tone(300) + silence(200))  # speaks over it, a whole turn
        await client.wait("input_audio_buffer.committed", 2)
        done = await client.wait("response.done")
        await client.settle()
    assert done["response"]["status"] == "completed"
    assert len(client.of("response.created")) == 1  # busy: no second response


async def test_response_cancel_mid_audio(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    fake.script(Audio("Never finished.", ms=2000, pace=1.0))
    async with phone(fake) as client:
        await client.send(type="response.create")
        await client.wait("response.output_audio.delta", 2)
        await client.send(type="response.cancel")
        done = await client.wait("response.done")
        await trio.sleep(3)
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    assert done["response"]["output"][0]["status"] == "incomplete"
    assert len(client.of("response.output_audio.delta")) == 2


async def test_a_conversation_none_response_is_not_interrupted(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    fake.script(Audio("Out of band.", ms=1000, pace=1.0))
    async with phone(fake) as client:
        await client.send(type="response.create", response={"conversation": "none"})
        await client.wait("response.output_audio.delta")
        await client.append(tone(300))
        await client.wait("input_audio_buffer.speech_started")
        done = await client.wait("response.done")
    assert done["response"]["status"] == "completed"
    assert done["response"]["conversation_id"] is None


# -- shapes -----------------------------------------------------------------------


async def test_every_event_of_a_text_session_has_the_api_shape(
    fake: FakeRealtime,
) -> None:
    """The fake's older events, checked by the fixture like the audio ones."""
    fake.script(Text("Hi."), FunctionCall("play", '{"cell": 1}'), Stall())
    async with phone(fake, tools=[TOOL], output_modalities=["text"]) as client:
        user = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        }
        await client.send(type="conversation.item.create", item=user)
        await client.send(type="response.create")
        await client.wait("response.done")
        await client.send(type="response.create")
        call = await client.wait("response.function_call_arguments.done")
        await client.wait("response.done", 2)
        output = {
            "type": "function_call_output",
            "call_id": call["call_id"],
            "output": "ok",
        }
        await client.send(type="conversation.item.create", item=output)
        await client.send(type="response.create")
        await client.wait("response.created", 3)
        await client.send(type="response.cancel")
        await client.wait("response.done", 3)
        item_id = client.of("conversation.item.added")[0]["item"]["id"]
        await client.send(type="conversation.item.retrieve", item_id=item_id)
        await client.send(type="conversation.item.delete", item_id=item_id)
        await client.wait("conversation.item.deleted")
        await client.send(type="input_audio_buffer.commit")
        await client.wait("error")
    assert DEFAULT_TRANSCRIPT == "Hello."


# -- the two fakes together -------------------------------------------------------


async def mini_bridge(
    request: WebSocketRequest, fake: FakeRealtime, truncations: list[int]
) -> None:
    """The least a bridge does: audio both ways, a mark per chunk, and on a
    barge-in ``clear`` plus a truncation at what the marks say was heard."""
    twilio = await request.accept()
    async with open_client(fake, key=KEY) as realtime, trio.open_nursery() as tasks:
        audio = {"input": {"format": PCMU}, "output": {"format": PCMU}}
        session = {"type": "realtime", "audio": audio}
        await realtime.send_message(
            orjson.dumps({"type": "session.update", "session": session}).decode()
        )
        stream_sid = ""
        sent: dict[str, tuple[str, int]] = {}  # mark name -> (item, its end ms)
        heard: dict[str, int] = {}

        async def from_twilio() -> None:
            nonlocal stream_sid
            while True:
                message = orjson.loads(await twilio.get_message())
                if message["event"] == "start":
                    stream_sid = message["streamSid"]
                elif message["event"] == "media":
                    append = {"type": "input_audio_buffer.append"}
                    append["audio"] = message["media"]["payload"]
                    await realtime.send_message(orjson.dumps(append).decode())
                elif message["event"] == "mark" and message["mark"]["name"] in sent:
                    item_id, end = sent.pop(message["mark"]["name"])
                    heard[item_id] = end
                elif message["event"] == "stop":
                    tasks.cancel_scope.cancel()

        async def from_realtime() -> None:
            made: dict[str, int] = {}
            while True:
                event = orjson.loads(await realtime.get_message())
                if event["type"] == "response.output_audio.delta":
                    item_id = event["item_id"]
                    # 8 bytes a millisecond: a delta is a whole number of them.
                    size = len(base64.b64decode(event["delta"]))
                    made[item_id] = made.get(item_id, 0) + size // mulaw.BYTES_PER_MS
                    name = f"{item_id}/{made[item_id]}"
                    sent[name] = (item_id, made[item_id])
                    for message in (
                        {"media": {"payload": event["delta"]}, "event": "media"},
                        {"mark": {"name": name}, "event": "mark"},
                    ):
                        message["streamSid"] = stream_sid
                        await twilio.send_message(orjson.dumps(message).decode())
                elif event["type"] == "input_audio_buffer.speech_started" and sent:
                    item_id = next(iter(sent.values()))[0]
                    sent.clear()  # marks coming back now were not played
                    clear = {"event": "clear", "streamSid": stream_sid}
                    await twilio.send_message(orjson.dumps(clear).decode())
                    truncations.append(heard.get(item_id, 0))
                    truncate = {
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": truncations[-1],
                    }
                    await realtime.send_message(orjson.dumps(truncate).decode())

        tasks.start_soon(from_twilio)
        tasks.start_soon(from_realtime)


async def test_a_call_through_both_fakes_barge_in_at_what_was_heard(
    fake: FakeRealtime, nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    fake.script(Audio("A long story.", ms=6000, pace=2.0))
    truncations: list[int] = []
    listener = await nursery.start(
        serve_websocket,
        functools.partial(mini_bridge, fake=fake, truncations=truncations),
        "127.0.0.1",
        0,
        None,
    )
    url = f"ws://127.0.0.1:{listener.port}/twilio/media"
    async with open_fake_twilio_media(url) as call:
        await call.say(tone(400) + silence(300))
        await call.wait_heard(1200)
        await call.say(tone(300))  # the caller talks over Neuro
        connection = fake.connections[0]
        with trio.fail_after(DEADLINE):
            truncated = await connection.wait_sent("conversation.item.truncated")
        await call.say(silence(300))
    item_id = truncated["item_id"]
    [heard_by_marks] = truncations
    assert truncated["audio_end_ms"] == heard_by_marks
    # The marks tell what played to within a chunk (100 ms), never more.
    assert call.marks[-1].cleared
    assert 1200 <= heard_by_marks <= call.heard_ms < heard_by_marks + 100
    assert call.played == connection.output_audio[item_id][: len(call.played)]
    assert connection.sent_events("error") == []
    assert call.protocol_errors == []
    done = connection.sent_events("response.done")[0]["response"]
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert connection.input_audio.startswith(tone(400))


async def test_the_pool_puts_a_phone_session_back(
    fake: FakeRealtime, autojump_clock: trio.abc.Clock
) -> None:
    """A call's lease ends mid-answer, mid-speech: the next lease finds the
    fake as new (what the pool's reset asks, the fake does)."""
    fake.script(Audio("A long answer.", ms=5000, pace=1.0))
    settings = {
        "type": "realtime",
        "audio": {
            "input": {
                "format": PCMU,
                "turn_detection": {
                    "type": "semantic_vad",
                    "eagerness": "high",
                    "interrupt_response": False,
                },
                "transcription": {"model": "gpt-4o-transcribe"},
            },
            "output": {"format": PCMU, "voice": "marin"},
        },
    }
    async with running_pool(fake, max_connections=1) as pool:
        async with pool.connection_context() as conn:
            await conn.send({"type": "session.update", "session": settings})
            audio = base64.b64encode(tone(300) + silence(300)).decode()
            await conn.send({"type": "input_audio_buffer.append", "audio": audio})
            with trio.fail_after(DEADLINE):
                while (await conn.receive())["type"] != "response.output_audio.delta":
                    pass
            speech_now = base64.b64encode(tone(100)).decode()
            await conn.send({"type": "input_audio_buffer.append", "audio": speech_now})
            with trio.fail_after(DEADLINE):
                while (await conn.receive())[
                    "type"
                ] != "input_audio_buffer.speech_started":
                    pass
            connection = fake.connections[0]
            during = state(connection)
        async with pool.connection_context() as again:
            assert again.id == conn.id  # reset, not closed
    # The buffer: 50 ms of silence after the first turn's end, 100 of speech.
    assert during == {"speaking": True, "answering": True, "items": 2, "buffer": 1200}
    assert state(connection) == {
        "speaking": False,
        "answering": False,
        "items": 0,
        "buffer": 0,
    }
    initial = connection.sent_events("session.created")[0]["session"]
    assert connection.session["audio"] == initial["audio"]


def state(connection: FakeConnection) -> dict[str, Any]:
    return {
        "speaking": connection.speaking,
        "answering": connection.active_response is not None,
        "items": len(connection.items),
        "buffer": connection.audio_buffer,
    }
