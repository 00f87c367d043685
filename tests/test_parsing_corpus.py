"""A corpus of malformed frames: parsers give a message or ProtocolError, never worse.

Every frame goes through both ``parse_game_frame`` and ``parse_neuro_frame``.
Each result must be a parsed message or a :class:`ProtocolError` (a
``ValueError``), and each error must become a readable diagnostic that names
the offending field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuro_api import diagnostics
from neuro_api.command import (
    ActionMessage,
    Context,
    ForceActions,
    GameMessage,
    GracefulShutdown,
    ImmediateShutdown,
    Message,
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
    parse_game_frame,
    parse_neuro_frame,
)

Frame = str | bytes | bytearray
Parser = Callable[[Frame], Message]
# What a parser must make of a frame: a message class, an error of this kind
# at this field, or None for "anything but a crash".
Expect = type[Message] | tuple[ProblemKind, str] | None

MISSING = ProblemKind.MISSING
WRONG = ProblemKind.WRONG_TYPE
INVALID = ProblemKind.INVALID_VALUE
JSON = ProblemKind.INVALID_JSON
NOT_OBJ = ProblemKind.NOT_AN_OBJECT
NOT_TEXT = ProblemKind.NOT_TEXT
UNKNOWN = ProblemKind.UNKNOWN_COMMAND

MB = 1024 * 1024


def j(obj: Any) -> str:
    # The stdlib encoder: orjson refuses to write more than 255 levels.
    return json.dumps(obj, ensure_ascii=False)


def game(command: str, data: Any = ..., **extra: Any) -> str:
    """A game frame (``data=...`` leaves ``data`` out)."""
    obj: dict[str, Any] = {"command": command, "game": "Game", **extra}
    if data is not ...:
        obj["data"] = data
    return j(obj)


def neuro(command: str, data: Any = ..., **extra: Any) -> str:
    """A Neuro frame (no ``game``)."""
    obj: dict[str, Any] = {"command": command, **extra}
    if data is not ...:
        obj["data"] = data
    return j(obj)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


CONTEXT = {"message": "m", "silent": True}
FORCE = {"query": "q", "action_names": ["a"]}
RESULT = {"id": "1", "success": True}
ACTION = {"id": "1", "name": "a"}
SESSION = {"sessionId": "s", "characterId": "c", "displayName": "d"}

# (id, frame, expected from parse_game_frame, expected from parse_neuro_frame)
CORPUS: list[tuple[str, Frame, Expect, Expect]] = [
    # --- not JSON / not an object -----------------------------------------
    ("invalid-json-truncated", '{"command": "startup"', (JSON, ""), (JSON, "")),
    ("invalid-json-single-quotes", "{'command': 'startup'}", (JSON, ""), (JSON, "")),
    ("invalid-json-trailing-garbage", game("startup") + " x", (JSON, ""), (JSON, "")),
    ("invalid-json-two-objects", game("startup") * 2, (JSON, ""), (JSON, "")),
    ("invalid-json-nan", '{"command": NaN}', (JSON, ""), (JSON, "")),
    ("invalid-json-infinite-number", '{"command": 1e400}', (JSON, ""), (JSON, "")),
    ("invalid-json-lone-surrogate", '{"command": "\\ud800"}', (JSON, ""), (JSON, "")),
    ("invalid-json-bom", "\ufeff" + game("startup"), (JSON, ""), (JSON, "")),
    ("empty-string", "", (JSON, ""), (JSON, "")),
    ("whitespace-only", " \n\t ", (JSON, ""), (JSON, "")),
    ("empty-bytes", b"", (JSON, ""), (JSON, "")),
    ("json-array", "[]", (NOT_OBJ, ""), (NOT_OBJ, "")),
    ("json-array-of-frames", j([{"command": "startup"}]), (NOT_OBJ, ""), (NOT_OBJ, "")),
    ("json-number", "42", (NOT_OBJ, ""), (NOT_OBJ, "")),
    ("json-float", "-0.5e3", (NOT_OBJ, ""), (NOT_OBJ, "")),
    ("json-string", '"startup"', (NOT_OBJ, ""), (NOT_OBJ, "")),
    ("json-null", "null", (NOT_OBJ, ""), (NOT_OBJ, "")),
    ("json-true", "true", (NOT_OBJ, ""), (NOT_OBJ, "")),
    ("too-deep-json", "[" * 5000 + "]" * 5000, (JSON, ""), (JSON, "")),
    # --- bytes ----------------------------------------------------------------
    ("bytes-not-utf8", b"\xff\xfe{}", (NOT_TEXT, ""), (NOT_TEXT, "")),
    ("bytes-lone-continuation", b'{"command": "\x80"}', (NOT_TEXT, ""), (NOT_TEXT, "")),
    (
        "bytes-latin1-game",
        b'{"command":"startup","game":"caf\xe9"}',
        (NOT_TEXT, ""),
        (NOT_TEXT, ""),
    ),
    (
        "bytes-valid-utf8",
        game("startup", game="Café 🎮").encode(),
        Startup,
        StartupAcknowledgement,
    ),
    (
        "bytearray-valid-utf8",
        bytearray(game("startup").encode()),
        Startup,
        StartupAcknowledgement,
    ),
    (
        "bytes-neuro-frame",
        neuro("shutdown/immediate").encode(),
        (UNKNOWN, "command"),
        ImmediateShutdown,
    ),
    # --- command ----------------------------------------------------------------
    (
        "missing-command",
        j({"game": "Game"}),
        (MISSING, "command"),
        (MISSING, "command"),
    ),
    ("empty-object", "{}", (MISSING, "command"), (MISSING, "command")),
    (
        "command-null",
        j({"command": None, "game": "G"}),
        (WRONG, "command"),
        (WRONG, "command"),
    ),
    (
        "command-number",
        j({"command": 1, "game": "G"}),
        (WRONG, "command"),
        (WRONG, "command"),
    ),
    (
        "command-bool",
        j({"command": True, "game": "G"}),
        (WRONG, "command"),
        (WRONG, "command"),
    ),
    (
        "command-list",
        j({"command": ["startup"], "game": "G"}),
        (WRONG, "command"),
        (WRONG, "command"),
    ),
    (
        "command-object",
        j({"command": {"name": "startup"}}),
        (WRONG, "command"),
        (WRONG, "command"),
    ),
    (
        "unknown-command",
        game("actions/forcee"),
        (UNKNOWN, "command"),
        (UNKNOWN, "command"),
    ),
    ("command-wrong-case", game("Startup"), (UNKNOWN, "command"), (UNKNOWN, "command")),
    ("command-empty", game(""), (UNKNOWN, "command"), (UNKNOWN, "command")),
    ("command-padded", game(" startup"), (UNKNOWN, "command"), (UNKNOWN, "command")),
    ("command-huge", game("x" * MB), (UNKNOWN, "command"), (UNKNOWN, "command")),
    # --- game -------------------------------------------------------------------
    (
        "missing-game",
        neuro("context", CONTEXT),
        (MISSING, "game"),
        (UNKNOWN, "command"),
    ),
    (
        "missing-game-startup",
        neuro("startup"),
        (MISSING, "game"),
        StartupAcknowledgement,
    ),
    (
        "game-number",
        j({"command": "startup", "game": 7}),
        (WRONG, "game"),
        StartupAcknowledgement,
    ),
    (
        "game-null",
        j({"command": "startup", "game": None}),
        (WRONG, "game"),
        StartupAcknowledgement,
    ),
    (
        "game-object",
        j({"command": "startup", "game": {"name": "G"}}),
        (WRONG, "game"),
        StartupAcknowledgement,
    ),
    ("game-huge", game("startup", game="g" * MB), Startup, StartupAcknowledgement),
    # --- startup / shutdown/ready (game) -----------------------------------------
    ("startup-data-null", game("startup", None), Startup, StartupAcknowledgement),
    # A data that is not an object is ignored (with a note) by the commands
    # that take none; Neuro's startup acknowledgement takes one.
    ("startup-data-string", game("startup", "hello"), Startup, (WRONG, "data")),
    ("startup-data-list", game("startup", []), Startup, (WRONG, "data")),
    ("startup-data-false", game("startup", False), Startup, (WRONG, "data")),
    (
        "startup-data-list-extra-keys",
        game("startup", [1, 2], version=2),
        Startup,
        (WRONG, "data"),
    ),
    (
        "startup-extra-keys",
        game("startup", {"main_thread": 1}, version=2),
        Startup,
        StartupAcknowledgement,
    ),
    (
        "shutdown-ready-data-number",
        game("shutdown/ready", 0),
        ShutdownReady,
        (UNKNOWN, "command"),
    ),
    # --- context ----------------------------------------------------------------
    ("context-missing-data", game("context"), (MISSING, "data"), (UNKNOWN, "command")),
    ("context-data-null", game("context", None), (WRONG, "data"), (UNKNOWN, "command")),
    (
        "context-data-list",
        game("context", ["m", True]),
        (WRONG, "data"),
        (UNKNOWN, "command"),
    ),
    (
        "context-data-string",
        game("context", "hello"),
        (WRONG, "data"),
        (UNKNOWN, "command"),
    ),
    (
        "context-message-int",
        game("context", {"message": 5, "silent": True}),
        (WRONG, "data.message"),
        None,
    ),
    (
        "context-message-missing",
        game("context", {"silent": True}),
        (MISSING, "data.message"),
        None,
    ),
    (
        "context-message-null",
        game("context", {"message": None, "silent": True}),
        (WRONG, "data.message"),
        None,
    ),
    (
        "context-message-nested-junk",
        game("context", {"message": nested(200), "silent": True}),
        (WRONG, "data.message"),
        None,
    ),
    (
        "context-silent-string",
        game("context", {"message": "m", "silent": "false"}),
        (WRONG, "data.silent"),
        None,
    ),
    (
        "context-silent-int",
        game("context", {"message": "m", "silent": 0}),
        (WRONG, "data.silent"),
        None,
    ),
    (
        "context-silent-huge-int",
        game("context", {"message": "m", "silent": 2**64 - 1}),
        (WRONG, "data.silent"),
        None,
    ),
    (
        "context-silent-missing",
        game("context", {"message": "m"}),
        (MISSING, "data.silent"),
        None,
    ),
    (
        "context-silent-null",
        game("context", {"message": "m", "silent": None}),
        (WRONG, "data.silent"),
        None,
    ),
    (
        "context-huge-message",
        game("context", {"message": "🎮" * (MB // 4), "silent": False}),
        Context,
        None,
    ),
    (
        "context-deep-junk-in-extra-key",
        game("context", {**CONTEXT, "junk": nested(500)}),
        Context,
        None,
    ),
    # --- actions/register ---------------------------------------------------------
    ("register-missing-data", game("actions/register"), (MISSING, "data"), None),
    (
        "register-actions-missing",
        game("actions/register", {}),
        (MISSING, "data.actions"),
        None,
    ),
    (
        "register-actions-null",
        game("actions/register", {"actions": None}),
        (WRONG, "data.actions"),
        None,
    ),
    (
        "register-actions-object",
        game("actions/register", {"actions": {"name": "a"}}),
        (WRONG, "data.actions"),
        None,
    ),
    (
        "register-actions-string",
        game("actions/register", {"actions": "a"}),
        (WRONG, "data.actions"),
        None,
    ),
    (
        "register-entries-junk",
        game("actions/register", {"actions": [5, None, "x", [], {"name": None}]}),
        RegisterActions,
        None,
    ),
    (
        "register-schema-string",
        game(
            "actions/register",
            {"actions": [{"name": "a", "description": "d", "schema": "object"}]},
        ),
        RegisterActions,
        None,
    ),
    (
        "register-deep-schema",
        game(
            "actions/register",
            {
                "actions": [
                    {"name": "a", "description": "d", "schema": {"x": nested(200)}}
                ]
            },
        ),
        RegisterActions,
        None,
    ),
    # --- actions/unregister ---------------------------------------------------------
    (
        "unregister-names-missing",
        game("actions/unregister", {}),
        (MISSING, "data.action_names"),
        None,
    ),
    (
        "unregister-names-not-list",
        game("actions/unregister", {"action_names": "a"}),
        (WRONG, "data.action_names"),
        None,
    ),
    (
        "unregister-names-null",
        game("actions/unregister", {"action_names": None}),
        (WRONG, "data.action_names"),
        None,
    ),
    (
        "unregister-names-with-number",
        game("actions/unregister", {"action_names": ["a", 1]}),
        (WRONG, "data.action_names[1]"),
        None,
    ),
    (
        "unregister-names-with-null",
        game("actions/unregister", {"action_names": ["a", "b", None]}),
        (WRONG, "data.action_names[2]"),
        None,
    ),
    (
        "unregister-names-nested-list",
        game("actions/unregister", {"action_names": [["a"]]}),
        (WRONG, "data.action_names[0]"),
        None,
    ),
    (
        "unregister-empty-list",
        game("actions/unregister", {"action_names": []}),
        UnregisterActions,
        None,
    ),
    # --- actions/force --------------------------------------------------------------
    ("force-missing-data", game("actions/force"), (MISSING, "data"), None),
    (
        "force-priority-urgent",
        game("actions/force", {**FORCE, "priority": "urgent"}),
        (INVALID, "data.priority"),
        None,
    ),
    (
        "force-priority-uppercase",
        game("actions/force", {**FORCE, "priority": "HIGH"}),
        (INVALID, "data.priority"),
        None,
    ),
    (
        "force-priority-empty",
        game("actions/force", {**FORCE, "priority": ""}),
        (INVALID, "data.priority"),
        None,
    ),
    (
        "force-priority-5",
        game("actions/force", {**FORCE, "priority": 5}),
        (WRONG, "data.priority"),
        None,
    ),
    (
        "force-priority-list",
        game("actions/force", {**FORCE, "priority": ["low"]}),
        (WRONG, "data.priority"),
        None,
    ),
    (
        "force-query-missing",
        game("actions/force", {"action_names": ["a"]}),
        (MISSING, "data.query"),
        None,
    ),
    (
        "force-query-null",
        game("actions/force", {**FORCE, "query": None}),
        (WRONG, "data.query"),
        None,
    ),
    (
        "force-query-number",
        game("actions/force", {**FORCE, "query": 1.5}),
        (WRONG, "data.query"),
        None,
    ),
    (
        "force-state-int",
        game("actions/force", {**FORCE, "state": 3}),
        (WRONG, "data.state"),
        None,
    ),
    (
        "force-state-object",
        game("actions/force", {**FORCE, "state": {"board": []}}),
        (WRONG, "data.state"),
        None,
    ),
    (
        "force-ephemeral-string",
        game("actions/force", {**FORCE, "ephemeral_context": "true"}),
        (WRONG, "data.ephemeral_context"),
        None,
    ),
    (
        "force-ephemeral-int",
        game("actions/force", {**FORCE, "ephemeral_context": 1}),
        (WRONG, "data.ephemeral_context"),
        None,
    ),
    (
        "force-names-missing",
        game("actions/force", {"query": "q"}),
        (MISSING, "data.action_names"),
        None,
    ),
    (
        "force-names-object",
        game("actions/force", {"query": "q", "action_names": {"a": 1}}),
        (WRONG, "data.action_names"),
        None,
    ),
    (
        "force-names-with-bool",
        game("actions/force", {"query": "q", "action_names": ["a", True]}),
        (WRONG, "data.action_names[1]"),
        None,
    ),
    (
        "force-all-optionals-null",
        game(
            "actions/force",
            {**FORCE, "state": None, "ephemeral_context": None, "priority": None},
        ),
        ForceActions,
        None,
    ),
    (
        "force-empty-names",
        game("actions/force", {"query": "q", "action_names": []}),
        ForceActions,
        None,
    ),
    # --- action/result ----------------------------------------------------------------
    ("result-missing-data", game("action/result"), (MISSING, "data"), None),
    (
        "result-id-missing",
        game("action/result", {"success": True}),
        (MISSING, "data.id"),
        None,
    ),
    (
        "result-id-int",
        game("action/result", {"id": 1, "success": True}),
        (WRONG, "data.id"),
        None,
    ),
    (
        "result-id-null",
        game("action/result", {"id": None, "success": True}),
        (WRONG, "data.id"),
        None,
    ),
    (
        "result-success-yes",
        game("action/result", {"id": "1", "success": "yes"}),
        (WRONG, "data.success"),
        None,
    ),
    (
        "result-success-missing",
        game("action/result", {"id": "1"}),
        (MISSING, "data.success"),
        None,
    ),
    (
        "result-success-null",
        game("action/result", {"id": "1", "success": None}),
        (WRONG, "data.success"),
        None,
    ),
    (
        "result-success-int",
        game("action/result", {"id": "1", "success": 1}),
        (WRONG, "data.success"),
        None,
    ),
    (
        "result-message-int",
        game("action/result", {**RESULT, "message": 404}),
        (WRONG, "data.message"),
        None,
    ),
    (
        "result-message-list",
        game("action/result", {**RESULT, "message": ["no"]}),
        (WRONG, "data.message"),
        None,
    ),
    (
        "duplicate-keys",
        '{"command":"startup","command":"context","game":"G"}',
        (MISSING, "data"),
        (UNKNOWN, "command"),
    ),
    # --- Neuro -> game commands -------------------------------------------------------
    ("action-missing-data", neuro("action"), (UNKNOWN, "command"), (MISSING, "data")),
    (
        "action-missing-id",
        neuro("action", {"name": "a"}),
        (UNKNOWN, "command"),
        (MISSING, "data.id"),
    ),
    (
        "action-id-int",
        neuro("action", {"id": 1, "name": "a"}),
        (UNKNOWN, "command"),
        (WRONG, "data.id"),
    ),
    (
        "action-name-null",
        neuro("action", {"id": "1", "name": None}),
        (UNKNOWN, "command"),
        (WRONG, "data.name"),
    ),
    (
        "action-data-object",
        neuro("action", {**ACTION, "data": {"x": 1}}),
        (UNKNOWN, "command"),
        (WRONG, "data.data"),
    ),
    (
        "action-data-null",
        neuro("action", {**ACTION, "data": None}),
        (UNKNOWN, "command"),
        ActionMessage,
    ),
    (
        "action-data-malformed-json-string",
        neuro("action", {**ACTION, "data": "{not json"}),
        (UNKNOWN, "command"),
        ActionMessage,
    ),
    (
        "action-sent-to-game-parser",
        game("action", ACTION),
        (UNKNOWN, "command"),
        ActionMessage,
    ),
    (
        "ack-session-null",
        neuro("startup", {"session": None}),
        (MISSING, "game"),
        StartupAcknowledgement,
    ),
    (
        "ack-session-string",
        neuro("startup", {"session": "s"}),
        (MISSING, "game"),
        (WRONG, "data.session"),
    ),
    (
        "ack-session-missing-id",
        neuro("startup", {"session": {"characterId": "c", "displayName": "d"}}),
        (MISSING, "game"),
        (MISSING, "data.session.sessionId"),
    ),
    (
        "ack-session-null-name",
        neuro("startup", {"session": {**SESSION, "displayName": None}}),
        (MISSING, "game"),
        (WRONG, "data.session.displayName"),
    ),
    (
        "ack-session-int-character",
        neuro("startup", {"session": {**SESSION, "characterId": 1}}),
        (MISSING, "game"),
        (WRONG, "data.session.characterId"),
    ),
    (
        "reregister-data-int",
        neuro("actions/reregister_all", 1),
        (UNKNOWN, "command"),
        ReregisterAll,
    ),
    (
        "reregister-data-string",
        neuro("actions/reregister_all", ""),
        (UNKNOWN, "command"),
        ReregisterAll,
    ),
    (
        "reregister-data-null",
        neuro("actions/reregister_all", None),
        (UNKNOWN, "command"),
        ReregisterAll,
    ),
    (
        "graceful-missing-data",
        neuro("shutdown/graceful"),
        (UNKNOWN, "command"),
        (MISSING, "data"),
    ),
    (
        "graceful-wants-string",
        neuro("shutdown/graceful", {"wants_shutdown": "yes"}),
        (UNKNOWN, "command"),
        (WRONG, "data.wants_shutdown"),
    ),
    (
        "graceful-wants-null",
        neuro("shutdown/graceful", {"wants_shutdown": None}),
        (UNKNOWN, "command"),
        (WRONG, "data.wants_shutdown"),
    ),
    (
        "graceful-ok-with-game",
        game("shutdown/graceful", {"wants_shutdown": False}),
        (UNKNOWN, "command"),
        GracefulShutdown,
    ),
    (
        "immediate-data-list",
        neuro("shutdown/immediate", []),
        (UNKNOWN, "command"),
        ImmediateShutdown,
    ),
    (
        "speech-missing-is-final",
        neuro("speech_finished", {}),
        (UNKNOWN, "command"),
        (MISSING, "data.isFinal"),
    ),
    (
        "speech-is-final-snake-case",
        neuro("speech_finished", {"is_final": True}),
        (UNKNOWN, "command"),
        (MISSING, "data.isFinal"),
    ),
    (
        "speech-cancelled-string",
        neuro("speech_finished", {"isFinal": True, "cancelled": "no"}),
        (UNKNOWN, "command"),
        (WRONG, "data.cancelled"),
    ),
    (
        "speech-reason-int",
        neuro("speech_finished", {"isFinal": True, "reason": 3}),
        (UNKNOWN, "command"),
        (WRONG, "data.reason"),
    ),
    (
        "speech-all-null",
        neuro("speech_finished", {"isFinal": False, "cancelled": None, "reason": None}),
        (UNKNOWN, "command"),
        SpeechFinished,
    ),
]

IDS = [case[0] for case in CORPUS]
assert len(IDS) == len(set(IDS)), "corpus ids must be unique"
assert len(CORPUS) >= 40


def run(parser: Parser, frame: Frame) -> Message | ProtocolError:
    """Parse, allowing only a message or ProtocolError out."""
    try:
        return parser(frame)
    except ProtocolError as error:
        return error


def check_diagnostic(error: ProtocolError, frame: Frame) -> diagnostics.Diagnostic:
    """A ProtocolError always converts to a readable diagnostic."""
    assert isinstance(error, ValueError)
    cut = bytes(frame) if isinstance(frame, bytearray) else frame
    diag = diagnostics.from_protocol_error(error, game="Game", frame=cut)
    assert diag.id in diagnostics.CATALOGUE
    assert diag.message.strip()
    if error.field:
        assert error.field in diag.message
        assert diag.subject == error.field
    assert diag.frame is not None
    assert len(diag.frame) <= diagnostics.MAX_FRAME_CHARS
    assert str(error)
    orjson.dumps(diag.to_json())
    return diag


def check_expectation(
    parser: Parser, frame: Frame, expect: Expect, direction: type[Message]
) -> None:
    outcome = run(parser, frame)
    if isinstance(outcome, ProtocolError):
        check_diagnostic(outcome, frame)
        if expect is not None:
            assert isinstance(expect, tuple), f"expected {expect}, got {outcome!r}"
            assert (outcome.kind, outcome.field) == expect, str(outcome)
            assert outcome.problem.kind is outcome.kind
            assert str(outcome)
    else:
        assert isinstance(outcome, direction)
        if expect is not None:
            assert isinstance(expect, type), f"expected {expect}, got {outcome!r}"
            assert type(outcome) is expect
        # Whatever was parsed can be sent again and means the same.
        resent(parser, outcome)
        for note in outcome.notes:
            diag = diagnostics.from_note(note, command=outcome.command, frame=None)
            assert note.field in diag.message


@pytest.mark.parametrize(("frame", "expect"), [c[1:3] for c in CORPUS], ids=IDS)
def test_game_parser_corpus(frame: Frame, expect: Expect) -> None:
    check_expectation(parse_game_frame, frame, expect, GameMessage)


@pytest.mark.parametrize(("frame", "expect"), [(c[1], c[3]) for c in CORPUS], ids=IDS)
def test_neuro_parser_corpus(frame: Frame, expect: Expect) -> None:
    check_expectation(parse_neuro_frame, frame, expect, NeuroMessage)


# ---------------------------------------------------------------------------
# Exact error texts
# ---------------------------------------------------------------------------


def _error(parser: Parser, frame: Frame) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parser(frame)
    return info.value


def test_error_text_names_list_index() -> None:
    error = _error(
        parse_game_frame, game("actions/unregister", {"action_names": ["a", 1]})
    )
    assert str(error) == "data.action_names[1]: expected a string, got number 1"
    assert error.field == "data.action_names[1]"
    assert error.kind is ProblemKind.WRONG_TYPE
    assert error.command == "actions/unregister"


def test_error_text_bad_priority() -> None:
    error = _error(
        parse_game_frame, game("actions/force", {**FORCE, "priority": "urgent"})
    )
    assert str(error) == (
        "data.priority: 'urgent' is not a priority "
        "(expected one of low, medium, high, critical)"
    )
    assert error.command == "actions/force"
    diag = diagnostics.from_protocol_error(error)
    assert diag.id == "protocol.invalid-value"
    assert diag.message == f"'actions/force' frame: {error}"


def test_error_text_wrong_boolean() -> None:
    error = _error(parse_game_frame, game("context", {"message": "m", "silent": "yes"}))
    assert str(error) == "data.silent: expected a boolean, got string 'yes'"


def test_error_text_missing_field() -> None:
    error = _error(parse_game_frame, game("action/result", {"success": True}))
    assert str(error) == "data.id: required field is missing"
    diag = diagnostics.from_protocol_error(error)
    assert diag.id == "protocol.missing-field"
    assert diag.message == "'action/result' frame: data.id: required field is missing"


def test_error_text_missing_game() -> None:
    error = _error(parse_game_frame, neuro("context", CONTEXT))
    assert str(error) == "game: required field is missing"
    diag = diagnostics.from_protocol_error(error)
    assert diag.id == "protocol.missing-game"
    assert diag.message == "'context' frame has no 'game' field"


def test_error_text_session_path() -> None:
    error = _error(parse_neuro_frame, neuro("startup", {"session": {}}))
    assert str(error) == "data.session.sessionId: required field is missing"


def test_error_text_not_an_object() -> None:
    error = _error(parse_game_frame, "[]")
    assert str(error) == "frame must be a JSON object, got an array of 0 items"
    assert error.field == ""
    assert error.command is None
    assert diagnostics.from_protocol_error(error).id == "protocol.not-an-object"


def test_error_text_long_string_is_shortened() -> None:
    error = _error(
        parse_game_frame, game("context", {"message": "m", "silent": "y" * MB})
    )
    assert len(str(error)) < 200
    assert "..." in str(error)


def test_error_text_unknown_command_lists_known() -> None:
    error = _error(parse_game_frame, game("nope"))
    assert str(error) == (
        "command: unknown command 'nope' (known: action/result, actions/force, "
        "actions/register, actions/unregister, context, shutdown/ready, startup)"
    )
    assert error.command == "nope"
    assert diagnostics.from_protocol_error(error).id == "protocol.unknown-command"


@pytest.mark.parametrize(
    ("parser", "frame", "hint"),
    [
        (parse_game_frame, game("action:result"), "action/result"),  # the C SDK
        (parse_game_frame, game("Action_Result"), "action/result"),
        (parse_game_frame, game("actions.force"), "actions/force"),
        (parse_game_frame, game("actions\\register"), "actions/register"),
        (parse_game_frame, game("shutdown-ready"), "shutdown/ready"),
        (parse_game_frame, game(" STARTUP "), "startup"),
        (parse_game_frame, game("contxt"), "context"),
        (parse_game_frame, game("actions/forcee"), "actions/force"),
        (parse_neuro_frame, neuro("actions/reregister-all"), "actions/reregister_all"),
        (parse_neuro_frame, neuro("Speech.Finished"), "speech_finished"),
        (parse_neuro_frame, neuro("shutdown:immediate"), "shutdown/immediate"),
    ],
)
def test_unknown_command_near_a_known_one_gets_a_hint(
    parser: Parser, frame: str, hint: str
) -> None:
    error = _error(parser, frame)
    assert error.kind is ProblemKind.UNKNOWN_COMMAND
    assert f"; did you mean {hint!r}? (known: " in str(error)
    diag = diagnostics.from_protocol_error(error, game="Game", frame=frame)
    assert diag.id == "protocol.unknown-command"
    assert f"did you mean {hint!r}?" in diag.message


def test_unknown_command_hint_text() -> None:
    error = _error(parse_game_frame, game("action:result"))
    assert str(error) == (
        "command: unknown command 'action:result'; did you mean 'action/result'? "
        "(known: action/result, actions/force, actions/register, "
        "actions/unregister, context, shutdown/ready, startup)"
    )


@pytest.mark.parametrize(
    ("parser", "command"),
    [
        (parse_game_frame, "nope"),
        (parse_game_frame, "hello"),
        (parse_game_frame, "action"),  # Neuro's, not close to a game's command
        (parse_game_frame, ""),
        (parse_neuro_frame, "context"),
        (parse_neuro_frame, "ping"),
        (parse_game_frame, "action/result" + "x" * MB),
    ],
)
def test_no_hint_when_nothing_is_close(parser: Parser, command: str) -> None:
    error = _error(parser, game(command))
    assert error.kind is ProblemKind.UNKNOWN_COMMAND
    assert "did you mean" not in str(error)


def test_hint_compares_only_the_start_of_a_huge_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    close_matches = difflib.get_close_matches

    def recording(word: str, *args: Any, **kwargs: Any) -> list[str]:
        seen.append(len(word))
        return close_matches(word, *args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", recording)
    error = _error(parse_game_frame, game("c" * MB))
    assert "did you mean" not in str(error)
    assert seen
    assert max(seen) <= 64
    # Trailing padding is cut away before comparing.
    error = _error(parse_game_frame, game("action:result" + " " * MB))
    assert "did you mean 'action/result'?" in str(error)


def test_error_for_bytes_names_utf8() -> None:
    error = _error(parse_game_frame, b"\xff")
    assert error.kind is ProblemKind.NOT_TEXT
    assert "UTF-8" in str(error)
    diag = diagnostics.from_protocol_error(error, frame=b"\xff")
    assert diag.id == "protocol.not-text"
    assert diag.frame == "\ufffd"


def test_error_is_value_error_with_problem() -> None:
    error = _error(parse_game_frame, "")
    assert isinstance(error, ValueError)
    assert dataclasses.asdict(error.problem)["kind"] is ProblemKind.INVALID_JSON


# ---------------------------------------------------------------------------
# Fuzz
# ---------------------------------------------------------------------------

json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)

COMMANDS = sorted(
    {
        "startup",
        "context",
        "actions/register",
        "actions/unregister",
        "actions/force",
        "action/result",
        "shutdown/ready",
        "action",
        "actions/reregister_all",
        "shutdown/graceful",
        "shutdown/immediate",
        "speech_finished",
    }
)
FIELDS = [
    "message",
    "silent",
    "actions",
    "action_names",
    "state",
    "query",
    "ephemeral_context",
    "priority",
    "id",
    "success",
    "name",
    "data",
    "session",
    "wants_shutdown",
    "isFinal",
    "cancelled",
    "reason",
]

entries = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"name": json_values, "description": json_values},
        optional={"schema": json_values},
    ),
)
field_values = st.one_of(
    json_values,
    st.lists(entries, max_size=3),
    st.sampled_from(["low", "medium", "high", "critical", "urgent", ""]),
    st.fixed_dictionaries(
        {},
        optional={
            "sessionId": json_values,
            "characterId": json_values,
            "displayName": json_values,
        },
    ),
)
frames_like: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {"command": st.one_of(st.sampled_from(COMMANDS), json_values)},
    optional={
        "game": st.one_of(st.text(max_size=8), json_values),
        "data": st.one_of(
            st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6),
            json_values,
        ),
    },
)


def resent(parser: Parser, message: Message) -> Message:
    """Parse ``message.to_frame()`` again; rejected entries are not re-sent."""
    if isinstance(message, RegisterActions):
        message = dataclasses.replace(message, rejected=())
    again = parser(message.to_frame())
    assert again == message
    return again


def check_contract(frame: Frame) -> None:
    for parser, direction in (
        (parse_game_frame, GameMessage),
        (parse_neuro_frame, NeuroMessage),
    ):
        outcome = run(parser, frame)
        if isinstance(outcome, ProtocolError):
            check_diagnostic(outcome, frame)
        else:
            assert isinstance(outcome, direction)
            resent(parser, outcome)


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_fuzz_any_json_value(value: Any) -> None:
    check_contract(orjson.dumps(value).decode())


@settings(max_examples=300, deadline=None)
@given(obj=frames_like)
def test_fuzz_frame_shaped_objects(obj: dict[str, Any]) -> None:
    text = orjson.dumps(obj).decode()
    check_contract(text)
    check_contract(text.encode())


@settings(max_examples=100, deadline=None)
@given(text=st.text(st.characters(exclude_categories=())))
def test_fuzz_any_text(text: str) -> None:
    """Any text, lone surrogates included."""
    check_contract(text)


@settings(max_examples=100, deadline=None)
@given(data=st.binary())
def test_fuzz_any_bytes(data: bytes) -> None:
    check_contract(data)
    check_contract(bytearray(data))


def test_huge_names_are_not_echoed_whole() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_game_frame(orjson.dumps({"command": "x" * 100_000, "game": "G"}).decode())
    assert len(str(info.value)) < 300
    message = parse_game_frame(
        orjson.dumps(
            {"command": "startup", "game": "G", "data": {"k" * 100_000: 1}}
        ).decode()
    )
    assert all(len(str(note)) < 200 for note in message.notes)
