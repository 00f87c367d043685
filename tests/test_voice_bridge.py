"""The bridge's logic with both sides scripted in memory (autojump clock).

Twilio is a pair of memory channels; the Realtime lease is a stand-in
with the same ``send``/``events`` as :class:`~neuro_api.realtime.RealtimeConnection`.
End-to-end calls over real sockets, with the fakes of Twilio's media
stream and of the Realtime API's audio, are in ``test_voice_calls.py``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final, cast

import orjson
import pytest
import trio
import trio.testing
from server_helpers import PASS, PLAY, connect, start_server
from status_helpers import eventually

from neuro_api.command import Action
from neuro_api.realtime import ConnectionLost, RealtimeConnection
from neuro_api.server import ContextMessage, RandomNeuroServer
from neuro_api.voice import Bridge, BridgeLimits, CallEnd, GameTools, MediaClosed

STREAM: Final = "MZ" + "b" * 32
pytestmark = pytest.mark.timeout(30)


class Twilio:
    """Twilio's side: what the bridge sends, and frames to give it."""

    def __init__(self, *, stalled: bool = False) -> None:
        self.inbox, self._frames = trio.open_memory_channel[str | bytes](1000)
        self.sent: list[dict[str, Any]] = []
        self.stalled = stalled
        self.closed = False

    async def receive(self) -> str | bytes:
        try:
            return await self._frames.receive()
        except trio.EndOfChannel:
            raise MediaClosed("closed") from None

    async def send(self, text: str) -> None:
        if self.stalled:
            await trio.sleep_forever()
        if self.closed:
            raise MediaClosed("closed")
        self.sent.append(orjson.loads(text))

    async def close(self) -> None:
        self.closed = True

    def give(self, event: str, **body: Any) -> None:
        self.inbox.send_nowait(orjson.dumps({"event": event, **body}).decode())

    def kinds(self) -> list[str]:
        return [message["event"] for message in self.sent]


class Realtime:
    """The leased connection: what the bridge sends, and events to give it."""

    def __init__(self) -> None:
        self.inbox, self._events = trio.open_memory_channel[dict[str, Any]](1000)
        self.sent: list[dict[str, Any]] = []
        self.lost = False

    async def send(self, event: Mapping[str, Any]) -> None:
        if self.lost:
            raise ConnectionLost("gone")
        self.sent.append(dict(event))
        await trio.lowlevel.checkpoint()

    async def receive(self) -> dict[str, Any]:
        try:
            return await self._events.receive()
        except trio.EndOfChannel:
            raise ConnectionLost("the events ended") from None

    def give(self, kind: str, **body: Any) -> None:
        self.inbox.send_nowait({"type": kind, **body})

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.sent if event["type"] == kind]


def audio(size: int) -> str:
    return base64.b64encode(b"\xff" * size).decode()


def bridge_of(
    twilio: Twilio, api: Realtime, *, hang_up: bool = True, **limits: Any
) -> Bridge:
    return Bridge(
        twilio,
        cast(RealtimeConnection, api),
        STREAM,
        session={"type": "realtime"},
        limits=BridgeLimits(**limits),
        hang_up=hang_up,
    )


async def test_audio_passes_through_both_ways_with_a_mark_per_chunk(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api)
    async with trio.open_nursery() as nursery:
        result: list[str] = []

        async def run() -> None:
            result.append(await bridge.run())

        nursery.start_soon(run)
        twilio.give("media", media={"track": "inbound", "payload": audio(160)})
        api.give(
            "response.output_audio.delta", item_id="item1", content_index=0,
            delta=audio(800),
        )  # fmt: skip
        await trio.sleep(0.1)
        assert api.sent[0]["type"] == "session.update"
        (append,) = api.of("input_audio_buffer.append")
        assert append["audio"] == audio(160)  # as it came, no codec
        assert twilio.kinds() == ["media", "mark"]
        assert twilio.sent[0] == {
            "event": "media", "media": {"payload": audio(800)}, "streamSid": STREAM,
        }  # fmt: skip
        twilio.give("stop", stop={})
    assert result == [CallEnd.CALLER_HUNG_UP]
    assert bridge.counters.audio_in_bytes == 160
    assert bridge.counters.audio_out_bytes == 800


async def test_barge_in_clears_and_truncates_at_what_was_heard(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bridge.run)
        for _ in range(5):  # five chunks of 200 ms
            api.give(
                "response.output_audio.delta", item_id="item1", content_index=0,
                delta=audio(1600),
            )  # fmt: skip
        await trio.sleep(0.1)
        marks = [m["mark"]["name"] for m in twilio.sent if m["event"] == "mark"]
        assert len(marks) == 5
        for name in marks[:3]:  # 600 ms played
            twilio.give("mark", mark={"name": name})
        await trio.sleep(0.1)
        api.give("input_audio_buffer.speech_started", audio_start_ms=100)
        await trio.sleep(0.1)
        assert twilio.kinds()[-1] == "clear"
        (cut,) = api.of("conversation.item.truncate")
        assert (cut["item_id"], cut["content_index"], cut["audio_end_ms"]) == (
            "item1", 0, 600,
        )  # fmt: skip
        # Twilio returns the other marks because of the clear: not heard.
        for name in marks[3:]:
            twilio.give("mark", mark={"name": name})
        await trio.sleep(0.1)
        assert bridge.playback.heard_bytes == 3 * 1600
        # Speech with nothing playing is no barge-in.
        api.give("input_audio_buffer.speech_started", audio_start_ms=900)
        await trio.sleep(0.1)
        assert len(api.of("conversation.item.truncate")) == 1
        assert bridge.counters.barge_ins == 1
        nursery.cancel_scope.cancel()


async def test_a_stalled_twilio_ends_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(stalled=True), Realtime()
    bridge = bridge_of(twilio, api, send_timeout=5)
    api.give(
        "response.output_audio.delta", item_id="i", content_index=0, delta=audio(8)
    )
    with trio.fail_after(60):
        assert await bridge.run() == CallEnd.TWILIO_STALLED


async def test_a_silent_twilio_ends_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    with trio.fail_after(60):
        reason = await bridge_of(twilio, api, idle_timeout=7).run()
    assert reason == CallEnd.TWILIO_SILENT


async def test_the_longest_call_ends_with_max_duration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api, max_duration=60, idle_timeout=1000)
    start = trio.current_time()
    assert await bridge.run() == CallEnd.MAX_DURATION
    assert trio.current_time() - start == pytest.approx(60)


async def test_the_realtime_side_failing_ends_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api)
    async with trio.open_nursery() as nursery:
        result: list[str] = []

        async def run() -> None:
            result.append(await bridge.run())

        nursery.start_soon(run)
        await trio.sleep(0.1)
        api.lost = True
        twilio.give("media", media={"track": "inbound", "payload": audio(160)})
    assert result == [CallEnd.REALTIME_FAILED]


async def test_the_events_ending_ends_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    api.inbox.close()
    assert await bridge_of(twilio, api).run() == CallEnd.REALTIME_FAILED


async def test_bad_frames_are_counted_and_change_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api)
    for frame in (b"\x00binary", "not json", "[1, 2]", "x" * 100_000):
        twilio.inbox.send_nowait(frame)
    twilio.give("media", media={"track": "inbound", "payload": "A" * 20_000})
    twilio.give("media", media={"track": "outbound", "payload": audio(160)})
    twilio.give("dtmf", dtmf={"digit": "<script>"})
    twilio.give("mark", mark={"name": "never sent"})
    twilio.give("stop", stop={})
    assert await bridge.run() == CallEnd.CALLER_HUNG_UP
    assert bridge.counters.bad_frames == 6
    assert api.of("input_audio_buffer.append") == []


async def test_a_digit_becomes_an_item_and_a_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api)
    twilio.give("dtmf", dtmf={"track": "inbound_track", "digit": "5"})
    twilio.give("stop", stop={})
    await bridge.run()
    (item,) = api.of("conversation.item.create")
    assert "pressed 5" in item["item"]["content"][0]["text"]
    assert len(api.of("response.create")) == 1


async def test_a_tool_call_reaches_a_real_game_and_its_result_goes_back() -> None:
    server = RandomNeuroServer()
    async with trio.open_nursery() as nursery:
        info = await start_server(nursery, server)
        async with connect(info.url, "Tic Tac Toe") as game:
            await game.startup()
            await game.register(PLAY)
            await eventually(lambda: any(g.actions for g in server.games()))
            twilio, api = Twilio(), Realtime()
            bridge = Bridge(
                twilio,
                cast(RealtimeConnection, api),
                STREAM,
                session={"type": "realtime"},
                tools=GameTools(server, None),
            )
            nursery.start_soon(bridge.run)
            await eventually(lambda: bool(api.sent))
            tools = api.sent[0]["session"]["tools"]
            assert [tool["name"] for tool in tools] == ["play", "end_call"]
            # Invalid arguments never reach the game: the validator answers.
            api.give(
                "response.function_call_arguments.done", call_id="c1", name="play",
                arguments='{"cell": 42}',
            )  # fmt: skip
            await eventually(lambda: len(api.of("conversation.item.create")) == 1)
            first = orjson.loads(
                api.of("conversation.item.create")[0]["item"]["output"]
            )
            assert first["status"] == "invalid"
            api.give(
                "response.function_call_arguments.done", call_id="c2", name="play",
                arguments='{"cell": 5}',
            )  # fmt: skip
            action = await game.expect_action()
            assert (action.name, action.data_json) == ("play", '{"cell": 5}')
            await game.result(action.id, True, "X in the middle")
            await eventually(lambda: len(api.of("conversation.item.create")) == 2)
            item = api.of("conversation.item.create")[1]["item"]
            assert item["type"] == "function_call_output"
            assert item["call_id"] == "c2"
            assert orjson.loads(item["output"]) == {
                "status": "success", "message": "X in the middle",
            }  # fmt: skip
            assert len(api.of("response.create")) == 2
            # A new action registered: the session's tools follow.
            await game.register(PASS)
            await eventually(lambda: len(api.of("session.update")) == 2, within=5)
            names = {t["name"] for t in api.of("session.update")[1]["session"]["tools"]}
            assert names == {"play", "pass", "end_call"}
            nursery.cancel_scope.cancel()


async def test_game_context_becomes_system_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    send, receive = trio.open_memory_channel[ContextMessage](4)
    bridge = Bridge(
        twilio,
        cast(RealtimeConnection, api),
        STREAM,
        session={"type": "realtime"},
        context=receive,
    )
    send.send_nowait(
        ContextMessage("s1", "Chess", "It is your move" + "!" * 5000, True)
    )
    twilio.give("stop", stop={})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bridge.run)
        await trio.sleep(0.1)
    (item,) = api.of("conversation.item.create")
    assert item["item"]["role"] == "system"
    text = item["item"]["content"][0]["text"]
    assert text.startswith("[Chess] It is your move")
    assert len(text) <= 2000 + len("[Chess] ")


async def test_the_server_tells_context_listeners() -> None:
    server = RandomNeuroServer()
    heard: list[ContextMessage] = []
    unsubscribe = server.context_events.subscribe(heard.append)
    async with trio.open_nursery() as nursery:
        info = await start_server(nursery, server)
        async with connect(info.url, "Chess") as game:
            await game.startup()
            await game.context("The board is empty", silent=False)
            await eventually(lambda: len(heard) == 1)
            unsubscribe()
            await game.context("Not heard")
            await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    (message,) = heard
    assert (message.game_title, message.message, message.silent) == (
        "Chess", "The board is empty", False,
    )  # fmt: skip
    assert message.result_of is None


async def test_a_result_message_says_which_outcome_it_reports() -> None:
    server = RandomNeuroServer()
    heard: list[ContextMessage] = []
    server.context_events.subscribe(heard.append)
    async with trio.open_nursery() as nursery:
        info = await start_server(nursery, server)
        async with connect(info.url, "Chess") as game:
            await game.startup()
            await game.register(PLAY)
            await eventually(lambda: any(g.actions for g in server.games()))
            (client,) = server.games()
            outcome: list[Any] = []

            async def perform() -> None:
                outcome.append(await client.execute_action("play", '{"cell": 1}'))
                # Published before the action's awaiter resumed.
                assert len(heard) == 1

            nursery.start_soon(perform)
            action = await game.expect_action()
            await game.result(action.id, False, "occupied")
            await eventually(lambda: bool(outcome))
            await game.context("Your move")
            await eventually(lambda: len(heard) == 2)
        nursery.cancel_scope.cancel()
    result, context = heard
    assert result.message == "Result of action 'play': failed: occupied"
    assert result.result_of is outcome[0]
    assert context.result_of is None


async def test_tool_calls_flooding_a_stalled_api_pile_up_no_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Stalled(Realtime):
        """Takes the session.update, then reads nothing more we send."""

        waiting = 0

        async def send(self, event: Mapping[str, Any]) -> None:
            if self.sent:
                self.waiting += 1
                await trio.sleep_forever()
            await super().send(event)

    server = RandomNeuroServer()
    twilio, api = Twilio(), Stalled()
    bridge = Bridge(
        twilio,
        cast(RealtimeConnection, api),
        STREAM,
        session={"type": "realtime"},
        tools=GameTools(server, None),
        limits=BridgeLimits(max_tool_calls=2),
    )
    for n in range(500):
        api.give(
            "response.function_call_arguments.done", call_id=f"c{n}", name="x",
            arguments="{}",
        )  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bridge.run)
        await trio.testing.wait_all_tasks_blocked()
        # Two calls in their slots and the reader answering one "busy".
        assert api.waiting <= 3
        nursery.cancel_scope.cancel()


PRESS: Final = Action(
    "press",
    "A key of the game's keypad",
    {
        "type": "object",
        "properties": {"digit": {"type": "string", "enum": ["1", "2", "5"]}},
        "required": ["digit"],
    },
)
END_CALL_ACTION: Final = Action("end_call", "The game's own action of that name")


def outputs(api: Realtime) -> list[dict[str, Any]]:
    return [
        orjson.loads(event["item"]["output"])
        for event in api.of("conversation.item.create")
        if event["item"]["type"] == "function_call_output"
    ]


def notes(api: Realtime) -> list[str]:
    return [
        event["item"]["content"][0]["text"]
        for event in api.of("conversation.item.create")
        if event["item"]["type"] == "message"
    ]


async def test_neuro_hangs_up_once_her_words_were_heard(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api)
    ended: list[float] = []

    async def run() -> None:
        assert await bridge.run() == CallEnd.NEURO_HUNG_UP
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(0.1)
        assert [t["name"] for t in api.sent[0]["session"]["tools"]] == ["end_call"]
        api.give("response.created")
        api.give(
            "response.output_audio.delta", item_id="bye", content_index=0,
            delta=audio(8000),
        )  # fmt: skip
        api.give(
            "response.function_call_arguments.done", call_id="c1",
            name="end_call", arguments="{}",
        )  # fmt: skip
        api.give("response.done")
        await trio.sleep(3)
        assert not ended  # the goodbye's mark is not back: still playing
        assert outputs(api) == [{"status": "success", "message": "the call ends"}]
        assert api.of("response.create") == []  # no answer to a hang-up
        (mark,) = [m for m in twilio.sent if m["event"] == "mark"]
        twilio.give("mark", mark=mark["mark"])
    assert ended == [pytest.approx(3.1, abs=0.1)]


async def test_a_goodbye_never_heard_hangs_up_after_the_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api)
    api.give("response.created")
    api.give(
        "response.output_audio.delta", item_id="bye", content_index=0,
        delta=audio(800),
    )  # fmt: skip
    api.give(
        "response.function_call_arguments.done", call_id="c1", name="end_call",
        arguments="{}",
    )  # fmt: skip
    started = trio.current_time()
    assert await bridge.run() == CallEnd.NEURO_HUNG_UP
    assert trio.current_time() - started == pytest.approx(15, abs=0.5)


async def test_without_the_hang_up_tool_end_call_is_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api, hang_up=False)
    api.give(
        "response.function_call_arguments.done", call_id="c1", name="end_call",
        arguments="{}",
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bridge.run)
        await trio.sleep(1)
        assert "tools" not in api.sent[0]["session"]
        assert outputs(api)[0]["status"] == "unknown_tool"
        assert bridge.reason is None
        nursery.cancel_scope.cancel()


async def test_tool_calls_beyond_the_calls_total_start_no_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    twilio, api = Twilio(), Realtime()
    bridge = bridge_of(twilio, api, max_tool_calls_total=3)
    for n in range(10):
        api.give(
            "response.function_call_arguments.done", call_id=f"c{n}", name="x",
            arguments="{}",
        )  # fmt: skip
    # Hanging up is always possible (it starts no response).
    api.give(
        "response.function_call_arguments.done", call_id="bye", name="end_call",
        arguments="{}",
    )  # fmt: skip
    assert await bridge.run() == CallEnd.NEURO_HUNG_UP
    statuses = [output["status"] for output in outputs(api)]
    assert statuses == ["unknown_tool"] * 3 + ["refused"] * 7 + ["success"]
    assert len(api.of("response.create")) == 3
    assert bridge.counters.tool_calls == 11


async def test_a_digit_performs_the_dtmf_action_in_a_real_game() -> None:
    server = RandomNeuroServer()
    async with trio.open_nursery() as nursery:
        info = await start_server(nursery, server)
        async with connect(info.url, "Keypad") as game:
            await game.startup()
            await game.register(PRESS)
            await eventually(lambda: any(g.actions for g in server.games()))
            twilio, api = Twilio(), Realtime()
            bridge = Bridge(
                twilio,
                cast(RealtimeConnection, api),
                STREAM,
                session={"type": "realtime"},
                tools=GameTools(server, None),
                dtmf_action="press",
                limits=BridgeLimits(max_tool_calls=1),
            )
            nursery.start_soon(bridge.run)
            twilio.give("dtmf", dtmf={"track": "inbound_track", "digit": "5"})
            action = await game.expect_action()
            assert (action.name, action.data_json) == ("press", '{"digit":"5"}')
            # One key at a time: another while the game thinks is dropped.
            twilio.give("dtmf", dtmf={"track": "inbound_track", "digit": "1"})
            await eventually(lambda: bridge.counters.dtmf_dropped == 1)
            await game.result(action.id, True, "pressed five")
            await eventually(lambda: len(notes(api)) == 1)
            (note,) = notes(api)
            assert "pressed 5" in note
            assert "pressed five" in note
            # A digit the action's schema refuses never reaches the game.
            twilio.give("dtmf", dtmf={"track": "inbound_track", "digit": "9"})
            await eventually(lambda: len(notes(api)) == 2)
            assert "invalid" in notes(api)[1]
            assert api.of("response.create") == []  # keys get no answer
            assert bridge.counters.dtmf == 3
            nursery.cancel_scope.cancel()


async def test_a_games_end_call_action_is_not_offered() -> None:
    server = RandomNeuroServer()
    async with trio.open_nursery() as nursery:
        info = await start_server(nursery, server)
        async with connect(info.url, "Phone Game") as game:
            await game.startup()
            await game.register(PLAY, END_CALL_ACTION)
            await eventually(lambda: any(g.actions for g in server.games()))
            tools = GameTools(server, None, reserved=("end_call",))
            tools.refresh()
            assert [t["name"] for t in tools.tools] == ["play"]
            result = await tools.call("end_call", "{}")
            assert orjson.loads(result.output)["status"] == "unknown_tool"
            nursery.cancel_scope.cancel()


async def test_a_game_whose_connection_is_ending_answers_unavailable() -> None:
    server = RandomNeuroServer()
    async with trio.open_nursery() as nursery:
        info = await start_server(nursery, server)
        async with connect(info.url, "Keypad") as game:
            await game.startup()
            await game.register(PLAY, PRESS)
            await eventually(lambda: any(g.actions for g in server.games()))
            (client,) = server.games()
            twilio, api = Twilio(), Realtime()
            bridge = Bridge(
                twilio,
                cast(RealtimeConnection, api),
                STREAM,
                session={"type": "realtime"},
                tools=GameTools(server, None),
                dtmf_action="press",
            )
            nursery.start_soon(bridge.run)
            await eventually(lambda: bool(api.sent))
            # The connection is ending (it is still the server's client while
            # its close handshake runs): an action can no longer be sent.
            client.end_session()
            api.give(
                "response.function_call_arguments.done", call_id="c1", name="play",
                arguments='{"cell": 5}',
            )  # fmt: skip
            twilio.give("dtmf", dtmf={"track": "inbound_track", "digit": "5"})
            await eventually(lambda: bool(outputs(api)) and bool(notes(api)))
            assert outputs(api)[0]["status"] == "unavailable"
            assert "unavailable" in notes(api)[0]
            assert bridge.reason is None  # the call goes on
            nursery.cancel_scope.cancel()
