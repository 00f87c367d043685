"""Builders and parsers of the wire format: every pair round-trips exactly.

For each command: ``parse(build(...))`` equals the dataclass built directly,
``message.to_frame()`` round-trips, the frame has exactly the expected keys
(Neuro -> game frames carry no ``game``) and the text is what orjson makes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuro_api.command import (
    Action,
    ActionMessage,
    ActionResult,
    Context,
    EmptyListError,
    FieldProblem,
    ForceActions,
    ForcePriority,
    GameMessage,
    GracefulShutdown,
    ImmediateShutdown,
    NeuroMessage,
    ProblemKind,
    ProtocolError,
    RegisterActions,
    ReregisterAll,
    ShutdownReady,
    SpeechFinished,
    Startup,
    StartupAcknowledgement,
    UnregisterActions,
    action_command,
    actions_force_command,
    actions_register_command,
    actions_result_command,
    actions_unregister_command,
    context_command,
    parse_game_frame,
    parse_neuro_frame,
    reregister_all_command,
    shutdown_graceful_command,
    shutdown_immediate_command,
    shutdown_ready_command,
    speech_finished_command,
    startup_acknowledgement_command,
    startup_command,
)

QUICK = settings(max_examples=40, deadline=None)

# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

HUGE = "x" * 100_000
SPECIAL_TEXTS = [
    "",
    "🎮🔥 Neuro-sama ♥ 🐢",
    "👩‍👩‍👧‍👦 family emoji (ZWJ)",
    'she said "hi" \\ and left',
    "\x00\x01\x07\x1b\x1f\x7f",
    "line\nbreak\rcarriage\ttab",
    "\u2028\u2029 separators",
    "</script><!-- -->",
    '{"command": "injected"}',
    HUGE,
    "🎮" * 100_000,
    '"' * 100_000,
]

texts: st.SearchStrategy[str] = st.one_of(
    st.text(max_size=60), st.sampled_from(SPECIAL_TEXTS)
)
names: st.SearchStrategy[tuple[str, ...]] = st.lists(texts, min_size=1, max_size=5).map(
    tuple
)

json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=20,
)
schemas: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    st.just({"type": "object", "properties": {"x": {"default": None}}}),
)
actions: st.SearchStrategy[Action] = st.builds(
    Action,
    name=texts,
    description=texts,
    schema=st.one_of(st.none(), schemas),
)


# ---------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------


def _check_frame_text(text: str, message: GameMessage | NeuroMessage) -> dict[str, Any]:
    """The text is orjson's rendering of the message's envelope."""
    assert text == message.to_frame()
    assert text == orjson.dumps(message.envelope()).decode()
    frame = orjson.loads(text)
    assert isinstance(frame, dict)
    # What orjson would produce for the same object, key order included.
    assert orjson.dumps(frame).decode() == text
    assert frame["command"] == message.command
    return frame


def _built(raw: bytes) -> str:
    """A builder's frame: UTF-8 bytes, as upstream's builders return."""
    assert isinstance(raw, bytes)
    return raw.decode()


def check_game(raw: bytes, expected: GameMessage, data_keys: set[str] | None) -> None:
    """Round-trip a game -> Neuro frame; ``data_keys=None``: no ``data``."""
    text = _built(raw)
    frame = _check_frame_text(text, expected)
    top = {"command", "game"} | (set() if data_keys is None else {"data"})
    assert set(frame) == top
    assert frame["game"] == expected.game
    if data_keys is not None:
        assert isinstance(frame["data"], dict)
        assert set(frame["data"]) == data_keys

    parsed = parse_game_frame(text)
    assert type(parsed) is type(expected)
    assert parsed == expected
    assert parsed.notes == ()
    assert parsed.to_frame() == text
    assert parse_game_frame(text.encode()) == expected
    assert parse_game_frame(expected.to_frame()) == expected


def check_neuro(raw: bytes, expected: NeuroMessage, data_keys: set[str] | None) -> None:
    """Round-trip a Neuro -> game frame (never with ``game``)."""
    text = _built(raw)
    frame = _check_frame_text(text, expected)
    assert "game" not in frame
    top = {"command"} | (set() if data_keys is None else {"data"})
    assert set(frame) == top
    if data_keys is not None:
        assert isinstance(frame["data"], dict)
        assert set(frame["data"]) == data_keys

    parsed = parse_neuro_frame(text)
    assert type(parsed) is type(expected)
    assert parsed == expected
    assert parsed.notes == ()
    assert parsed.to_frame() == text
    assert parse_neuro_frame(text.encode()) == expected
    assert parse_neuro_frame(expected.to_frame()) == expected


# ---------------------------------------------------------------------------
# game -> Neuro
# ---------------------------------------------------------------------------


@QUICK
@given(game=texts)
def test_startup_round_trip(game: str) -> None:
    check_game(startup_command(game), Startup(game=game), None)


@QUICK
@given(game=texts, message=texts, silent=st.booleans())
def test_context_round_trip(game: str, message: str, silent: bool) -> None:
    text = context_command(game, message, silent)
    check_game(
        text,
        Context(game=game, message=message, silent=silent),
        {
            "message",
            "silent",
        },
    )


@QUICK
@given(game=texts, message=texts)
def test_context_is_silent_by_default(game: str, message: str) -> None:
    parsed = parse_game_frame(context_command(game, message))
    assert parsed == Context(game=game, message=message, silent=True)


@QUICK
@given(game=texts, registered=st.lists(actions, min_size=1, max_size=4))
def test_actions_register_round_trip(game: str, registered: list[Action]) -> None:
    text = actions_register_command(game, registered)
    expected = RegisterActions(game=game, actions=tuple(registered))
    check_game(text, expected, {"actions"})
    entries = orjson.loads(text)["data"]["actions"]
    for entry, action in zip(entries, registered, strict=True):
        wanted = {"name", "description"} | (
            set() if action.schema is None else {"schema"}
        )
        assert set(entry) == wanted
    parsed = parse_game_frame(text)
    assert isinstance(parsed, RegisterActions)
    assert parsed.rejected == ()
    assert parsed.actions == tuple(registered)


@QUICK
@given(game=texts, registered=st.lists(actions, min_size=1, max_size=3))
def test_actions_register_accepts_any_iterable(
    game: str, registered: list[Action]
) -> None:
    assert actions_register_command(game, iter(registered)) == actions_register_command(
        game, tuple(registered)
    )


@QUICK
@given(game=texts, action_names=names)
def test_actions_unregister_round_trip(
    game: str, action_names: tuple[str, ...]
) -> None:
    text = actions_unregister_command(game, list(action_names))
    expected = UnregisterActions(game=game, action_names=action_names)
    check_game(text, expected, {"action_names"})


@QUICK
@given(
    game=texts,
    state=st.one_of(st.none(), texts),
    query=texts,
    action_names=names,
    ephemeral=st.booleans(),
    priority=st.sampled_from(ForcePriority),
)
def test_actions_force_round_trip(
    game: str,
    state: str | None,
    query: str,
    action_names: tuple[str, ...],
    ephemeral: bool,
    priority: ForcePriority,
) -> None:
    text = actions_force_command(
        game, state, query, list(action_names), ephemeral, priority
    )
    expected = ForceActions(
        game=game,
        state=state,
        query=query,
        action_names=action_names,
        ephemeral_context=ephemeral,
        priority=priority,
    )
    keys = {"query", "priority", "action_names"}
    if state is not None:
        keys.add("state")
    if ephemeral:  # false is the default: left out, as upstream does
        keys.add("ephemeral_context")
    check_game(text, expected, keys)
    parsed = parse_game_frame(text)
    assert isinstance(parsed, ForceActions)
    assert parsed.priority is priority


@pytest.mark.parametrize("priority", list(ForcePriority))
def test_actions_force_every_priority(priority: ForcePriority) -> None:
    text = actions_force_command("Game", None, "Pick", ["a"], priority=priority)
    assert orjson.loads(text)["data"]["priority"] == priority.value
    parsed = parse_game_frame(text)
    assert isinstance(parsed, ForceActions)
    assert parsed.priority is priority


def test_actions_force_without_priority() -> None:
    # priority=None leaves the key out (servers that predate it refuse it).
    text = actions_force_command("G", "s", "q", ["a", "b"], True, priority=None)
    assert text == (
        b'{"command":"actions/force","game":"G","data":{"state":"s","query":"q",'
        b'"action_names":["a","b"],"ephemeral_context":true}}'
    )
    parsed = parse_game_frame(text)
    assert parsed == ForceActions(
        game="G",
        state="s",
        query="q",
        action_names=("a", "b"),
        ephemeral_context=True,
        priority=ForcePriority.LOW,
    )
    assert parsed.notes == ()


def test_actions_force_priority_accepts_its_string() -> None:
    text = actions_force_command("G", None, "q", ["a"], priority="high")  # type: ignore[arg-type]
    assert orjson.loads(text)["data"]["priority"] == "high"


def test_actions_force_defaults() -> None:
    parsed = parse_game_frame(actions_force_command("G", None, "q", ["a"]))
    assert parsed == ForceActions(game="G", query="q", action_names=("a",))
    assert isinstance(parsed, ForceActions)
    assert parsed.priority is ForcePriority.LOW
    assert parsed.ephemeral_context is False
    assert parsed.state is None


@QUICK
@given(
    game=texts,
    id_=texts,
    success=st.booleans(),
    message=st.one_of(st.none(), texts),
)
def test_actions_result_round_trip(
    game: str, id_: str, success: bool, message: str | None
) -> None:
    if not success and message is None:
        with pytest.raises(ValueError, match="Message can only be omitted"):
            actions_result_command(game, id_, success, message)
        return
    text = actions_result_command(game, id_, success, message)
    expected = ActionResult(game=game, id=id_, success=success, message=message)
    keys = {"id", "success"} | (set() if message is None else {"message"})
    check_game(text, expected, keys)


@QUICK
@given(game=texts)
def test_shutdown_ready_round_trip(game: str) -> None:
    check_game(shutdown_ready_command(game), ShutdownReady(game=game), None)


# ---------------------------------------------------------------------------
# Neuro -> game
# ---------------------------------------------------------------------------


@QUICK
@given(session_id=texts, character_id=texts, display_name=texts)
def test_startup_acknowledgement_round_trip(
    session_id: str, character_id: str, display_name: str
) -> None:
    text = startup_acknowledgement_command(session_id, character_id, display_name)
    expected = StartupAcknowledgement(
        session_id=session_id, character_id=character_id, display_name=display_name
    )
    check_neuro(text, expected, {"session"})
    session = orjson.loads(text)["data"]["session"]
    assert session == {
        "sessionId": session_id,
        "characterId": character_id,
        "displayName": display_name,
    }


@QUICK
@given(id_=texts, name=texts, data=st.one_of(st.none(), texts))
def test_action_round_trip(id_: str, name: str, data: str | None) -> None:
    text = action_command(id_, name, data)
    expected = ActionMessage(id=id_, name=name, data_json=data)
    keys = {"id", "name"} | (set() if data is None else {"data"})
    check_neuro(text, expected, keys)
    # The direct encoding is the message's own, to the byte.
    assert text == expected.to_frame().encode()


def test_action_command_refuses_what_the_message_refuses() -> None:
    bad: Any = b"bytes"
    with pytest.raises(TypeError, match="cannot encode 'action' frame"):
        action_command("1", "play", bad)


@QUICK
@given(value=json_values)
def test_action_data_is_a_json_string(value: Any) -> None:
    data = orjson.dumps(value).decode()
    text = action_command("1", "play", data)
    assert isinstance(orjson.loads(text)["data"]["data"], str)
    parsed = parse_neuro_frame(text)
    assert isinstance(parsed, ActionMessage)
    assert parsed.data_json == data
    assert parsed.data_json is not None
    assert orjson.loads(parsed.data_json) == value


def test_reregister_all_round_trip() -> None:
    check_neuro(reregister_all_command(), ReregisterAll(), None)


@pytest.mark.parametrize("wants", [True, False])
def test_shutdown_graceful_round_trip(wants: bool) -> None:
    check_neuro(
        shutdown_graceful_command(wants),
        GracefulShutdown(wants_shutdown=wants),
        {"wants_shutdown"},
    )


def test_shutdown_immediate_round_trip() -> None:
    check_neuro(shutdown_immediate_command(), ImmediateShutdown(), None)


@QUICK
@given(
    is_final=st.booleans(),
    cancelled=st.booleans(),
    reason=st.one_of(st.none(), texts),
)
def test_speech_finished_round_trip(
    is_final: bool, cancelled: bool, reason: str | None
) -> None:
    text = speech_finished_command(is_final, cancelled, reason)
    expected = SpeechFinished(is_final=is_final, cancelled=cancelled, reason=reason)
    keys = {"isFinal"}
    if cancelled:
        keys.add("cancelled")
    if reason is not None:
        keys.add("reason")
    check_neuro(text, expected, keys)


# ---------------------------------------------------------------------------
# Exact texts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            actions_force_command(
                "Game",
                "board",
                "Pick",
                ["a", "b"],
                ephemeral_context=True,
                priority=ForcePriority.HIGH,
            ),
            '{"command":"actions/force","game":"Game","data":{"state":"board",'
            '"query":"Pick","action_names":["a","b"],"priority":"high",'
            '"ephemeral_context":true}}',
            id="force-with-priority",
        ),
        pytest.param(
            actions_force_command("Game", None, "Pick", ["a"]),
            '{"command":"actions/force","game":"Game","data":{"query":"Pick",'
            '"action_names":["a"],"priority":"low"}}',
            id="force-defaults",
        ),
        pytest.param(
            context_command("Game", 'say "hi"\n\x00🎮'),
            '{"command":"context","game":"Game","data":{"message":'
            '"say \\"hi\\"\\n\\u0000🎮","silent":true}}',
            id="context-escapes",
        ),
        pytest.param(
            startup_command("Game"),
            '{"command":"startup","game":"Game"}',
            id="startup",
        ),
        pytest.param(
            actions_register_command(
                "Game",
                [
                    Action("jump", "Jump"),
                    Action(
                        "move",
                        "Move",
                        {"type": "object", "properties": {"x": {"default": None}}},
                    ),
                ],
            ),
            '{"command":"actions/register","game":"Game","data":{"actions":['
            '{"name":"jump","description":"Jump"},'
            '{"name":"move","description":"Move","schema":{"type":"object",'
            '"properties":{"x":{"default":null}}}}]}}',
            id="register",
        ),
        pytest.param(
            actions_result_command("Game", "42", False, "no"),
            '{"command":"action/result","game":"Game","data":{"id":"42",'
            '"success":false,"message":"no"}}',
            id="result",
        ),
        pytest.param(
            action_command("7", "move", '{"x":1}'),
            '{"command":"action","data":{"id":"7","name":"move","data":"{\\"x\\":1}"}}',
            id="action",
        ),
        pytest.param(
            startup_acknowledgement_command("s-1", "neuro", "Neuro-sama"),
            '{"command":"startup","data":{"session":{"sessionId":"s-1",'
            '"characterId":"neuro","displayName":"Neuro-sama"}}}',
            id="startup-ack",
        ),
        pytest.param(
            speech_finished_command(True),
            '{"command":"speech_finished","data":{"isFinal":true}}',
            id="speech-finished",
        ),
        pytest.param(
            reregister_all_command(),
            '{"command":"actions/reregister_all"}',
            id="reregister-all",
        ),
    ],
)
def test_exact_text(text: bytes, expected: str) -> None:
    assert text == expected.encode()


# ---------------------------------------------------------------------------
# Builder errors
# ---------------------------------------------------------------------------


def test_register_empty_list_raises() -> None:
    with pytest.raises(ValueError, match="at least one action"):
        actions_register_command("G", [])


def test_register_empty_iterator_raises() -> None:
    with pytest.raises(ValueError, match="at least one action"):
        actions_register_command("G", iter(()))


def test_unregister_empty_list_raises() -> None:
    with pytest.raises(ValueError, match="at least one action"):
        actions_unregister_command("G", [])


@pytest.mark.parametrize(
    "build",
    [
        lambda: actions_register_command("G", []),
        lambda: actions_unregister_command("G", []),
        lambda: actions_force_command("G", None, "q", []),
    ],
    ids=["register", "unregister", "force"],
)
def test_empty_lists_raise_what_both_kinds_of_caller_catch(build: Any) -> None:
    # ValueError here, AssertionError in upstream 4.0.0: one exception is both.
    with pytest.raises(EmptyListError) as caught:
        build()
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, AssertionError)


def test_force_empty_list_raises() -> None:
    with pytest.raises(ValueError, match="at least one action name"):
        actions_force_command("G", None, "q", [])


def test_failing_result_without_message_is_refused() -> None:
    # As upstream: Neuro learns nothing from a failure without a reason.
    with pytest.raises(ValueError, match="Message can only be omitted if successful"):
        actions_result_command("G", "1", False)


def test_failing_result_with_empty_message_is_allowed() -> None:
    parsed = parse_game_frame(actions_result_command("G", "1", False, ""))
    assert parsed == ActionResult(game="G", id="1", success=False, message="")


def test_successful_result_without_message_is_allowed() -> None:
    parsed = parse_game_frame(actions_result_command("G", "1", True))
    assert parsed == ActionResult(game="G", id="1", success=True)


# ---------------------------------------------------------------------------
# Lenient parsing: data {}, unknown keys, nulls, rejected entries
# ---------------------------------------------------------------------------


def _frame(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


@pytest.mark.parametrize("command", ["startup", "shutdown/ready"])
def test_game_no_data_commands_accept_empty_data(command: str) -> None:
    parsed = parse_game_frame(_frame({"command": command, "game": "G", "data": {}}))
    assert parsed == (
        Startup(game="G") if command == "startup" else ShutdownReady(game="G")
    )
    assert parsed.notes == ()


@pytest.mark.parametrize(
    "command", ["actions/reregister_all", "shutdown/immediate", "startup"]
)
def test_neuro_no_data_commands_accept_empty_data(command: str) -> None:
    parsed = parse_neuro_frame(_frame({"command": command, "data": {}}))
    assert parsed.command == command
    assert parsed.notes == ()


NOT_OBJECTS = [[], [1], "", "x", 0, 1.5, True, False]


@pytest.mark.parametrize("data", NOT_OBJECTS, ids=repr)
@pytest.mark.parametrize(
    ("parse", "command", "expected"),
    [
        (parse_game_frame, "startup", Startup(game="G")),
        (parse_game_frame, "shutdown/ready", ShutdownReady(game="G")),
        (parse_neuro_frame, "actions/reregister_all", ReregisterAll()),
        (parse_neuro_frame, "shutdown/immediate", ImmediateShutdown()),
    ],
)
def test_no_data_commands_ignore_data_that_is_not_an_object(
    parse: Any, command: str, expected: Any, data: Any
) -> None:
    # The Lua SDK sends "data": [] (its empty table) with startup.
    obj: dict[str, Any] = {"command": command, "data": data}
    if isinstance(expected, GameMessage):
        obj["game"] = "G"
    parsed = parse(_frame(obj))
    assert parsed == expected
    [note] = parsed.notes
    assert note.field == "data"
    assert note.kind is ProblemKind.IGNORED_DATA
    assert note.detail.startswith("expected an object or nothing, got ")
    assert note.detail.endswith("; ignored")


def test_ignored_data_note_describes_the_value() -> None:
    parsed = parse_game_frame(_frame({"command": "startup", "game": "G", "data": []}))
    assert [str(note) for note in parsed.notes] == [
        "data: expected an object or nothing, got an array of 0 items; ignored"
    ]
    huge = parse_game_frame(
        _frame({"command": "startup", "game": "G", "data": "y" * 100_000})
    )
    assert len(str(huge.notes[0])) < 120


def test_ignored_data_keeps_the_other_notes() -> None:
    parsed = parse_game_frame(
        _frame({"command": "startup", "game": "G", "data": [], "version": 2})
    )
    assert [(n.field, n.kind) for n in parsed.notes] == [
        ("data", ProblemKind.IGNORED_DATA),
        ("version", ProblemKind.UNKNOWN_KEY),
    ]


def test_object_data_of_a_no_data_command_keeps_unknown_key_notes() -> None:
    parsed = parse_game_frame(
        _frame({"command": "startup", "game": "G", "data": {"main_thread": 1}})
    )
    assert [(n.field, n.kind) for n in parsed.notes] == [
        ("data.main_thread", ProblemKind.UNKNOWN_KEY)
    ]


def test_startup_acknowledgement_data_must_still_be_an_object() -> None:
    # Neuro's startup carries a session: it is not a command without data.
    with pytest.raises(ProtocolError) as info:
        parse_neuro_frame(_frame({"command": "startup", "data": []}))
    assert info.value.kind is ProblemKind.WRONG_TYPE


def test_startup_acknowledgement_without_session() -> None:
    parsed = parse_neuro_frame('{"command":"startup"}')
    assert parsed == StartupAcknowledgement()
    assert parsed.notes == ()


UNKNOWN_KEY_CASES = [
    pytest.param(
        parse_game_frame,
        {
            "command": "context",
            "game": "G",
            "data": {"message": "m", "silent": False, "main_thread": True},
        },
        Context(game="G", message="m", silent=False),
        ["data.main_thread"],
        id="context-main-thread",
    ),
    pytest.param(
        parse_game_frame,
        {"command": "startup", "game": "G", "version": 2, "data": {"x": None}},
        Startup(game="G"),
        ["data.x", "version"],
        id="startup-top-and-data",
    ),
    pytest.param(
        parse_game_frame,
        {
            "command": "actions/force",
            "game": "G",
            "data": {"query": "q", "action_names": ["a"], "timeout_ms": 5},
        },
        ForceActions(game="G", query="q", action_names=("a",)),
        ["data.timeout_ms"],
        id="force-future-field",
    ),
    pytest.param(
        parse_game_frame,
        {
            "command": "actions/register",
            "game": "G",
            "data": {
                "actions": [{"name": "a", "description": "d", "icon": "x.png"}],
                "main_thread": False,
            },
        },
        RegisterActions(game="G", actions=(Action("a", "d"),)),
        ["data.main_thread", "data.actions[0].icon"],
        id="register-entry-and-data",
    ),
    pytest.param(
        parse_game_frame,
        {
            "command": "action/result",
            "game": "G",
            "data": {"id": "1", "success": True, "elapsed": 0.5},
        },
        ActionResult(game="G", id="1", success=True),
        ["data.elapsed"],
        id="result-extra",
    ),
    pytest.param(
        parse_neuro_frame,
        {"command": "action", "data": {"id": "1", "name": "n", "extra": []}},
        ActionMessage(id="1", name="n"),
        ["data.extra"],
        id="action-extra",
    ),
    pytest.param(
        parse_neuro_frame,
        {
            "command": "startup",
            "data": {
                "session": {
                    "sessionId": "s",
                    "characterId": "c",
                    "displayName": "d",
                    "voice": "v",
                }
            },
        },
        StartupAcknowledgement(session_id="s", character_id="c", display_name="d"),
        ["data.session.voice"],
        id="ack-session-extra",
    ),
    pytest.param(
        parse_neuro_frame,
        {"command": "shutdown/immediate", "game": "G"},
        ImmediateShutdown(),
        ["game"],
        id="neuro-frame-with-game",
    ),
]


@pytest.mark.parametrize(("parse", "obj", "expected", "paths"), UNKNOWN_KEY_CASES)
def test_unknown_keys_are_notes(
    parse: Any, obj: dict[str, Any], expected: Any, paths: list[str]
) -> None:
    parsed = parse(_frame(obj))
    assert parsed == expected
    unknown = [note for note in parsed.notes if note.kind is ProblemKind.UNKNOWN_KEY]
    assert sorted(note.field for note in unknown) == sorted(paths)
    assert all(isinstance(note, FieldProblem) for note in parsed.notes)
    # The notes change nothing about the message itself.
    assert parsed.to_frame() == expected.to_frame()


def test_null_schema_is_a_note() -> None:
    text = _frame(
        {
            "command": "actions/register",
            "game": "G",
            "data": {"actions": [{"name": "a", "description": "d", "schema": None}]},
        }
    )
    parsed = parse_game_frame(text)
    assert parsed == RegisterActions(game="G", actions=(Action("a", "d", None),))
    assert [(n.field, n.kind) for n in parsed.notes] == [
        ("data.actions[0].schema", ProblemKind.NULL_VALUE)
    ]


def test_null_inside_schema_is_preserved() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "x": {"type": ["string", "null"], "default": None},
            "y": {"enum": [None, 1]},
        },
    }
    text = actions_register_command("G", [Action("a", "d", schema)])
    assert b'"default":null' in text
    parsed = parse_game_frame(text)
    assert isinstance(parsed, RegisterActions)
    assert parsed.notes == ()
    got = parsed.actions[0].schema
    assert got == schema
    assert got is not None
    assert "default" in got["properties"]["x"]
    assert got["properties"]["x"]["default"] is None
    assert got["properties"]["y"]["enum"] == [None, 1]


def test_empty_schema_is_kept_not_dropped() -> None:
    text = actions_register_command("G", [Action("a", "d", {})])
    parsed = parse_game_frame(text)
    assert isinstance(parsed, RegisterActions)
    assert parsed.actions == (Action("a", "d", {}),)
    assert parsed.actions[0].schema == {}


@pytest.mark.parametrize(
    ("field", "obj", "expected"),
    [
        pytest.param(
            "data.state",
            {"state": None, "query": "q", "action_names": ["a"]},
            ForceActions(game="G", query="q", action_names=("a",)),
            id="force-state",
        ),
        pytest.param(
            "data.priority",
            {"query": "q", "priority": None, "action_names": ["a"]},
            ForceActions(game="G", query="q", action_names=("a",)),
            id="force-priority",
        ),
        pytest.param(
            "data.ephemeral_context",
            {"query": "q", "ephemeral_context": None, "action_names": ["a"]},
            ForceActions(game="G", query="q", action_names=("a",)),
            id="force-ephemeral",
        ),
    ],
)
def test_null_optional_fields_are_notes(
    field: str, obj: dict[str, Any], expected: GameMessage
) -> None:
    parsed = parse_game_frame(
        _frame({"command": "actions/force", "game": "G", "data": obj})
    )
    assert parsed == expected
    assert [(n.field, n.kind) for n in parsed.notes] == [
        (field, ProblemKind.NULL_VALUE)
    ]


def test_null_result_message_is_a_note() -> None:
    parsed = parse_game_frame(
        _frame(
            {
                "command": "action/result",
                "game": "G",
                "data": {"id": "1", "success": True, "message": None},
            }
        )
    )
    assert parsed == ActionResult(game="G", id="1", success=True)
    assert [(n.field, n.kind) for n in parsed.notes] == [
        ("data.message", ProblemKind.NULL_VALUE)
    ]


def test_register_keeps_good_actions_and_rejects_bad_entries() -> None:
    text = _frame(
        {
            "command": "actions/register",
            "game": "G",
            "data": {
                "actions": [
                    {"name": "good", "description": "Good one"},
                    5,
                    {"name": 3, "description": "numeric name"},
                    {"name": "no_description"},
                    {"name": "bad_schema", "description": "d", "schema": [1]},
                    {"name": "also_good", "description": "d", "schema": {}},
                ]
            },
        }
    )
    parsed = parse_game_frame(text)
    assert isinstance(parsed, RegisterActions)
    assert parsed.actions == (
        Action("good", "Good one"),
        Action("also_good", "d", {}),
    )
    assert [(p.field, p.kind) for p in parsed.rejected] == [
        ("data.actions[1]", ProblemKind.WRONG_TYPE),
        ("data.actions[2].name", ProblemKind.WRONG_TYPE),
        ("data.actions[3].description", ProblemKind.MISSING),
        ("data.actions[4].schema", ProblemKind.WRONG_TYPE),
    ]
    assert "number 5" in parsed.rejected[0].detail
    assert str(parsed.rejected[1]) == (
        "data.actions[2].name: expected a string, got number 3"
    )


def test_register_with_only_bad_entries_is_still_a_message() -> None:
    parsed = parse_game_frame(
        _frame(
            {"command": "actions/register", "game": "G", "data": {"actions": [None]}}
        )
    )
    assert isinstance(parsed, RegisterActions)
    assert parsed.actions == ()
    assert [p.field for p in parsed.rejected] == ["data.actions[0]"]


def test_notes_do_not_take_part_in_equality() -> None:
    plain = parse_game_frame('{"command":"startup","game":"G"}')
    noted = parse_game_frame('{"command":"startup","game":"G","extra":1}')
    assert noted.notes
    assert plain == noted
    assert hash(plain) == hash(noted)


def test_parsed_deep_schema_can_be_sent_again() -> None:
    # orjson reads up to 1024 levels but writes only 255: the parser refuses
    # absurdly deep schemas, so whatever it accepts survives ``to_frame()``.
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"next": schema}}
    text = json.dumps(
        {
            "command": "actions/register",
            "game": "G",
            "data": {"actions": [{"name": "a", "description": "d", "schema": schema}]},
        }
    )
    parsed = parse_game_frame(text)
    assert isinstance(parsed, RegisterActions)
    assert parsed.actions == ()
    (problem,) = parsed.rejected
    assert problem.field == "data.actions[0].schema"
    assert "nested deeper than 64 levels" in problem.detail
    assert parse_game_frame(parsed.to_frame()) == RegisterActions(game="G", actions=())
    shallow: dict[str, Any] = {"type": "object"}
    for _ in range(20):  # two levels per wrap: 41 in all
        shallow = {"type": "object", "properties": {"next": shallow}}
    ok = parse_game_frame(text.replace(json.dumps(schema), json.dumps(shallow)))
    assert isinstance(ok, RegisterActions)
    assert ok.actions == (Action("a", "d", shallow),)
    assert parse_game_frame(ok.to_frame()) == ok
