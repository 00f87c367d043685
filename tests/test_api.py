"""The game-side protocol logic (neuro_api.api), without any I/O.

A fake ``write_to_websocket`` collects the frames; received frames are fed to
``read_message`` as text, exactly as a connection would.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from neuro_api.api import (
    AbstractNeuroAPI,
    ActionFailed,
    NeuroSessionData,
    NeuroStartupData,
    NotConnected,
)
from neuro_api.command import (
    Action,
    ActionMessage,
    ForcePriority,
    SpeechFinished,
    StartupAcknowledgement,
    action_command,
    reregister_all_command,
    shutdown_graceful_command,
    shutdown_immediate_command,
    speech_finished_command,
    startup_acknowledgement_command,
)

PLAY = Action(
    "play",
    "Play a cell",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)
PASS = Action("pass", "Do nothing this turn")


class RecordingAPI(AbstractNeuroAPI):
    """Collects sent frames; ``online = False`` simulates a lost connection."""

    def __init__(self) -> None:
        super().__init__("Test Game")
        self.frames: list[dict[str, Any]] = []
        self.online = True

    async def write_to_websocket(self, frame: str) -> None:
        await trio.lowlevel.checkpoint()
        if not self.online:
            raise NotConnected("offline")
        self.frames.append(orjson.loads(frame))

    def commands(self) -> list[str]:
        return [frame["command"] for frame in self.frames]

    def results(self) -> list[dict[str, Any]]:
        return [f["data"] for f in self.frames if f["command"] == "action/result"]


@pytest.fixture
def api() -> RecordingAPI:
    return RecordingAPI()


async def registered_api(*actions: Action) -> RecordingAPI:
    api = RecordingAPI()
    await api.register_actions(actions)
    api.frames.clear()
    return api


# --- registry ---------------------------------------------------------------


async def test_register_sends_and_records(api: RecordingAPI) -> None:
    await api.register_actions([PLAY, PASS])
    assert api.frames == [
        {
            "command": "actions/register",
            "game": "Test Game",
            "data": {"actions": [PLAY.to_json(), PASS.to_json()]},
        }
    ]
    assert api.get_registered() == ("play", "pass")
    assert api.registered_actions["play"] == PLAY


async def test_already_registered_names_are_not_resent(
    api: RecordingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    await api.register_actions([PLAY])
    await api.register_actions([PLAY, PASS])
    await api.register_actions([PLAY, PLAY])
    assert [f["data"]["actions"] for f in api.frames] == [
        [PLAY.to_json()],
        [PASS.to_json()],
    ]
    assert caplog.records == []


async def test_conflicting_definition_is_kept_out_and_logged(
    api: RecordingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    await api.register_actions([PLAY])
    await api.register_actions([PLAY._replace(description="Another")])
    assert len(api.frames) == 1
    assert api.registered_actions["play"] == PLAY
    assert "already registered with another definition" in caplog.text


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (Action("", "Nameless"), "empty name"),
        (Action("jump", "Jump", {"type": "array"}), 'not "object"'),
        (Action("jump", "Jump", {"type": "object", "minimum": "x"}), "valid JSON"),
    ],
)
async def test_register_refuses_error_actions_atomically(
    api: RecordingAPI, bad: Action, problem: str
) -> None:
    with pytest.raises(ValueError, match="cannot register action") as info:
        await api.register_actions([PLAY, bad])
    assert problem in str(info.value)
    assert api.frames == []
    assert api.get_registered() == ()


async def test_register_logs_warnings_but_registers(
    api: RecordingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    shouty = Action("Jump", "Jump", {"type": "object", "title": "x"})
    with caplog.at_level(logging.WARNING, logger="neuro_api.api"):
        await api.register_actions([shouty])
    assert api.get_registered() == ("Jump",)
    messages = [r.getMessage() for r in caplog.records]
    assert any("action.name-not-lowercase" in m for m in messages)
    assert any("action.schema-unsupported-keywords" in m for m in messages)


async def test_unregister_updates_registry_and_skips_unknown() -> None:
    api = await registered_api(PLAY, PASS)
    await api.unregister_actions(["pass", "ghost", "pass"])
    assert api.frames == [
        {
            "command": "actions/unregister",
            "game": "Test Game",
            "data": {"action_names": ["pass"]},
        }
    ]
    assert api.get_registered() == ("play",)
    await api.unregister_actions(["ghost"])
    assert len(api.frames) == 1


async def test_registration_while_disconnected_updates_registry(
    api: RecordingAPI,
) -> None:
    api.online = False
    await api.register_actions([PLAY, PASS])
    await api.unregister_actions(["pass"])
    assert api.get_registered() == ("play",)
    with pytest.raises(NotConnected):
        await api.send_context("hello")
    with pytest.raises(NotConnected):
        await api.reregister_all()


async def test_add_action_checks_the_action(api: RecordingAPI) -> None:
    async def handler(data: Any) -> None:
        return None

    with pytest.raises(ValueError, match="empty name"):
        api.add_action(Action("", "x"), handler)


# --- sending ----------------------------------------------------------------


async def test_force_refuses_unregistered_names() -> None:
    api = await registered_api(PLAY)
    with pytest.raises(ValueError, match=r"'pass'.*registered: play"):
        await api.send_force_action("state", "query", ["play", "pass"])
    with pytest.raises(ValueError, match="at least one"):
        await api.send_force_action("state", "query", [])
    assert api.frames == []


async def test_force_sends_every_field() -> None:
    api = await registered_api(PLAY)
    await api.send_force_action(
        "board",
        "Your turn",
        ["play"],
        ephemeral_context=True,
        priority=ForcePriority.HIGH,
    )
    await api.send_force_action(None, "Again", ["play"])
    assert [f["data"] for f in api.frames] == [
        {
            "state": "board",
            "query": "Your turn",
            "ephemeral_context": True,
            "priority": "high",
            "action_names": ["play"],
        },
        {
            "query": "Again",
            "priority": ForcePriority.LOW.value,
            "action_names": ["play"],
        },
    ]


async def test_simple_sends(api: RecordingAPI) -> None:
    await api.send_context("it rains")
    await api.send_context("say something", silent=False)
    await api.send_action_result("1", True)
    await api.send_action_result("2", False, "no")
    await api.send_shutdown_ready()
    assert api.frames == [
        {
            "command": "context",
            "game": "Test Game",
            "data": {"message": "it rains", "silent": True},
        },
        {
            "command": "context",
            "game": "Test Game",
            "data": {"message": "say something", "silent": False},
        },
        {
            "command": "action/result",
            "game": "Test Game",
            "data": {"id": "1", "success": True},
        },
        {
            "command": "action/result",
            "game": "Test Game",
            "data": {"id": "2", "success": False, "message": "no"},
        },
        {"command": "shutdown/ready", "game": "Test Game"},
    ]


async def test_failing_result_without_message_is_refused(api: RecordingAPI) -> None:
    # As upstream: Neuro learns nothing from a failure without a reason.
    with pytest.raises(ValueError, match="Message can only be omitted"):
        await api.send_action_result("3", False)
    await api.send_action_result("4", False, "")
    await api.send_action_result("6", True)
    assert [f["data"] for f in api.frames] == [
        {"id": "4", "success": False, "message": ""},
        {"id": "6", "success": True},
    ]


async def test_force_without_priority_leaves_the_field_out() -> None:
    # Servers that predate priority (Jippity) refuse the unknown field.
    api = await registered_api(PLAY)
    await api.send_force_action("board", "Your turn", ["play"], priority=None)
    [frame] = api.frames
    assert frame["data"] == {
        "state": "board",
        "query": "Your turn",
        "action_names": ["play"],
    }


async def test_startup_clears_registry_and_session() -> None:
    api = await registered_api(PLAY)
    await api.read_message(startup_acknowledgement_command("s", "neuro", "Neuro"))
    await api.send_startup_command()
    assert api.frames == [{"command": "startup", "game": "Test Game"}]
    assert api.get_registered() == ()
    assert api.session is None


async def test_startup_frames_keep_the_registry() -> None:
    api = await registered_api(PLAY)
    frames = [orjson.loads(f) for f in api._startup_frames()]
    assert [f["command"] for f in frames] == ["startup", "actions/register"]
    assert api.get_registered() == ("play",)
    assert [orjson.loads(f) for f in RecordingAPI()._startup_frames()] == [
        {"command": "startup", "game": "Test Game"}
    ]


# --- receiving: actions -----------------------------------------------------


async def test_handler_gets_parsed_data_and_result_follows() -> None:
    api = await registered_api(PLAY, PASS)
    seen: list[Any] = []

    @api.action(PLAY)
    async def play(data: Any) -> str:
        seen.append(data)
        return f"played {data['cell']}"

    async def pass_turn(data: Any) -> None:
        seen.append(data)

    api.add_action(PASS, pass_turn)
    assert play.__name__ == "play"  # the decorator returns the handler

    message = await api.read_message(action_command("a1", "play", '{"cell": 5}'))
    await api.read_message(action_command("a2", "pass"))
    assert isinstance(message, ActionMessage)
    assert seen == [{"cell": 5}, None]
    assert api.results() == [
        {"id": "a1", "success": True, "message": "played 5"},
        {"id": "a2", "success": True},
    ]


async def test_action_without_schema_accepts_any_data() -> None:
    api = await registered_api(PASS)
    seen: list[Any] = []

    @api.action(PASS)
    async def pass_turn(data: Any) -> None:
        seen.append(data)

    await api.read_message(action_command("a1", "pass", "[1, 2]"))
    assert seen == [[1, 2]]
    assert api.results() == [{"id": "a1", "success": True}]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("{not json", "Action data is not valid JSON"),
        ('{"cell": 10}', "Invalid action data: data.cell: 10 is greater than"),
        ('{"cell": "5"}', "Invalid action data: data.cell: '5' is not of type"),
        ("{}", "'cell' is a required property"),
        (None, "'cell' is a required property"),
        ("[5]", "is not of type 'object'"),
    ],
)
async def test_bad_data_fails_before_the_handler(data: str | None, reason: str) -> None:
    api = await registered_api(PLAY)
    calls: list[Any] = []

    @api.action(PLAY)
    async def play(data: Any) -> None:
        calls.append(data)

    await api.read_message(action_command("x", "play", data))
    assert calls == []
    [result] = api.results()
    assert result["id"] == "x"
    assert result["success"] is False
    assert reason in result["message"]


async def test_unknown_action_gets_failing_result() -> None:
    api = await registered_api(PLAY, PASS)
    await api.read_message(action_command("u1", "dance", "{}"))
    assert api.results() == [
        {
            "id": "u1",
            "success": False,
            "message": "Unknown action 'dance'; registered: play, pass",
        }
    ]


async def test_unregistered_action_is_unknown_even_with_a_handler(
    api: RecordingAPI,
) -> None:
    @api.action(PLAY)
    async def play(data: Any) -> None:
        raise AssertionError("must not run")

    await api.read_message(action_command("u2", "play", '{"cell": 1}'))
    assert api.results() == [
        {
            "id": "u2",
            "success": False,
            "message": "Unknown action 'play'; registered: (none)",
        }
    ]


async def test_registered_action_without_handler_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = await registered_api(PLAY)
    await api.read_message(action_command("n1", "play", '{"cell": 1}'))
    [result] = api.results()
    assert result["success"] is False
    assert "cannot perform 'play'" in result["message"]
    assert "has no handler" in caplog.text


async def test_action_failed_gives_its_message() -> None:
    api = await registered_api(PLAY)

    @api.action(PLAY)
    async def play(data: Any) -> None:
        raise ActionFailed("Cell 1 is taken")

    await api.read_message(action_command("f1", "play", '{"cell": 1}'))
    assert api.results() == [
        {"id": "f1", "success": False, "message": "Cell 1 is taken"}
    ]


async def test_handler_bug_is_logged_and_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = await registered_api(PLAY)

    @api.action(PLAY)
    async def play(data: Any) -> None:
        raise ZeroDivisionError("oops")

    await api.read_message(action_command("b1", "play", '{"cell": 1}'))
    [result] = api.results()
    assert result["success"] is False
    assert "internal error" in result["message"]
    assert "oops" not in result["message"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


async def test_cancelled_handler_sends_no_result() -> None:
    api = await registered_api(PLAY)

    @api.action(PLAY)
    async def play(data: Any) -> None:
        await trio.sleep_forever()

    with trio.move_on_after(1) as scope:
        await api.read_message(action_command("c1", "play", '{"cell": 1}'))
    assert scope.cancelled_caught
    assert api.results() == []


async def test_result_lost_with_the_connection_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = await registered_api(PLAY)

    @api.action(PLAY)
    async def play(data: Any) -> None:
        api.online = False

    await api.read_message(action_command("l1", "play", '{"cell": 1}'))
    assert "connection lost before the result" in caplog.text


async def test_validation_reason_survives_a_json_value_of_null() -> None:
    api = await registered_api(PLAY)
    await api.read_message(action_command("z", "play", "null"))
    [result] = api.results()
    assert result["success"] is False


# --- receiving: other messages ----------------------------------------------


async def test_startup_ack_is_stored(api: RecordingAPI) -> None:
    sessions = [api.session]
    message = await api.read_message(
        startup_acknowledgement_command("abc", "evil", "Evil Neuro")
    )
    sessions.append(api.session)
    await api.read_message('{"command": "startup"}')
    sessions.append(api.session)
    assert sessions == [
        None,
        NeuroStartupData(NeuroSessionData("abc", "evil", "Evil Neuro")),
        NeuroStartupData(None),
    ]
    assert message == StartupAcknowledgement(
        session_id="abc", character_id="evil", display_name="Evil Neuro"
    )


async def test_reregister_all_sends_the_registry() -> None:
    api = await registered_api(PLAY, PASS)
    await api.unregister_actions(["pass"])
    api.frames.clear()
    await api.read_message(reregister_all_command())
    assert api.frames == [
        {
            "command": "actions/register",
            "game": "Test Game",
            "data": {"actions": [PLAY.to_json()]},
        }
    ]
    empty = RecordingAPI()
    await empty.read_message(reregister_all_command())
    assert empty.frames == []


async def test_shutdown_and_speech_defaults(
    api: RecordingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="neuro_api.api")
    flags = []
    for wants in (True, False):
        await api.read_message(shutdown_graceful_command(wants))
        flags.append(api.shutdown_requested)
    assert flags == [True, False]
    await api.read_message(shutdown_immediate_command())
    message = await api.read_message(speech_finished_command(True, True, "cut"))
    assert message == SpeechFinished(is_final=True, cancelled=True, reason="cut")
    # As upstream: a request (not its cancellation) and an immediate shutdown
    # are answered "ready" at once; a game that saves overrides the hooks.
    assert api.commands() == ["shutdown/ready", "shutdown/ready"]
    assert "immediate shutdown" in caplog.text
    assert "speech finished" in caplog.text


async def test_hooks_are_overridable_and_their_bugs_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Game(RecordingAPI):
        speeches: int = 0

        async def handle_speech_finished(self, speech: SpeechFinished) -> None:
            self.speeches += 1
            raise RuntimeError("bug in a hook")

        async def handle_immediate_shutdown(self) -> None:
            await self.send_shutdown_ready()

    game = Game()
    await game.read_message(speech_finished_command(True))
    await game.read_message(shutdown_immediate_command())
    assert game.speeches == 1
    assert game.commands() == ["shutdown/ready"]
    assert "bug in a hook" in caplog.text


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "{not json",
        "[1, 2]",
        '"startup"',
        b"\xff\xfe",
        '{"data": {}}',
        '{"command": 5}',
        '{"command": "shutdown/graceful", "data": {"wants_shutdown": "yes"}}',
        '{"command": "speech_finished", "data": {}}',
        '{"command": "action", "data": {"name": "play"}}',
        '{"command": "action", "data": {"id": 5, "name": "play"}}',
        '{"command": "action"}',
    ],
)
async def test_malformed_frames_are_ignored(
    api: RecordingAPI, frame: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert await api.read_message(frame) is None
    assert api.frames == []
    assert "malformed frame" in caplog.text


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ('{"command": "action", "data": {"id": "m1"}}', "data.name"),
        ('{"command": "action", "data": {"id": "m1", "name": 3}}', "data.name"),
        (
            '{"command": "action", "data": {"id": "m1", "name": "play",'
            ' "data": {"cell": 1}}}',
            "data.data",
        ),
    ],
)
async def test_broken_action_with_readable_id_gets_failing_result(
    frame: str, problem: str
) -> None:
    api = await registered_api(PLAY)
    assert await api.read_message(frame) is None
    [result] = api.results()
    assert result["id"] == "m1"
    assert result["success"] is False
    assert result["message"].startswith("Malformed action message: ")
    assert problem in result["message"]


async def test_unknown_commands_go_to_their_hook(
    api: RecordingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    assert await api.read_message('{"command": "dance", "data": {"x": 1}}') is None
    assert "unknown command 'dance' with data {'x': 1}" in caplog.text
    seen: list[tuple[str, object]] = []

    class Game(RecordingAPI):
        async def handle_unknown_command(
            self, command: str, data: dict[str, object] | None
        ) -> None:
            seen.append((command, data))

    await Game().read_message('{"command": "dance"}')
    assert seen == [("dance", None)]
    assert api.frames == []


async def test_binary_frames_are_understood(api: RecordingAPI) -> None:
    frame = startup_acknowledgement_command("s", "neuro", "Neuro")
    assert isinstance(frame, bytes)
    assert isinstance(await api.read_message(frame), StartupAcknowledgement)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-99, 99) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_frames = st.fixed_dictionaries(
    {
        "command": st.sampled_from(
            [
                "startup",
                "action",
                "actions/reregister_all",
                "shutdown/graceful",
                "shutdown/immediate",
                "speech_finished",
                "other",
            ]
        )
    },
    optional={
        "data": st.fixed_dictionaries(
            {},
            optional={
                "id": st.text(max_size=3) | _json,
                "name": st.sampled_from(["play", "pass", "x"]) | _json,
                "data": st.sampled_from(['{"cell": 3}', "{", "{}"]) | _json,
                "wants_shutdown": _json,
                "isFinal": _json,
                "session": _json,
            },
        )
        | _json
    },
)


@settings(max_examples=200, deadline=None)
@given(frame=st.one_of(_frames.map(lambda f: orjson.dumps(f).decode()), st.text()))
def test_read_message_never_raises(frame: str) -> None:
    async def scenario() -> None:
        api = await registered_api(PLAY)

        @api.action(PLAY)
        async def play(data: Any) -> None:
            assert 1 <= data["cell"] <= 9

        await api.read_message(frame)
        # Every result is well-formed and failures say why.
        for result in api.results():
            assert isinstance(result["id"], str)
            assert result["success"] or result["message"]

    trio.run(scenario)
