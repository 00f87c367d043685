"""``neuro_api.command`` as code written for neuro-api 4.0.0 uses it.

Upstream's builders return the frame as UTF-8 bytes, which its users
``.decode()`` before sending; its helpers check dicts against ``TypedDict``s
and schemas. Each test calls a name the way upstream's documentation and
users do; where we deliberately differ, the test says so and why.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, NotRequired, TypedDict

import orjson
import pytest

from neuro_api import command
from neuro_api.command import (
    ACTION_NAME_ALLOWED_CHARS,
    INVALID_SCHEMA_KEYS,
    Action,
    ForcePriority,
    IncomingActionMessageSchema,
    IncomingStartupAcknowledgementSchema,
    check_action,
    check_invalid_keys_recursive,
    check_typed_dict,
    convert_parameterized_generic,
    convert_parameterized_generic_nonunion,
    convert_parameterized_generic_union_items,
    format_command,
)
from neuro_api.json_schema_types import SchemaObject

BUILT = [
    command.startup_command("G"),
    command.context_command("G", "m"),
    command.actions_register_command("G", [Action("a", "A")]),
    command.actions_unregister_command("G", ["a"]),
    command.actions_force_command("G", "s", "q", ["a"]),
    command.actions_result_command("G", "1", True),
    command.shutdown_ready_command("G"),
    command.startup_acknowledgement_command("s", "neuro", "Neuro-sama"),
    command.action_command("1", "a", "{}"),
    command.reregister_all_command(),
    command.shutdown_graceful_command(True),
    command.shutdown_immediate_command(),
    command.speech_finished_command(True),
]


@pytest.mark.parametrize("frame", BUILT)
def test_every_builder_returns_utf8_json_bytes(frame: bytes) -> None:
    assert type(frame) is bytes
    assert isinstance(orjson.loads(frame.decode("utf-8")), dict)


def test_frames_have_upstreams_bytes_key_order_included() -> None:
    assert command.context_command("Test Game", "hi", False) == (
        b'{"command":"context","game":"Test Game","data":'
        b'{"message":"hi","silent":false}}'
    )
    assert command.actions_force_command(
        "G", "s", "q", ["a"], True, ForcePriority.CRITICAL
    ) == (
        b'{"command":"actions/force","game":"G","data":{"state":"s","query":"q",'
        b'"action_names":["a"],"priority":"critical","ephemeral_context":true}}'
    )
    assert command.actions_result_command("G", "7", False, "no") == (
        b'{"command":"action/result","game":"G","data":'
        b'{"id":"7","success":false,"message":"no"}}'
    )


def test_schema_less_actions_leave_schema_out() -> None:
    # Deliberate: upstream sent "schema": null, which servers report
    # (protocol.null-value); the spec says to leave it out.
    frame = orjson.loads(command.actions_register_command("G", [Action("a", "A")]))
    assert frame["data"]["actions"] == [{"name": "a", "description": "A"}]


def test_format_command_as_upstream() -> None:
    assert format_command("x") == b'{"command":"x"}'
    assert format_command("x", "G") == b'{"command":"x","game":"G"}'
    assert format_command("x", data={"k": 1}) == b'{"command":"x","data":{"k":1}}'
    with pytest.raises(TypeError) as caught:
        format_command({"not", "a", "str"}, "G")  # type: ignore[arg-type]
    assert any("payload" in note for note in caught.value.__notes__)


def test_format_command_note_is_bounded() -> None:
    with pytest.raises(TypeError) as caught:
        format_command("x", data={"big": "y" * 100_000, "bad": {1, 2}})
    assert all(len(note) <= 2000 for note in caught.value.__notes__)


def test_failing_result_needs_a_message() -> None:
    with pytest.raises(ValueError, match="Message can only be omitted"):
        command.actions_result_command("G", "1", False)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: command.actions_register_command("G", []), "register"),
        (lambda: command.actions_unregister_command("G", []), "unregister"),
        (lambda: command.actions_force_command("G", "s", "q", []), "force"),
    ],
)
def test_empty_lists_raise_assertion_error_too(build: Any, match: str) -> None:
    with pytest.raises(AssertionError, match=f"Must {match} at least one action"):
        build()


def test_constants() -> None:
    assert set("abc_-09") <= ACTION_NAME_ALLOWED_CHARS
    assert not set("A !") & ACTION_NAME_ALLOWED_CHARS
    assert {"$ref", "allOf", "additionalProperties", "title"} <= INVALID_SCHEMA_KEYS
    assert "type" not in INVALID_SCHEMA_KEYS


def test_check_action_raises_for_bad_names_and_warns_for_keys() -> None:
    check_action(Action("ok_name-1", "fine"))
    check_action(Action("ok", "fine", {"type": "object", "properties": {}}))
    with pytest.raises(ValueError, match="Following invalid characters found in name"):
        check_action(Action("Bad Name!", "no"))
    with pytest.warns(UserWarning, match="Discouraged keys found in schema"):
        check_action(Action("a", "b", {"type": "object", "$schema": "x"}))


def test_check_action_does_not_warn_for_property_names() -> None:
    # Deliberate: upstream warned for a property *named* "title"; only
    # keywords count here (the official docs recommend such names freely).
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_action(Action("a", "b", schema))


def test_check_invalid_keys_recursive_finds_keys_anywhere_in_order() -> None:
    schema: Any = {
        "x": {},
        "allOf": {},
        "y": {"$vocabulary": {}, "z": [{"additionalProperties": "s", "w": 1}, "t"]},
    }
    assert check_invalid_keys_recursive(schema) == [
        "allOf",
        "$vocabulary",
        "additionalProperties",
    ]
    assert check_invalid_keys_recursive({"type": "object"}) == []
    # Null is JSON (upstream raised for it); a set is not.
    assert check_invalid_keys_recursive({"default": None}) == []
    with pytest.raises(ValueError, match="Unhandled schema value type"):
        check_invalid_keys_recursive({"x": {1, 2}})


def test_check_invalid_keys_recursive_survives_deep_nesting() -> None:
    schema: Any = {}
    inner = schema
    for _ in range(10_000):  # deeper than the recursion limit
        inner["n"] = {}
        inner = inner["n"]
    inner["$ref"] = "#"
    assert check_invalid_keys_recursive(schema) == ["$ref"]


class Optional_(TypedDict):
    required: str
    optional: NotRequired[str]


class Nested(TypedDict):
    entry: str
    attributes: dict[str, str]
    kind: NotRequired[Literal["a", "b"]]
    number: NotRequired[float]
    either: NotRequired[str | int]


def test_check_typed_dict_accepts_and_returns() -> None:
    data = {"id": "1", "name": "play"}
    assert check_typed_dict(data, IncomingActionMessageSchema) == data
    data2 = {"id": "1", "name": "play", "data": "{}"}
    assert check_typed_dict(data2, IncomingActionMessageSchema) == data2
    ack = {"session": {"sessionId": "s", "characterId": "c", "displayName": "d"}}
    assert check_typed_dict(ack, IncomingStartupAcknowledgementSchema) == ack
    nested = {"entry": "e", "attributes": {"k": "v"}, "kind": "a", "number": 1}
    assert check_typed_dict(nested, Nested) == nested
    assert check_typed_dict({"entry": "e", "attributes": {}, "either": 3}, Nested)


@pytest.mark.parametrize(
    ("data", "typed_dict", "error", "match"),
    [
        ({"id": 27, "name": "x"}, IncomingActionMessageSchema, TypeError, "key 'id'"),
        (
            {"id": "1", "name": "x", "data": b"b"},
            IncomingActionMessageSchema,
            TypeError,
            "key 'data'",
        ),
        (
            {"name": "x"},
            IncomingActionMessageSchema,
            ValueError,
            r"'id' is missing \(type <class 'str'>\)",
        ),
        (
            {"name": "x", "eggs": True},
            IncomingActionMessageSchema,
            ValueError,
            "Following extra keys were found: 'eggs'",
        ),
        (
            {"required": "r", "optional": None},
            Optional_,
            TypeError,
            r"None \(key 'optional'\) is not instance of",
        ),
        (
            {"entry": "e", "attributes": {}, "kind": "c"},
            Nested,
            TypeError,
            "key 'kind'",
        ),
        (
            {"entry": "e", "attributes": {}, "number": True},
            Nested,
            TypeError,
            "key 'number'",
        ),
    ],
)
def test_check_typed_dict_refuses(
    data: dict[str, Any], typed_dict: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        check_typed_dict(data, typed_dict)


def test_check_typed_dict_needs_a_typed_dict() -> None:
    with pytest.raises(TypeError, match="not a TypedDict"):
        check_typed_dict({}, dict)


def test_convert_parameterized_generic() -> None:
    assert convert_parameterized_generic_nonunion(list[str]) is list
    assert convert_parameterized_generic_nonunion(str) is str
    assert convert_parameterized_generic_nonunion(NotRequired[int]) is int
    assert convert_parameterized_generic_nonunion(Nested) is dict
    assert convert_parameterized_generic_union_items(str | int) == (str, int)
    assert convert_parameterized_generic_union_items(str) is str
    assert convert_parameterized_generic(list[int] | None) == (list, type(None))
    assert convert_parameterized_generic(dict[str, int]) is dict


def test_schema_object_is_a_typed_dict_for_literals() -> None:
    schema: SchemaObject = {
        "type": "object",
        "properties": {"x": {"type": "integer", "minimum": 0}},
        "required": ["x"],
    }
    assert SchemaObject(type="object") == {"type": "object"}
    check_action(Action("a", "b", dict(schema)))


def test_check_invalid_keys_recursive_keeps_upstreams_order() -> None:
    # Depth first, in key order: a key's inner finds come before the next key.
    schema: Any = {"a": {"title": 1}, "oneOf": [], "b": [{"not": {}}, [{"if": 1}]]}
    assert check_invalid_keys_recursive(schema) == ["title", "oneOf", "not"]
