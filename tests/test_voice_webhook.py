"""The voice webhooks: TwiML for a call, signatures, refusals, the end's message.

The routes are mounted on a bare Quart-Trio app (what the calls server
adds them to) and driven with Quart's test client: Twilio's signature is
computed over the public URL the service is told, as Twilio does.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from typing import Any, Final, cast

import orjson
import pytest
import trio
import trio.testing
from quart.testing import WebsocketResponseError
from quart_trio import QuartTrio
from twilio.request_validator import RequestValidator

from neuro_api.realtime import PoolConfig, RealtimePool
from neuro_api.server import RandomNeuroServer
from neuro_api.voice import Bridge, CallEnd, VoiceConfig, VoiceService
from neuro_api.voice._routes import voice_routes
from neuro_api.voice._service import LiveCall

TOKEN: Final = "a-twilio-auth-token-for-the-tests"
PUBLIC: Final = "https://calls.example.test"
CALL: Final = "CA" + "a" * 32
FORM: Final = {"CallSid": CALL, "From": "+15550001111", "To": "+15550002222"}


class Registry:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    async def start_phone_call(self, call_sid: str, from_: str, to: str) -> None:
        self.events.append(("start", call_sid, from_, to))

    async def end_phone_call(self, call_sid: str, reason: str) -> None:
        self.events.append(("end", call_sid, reason))


def make(
    *, token: str | None = TOKEN, insecure: bool = False, blocked: Any = None
) -> tuple[QuartTrio, VoiceService, Registry]:
    registry = Registry()
    service = VoiceService(
        VoiceConfig(instructions="Be Neuro."),
        server=RandomNeuroServer(),
        pool=RealtimePool(PoolConfig(api_key="sk-x", max_connections=2)),
        registry=registry,
        public_base=lambda: PUBLIC,
        blocked=blocked or (lambda number: False),
    )
    app = QuartTrio(__name__)
    app.register_blueprint(
        voice_routes(
            service, auth_token=token, insecure=insecure, public_base=lambda: PUBLIC
        )
    )
    return app, service, registry


def sign(path: str, form: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    signature = RequestValidator(token).compute_signature(PUBLIC + path, form)
    return {"X-Twilio-Signature": signature}


async def post(app: QuartTrio, path: str, form: dict[str, str], headers: Any) -> Any:
    client = app.test_client()
    return await client.post(path, form=form, headers=headers)


async def test_a_call_is_connected_to_the_media_stream() -> None:
    app, service, registry = make()
    answer = await post(app, "/twilio/voice", FORM, sign("/twilio/voice", FORM))
    assert answer.status_code == 200
    assert answer.mimetype == "text/xml"
    root = ET.fromstring(await answer.get_data(as_text=True))
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://calls.example.test/twilio/media"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters == {"callSid": CALL, "token": service.calls[CALL].token}
    assert len(service.calls[CALL].token) >= 20  # 128 random bits, URL-safe
    redirect = root.find("./Redirect")
    assert redirect is not None
    assert redirect.text == f"{PUBLIC}/twilio/voice/end"
    assert registry.events == [("start", CALL, "+15550001111", "+15550002222")]
    assert [c["state"] for c in service.live()] == ["connecting"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        sign("/twilio/voice", FORM, token="another-token"),
        # Signed over the URL the server sees, not the public one.
        {
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
                "http://localhost/twilio/voice", FORM
            )
        },
        sign("/twilio/voice", {**FORM, "From": "+15559999999"}),  # form changed
    ],
)
async def test_unsigned_or_wrongly_signed_is_403_and_nothing_happens(
    headers: dict[str, str],
) -> None:
    app, service, registry = make()
    answer = await post(app, "/twilio/voice", FORM, headers)
    assert answer.status_code == 403
    assert registry.events == []
    assert service.live() == []
    assert service.counters["forbidden"] == 1


async def test_without_a_token_the_routes_are_503_unless_insecure() -> None:
    app, _, registry = make(token=None)
    answer = await post(app, "/twilio/voice", FORM, {})
    assert answer.status_code == 503
    assert "TWILIO_AUTH_TOKEN" in (await answer.get_json())["error"]
    app, _, registry = make(token=None, insecure=True)
    answer = await post(app, "/twilio/voice", FORM, {})
    assert answer.status_code == 200
    assert registry.events[0][0] == "start"


async def test_a_blocked_caller_is_rejected() -> None:
    app, _, registry = make(blocked=lambda number: number == "+15550001111")
    answer = await post(app, "/twilio/voice", FORM, sign("/twilio/voice", FORM))
    root = ET.fromstring(await answer.get_data(as_text=True))
    assert [child.tag for child in root] == ["Reject"]
    assert registry.events == [
        ("start", CALL, "+15550001111", "+15550002222"),
        ("end", CALL, "blocked"),
    ]


async def test_no_free_connection_is_a_spoken_busy_and_a_hang_up() -> None:
    app, service, registry = make()
    service.pool.problem = "the API refused the key"  # the pool is down
    answer = await post(app, "/twilio/voice", FORM, sign("/twilio/voice", FORM))
    root = ET.fromstring(await answer.get_data(as_text=True))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert "another call" in (root[0].text or "")
    assert registry.events[-1] == ("end", CALL, "busy")


@pytest.mark.parametrize(
    "form",
    [{}, {"CallSid": "CA123"}, {"CallSid": "XX" + "a" * 32}, {"CallSid": CALL + "0"}],
)
async def test_a_form_without_a_call_sid_is_400(form: dict[str, str]) -> None:
    app, _, registry = make()
    answer = await post(app, "/twilio/voice", form, sign("/twilio/voice", form))
    assert answer.status_code == 400
    assert registry.events == []


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        (CallEnd.MAX_DURATION, "Goodbye"),
        ("busy", "another call"),
        (CallEnd.REALTIME_FAILED, "went wrong"),
        (CallEnd.CALLER_HUNG_UP, None),
    ],
)
async def test_after_the_stream_the_reason_is_said_then_hang_up(
    reason: str, said: str | None
) -> None:
    app, service, _ = make()
    service.ended[CALL] = reason
    form = {"CallSid": CALL}
    answer = await post(app, "/twilio/voice/end", form, sign("/twilio/voice/end", form))
    root = ET.fromstring(await answer.get_data(as_text=True))
    if said is None:
        assert [child.tag for child in root] == ["Hangup"]
    else:
        assert [child.tag for child in root] == ["Say", "Hangup"]
        assert said in (root[0].text or "")


async def test_the_end_webhook_is_signed_too() -> None:
    app, _, _ = make()
    answer = await post(app, "/twilio/voice/end", {"CallSid": CALL}, {})
    assert answer.status_code == 403


def test_the_session_is_mulaw_both_ways_with_vad_and_transcription() -> None:
    session = VoiceConfig(instructions="Be Neuro.", voice="cedar").session()
    audio = session["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcmu"}
    assert audio["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar"}
    assert audio["input"]["turn_detection"]["type"] == "server_vad"
    assert audio["input"]["turn_detection"]["interrupt_response"] is True
    assert "transcription" in audio["input"]
    assert session["output_modalities"] == ["audio"]


async def test_a_replayed_webhook_announces_no_second_stream() -> None:
    app, service, registry = make()
    headers = sign("/twilio/voice", FORM)
    first = await post(app, "/twilio/voice", FORM, headers)
    assert first.status_code == 200
    # Twilio retrying before the stream opened: the same answer, one call.
    again = await post(app, "/twilio/voice", FORM, headers)
    assert again.status_code == 200
    assert await again.get_data() == await first.get_data()
    assert len(registry.events) == 1
    # The stream opened: a replay must not make the call "connecting" again
    # (a second stream with the replayed upgrade signature would be bridged).
    service.calls[CALL].started = 1.0
    replay = await post(app, "/twilio/voice", FORM, headers)
    assert replay.status_code == 400
    assert service.calls[CALL].started == 1.0
    # Over: not announced again either.
    del service.calls[CALL]
    service.ended[CALL] = CallEnd.CALLER_HUNG_UP
    replay = await post(app, "/twilio/voice", FORM, headers)
    assert replay.status_code == 400
    assert service.live() == []
    assert len(registry.events) == 1
    assert service.counters["replayed"] == 2


async def test_a_call_whose_stream_never_came_is_ended_in_the_registry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app, service, registry = make()
    now = [1000.0]
    service.clock = lambda: now[0]
    await post(app, "/twilio/voice", FORM, sign("/twilio/voice", FORM))
    now[0] += 61.0  # longer than an announced call waits for its stream
    other = {**FORM, "CallSid": "CA" + "b" * 32}
    await post(app, "/twilio/voice", other, sign("/twilio/voice", other))
    # Forgotten at once (it held a place), ended in the registry by the
    # sweep: a webhook never waits for the registry's end of another call.
    assert [c["call_sid"] for c in service.live()] == [other["CallSid"]]
    assert ("end", CALL, "no_stream") not in registry.events
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await trio.sleep(11)
        nursery.cancel_scope.cancel()
    assert ("end", CALL, "no_stream") in registry.events


async def test_a_hanging_registry_keeps_the_webhook_within_twilios_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Stuck(Hanging):
        async def start_phone_call(self, call_sid: str, from_: str, to: str) -> None:
            await trio.sleep_forever()

    registry = Stuck()
    service = VoiceService(
        VoiceConfig(instructions="Be Neuro."),
        server=RandomNeuroServer(),
        pool=RealtimePool(PoolConfig(api_key="sk-x", max_connections=2)),
        registry=registry,
        public_base=lambda: PUBLIC,
        blocked=lambda number: True,  # a start and an end in the webhook
    )
    began = trio.current_time()
    assert "<Reject" in await service.answer(FORM)
    # Two registry writes, 4 s each at most: Twilio waits 15 s.
    assert trio.current_time() - began == pytest.approx(8, abs=0.5)


async def test_streams_waiting_for_their_start_are_bounded() -> None:
    # One seen upgrade signature opens any number of streams: those that
    # send no start yet are bounded (2 x max_connections here: 4).
    app, service, _ = make()
    client = app.test_client()
    signature = RequestValidator(TOKEN).compute_signature(
        "wss://calls.example.test/twilio/media", {}
    )
    headers = {"X-Twilio-Signature": signature}
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            # The protocol type Quart declares is no context manager for mypy.
            opening: Any = client.websocket("/twilio/media", headers=headers)
            ws = await stack.enter_async_context(opening)
            await ws.send('{"event": "connected"}')
        await trio.testing.wait_all_tasks_blocked()
        assert service.opening == 4
        # Quart-Trio's test connection raises it inside its nursery.
        with pytest.RaisesGroup(WebsocketResponseError, flatten_subgroups=True) as got:
            async with client.websocket("/twilio/media", headers=headers) as extra:
                await extra.receive()
        (refused,) = got.value.exceptions
        assert isinstance(refused, WebsocketResponseError)
        assert refused.response.status_code == 503
        assert service.counters["streams_refused"] == 1


class Hanging(Registry):
    """A registry whose end never comes."""

    async def end_phone_call(self, call_sid: str, reason: str) -> None:
        await trio.sleep_forever()


class Control:
    """Twilio's REST API: when each hang-up came."""

    def __init__(self) -> None:
        self.hung_up: list[tuple[str, float]] = []

    async def say_and_hang_up(self, call_sid: str, twiml: str) -> bool:
        self.hung_up.append((call_sid, trio.current_time()))
        return True


class Media:
    """A stream that starts (with the call's one-time value), then waits."""

    def __init__(self, token: str) -> None:
        start = {
            "callSid": CALL,
            "streamSid": "MZ" + "c" * 32,
            "customParameters": {"token": token},
        }
        self.frames = [
            orjson.dumps({"event": "connected"}).decode(),
            orjson.dumps({"event": "start", "start": start}).decode(),
        ]
        self.closed: list[float] = []

    async def receive(self) -> str:
        if not self.frames:
            await trio.sleep_forever()
        return self.frames.pop(0)

    async def send(self, text: str) -> None:
        pass

    async def close(self) -> None:
        self.closed.append(trio.current_time())


@pytest.mark.parametrize("rest", [True, False])
async def test_a_hanging_registry_keeps_no_caller_waiting(
    autojump_clock: trio.testing.MockClock, rest: bool
) -> None:
    control = Control()
    service = VoiceService(
        VoiceConfig(instructions="Be Neuro."),
        server=RandomNeuroServer(),
        # Not running: the lease fails, the call ends realtime_unavailable.
        pool=RealtimePool(PoolConfig(api_key="sk-x", max_connections=2)),
        registry=Hanging(),
        public_base=lambda: PUBLIC,
        control=control if rest else None,
    )
    await service.answer(FORM)
    media = Media(service.calls[CALL].token)
    began = trio.current_time()
    assert await service.stream(media) == "realtime_unavailable"
    # The registry had its time (bounded); the caller did not wait for it.
    assert trio.current_time() - began == pytest.approx(4, abs=0.5)
    if rest:  # Twilio told through its REST API at once...
        assert [(sid, at - began) for sid, at in control.hung_up] == [(CALL, 0)]
        assert media.closed == []
    else:  # ...or the stream closed at once: Twilio goes on to the end's TwiML.
        assert [at - began for at in media.closed] == [0]
        assert "went wrong" in service.after_stream(FORM)


class Refusing(Control):
    """Twilio's REST API failing (wrong credentials, an outage)."""

    async def say_and_hang_up(self, call_sid: str, twiml: str) -> bool:
        await super().say_and_hang_up(call_sid, twiml)
        raise RuntimeError("Twilio error: 20003 Authenticate")


async def test_a_hang_up_twilio_refuses_closes_the_stream_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    control = Refusing()
    service = VoiceService(
        VoiceConfig(instructions="Be Neuro."),
        server=RandomNeuroServer(),
        pool=RealtimePool(PoolConfig(api_key="sk-x", max_connections=2)),
        registry=Hanging(),
        public_base=lambda: PUBLIC,
        control=control,
    )
    await service.answer(FORM)
    media = Media(service.calls[CALL].token)
    began = trio.current_time()
    assert await service.stream(media) == "realtime_unavailable"
    assert [at - began for _, at in control.hung_up] == [0]
    # Not left in silence until the registry gives up: the stream closes,
    # and Twilio goes on to the end's TwiML (the apology).
    assert [at - began for at in media.closed] == [0]
    assert "went wrong" in service.after_stream(FORM)


async def test_announced_calls_whose_stream_never_came_are_swept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = Registry()
    service = VoiceService(
        VoiceConfig(instructions="Be Neuro."),
        server=RandomNeuroServer(),
        pool=RealtimePool(PoolConfig(api_key="sk-x", max_connections=2)),
        registry=registry,
        public_base=lambda: PUBLIC,
        clock=trio.current_time,
    )
    await service.answer(FORM)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await trio.sleep(59)
        assert ("end", CALL, "no_stream") not in registry.events
        await trio.sleep(20)  # the TTL, then the next sweep
        assert ("end", CALL, "no_stream") in registry.events
        assert service.calls == {}
        nursery.cancel_scope.cancel()


def test_a_call_ending_already_is_not_ended_again() -> None:
    _, service, _ = make()
    call = service.calls[CALL] = LiveCall(CALL, "+15550001111", "", 0.0)
    assert not service.end_call(CALL)  # announced, not bridged
    call.bridge = Bridge(cast(Any, None), cast(Any, None), "MZ" + "c" * 32, session={})
    call.bridge.end(CallEnd.CALLER_HUNG_UP)
    assert not service.end_call(CALL)  # ending already: its reason stands
    assert call.bridge.reason == CallEnd.CALLER_HUNG_UP
    call.bridge = Bridge(cast(Any, None), cast(Any, None), "MZ" + "c" * 32, session={})
    assert service.end_call(CALL)
    assert call.bridge.reason == CallEnd.ENDED_HERE
