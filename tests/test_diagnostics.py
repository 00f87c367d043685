"""The diagnostics catalogue: well-formed, complete, and usable."""

from __future__ import annotations

import re
import string
from typing import Any

import orjson
import pytest

from neuro_api import command, diagnostics
from neuro_api.command import FieldProblem, ProblemKind, ProtocolError
from neuro_api.diagnostics import (
    CATALOGUE,
    MAX_FRAME_CHARS,
    Diagnostic,
    DiagnosticKind,
    Severity,
    diagnose,
    from_note,
    from_protocol_error,
)

AREAS = {"protocol", "context", "action", "force", "result", "behaviour"}
ID_RE = re.compile(r"^(?P<area>[a-z]+)\.[a-z0-9]+(?:-[a-z0-9]+)*$")
KINDS = list(CATALOGUE.values())


def dummy_params(kind: DiagnosticKind) -> dict[str, Any]:
    """A value for every template field, numbers where a spec needs one."""
    params: dict[str, Any] = {}
    for _, name, spec, _ in string.Formatter().parse(kind.template):
        if name:
            params[name] = 1.5 if spec else f"<{name}>"
    return params


# ---------------------------------------------------------------------------
# Shape of the catalogue
# ---------------------------------------------------------------------------


def test_catalogue_is_not_empty_and_keyed_by_id() -> None:
    assert KINDS
    for id_, kind in CATALOGUE.items():
        assert kind.id == id_


def test_ids_are_unique() -> None:
    ids = [kind.id for kind in diagnostics._KINDS]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert duplicates == []
    assert len(CATALOGUE) == len(ids)


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_id_is_well_formed(kind: DiagnosticKind) -> None:
    match = ID_RE.match(kind.id)
    assert match, f"{kind.id!r} is not area.kebab-case"
    assert match["area"] in AREAS


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_entry_is_complete(kind: DiagnosticKind) -> None:
    assert isinstance(kind.severity, Severity)
    assert kind.title.strip()
    assert kind.template.strip()
    assert kind.title == kind.title.strip()


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_template_formats_with_its_fields(kind: DiagnosticKind) -> None:
    params = dummy_params(kind)
    assert set(params) == kind.fields
    text = kind.template.format(**params)
    assert text.strip()
    for name, value in params.items():
        if isinstance(value, str):
            assert value in text, name


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_diagnose_every_entry(kind: DiagnosticKind) -> None:
    params = dummy_params(kind)
    diag = diagnose(kind.id, game="Game", subject="thing", frame="{}", **params)
    assert diag.id == kind.id
    assert diag.severity is kind.severity
    assert diag.message == kind.template.format(**params)
    assert diag.kind is kind
    assert diag.hint == kind.hint
    assert diag.game == "Game"
    assert diag.subject == "thing"
    assert diag.frame == "{}"
    assert str(diag).startswith(f"{kind.severity} [Game] {kind.id}: ")
    assert diag.format(frame=True).splitlines()[0] == str(diag)
    data = diag.to_json()
    assert orjson.loads(orjson.dumps(data)) == data
    assert set(data) == {
        "id", "severity", "message", "hint", "game", "subject", "frame", "time",
    }  # fmt: skip
    assert data["severity"] == kind.severity.value


def test_hints_are_shown_with_single_braces() -> None:
    # Templates go through str.format, hints do not: a "{{" escape in a hint
    # reaches the user literally.
    shown = {kind.id: diagnose(kind.id, **dummy_params(kind)).hint for kind in KINDS}
    doubled = sorted(id_ for id_, hint in shown.items() if "{{" in hint or "}}" in hint)
    assert doubled == []
    assert shown["protocol.not-an-object"] == (
        'Every frame is a JSON object like {"command": ..., "game": ...}.'
    )


def test_fields_of_a_template() -> None:
    kind = CATALOGUE["result.late"]
    assert kind.fields == {"id", "timeout"}
    assert CATALOGUE["protocol.repeated-startup"].fields == frozenset()


# ---------------------------------------------------------------------------
# diagnose()
# ---------------------------------------------------------------------------


def test_diagnose_unknown_id_raises_key_error() -> None:
    with pytest.raises(KeyError):
        diagnose("protocol.no-such-thing")


def test_diagnose_missing_field_raises_key_error() -> None:
    with pytest.raises(KeyError, match="name"):
        diagnose("action.name-not-lowercase")


def test_diagnose_missing_one_of_several_fields() -> None:
    with pytest.raises(KeyError, match="timeout"):
        diagnose("result.late", id="1")


def test_diagnose_ignores_extra_params() -> None:
    diag = diagnose("protocol.repeated-startup", unused=1)
    assert diag.message.startswith("'startup' received again")


def test_diagnose_format_spec() -> None:
    diag = diagnose("result.late", id="abc", timeout=20.0)
    assert diag.message == (
        "action/result for id 'abc' arrived after the 20 s timeout; discarded"
    )


def test_braces_in_params_are_not_formatted() -> None:
    diag = diagnose("protocol.invalid-json", detail="{command} {0} {}")
    assert diag.message == "{command} {0} {}"


def test_frame_is_cut() -> None:
    long = "x" * (MAX_FRAME_CHARS * 3)
    diag = diagnose("protocol.invalid-json", detail="d", frame=long)
    assert diag.frame is not None
    assert len(diag.frame) == MAX_FRAME_CHARS
    assert diag.frame.endswith("...")
    assert diag.frame.startswith("x" * (MAX_FRAME_CHARS - 3))


def test_frame_at_the_limit_is_kept_whole() -> None:
    exact = "y" * MAX_FRAME_CHARS
    assert diagnose("protocol.invalid-json", detail="d", frame=exact).frame == exact


def test_bytes_frame_is_decoded_and_cut() -> None:
    raw = b"\xff" + "é".encode() * MAX_FRAME_CHARS
    diag = diagnose("protocol.not-text", detail="d", frame=raw)
    assert diag.frame is not None
    assert diag.frame.startswith("\ufffdé")
    assert len(diag.frame) == MAX_FRAME_CHARS


def test_no_frame() -> None:
    assert diagnose("protocol.invalid-json", detail="d").frame is None


def test_to_json_is_serialisable() -> None:
    diag = diagnose(
        "protocol.wrong-type",
        game="🎮 Game",
        subject="data.silent",
        frame='{"a": "\x00"}',
        command="context",
        detail="data.silent: expected a boolean",
    )
    data = orjson.loads(orjson.dumps(diag.to_json()))
    assert data["id"] == "protocol.wrong-type"
    assert data["severity"] == "error"
    assert data["game"] == "🎮 Game"
    assert isinstance(data["time"], float)


def test_equality_ignores_time() -> None:
    a = diagnose("protocol.repeated-startup")
    b = Diagnostic(id=a.id, severity=a.severity, message=a.message, time=a.time + 100.0)
    assert a == b


def test_format_with_hint_and_frame() -> None:
    diag = diagnose("protocol.invalid-json", detail="bad", frame="{")
    assert diag.format() == (
        "error protocol.invalid-json: bad\n"
        "    hint: Send exactly one JSON object per text frame."
    )
    assert diag.format(hint=False, frame=True) == (
        "error protocol.invalid-json: bad\n    frame: {"
    )


# ---------------------------------------------------------------------------
# Severities
# ---------------------------------------------------------------------------


def test_severity_ranks() -> None:
    assert Severity.INFO.rank < Severity.WARNING.rank < Severity.ERROR.rank
    assert [s.rank for s in Severity] == [0, 1, 2]
    assert sorted(Severity, key=lambda s: s.rank) == [
        Severity.INFO,
        Severity.WARNING,
        Severity.ERROR,
    ]


def test_every_severity_is_used() -> None:
    assert {kind.severity for kind in KINDS} == set(Severity)


# ---------------------------------------------------------------------------
# Parser problems
# ---------------------------------------------------------------------------

PROBLEM_IDS = {
    ProblemKind.INVALID_JSON: "protocol.invalid-json",
    ProblemKind.NOT_TEXT: "protocol.not-text",
    ProblemKind.NOT_AN_OBJECT: "protocol.not-an-object",
    ProblemKind.MISSING: "protocol.missing-field",
    ProblemKind.WRONG_TYPE: "protocol.wrong-type",
    ProblemKind.INVALID_VALUE: "protocol.invalid-value",
    ProblemKind.UNKNOWN_COMMAND: "protocol.unknown-command",
    ProblemKind.UNKNOWN_KEY: "protocol.unknown-key",
    ProblemKind.NULL_VALUE: "protocol.null-value",
    ProblemKind.IGNORED_DATA: "protocol.ignored-data",
}


def test_problem_table_covers_every_kind() -> None:
    assert set(PROBLEM_IDS) == set(ProblemKind)


@pytest.mark.parametrize("kind", list(ProblemKind))
def test_every_problem_kind_maps_to_a_diagnostic(kind: ProblemKind) -> None:
    problem = FieldProblem("data.some_field", kind, "what went wrong")
    from_error = from_protocol_error(
        ProtocolError(problem, "context"), game="G", frame="{...}"
    )
    from_notes = from_note(problem, command="context", game="G", frame="{...}")
    for diag in (from_error, from_notes):
        assert diag.id == PROBLEM_IDS[kind]
        assert diag.id in CATALOGUE
        assert "data.some_field" in diag.message
        assert diag.subject == "data.some_field"
        assert diag.game == "G"
        assert diag.frame == "{...}"


@pytest.mark.parametrize("kind", list(ProblemKind))
def test_problem_without_field_or_command(kind: ProblemKind) -> None:
    diag = from_protocol_error(ProtocolError(FieldProblem("", kind, "whole frame")))
    assert diag.id in CATALOGUE
    assert diag.message.strip()
    assert diag.subject is None


def test_missing_game_has_its_own_id() -> None:
    problem = FieldProblem("game", ProblemKind.MISSING, "required field is missing")
    diag = from_protocol_error(ProtocolError(problem, "context"))
    assert diag.id == "protocol.missing-game"
    assert diag.message == "'context' frame has no 'game' field"


def test_unknown_key_note() -> None:
    note = FieldProblem("data.main_thread", ProblemKind.UNKNOWN_KEY, "unknown key")
    diag = from_note(note, command="context", game="G")
    assert diag.id == "protocol.unknown-key"
    assert diag.severity is Severity.WARNING
    assert diag.message == "'context' frame: unknown key data.main_thread was ignored"


def test_ignored_data_note_is_a_warning() -> None:
    note = FieldProblem(
        "data",
        ProblemKind.IGNORED_DATA,
        "expected an object or nothing, got an array of 0 items; ignored",
    )
    diag = from_note(note, command="startup", game="G")
    assert diag.id == "protocol.ignored-data"
    assert diag.severity is Severity.WARNING
    assert diag.message == (
        "'startup' frame: data: expected an object or nothing, "
        "got an array of 0 items; ignored"
    )
    assert "leave 'data' out" in diag.hint


def test_null_value_note_is_info() -> None:
    note = FieldProblem("data.state", ProblemKind.NULL_VALUE, "null")
    diag = from_note(note, command="actions/force")
    assert diag.severity is Severity.INFO
    assert diag.message == "'actions/force' frame: data.state is null"


# ---------------------------------------------------------------------------
# PROTOCOL.md, "Diagnostics a server should report"
# ---------------------------------------------------------------------------

# Every check that section lists -> the catalogue id covering it.
PROTOCOL_CHECKS: dict[str, str] = {
    # protocol
    "message before startup": "protocol.before-startup",
    "repeated startup": "protocol.repeated-startup",
    "game name changed": "protocol.game-renamed",
    "invalid JSON": "protocol.invalid-json",
    "missing game": "protocol.missing-game",
    "wrong field types": "protocol.wrong-type",
    "unknown command": "protocol.unknown-command",
    "unknown extra keys": "protocol.unknown-key",
    "binary frame": "protocol.binary-frame",
    "oversized frame": "protocol.oversized-frame",
    # actions
    "action name not lowercase": "action.name-not-lowercase",
    "action name empty": "action.name-empty",
    "action name has invalid chars": "action.name-invalid-chars",
    "missing description": "action.description-missing",
    "schema null": "action.schema-null",
    "schema not an object": "action.rejected",
    "schema type not object": "action.schema-type-not-object",
    "schema fails meta-validation": "action.schema-invalid",
    "unsupported schema keywords": "action.schema-unsupported-keywords",
    "empty {} schema": "action.schema-empty",
    "duplicate registration, identical": "action.duplicate-identical",
    "duplicate registration, conflicting": "action.duplicate-conflicting",
    "cross-game name collision": "action.name-collision",
    "unregister of unknown action": "action.unregister-unknown",
    "unregister of empty list": "action.unregister-empty",
    # forces
    "force with empty action_names": "force.empty",
    "force names some unregistered actions": "force.some-unregistered",
    "force names only unregistered actions": "force.none-registered",
    "force before any registration": "force.before-registration",
    "force while another force is active": "force.while-active",
    "force while a result is pending": "force.while-result-pending",
    "force retries exhausted": "force.retries-exhausted",
    # results
    "result for unknown id": "result.unknown-id",
    "result for stale id": "result.stale-id",
    "late result (after the timeout)": "result.late",
    "failure without a message": "result.failure-without-message",
    "success without a message": "result.success-without-message",
    # behaviour
    "context spam": "behaviour.context-spam",
    "forces sent before actions registered": "force.before-registration",
}


@pytest.mark.parametrize(
    ("check", "id_"), list(PROTOCOL_CHECKS.items()), ids=list(PROTOCOL_CHECKS)
)
def test_protocol_check_is_catalogued(check: str, id_: str) -> None:
    assert id_ in CATALOGUE, f"{check!r}: no catalogue entry {id_!r}"


# Checks of that list the production server's behaviour and the official SDK
# make false alarms: they are deliberately not reported (issue 10).
NOT_REPORTED: dict[str, str] = {
    # The official SDK README tells games to unregister an action before
    # sending its result.
    "result for an action unregistered meanwhile": "result.action-unregistered",
}


@pytest.mark.parametrize(("check", "id_"), list(NOT_REPORTED.items()))
def test_false_alarms_are_not_catalogued(check: str, id_: str) -> None:
    assert id_ not in CATALOGUE, f"{check!r} is a false alarm"


def test_protocol_severities_where_the_spec_names_one() -> None:
    # PROTOCOL.md marks "success without a message" as info.
    assert CATALOGUE["result.success-without-message"].severity is Severity.INFO
    # A failure without a message is worse than a success without one.
    assert (
        CATALOGUE["result.failure-without-message"].severity.rank
        > CATALOGUE["result.success-without-message"].severity.rank
    )
    # Unknown keys must be tolerated: never an error.
    assert CATALOGUE["protocol.unknown-key"].severity is not Severity.ERROR
    assert CATALOGUE["action.schema-unsupported-keywords"].severity is (
        Severity.WARNING
    )
    assert CATALOGUE["action.schema-empty"].severity is Severity.INFO


def test_lone_surrogates_are_shown_escaped() -> None:
    frame = "\ud800"
    with pytest.raises(ProtocolError) as info:
        command.parse_game_frame(frame)
    diagnostic = from_protocol_error(info.value, game="G\udc00", frame=frame)
    assert diagnostic.frame == "\\ud800"
    assert diagnostic.game == "G\\udc00"
    orjson.dumps(diagnostic.to_json())  # encodable
