"""The fake Twilio Media Streams client (tests/fake_twilio_media), against a
bridge played by the test: a trio-websocket server on 127.0.0.1, port 0.

Rules: every wait has a deadline (:func:`recv`, ``fail_after``); timings
are checked under ``autojump_clock`` (exact virtual time), one test runs on
the real clock; the fake's ``async with`` ends inside the server's.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from typing import Any

import mulaw
import orjson
import pytest
import trio
import trio.testing
from fake_twilio_media import (
    FRAME_BYTES,
    INVALID_MESSAGE,
    MALFORMED_MESSAGE,
    PROTOCOL_ERROR,
    FakeTwilioCall,
    TwimlStream,
    open_fake_twilio_media,
    voice_webhook,
)
from speech import silence, tone
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Start, VoiceResponse

TOKEN = "twilio-auth-token-0123456789abcdef"
PUBLIC = "wss://neuro.example.ngrok.app/twilio/media"
DEADLINE = 5.0


class Bridge:
    """The server side, played by the test."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.reject: int | None = None
        self._send, self._receive = trio.open_memory_channel[WebSocketConnection](
            math.inf
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio/media"

    async def handler(self, request: WebSocketRequest) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        # trio-websocket keeps Host out of the headers: wsproto parsed it.
        headers["host"] = request._event.host
        self.requests.append((request.path, headers))
        try:
            if self.reject is not None:
                await request.reject(self.reject, body=b'{"error": "forbidden"}')
                return
            websocket = await request.accept()
        except ConnectionClosed:
            return
        self._send.send_nowait(websocket)
        await trio.sleep_forever()

    async def accept(self) -> WebSocketConnection:
        with trio.fail_after(DEADLINE):
            return await self._receive.receive()


@pytest.fixture
async def bridge(nursery: trio.Nursery) -> Bridge:
    server = Bridge()
    listener = await nursery.start(
        functools.partial(
            serve_websocket,
            server.handler,
            "127.0.0.1",
            0,
            None,
            # Messages the test does not read must not stop trio-websocket's
            # reader: it answers the fake's close frame.
            message_queue_size=100_000,
        )
    )
    server.port = listener.port
    return server


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(DEADLINE):
        message = await ws.get_message()
    parsed: dict[str, Any] = orjson.loads(message)
    return parsed


async def recv_event(ws: WebSocketConnection, event: str) -> dict[str, Any]:
    """The next message of ``event`` (``connected``, ``start`` and media
    frames before it skipped)."""
    while True:
        message = await recv(ws)
        if message["event"] == event:
            return message
        assert message["event"] in ("connected", "start", "media"), message


async def close_code(ws: WebSocketConnection) -> int:
    """The code the fake closed with (what it sent before skipped)."""
    with trio.fail_after(DEADLINE):
        while True:
            try:
                await ws.get_message()
            except ConnectionClosed as closed:
                return -1 if closed.reason is None else closed.reason.code


async def send(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(orjson.dumps(message).decode())


async def play(ws: WebSocketConnection, call: FakeTwilioCall, audio: bytes) -> None:
    await send(
        ws,
        event="media",
        streamSid=call.stream_sid,
        media={"payload": base64.b64encode(audio).decode()},
    )


async def mark(ws: WebSocketConnection, call: FakeTwilioCall, name: str) -> None:
    await send(ws, event="mark", streamSid=call.stream_sid, mark={"name": name})


def ms(n: float) -> bytes:
    """``n`` ms of the server's audio (a tone, so it is not silence)."""
    return tone(n)


# -- the handshake -------------------------------------------------------------


async def test_the_upgrade_is_signed_over_the_public_url(bridge: Bridge) -> None:
    async with open_fake_twilio_media(
        bridge.url, auth_token=TOKEN, public_url=PUBLIC
    ) as call:
        await bridge.accept()
    path, headers = bridge.requests[0]
    assert path == "/twilio/media"
    assert headers["host"] == f"127.0.0.1:{bridge.port}"  # what the server sees
    assert headers["user-agent"] == "Twilio.TmeWs/1.0"
    signature = headers["x-twilio-signature"]
    assert signature == call.signature
    validator = RequestValidator(TOKEN)
    assert validator.validate(PUBLIC, {}, signature)
    assert not validator.validate(bridge.url, {}, signature)
    assert not RequestValidator("another-token").validate(PUBLIC, {}, signature)


async def test_signature_by_default_over_the_url_dialled(bridge: Bridge) -> None:
    async with open_fake_twilio_media(bridge.url, auth_token=TOKEN, host="h.example"):
        await bridge.accept()
    _, headers = bridge.requests[0]
    assert headers["host"] == "h.example"
    assert RequestValidator(TOKEN).validate(
        bridge.url, {}, headers["x-twilio-signature"]
    )


async def test_a_given_signature_or_none_at_all(bridge: Bridge) -> None:
    async with open_fake_twilio_media(bridge.url, auth_token=TOKEN, signature="bad"):
        await bridge.accept()
    async with open_fake_twilio_media(bridge.url) as call:
        await bridge.accept()
    assert bridge.requests[0][1]["x-twilio-signature"] == "bad"
    assert "x-twilio-signature" not in bridge.requests[1][1]
    assert call.signature is None


async def test_a_refused_upgrade_is_one_connection_rejected(bridge: Bridge) -> None:
    bridge.reject = 403
    with pytest.raises(ConnectionRejected) as refused:
        async with open_fake_twilio_media(bridge.url, auth_token=TOKEN):
            pytest.fail("the block must not run")  # pragma: no cover
    assert refused.value.status_code == 403
    assert refused.value.body == b'{"error": "forbidden"}'


async def test_only_ws_urls_are_dialled() -> None:
    with pytest.raises(ValueError, match="ws:// URLs"):
        async with open_fake_twilio_media(PUBLIC):
            pass  # pragma: no cover


# -- what Twilio sends -----------------------------------------------------------


async def test_connected_start_and_media_frames(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(
        bridge.url,
        auth_token=TOKEN,
        call_sid="CA" + "1" * 32,
        custom_parameters={"callSid": "CA" + "1" * 32, "from": "+15550001111"},
    ) as call:
        ws = await bridge.accept()
        assert await recv(ws) == {
            "event": "connected",
            "protocol": "Call",
            "version": "1.0.0",
        }
        start = await recv(ws)
        first = await recv(ws)
        second = await recv(ws)
    assert re.fullmatch("AC[0-9a-f]{32}", call.account_sid)
    assert re.fullmatch("MZ[0-9a-f]{32}", call.stream_sid)
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": call.stream_sid,
        "start": {
            "accountSid": call.account_sid,
            "streamSid": call.stream_sid,
            "callSid": "CA" + "1" * 32,
            "tracks": ["inbound"],
            "customParameters": {"callSid": "CA" + "1" * 32, "from": "+15550001111"},
            "mediaFormat": {
                "encoding": "audio/x-mulaw",
                "sampleRate": 8000,
                "channels": 1,
            },
        },
    }
    assert first["sequenceNumber"] == "2"
    assert first["streamSid"] == call.stream_sid
    assert first["media"]["track"] == "inbound"
    assert (first["media"]["chunk"], first["media"]["timestamp"]) == ("1", "0")
    assert (second["media"]["chunk"], second["media"]["timestamp"]) == ("2", "20")
    # The microphone sends silence while the caller says nothing.
    assert base64.b64decode(first["media"]["payload"]) == silence(20)


async def test_the_microphone_ticks_every_20_ms(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        for _ in range(50):
            await recv_event(ws, "media")
        elapsed = trio.current_time() - began
    assert elapsed == pytest.approx(0.98)  # the first frame goes out at once
    assert call.sent[-1]["event"] == "stop"


async def test_say_sends_the_audio_at_real_time(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    words = tone(1000, frequency=300) + tone(10)  # not a whole number of frames
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        await call.say(words)
        took = trio.current_time() - began
        frames = [await recv_event(ws, "media") for _ in range(60)]
    payloads = b"".join(base64.b64decode(f["media"]["payload"]) for f in frames)
    assert words in payloads
    spoken = payloads[payloads.index(words) :]
    assert spoken[len(words) : len(words) + 150] == silence(150 / 8)  # padding
    assert took == pytest.approx(1.0, abs=0.03)  # 51 frames, 20 ms apart
    chunks = [int(f["media"]["chunk"]) for f in frames]
    assert chunks == list(range(chunks[0], chunks[0] + 60))


async def test_say_without_wait_and_queued_speech(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        await bridge.accept()
        began = trio.current_time()
        await call.say(tone(400), wait=False)
        assert trio.current_time() == began
        await call.say(tone(200))  # after the first
        assert trio.current_time() - began == pytest.approx(0.58, abs=0.03)


async def test_without_the_microphone_only_speech_is_sent(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await trio.sleep(1)
        assert [m["event"] for m in call.sent] == ["connected", "start"]
        await call.say(tone(100))
        frames = [await recv(ws) for _ in range(5)]
        await trio.sleep(1)
    assert all(f["event"] == "media" for f in frames)
    assert [m["event"] for m in call.sent] == ["connected", "start"] + ["media"] * 5 + [
        "stop"
    ]


async def test_send_audio_is_not_paced(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        await call.send_audio(tone(2000))
        assert trio.current_time() == began
        frames = [await recv(ws) for _ in range(100)]
    assert [int(f["media"]["chunk"]) for f in frames] == list(range(1, 101))
    assert all(
        len(base64.b64decode(f["media"]["payload"])) == FRAME_BYTES for f in frames
    )


async def test_start_can_wait_for_the_test(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, send_start=False) as call:
        ws = await bridge.accept()
        with trio.move_on_after(1):
            await ws.get_message()
            pytest.fail("nothing is sent before send_start()")  # pragma: no cover
        await call.send_start()
        assert (await recv(ws))["event"] == "connected"
        assert (await recv(ws))["event"] == "start"
        assert (await recv(ws))["event"] == "media"


async def test_dtmf(bridge: Bridge, autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await call.send_dtmf("7")
        await call.send_dtmf("#")
        with pytest.raises(ValueError, match="not a DTMF digit"):
            await call.send_dtmf("x")
        seven, hash_ = await recv(ws), await recv(ws)
    assert seven == {
        "event": "dtmf",
        "sequenceNumber": "2",
        "streamSid": call.stream_sid,
        "dtmf": {"track": "inbound_track", "digit": "7"},
    }
    assert hash_["dtmf"]["digit"] == "#"


async def test_hang_up_sends_stop_then_closes(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
        await trio.sleep(0.1)
        await call.hang_up()
        assert call.closed
        assert (call.close_code, call.closed_by) == (1000, "twilio")
        with pytest.raises(trio.ClosedResourceError):
            await call.say(tone(20))
        with pytest.raises(RuntimeError, match="ended before"):
            await call.wait_for("media")
        await call.hang_up()  # again: nothing
    stop = await recv_event(ws, "stop")
    assert stop == {
        "event": "stop",
        "sequenceNumber": stop["sequenceNumber"],
        "streamSid": call.stream_sid,
        "stop": {"accountSid": call.account_sid, "callSid": call.call_sid},
    }
    assert int(stop["sequenceNumber"]) == len(call.sent) - 1  # all but connected
    assert call.sent[-1] == stop
    assert await close_code(ws) == 1000


async def test_leaving_the_block_hangs_up(bridge: Bridge) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
    assert call.stopped
    assert call.closed
    await recv_event(ws, "stop")


async def test_the_server_closing_first_ends_the_call(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
        await ws.aclose(4000, "call over")
        await call.wait_closed()
        with pytest.raises(RuntimeError, match="ended before 1 'mark'"):
            await call.wait_for("mark")
    assert (call.close_code, call.close_reason, call.closed_by) == (
        4000,
        "call over",
        "server",
    )
    assert not call.stopped


async def test_a_server_closing_at_once_gives_an_ended_call(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    async def close_at_once(request: WebSocketRequest) -> None:
        websocket = await request.accept()
        await websocket.aclose(1000, "busy")

    listener = await nursery.start(serve_websocket, close_at_once, "127.0.0.1", 0, None)
    for _ in range(20):  # closed before, during or after the start
        async with open_fake_twilio_media(
            f"ws://127.0.0.1:{listener.port}/twilio/media"
        ) as call:
            with trio.fail_after(DEADLINE):
                await call.wait_closed()
        assert (call.close_code, call.close_reason) == (1000, "busy")
        assert call.closed_by == "server"
        assert call.ending


async def test_drop_ends_the_tcp_connection(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await call.drop()
        assert (call.close_code, call.closed_by) == (1006, "twilio")
    assert await close_code(ws) == 1006


async def test_freeze_stalls_the_network_until_thaw(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        call.freeze()
        assert call.frozen
        await mark(ws, call, "while frozen")
        with trio.move_on_after(5) as waited:
            await ws.ping()
        assert waited.cancelled_caught  # no pong
        assert call.marks == []
        call.thaw()
        with trio.fail_after(1):
            await ws.ping()
        assert (await recv(ws))["mark"]["name"] == "while frozen"


async def test_a_frozen_call_is_dropped_at_the_end(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
        call.freeze()
    assert (call.close_code, call.closed_by) == (1006, "twilio")
    assert await close_code(ws) == 1006


async def test_an_error_in_the_block_comes_out_as_itself(bridge: Bridge) -> None:
    async def fail() -> None:
        async with open_fake_twilio_media(bridge.url):
            await bridge.accept()
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await fail()


# -- the ear: playing, marks, clear -----------------------------------------------


async def test_a_mark_comes_back_once_the_audio_before_it_played(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        await play(ws, call, ms(600))
        await play(ws, call, ms(400))  # queued back to back: no gap
        await mark(ws, call, "one second")
        back = await recv(ws)
        assert trio.current_time() - began == pytest.approx(1.0)
        await mark(ws, call, "right away")  # nothing before it: at once
        again = await recv(ws)
        assert trio.current_time() - began == pytest.approx(1.0)
    assert back == {
        "event": "mark",
        "sequenceNumber": back["sequenceNumber"],
        "streamSid": call.stream_sid,
        "mark": {"name": "one second"},
    }
    assert again["mark"]["name"] == "right away"
    first, second = call.marks
    assert (first.name, first.cleared, first.heard_ms) == ("one second", False, 1000)
    assert first.time == pytest.approx(began + 1.0)
    assert (second.name, second.cleared, second.heard_ms) == ("right away", False, 1000)
    assert call.played == ms(600) + ms(400) == call.media_received
    assert call.heard_ms == 1000


async def test_audio_after_a_pause_starts_when_it_arrives(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        await play(ws, call, ms(200))
        await trio.sleep(1)
        await play(ws, call, ms(200))
        await mark(ws, call, "m")
        mark_ = await call.wait_mark("m")
    assert mark_.time - began == pytest.approx(1.2)
    assert mark_.heard_ms == 400


async def test_clear_drops_the_audio_and_returns_pending_marks_at_once(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        await play(ws, call, ms(300))
        await mark(ws, call, "a")
        await play(ws, call, ms(700))
        await mark(ws, call, "b")
        await play(ws, call, ms(500))
        await mark(ws, call, "c")
        assert (await recv(ws))["mark"]["name"] == "a"
        await call.wait_heard(550)
        assert trio.current_time() - began == pytest.approx(0.55, abs=0.02)
        assert call.queued_ms == pytest.approx(950, abs=20)
        await send(ws, event="clear", streamSid=call.stream_sid)
        b, c = await recv(ws), await recv(ws)
        cleared_at = trio.current_time()
        # The line is free: new audio plays from now.
        await play(ws, call, ms(100))
        await mark(ws, call, "d")
        d = await recv(ws)
        assert trio.current_time() - cleared_at == pytest.approx(0.1)
    assert [b["mark"]["name"], c["mark"]["name"], d["mark"]["name"]] == ["b", "c", "d"]
    names = [(m.name, m.cleared) for m in call.marks]
    assert names == [("a", False), ("b", True), ("c", True), ("d", False)]
    heard_at_clear = call.marks[1].heard_ms
    assert heard_at_clear == pytest.approx(550, abs=20)
    assert call.marks[1].time == call.marks[2].time
    cut = round(heard_at_clear * 8)
    assert call.played == (ms(300) + ms(700))[:cut] + ms(100)
    assert len(call.player.dropped) == 1500 * 8 - cut
    assert call.clears == 1
    assert call.marks[3].heard_ms == pytest.approx(heard_at_clear + 100)


async def test_clear_with_nothing_queued(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await send(ws, event="clear", streamSid=call.stream_sid)
        await mark(ws, call, "after")
        assert (await recv(ws))["mark"]["name"] == "after"
    assert call.clears == 1
    assert not call.marks[0].cleared
    assert call.protocol_errors == []


async def test_wait_played(bridge: Bridge, autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        await play(ws, call, ms(250))
        await mark(ws, call, "end")
        await call.wait_for("mark")
        await call.wait_played()
        assert trio.current_time() - began == pytest.approx(0.25)
        assert call.queued_ms == 0


async def test_marks_on_the_real_clock(bridge: Bridge) -> None:
    async with open_fake_twilio_media(bridge.url) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        began = trio.current_time()
        await play(ws, call, ms(200))
        await mark(ws, call, "m")
        back = await recv_event(ws, "mark")
        elapsed = trio.current_time() - began
    assert back["mark"]["name"] == "m"
    assert 0.2 <= elapsed < 1.0
    assert call.marks[0].heard_ms == 200


# -- protocol errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        ('{"event": "start", "streamSid": "S"}', PROTOCOL_ERROR, "unsupported event"),
        ('{"streamSid": "S"}', PROTOCOL_ERROR, "unsupported event None"),
        (b"\x00\x01", MALFORMED_MESSAGE, "binary frame"),
        ("not json", INVALID_MESSAGE, "not JSON"),
        ("[1, 2]", INVALID_MESSAGE, "not a JSON object"),
        ('{"event": "clear", "streamSid": "MZwrong"}', INVALID_MESSAGE, "wrong stream"),
        ('{"event": "clear"}', INVALID_MESSAGE, "missing fields ['streamSid']"),
        (
            '{"event": "clear", "streamSid": "S", "x": 1}',
            INVALID_MESSAGE,
            "extra fields ['x']",
        ),
        (
            '{"event": "media", "streamSid": "S", "media": {"payload": "@@"}}',
            INVALID_MESSAGE,
            "not base64",
        ),
        (
            '{"event": "media", "streamSid": "S", "media": {"payload": ""}}',
            INVALID_MESSAGE,
            "empty",
        ),
        (
            '{"event": "media", "streamSid": "S", "media": {"payload": 1}}',
            INVALID_MESSAGE,
            "must be a string",
        ),
        (
            '{"event": "media", "streamSid": "S", "media": {"track": "outbound"}}',
            INVALID_MESSAGE,
            "only 'payload'",
        ),
        (
            '{"event": "mark", "streamSid": "S", "mark": "m"}',
            INVALID_MESSAGE,
            "only 'name'",
        ),
    ],
)
async def test_a_protocol_error_is_recorded_and_closes(
    bridge: Bridge,
    autojump_clock: trio.abc.Clock,
    frame: str | bytes,
    code: int,
    fragment: str,
) -> None:
    async with open_fake_twilio_media(bridge.url, stream_sid="S") as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await ws.send_message(frame)
        await call.wait_closed()
    [error] = call.protocol_errors
    assert error.code == code
    assert fragment in error.message
    assert error.frame == frame
    assert (call.close_code, call.close_reason) == (1002, f"Twilio error {code}")
    assert call.closed_by == "twilio"
    assert not call.stopped
    assert await close_code(ws) == 1002


async def test_without_strict_only_errors_close(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, strict=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await ws.send_message(b"binary")
        await ws.send_message('{"event": "clear", "streamSid": "MZother"}')
        await mark(ws, call, "still here")
        await recv_event(ws, "mark")
        assert [e.code for e in call.protocol_errors] == [
            MALFORMED_MESSAGE,
            INVALID_MESSAGE,
        ]
        await send(ws, event="hello", streamSid=call.stream_sid)
        await call.wait_closed()
    assert call.protocol_errors[-1].code == PROTOCOL_ERROR
    assert call.close_code == 1002
    assert len(call.frames) == 4
    assert [m["event"] for m in call.received] == ["mark"]


async def test_send_raw(bridge: Bridge, autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await call.send_raw('{"event": "made up"}')
        await call.send_raw(b"\x01")
        assert await recv(ws) == {"event": "made up"}
        assert await ws.get_message() == b"\x01"


# -- TwiML -------------------------------------------------------------------------


def test_the_stream_a_webhook_names() -> None:
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=PUBLIC)
    stream.parameter(name="callSid", value="CA123")
    stream.parameter(name="from", value="+15550001111")
    response.append(connect)
    response.redirect("https://neuro.example/twilio/voice/end")
    parsed = TwimlStream.parse(str(response))
    assert parsed == TwimlStream(PUBLIC, {"callSid": "CA123", "from": "+15550001111"})
    assert parsed.bidirectional
    forked = VoiceResponse()
    start = Start()
    start.stream(url=PUBLIC)
    forked.append(start)
    assert not TwimlStream.parse(str(forked).encode()).bidirectional


@pytest.mark.parametrize(
    ("twiml", "message"),
    [
        ("<Response><Say>Hi</Say></Response>", "no <Connect><Stream>"),
        ("<Response><Connect/></Response>", "no <Connect><Stream>"),
        ("<Response><Connect><Stream/></Connect></Response>", "no url"),
        ("<Reject/>", "not <Response>"),
        ("<Response>", "not TwiML"),
    ],
)
def test_twiml_without_a_stream(twiml: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TwimlStream.parse(twiml)


# -- the voice webhook ------------------------------------------------------------


def test_the_voice_webhook_is_signed_over_the_url_and_the_form() -> None:
    url = "https://neuro.example.ngrok.app/twilio/voice"
    hook = voice_webhook(url, auth_token=TOKEN, call_sid="CA" + "2" * 32)
    assert hook.call_sid == "CA" + "2" * 32
    assert re.fullmatch("AC[0-9a-f]{32}", hook.account_sid)
    assert hook.form["From"] == hook.form["Caller"] == "+15550001111"
    assert hook.form["To"] == hook.form["Called"] == "+15550002222"
    assert (hook.form["Direction"], hook.form["CallStatus"]) == ("inbound", "ringing")
    signature = hook.headers["X-Twilio-Signature"]
    validator = RequestValidator(TOKEN)
    assert validator.validate(url, hook.form, signature)
    assert not validator.validate(url, {**hook.form, "From": "+1555"}, signature)
    assert not validator.validate(url.replace("https", "http"), hook.form, signature)
    assert hook.headers["Content-Type"] == "application/x-www-form-urlencoded"
    ended = voice_webhook(url, auth_token=TOKEN, extra={"CallStatus": "in-progress"})
    assert ended.form["CallStatus"] == "in-progress"
    assert validator.validate(url, ended.form, ended.headers["X-Twilio-Signature"])
    assert "X-Twilio-Signature" not in voice_webhook(url).headers
    assert voice_webhook(url, signature="x").headers["X-Twilio-Signature"] == "x"


# -- the codec the fake relies on ----------------------------------------------


async def test_frames_are_mulaw_of_what_was_said(
    bridge: Bridge, autojump_clock: trio.abc.Clock
) -> None:
    async with open_fake_twilio_media(bridge.url, microphone=False) as call:
        ws = await bridge.accept()
        await recv_event(ws, "start")
        await call.say(tone(20, amplitude=1000))
        frame = base64.b64decode((await recv(ws))["media"]["payload"])
    assert 600 < mulaw.rms(frame) < 800  # 1000 / √2
