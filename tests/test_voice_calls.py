"""Whole phone calls over real sockets: a process with the calls, realtime
and voice capabilities, the fake Twilio (webhook, media stream, REST) and
the fake Realtime API with audio, and real games on loopback."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
from fake_realtime import Audio, Drop, FakeRealtime, FunctionCall, open_fake_realtime
from fake_twilio import FakeTwilio, loopback_only
from fake_twilio_media import TwimlStream, open_fake_twilio_media, voice_webhook
from server_helpers import PLAY, connect
from speech import require_speech_tools, silence, speech, tone
from status_helpers import eventually
from trio_websocket import ConnectionRejected

from neuro_api.app import NeuroProcess, ProcessInfo, build_parser, default_capabilities
from neuro_api.manager import ServerInfo
from neuro_api.server import RandomNeuroServer
from neuro_api.settings import check_sections, load_settings
from neuro_api.voice import VoiceCapability

pytestmark = pytest.mark.timeout(60)
TOKEN: Final = "a-twilio-auth-token-for-the-voice-tests"
KEY: Final = "sk-voice-tests"
SID: Final = "AC" + "0" * 32
API_KEY: Final = "SK" + "1" * 32
SECRET: Final = "a-test-secret-of-at-least-32-bytes-long"
WAIT: Final = 15.0


class Running:
    def __init__(
        self, process: NeuroProcess, info: ProcessInfo, fake: FakeRealtime
    ) -> None:
        self.process = process
        self.info = info
        self.fake = fake

    @property
    def calls_url(self) -> str:
        info = {s.name: s.info for s in self.process.supervisor.status()}["calls"]
        assert isinstance(info, ServerInfo)
        return info.local_url

    @property
    def voice(self) -> VoiceCapability:
        (found,) = [
            c for c in self.process.capabilities if isinstance(c, VoiceCapability)
        ]
        return found

    async def registry(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.calls_url) as http:
            answer = await http.get("/api/calls", params={"kind": "phone"})
        calls: list[dict[str, Any]] = answer.json()["calls"]
        return calls

    async def dial(self, public: str | None = None) -> tuple[TwimlStream, str]:
        """Twilio's webhook for a new call: the stream it is told to open."""
        base = public or self.calls_url
        hook = voice_webhook(base + "/twilio/voice", auth_token=TOKEN)
        async with httpx.AsyncClient(base_url=self.calls_url) as http:
            reply = await http.post(
                "/twilio/voice", data=hook.form, headers=hook.headers
            )
        assert reply.status_code == 200, reply.text
        return TwimlStream.parse(reply.text), hook.call_sid

    async def ended(self) -> list[dict[str, Any]]:
        """The phone calls, once every one has ended (polled: the registry
        hears the end just after the lease is returned)."""
        for _ in range(int(WAIT / 0.05)):
            calls = await self.registry()
            if calls and all(c["status"] == "ended" for c in calls):
                return calls
            await trio.sleep(0.05)
        raise AssertionError(f"calls not ended: {await self.registry()}")

    def media_url(self) -> str:
        return self.calls_url.replace("http://", "ws://") + "/twilio/media"


@asynccontextmanager
async def running(
    tmp_path: Path, *argv: str, environ: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    async with open_fake_realtime(key=KEY) as fake:
        capabilities = default_capabilities()
        sections = list(
            check_sections(c.settings for c in capabilities if c.settings).values()
        )
        flags = ["--engine", "random", "--port", "0", "--http-port", "0"]
        flags += ["--data-dir", str(tmp_path), "--calls-port", "0"]
        parsed = build_parser(sections).parse_args([*flags, *argv])
        env = {
            "OPENAI_API_KEY": KEY,
            "OPENAI_REALTIME_URL": fake.url,
            "TWILIO_AUTH_TOKEN": TOKEN,
            **(environ or {}),
        }
        settings = load_settings(parsed, environ=env, sections=sections)
        process = NeuroProcess(
            settings,
            RandomNeuroServer(),
            capabilities=capabilities,
            out=io.StringIO(),
        )
        async with trio.open_nursery() as nursery:
            with trio.fail_after(WAIT):
                info: ProcessInfo = await nursery.start(
                    lambda task_status: process.run(
                        handle_signals=False, task_status=task_status
                    )
                )
            yield Running(process, info, fake)
            nursery.cancel_scope.cancel()


def active_leases(run: Running) -> int:
    service = run.voice.service
    assert service is not None
    leases: int = service.pool.stats()["active_sessions"]
    return leases


async def test_a_whole_call_is_heard_answered_and_recorded(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        run.fake.script(Audio(transcript="Hi, it's Neuro!", ms=600, pace=None))
        stream, call_sid = await run.dial()
        assert stream.url == run.media_url()
        assert stream.parameters.keys() == {"callSid", "token"}
        assert stream.parameters["callSid"] == call_sid
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(tone(600))
            await call.say(silence(800))
            with trio.fail_after(WAIT):
                await call.wait_heard(500)
            await eventually(lambda: active_leases(run) == 1)
            session = run.fake.connections[0].session
            assert session["audio"]["input"]["format"]["type"] == "audio/pcmu"
            assert session["audio"]["output"]["format"]["type"] == "audio/pcmu"
            await call.wait_played()
            assert call.protocol_errors == []
            await trio.sleep(1.2)  # a whole second on the registry's clock
            await call.hang_up()
        await eventually(lambda: active_leases(run) == 0)

        (recorded,) = await run.ended()
        assert recorded["kind"] == "phone"
        assert recorded["call_sid"] == call_sid
        assert recorded["end_reason"] == "caller_hung_up"
        assert recorded["duration"] >= 1
        assert (recorded["caller"], recorded["callee"]) == (
            "+15550001111",
            "+15550002222",
        )


async def test_barge_in_truncates_at_what_the_caller_heard(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        # Three seconds of answer, streamed faster than it plays.
        run.fake.script(Audio(transcript="A long story " * 5, ms=3000, pace=4.0))
        stream, call_sid = await run.dial()
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(tone(500))
            await call.say(silence(800))
            with trio.fail_after(WAIT):
                await call.wait_heard(700)
            await call.say(tone(400))  # the caller speaks over her
            connection = run.fake.connections[0]
            with trio.fail_after(WAIT):
                truncate = await connection.wait_event("conversation.item.truncate")
            await eventually(lambda: call.clears == 1)
            heard_by_marks = max(
                (m.heard_ms for m in call.marks if not m.cleared), default=0
            )
            end = truncate["audio_end_ms"]
            # What the returned marks said was heard, never what was sent.
            assert 600 <= end <= call.heard_ms + 1
            assert abs(end - heard_by_marks) <= 110  # one 100 ms chunk
            assert end < 3000
            errors = [e for e in connection.sent if e["type"] == "error"]
            assert errors == []
            # Marks Twilio returned because of the clear were not counted.
            assert any(m.cleared for m in call.marks)
            await call.hang_up()


async def test_a_tool_call_plays_in_a_real_game_and_the_result_goes_back(
    tmp_path: Path,
) -> None:
    async with (
        running(tmp_path) as run,
        connect(run.info.games.local_url, "Tic Tac Toe") as game,
    ):
        await game.startup()
        await game.register(PLAY)
        await eventually(lambda: any(g.actions for g in run.process.server.games()))
        run.fake.script(FunctionCall("play", '{"cell": 5}'))
        run.fake.script(Audio(transcript="I put an X in the middle!", ms=400))
        stream, call_sid = await run.dial()
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(tone(500))
            await call.say(silence(800))
            action = await game.expect_action(within=WAIT)
            assert (action.name, action.data_json) == ("play", '{"cell": 5}')
            await game.result(action.id, True, "X in the middle")
            connection = run.fake.connections[0]

            def outputs() -> list[dict[str, Any]]:
                return [
                    e["item"]
                    for e in connection.received
                    if e["type"] == "conversation.item.create"
                    and e["item"]["type"] == "function_call_output"
                ]

            await eventually(lambda: bool(outputs()), WAIT)
            (output,) = outputs()
            created = {"item": output}
            assert "X in the middle" in created["item"]["output"]
            with trio.fail_after(WAIT):
                await call.wait_heard(300)  # the answer is spoken back
            tools = connection.session["tools"]
            assert [t["name"] for t in tools] == ["play", "end_call"]
            # The game's result reached the model once, as the tool's
            # output: not a second time as the game's context.
            await game.context("The board changed", silent=True)
            await eventually(lambda: any(told(e) for e in connection.received), WAIT)
            assert not any(
                "Result of action" in told(e) for e in connection.received
            ), [told(e) for e in connection.received if told(e)]
            await call.hang_up()


def told(event: dict[str, Any]) -> str:
    """The text of a message item the call added (empty for other events)."""
    if event["type"] != "conversation.item.create":
        return ""
    item = event["item"]
    if item["type"] != "message":
        return ""
    return " ".join(part.get("text", "") for part in item["content"])


@pytest.mark.parametrize("how", ["missing", "wrong", "other token"])
async def test_an_unsigned_upgrade_is_403_and_nothing_opens(
    tmp_path: Path, how: str
) -> None:
    async with running(tmp_path) as run:
        stream, call_sid = await run.dial()
        options: dict[str, Any] = {
            "missing": {},
            "wrong": {"auth_token": TOKEN, "signature": "bm90IGl0"},
            "other token": {"auth_token": "another-token"},
        }[how]
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_fake_twilio_media(
                run.media_url(),
                public_url=stream.url,
                call_sid=call_sid,
                custom_parameters=stream.parameters,
                **options,
            ):
                pass
        assert rejected.value.status_code == 403
        assert run.fake.connections == []  # no Realtime session opened
        assert active_leases(run) == 0


async def test_behind_a_public_url_signatures_use_it(tmp_path: Path) -> None:
    public = "https://calls.example.test"
    async with running(tmp_path, "--voice-public-url", public) as run:
        run.fake.script(Audio(transcript="Hello.", ms=300, pace=None))
        stream, call_sid = await run.dial(public=public)
        assert stream.url == "wss://calls.example.test/twilio/media"
        # Signed over the URL the server sees, not the public one: refused.
        with pytest.raises(ConnectionRejected):
            async with open_fake_twilio_media(
                run.media_url(), auth_token=TOKEN, call_sid=call_sid
            ):
                pass
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(tone(400))
            await call.say(silence(800))
            with trio.fail_after(WAIT):
                await call.wait_heard(200)
            await call.hang_up()


async def test_a_stream_for_a_call_never_announced_is_not_bridged(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as run:
        # A validly signed upgrade (the signature is the same for every
        # stream) for a call our webhook never answered.
        async with open_fake_twilio_media(
            run.media_url(), auth_token=TOKEN, public_url=run.media_url()
        ) as call:
            await call.wait_closed()
        assert run.fake.connections == []
        service = run.voice.service
        assert service is not None
        assert service.counters["unannounced_streams"] == 1


async def test_no_free_connection_means_busy(tmp_path: Path) -> None:
    async with running(tmp_path, environ={"WEBSOCKET_MAX_CONNECTIONS": "1"}) as run:
        run.fake.script(Audio(transcript="Hm.", ms=200, pace=None))
        stream, call_sid = await run.dial()
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await eventually(lambda: active_leases(run) == 1)
            hook = voice_webhook(run.calls_url + "/twilio/voice", auth_token=TOKEN)
            async with httpx.AsyncClient(base_url=run.calls_url) as http:
                reply = await http.post(
                    "/twilio/voice", data=hook.form, headers=hook.headers
                )
            assert "<Say>" in reply.text
            assert "<Hangup" in reply.text
            assert "another call" in reply.text
            await call.hang_up()
        calls = {c["call_sid"]: c for c in await run.ended()}
        assert calls[hook.call_sid]["end_reason"] == "busy"


async def test_the_realtime_side_failing_mid_call_apologises_and_returns_the_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        FakeTwilio(API_KEY, SECRET) as twilio,
        loopback_only(monkeypatch) as left,
    ):
        environ = {
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_API_KEY": API_KEY,
            "TWILIO_API_SECRET": SECRET,
            "TWILIO_BASE_URL": twilio.url,
        }
        async with running(tmp_path, environ=environ) as run:
            run.fake.script(Drop())
            stream, call_sid = await run.dial()
            twilio.add_call(sid=call_sid)
            async with open_fake_twilio_media(
                run.media_url(),
                auth_token=TOKEN,
                public_url=stream.url,
                custom_parameters=stream.parameters,
                call_sid=call_sid,
            ) as call:
                await call.say(tone(400))
                await call.say(silence(800), wait=False)
                await eventually(lambda: bool(twilio.call(call_sid).updates), WAIT)
            (update,) = twilio.call(call_sid).updates
            assert "went wrong" in update["Twiml"]
            assert "<Hangup" in update["Twiml"]
            await eventually(lambda: active_leases(run) == 0)
            (recorded,) = await run.ended()
            assert recorded["end_reason"] == "realtime_failed"
    assert left == []


async def test_twilio_dropping_mid_answer_ends_the_call_cleanly(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as run:
        run.fake.script(Audio(transcript="Long " * 20, ms=4000, pace=1.0))
        stream, call_sid = await run.dial()
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(tone(400))
            await call.say(silence(800))
            with trio.fail_after(WAIT):
                await call.wait_heard(200)
            await call.drop()
        await eventually(lambda: active_leases(run) == 0, WAIT)
        (recorded,) = await run.ended()
        assert recorded["end_reason"] == "stream_closed"


async def test_real_speech_makes_one_turn_and_gets_an_answer(tmp_path: Path) -> None:
    require_speech_tools()
    words = speech("hello Neuro how are you today")
    async with running(tmp_path) as run:
        run.fake.script(Audio(transcript="I'm great!", ms=500, pace=None))
        stream, call_sid = await run.dial()
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(words)
            await call.say(silence(1000))
            with trio.fail_after(WAIT):
                await call.wait_heard(400)
            turns = run.fake.connections[0].turns
            assert len(turns) == 1  # one sentence, one turn
            assert abs(len(turns[0].audio) - len(words)) < 8 * 800
            await call.hang_up()


async def test_a_huge_frame_closes_its_stream_and_nothing_else(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        stream, call_sid = await run.dial()
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
            microphone=False,
        ) as call:
            # 100 KiB in one message: more than any HTTP server here reads
            # (Hypercorn's default, 16 MiB, let a stream queue 160 MiB).
            await call.send_raw("x" * (100 * 1024))
            with trio.fail_after(WAIT):
                await call.wait_closed()
            assert call.close_code == 1009
        await eventually(lambda: active_leases(run) == 0, WAIT)
        (recorded,) = await run.ended()
        assert recorded["end_reason"] == "stream_closed"
        # The calls server still answers the next call.
        await run.dial()


async def test_neuro_hangs_up_once_her_goodbye_was_heard(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        # One response: the goodbye (all at once), then the end_call tool.
        run.fake.script([Audio(transcript="Bye now!", ms=1000, pace=None),
                         FunctionCall("end_call")])  # fmt: skip
        stream, call_sid = await run.dial()
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(tone(400))
            await call.say(silence(800), wait=False)
            with trio.fail_after(WAIT):
                await call.wait_closed()
            assert call.closed_by == "server"
            # Closed once the goodbye had played (20 ms frames at real time).
            assert call.heard_ms >= 980
            assert call.protocol_errors == []
        connection = run.fake.connections[0]
        outputs = [
            e["item"]["output"]
            for e in connection.received
            if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"
        ]
        assert len(outputs) == 1
        (recorded,) = await run.ended()
        assert recorded["end_reason"] == "neuro_hung_up"
        assert active_leases(run) == 0


async def test_a_stream_without_the_calls_one_time_value_is_not_bridged(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as run:
        run.fake.script(Audio(transcript="Hello!", ms=400, pace=None))
        stream, call_sid = await run.dial()
        # Someone who learnt the call SID (and the upgrade's signature, the
        # same for every stream) but not the TwiML's one-time value.
        for parameters in ({"callSid": call_sid}, {**stream.parameters, "token": "x"}):
            async with open_fake_twilio_media(
                run.media_url(),
                auth_token=TOKEN,
                public_url=stream.url,
                custom_parameters=parameters,
                call_sid=call_sid,
            ) as intruder:
                with trio.fail_after(WAIT):
                    await intruder.wait_closed()
                assert intruder.events("media") == []
        assert run.fake.connections == [] or all(
            not c.received for c in run.fake.connections
        )
        service = run.voice.service
        assert service is not None
        assert service.counters["wrong_token_streams"] == 2
        # The call is still Twilio's to stream.
        async with open_fake_twilio_media(
            run.media_url(),
            auth_token=TOKEN,
            public_url=stream.url,
            custom_parameters=stream.parameters,
            call_sid=call_sid,
        ) as call:
            await call.say(tone(400))
            await call.say(silence(800))
            with trio.fail_after(WAIT):
                await call.wait_heard(300)
            await call.hang_up()
        (recorded,) = await run.ended()
        assert recorded["end_reason"] == "caller_hung_up"


async def test_another_partys_result_of_the_same_action_still_reaches_the_call(
    tmp_path: Path,
) -> None:
    async with (
        running(tmp_path) as run,
        connect(run.info.games.local_url, "Tic Tac Toe") as game,
    ):
        await game.startup()
        await game.register(PLAY)
        await eventually(lambda: any(g.actions for g in run.process.server.games()))
        run.fake.script(FunctionCall("play", '{"cell": 5}'))
        run.fake.script(Audio(transcript="I put an X in the middle!", ms=400))
        stream, call_sid = await run.dial()
        async with (
            open_fake_twilio_media(
                run.media_url(),
                auth_token=TOKEN,
                public_url=stream.url,
                custom_parameters=stream.parameters,
                call_sid=call_sid,
            ) as call,
            trio.open_nursery() as nursery,
        ):
            await call.say(tone(500))
            await call.say(silence(800))
            ours = await game.expect_action(within=WAIT)
            # Meanwhile another party (the control plane, another call) plays
            # the same action on the same game; the game answers it first.
            (client,) = run.process.server.games()
            nursery.start_soon(client.execute_action, "play", '{"cell": 1}')
            theirs = await game.expect_action(within=WAIT)
            await game.result(theirs.id, True, "O in the corner")
            await game.result(ours.id, True, "X in the middle")
            await game.context("The board changed", silent=True)
            connection = run.fake.connections[0]
            await eventually(
                lambda: any("board changed" in told(e) for e in connection.received),
                WAIT,
            )
            results = [
                told(e) for e in connection.received if "Result of action" in told(e)
            ]
            # The other party's result is context for the call; its own is not.
            assert len(results) == 1, results
            assert "O in the corner" in results[0]
            await call.hang_up()
