"""Action checks, keyword search, data validation and the validator cache."""

from __future__ import annotations

import json
from typing import Any

import pytest

from neuro_api.command import Action
from neuro_api.diagnostics import CATALOGUE, Diagnostic, Severity
from neuro_api.schema import (
    UNKNOWN_KEYWORDS,
    UNSUPPORTED_KEYWORDS,
    SchemaError,
    ValidationResult,
    check_action,
    find_keywords,
    get_validator,
    validate_action_data,
)

GRID: dict[str, Any] = {
    "type": "object",
    "properties": {
        "cell": {"type": "integer", "minimum": 0, "maximum": 8},
        "mark": {"type": "string", "enum": ["x", "o"]},
        "moves": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["cell"],
}


def ids(found: list[Diagnostic]) -> list[str]:
    return [d.id for d in found]


def only(found: list[Diagnostic], id_: str) -> Diagnostic:
    matching = [d for d in found if d.id == id_]
    assert len(matching) == 1, ids(found)
    return matching[0]


# ---------------------------------------------------------------------------
# check_action: names and descriptions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(
            Action("play_card", "Play a card from your hand."), id="no-schema"
        ),
        pytest.param(Action("play-card", "Play", GRID), id="with-schema"),
        pytest.param(Action("move_2", "Move", {"type": "object"}), id="bare-object"),
    ],
)
def test_valid_action_has_no_diagnostics(action: Action) -> None:
    assert check_action(action) == []


def test_empty_name() -> None:
    found = check_action(Action("", "Does something"))
    assert ids(found) == ["action.name-empty"]
    assert found[0].severity is Severity.ERROR


def test_uppercase_name() -> None:
    found = check_action(Action("PlayCard", "Play"))
    assert ids(found) == ["action.name-not-lowercase"]
    assert "'PlayCard'" in found[0].message
    assert found[0].subject == "PlayCard"


@pytest.mark.parametrize(
    ("name", "chars"),
    [
        ("play card", "' '"),
        ("play.card!", "'!', '.'"),
        ("café", "'é'"),
        ("jump🎮", "'🎮'"),
    ],
)
def test_invalid_characters_in_name(name: str, chars: str) -> None:
    found = check_action(Action(name, "Play"))
    diag = only(found, "action.name-invalid-chars")
    assert ids(found) == ["action.name-invalid-chars"]
    assert diag.message == f"action name {name!r} contains {chars}"


def test_uppercase_and_invalid_chars_both_reported() -> None:
    found = check_action(Action("Play Card", "Play"))
    assert ids(found) == ["action.name-not-lowercase", "action.name-invalid-chars"]


@pytest.mark.parametrize("description", ["", "   ", "\n\t"])
def test_blank_description(description: str) -> None:
    found = check_action(Action("play", description))
    assert ids(found) == ["action.description-missing"]
    assert found[0].severity is Severity.WARNING


def test_game_and_subject_are_recorded() -> None:
    found = check_action(Action("Play", ""), game="Tic Tac Toe")
    assert ids(found) == ["action.name-not-lowercase", "action.description-missing"]
    assert {d.game for d in found} == {"Tic Tac Toe"}
    assert {d.subject for d in found} == {"Play"}


# ---------------------------------------------------------------------------
# check_action: schema shape
# ---------------------------------------------------------------------------


def test_empty_schema_is_info() -> None:
    found = check_action(Action("play", "Play", {}))
    assert ids(found) == ["action.schema-empty"]
    assert found[0].severity is Severity.INFO


@pytest.mark.parametrize(
    ("schema", "shown"),
    [
        pytest.param(
            {"properties": {"x": {"type": "string"}}}, "missing", id="missing"
        ),
        pytest.param({"type": "string"}, '"string"', id="string"),
        pytest.param({"type": ["object", "null"]}, '["object","null"]', id="list"),
        pytest.param({"type": "array", "items": {}}, '"array"', id="array"),
    ],
)
def test_schema_type_not_object(schema: dict[str, Any], shown: str) -> None:
    found = check_action(Action("play", "Play", schema))
    assert ids(found) == ["action.schema-type-not-object"]
    assert found[0].severity is Severity.ERROR
    assert found[0].message == (
        f"schema of action 'play' has type {shown}, not \"object\""
    )


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "object", "properties": 5}, id="properties-number"),
        pytest.param({"type": "object", "required": "cell"}, id="required-string"),
        pytest.param(
            {"type": "object", "properties": {"x": {"type": "strin"}}},
            id="unknown-type",
        ),
        pytest.param(
            {"type": "object", "properties": {"x": {"minimum": "0"}}},
            id="minimum-string",
        ),
    ],
)
def test_invalid_schema(schema: dict[str, Any]) -> None:
    found = check_action(Action("play", "Play", schema))
    assert ids(found) == ["action.schema-invalid"]
    diag = found[0]
    assert diag.severity is Severity.ERROR
    assert diag.message.startswith(
        "schema of action 'play' is not a valid JSON schema: "
    )


def test_invalid_schema_names_where() -> None:
    found = check_action(Action("play", "Play", {"type": "object", "properties": 5}))
    assert "properties" in found[0].message


# A valid value for each unsupported keyword, so the schema stays valid and
# only the keyword itself is reported.
KEYWORD_VALUES: dict[str, Any] = {
    "$anchor": "here",
    "$comment": "a comment",
    "$defs": {"cell": {"type": "integer"}},
    "$dynamicAnchor": "node",
    "$dynamicRef": "#",  # an anchor nowhere in the schema would not resolve
    "$id": "https://example.com/cell",
    "$ref": "#",
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$vocabulary": {},
    "additionalProperties": False,
    "allOf": [{"type": "string"}],
    "anyOf": [{"type": "string"}],
    "contentEncoding": "base64",
    "contentMediaType": "application/json",
    "contentSchema": {"type": "object"},
    "dependentRequired": {"a": ["b"]},
    "dependentSchemas": {"a": {"required": ["b"]}},
    "deprecated": True,
    "description": "The cell",
    "else": {"type": "string"},
    "if": {"type": "string"},
    "maxProperties": 3,
    "minProperties": 1,
    "multipleOf": 2,
    "not": {"type": "null"},
    "oneOf": [{"type": "string"}],
    "patternProperties": {"^a": {"type": "string"}},
    "readOnly": True,
    "then": {"type": "string"},
    "title": "Cell",
    "unevaluatedItems": False,
    "unevaluatedProperties": False,
    "writeOnly": False,
}


def test_keyword_table_covers_the_spec_list() -> None:
    assert set(KEYWORD_VALUES) == UNSUPPORTED_KEYWORDS
    assert {"uniqueItems"} == UNKNOWN_KEYWORDS


@pytest.mark.parametrize("keyword", sorted(KEYWORD_VALUES))
def test_each_unsupported_keyword_is_reported_with_its_pointer(keyword: str) -> None:
    schema = {
        "type": "object",
        "properties": {"cell": {"type": "string", keyword: KEYWORD_VALUES[keyword]}},
    }
    found = check_action(Action("play", "Play", schema))
    assert ids(found) == ["action.schema-unsupported-keywords"]
    diag = found[0]
    assert diag.severity is Severity.WARNING
    assert diag.message == (
        "schema of action 'play' uses keywords Neuro probably does not support "
        f"well: {keyword} (at /properties/cell/{keyword})"
    )


def test_unsupported_keyword_at_the_root() -> None:
    found = check_action(Action("play", "Play", {"type": "object", "title": "Play"}))
    assert ids(found) == ["action.schema-unsupported-keywords"]
    assert found[0].message.endswith("title (at /title)")


def test_several_unsupported_keywords_in_one_diagnostic() -> None:
    schema = {
        "type": "object",
        "title": "Move",
        "properties": {
            "to": {"anyOf": [{"type": "integer", "multipleOf": 2}, {"type": "null"}]}
        },
        "additionalProperties": False,
    }
    found = check_action(Action("move", "Move", schema))
    diag = only(found, "action.schema-unsupported-keywords")
    assert diag.message.endswith(
        "title (at /title), anyOf (at /properties/to/anyOf), "
        "multipleOf (at /properties/to/anyOf/0/multipleOf), "
        "additionalProperties (at /additionalProperties)"
    )


def test_properties_named_like_keywords_are_not_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "not": {"type": "boolean"},
            "$ref": {"type": "string"},
        },
        "required": ["title", "description"],
    }
    assert check_action(Action("make_post", "Post", schema)) == []


def test_keyword_title_next_to_property_title() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string", "title": "The title"}},
    }
    found = check_action(Action("make_post", "Post", schema))
    assert ids(found) == ["action.schema-unsupported-keywords"]
    assert found[0].message.endswith("title (at /properties/title/title)")


def test_keywords_inside_data_values_are_not_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"enum": [{"title": "x"}, {"$ref": "#"}, None]},
            "b": {"const": {"allOf": [], "not": {}}},
            "c": {"type": "object", "default": {"description": "d", "oneOf": 1}},
            "d": {"type": "object", "examples": [{"if": {}, "then": {}}]},
        },
    }
    assert check_action(Action("play", "Play", schema)) == []


def test_unique_items_is_unknown_support() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
        },
    }
    found = check_action(Action("tag", "Tag", schema))
    assert ids(found) == ["action.schema-unknown-keywords"]
    assert found[0].severity is Severity.INFO
    assert found[0].message.endswith("uniqueItems (at /properties/tags/uniqueItems)")


def test_null_default_is_fine() -> None:
    schema = {
        "type": "object",
        "properties": {
            "target": {"type": ["string", "null"], "default": None},
            "choice": {"enum": ["a", None]},
        },
    }
    assert check_action(Action("aim", "Aim", schema)) == []


def test_every_check_action_id_is_catalogued() -> None:
    found = check_action(
        Action("Bad Name", "", {"type": "string", "title": 5, "uniqueItems": True})
    )
    assert ids(found) == [
        "action.name-not-lowercase",
        "action.name-invalid-chars",
        "action.description-missing",
        "action.schema-type-not-object",
        "action.schema-invalid",
        "action.schema-unsupported-keywords",
        "action.schema-unknown-keywords",
    ]
    assert all(d.id in CATALOGUE for d in found)


def _deep_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"next": schema}}
    return schema


def test_deep_schema_from_a_frame_does_not_crash_check_action() -> None:
    # 300 levels (600 JSON levels) parse fine from a frame (orjson reads up to
    # 1024), so a game can send this; checking it must give diagnostics, not
    # an exception out of the cache key's encoder.
    schema = json.loads(json.dumps(_deep_schema(300)))
    found = check_action(Action("dig", "Dig", schema))
    assert all(d.id in CATALOGUE for d in found)


def test_deep_schema_from_a_frame_does_not_crash_validation() -> None:
    # Too deep to encode: a SchemaError (documented), never a TypeError.
    schema = _deep_schema(300)
    with pytest.raises(SchemaError, match="cannot be encoded"):
        validate_action_data(schema, "{}")


# ---------------------------------------------------------------------------
# find_keywords
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            {"properties": {"a": {"type": "string", "title": "A"}}},
            [
                ("properties", "/properties"),
                ("type", "/properties/a/type"),
                ("title", "/properties/a/title"),
            ],
            id="properties",
        ),
        pytest.param(
            {"items": {"type": "integer"}},
            [("items", "/items"), ("type", "/items/type")],
            id="items-schema",
        ),
        pytest.param(
            {"items": [{"type": "integer"}, {"type": "string"}]},
            [("items", "/items"), ("type", "/items/0/type"), ("type", "/items/1/type")],
            id="items-tuple",
        ),
        pytest.param(
            {"prefixItems": [{"const": 1}, {"minimum": 0}]},
            [
                ("prefixItems", "/prefixItems"),
                ("const", "/prefixItems/0/const"),
                ("minimum", "/prefixItems/1/minimum"),
            ],
            id="prefixItems",
        ),
        pytest.param(
            {"allOf": [{"required": ["a"]}, {"not": {"type": "null"}}]},
            [
                ("allOf", "/allOf"),
                ("required", "/allOf/0/required"),
                ("not", "/allOf/1/not"),
                ("type", "/allOf/1/not/type"),
            ],
            id="allOf-not",
        ),
        pytest.param(
            {"$defs": {"cell": {"type": "integer"}}, "$ref": "#/$defs/cell"},
            [("$defs", "/$defs"), ("type", "/$defs/cell/type"), ("$ref", "/$ref")],
            id="defs",
        ),
        pytest.param(
            {"patternProperties": {"^a/b~c$": {"type": "string"}}},
            [
                ("patternProperties", "/patternProperties"),
                ("type", "/patternProperties/^a~1b~0c$/type"),
            ],
            id="patternProperties-escaped",
        ),
        pytest.param(
            {"additionalProperties": {"minLength": 1}},
            [
                ("additionalProperties", "/additionalProperties"),
                ("minLength", "/additionalProperties/minLength"),
            ],
            id="additionalProperties",
        ),
        pytest.param(
            {"if": {"type": "string"}, "then": {"title": "t"}, "else": False},
            [
                ("if", "/if"),
                ("type", "/if/type"),
                ("then", "/then"),
                ("title", "/then/title"),
                ("else", "/else"),
            ],
            id="if-then-else",
        ),
        pytest.param(
            {"enum": [{"title": 1}], "default": {"type": "x"}, "examples": [{"a": 1}]},
            [("enum", "/enum"), ("default", "/default"), ("examples", "/examples")],
            id="data-values",
        ),
        pytest.param(
            {"properties": {"title": True, "x": {"$comment": "c"}}},
            [("properties", "/properties"), ("$comment", "/properties/x/$comment")],
            id="boolean-subschema",
        ),
    ],
)
def test_find_keywords(schema: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert list(find_keywords(schema)) == expected


# ---------------------------------------------------------------------------
# validate_action_data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [None, {}])
@pytest.mark.parametrize(
    ("data", "value"),
    [
        (None, None),
        ("{}", {}),
        ('{"anything": [1, null]}', {"anything": [1, None]}),
        ("5", 5),
        ('"text"', "text"),
        ("null", None),
    ],
)
def test_no_schema_accepts_anything(
    schema: dict[str, Any] | None, data: str | None, value: Any
) -> None:
    result = validate_action_data(schema, data)
    assert result.ok
    assert result
    assert result.value == value
    assert result.reason == ""


def test_valid_data_passes_with_the_parsed_value() -> None:
    result = validate_action_data(GRID, '{"cell": 4, "mark": "x", "moves": [1, 2]}')
    assert result == ValidationResult(True, {"cell": 4, "mark": "x", "moves": [1, 2]})
    assert bool(result) is True


def test_invalid_json() -> None:
    result = validate_action_data(GRID, '{"cell": 4')
    assert not result
    assert result.reason.startswith("Action data is not valid JSON: ")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(
            "[4]", "Invalid action data: data: [4] is not of type 'object'", id="array"
        ),
        pytest.param(
            '"4"', "Invalid action data: data: '4' is not of type 'object'", id="string"
        ),
        pytest.param(
            '{"cell": 9}',
            "Invalid action data: data.cell: 9 is greater than the maximum of 8",
            id="maximum",
        ),
        pytest.param(
            '{"cell": "4"}',
            "Invalid action data: data.cell: '4' is not of type 'integer'",
            id="cell-type",
        ),
        pytest.param(
            '{"cell": 1, "mark": "z"}',
            "Invalid action data: data.mark: 'z' is not one of ['x', 'o']",
            id="enum",
        ),
        pytest.param(
            '{"cell": 1, "moves": [1, "two"]}',
            "Invalid action data: data.moves[1]: 'two' is not of type 'integer'",
            id="array-item",
        ),
        pytest.param(
            '{"mark": "x"}',
            "Invalid action data: data: 'cell' is a required property",
            id="required",
        ),
    ],
)
def test_off_schema_data(data: str, reason: str) -> None:
    result = validate_action_data(GRID, data)
    assert not result.ok
    assert result.reason == reason


def test_several_problems_are_counted() -> None:
    result = validate_action_data(GRID, '{"cell": -1, "mark": "z"}')
    assert not result
    assert result.reason == (
        "Invalid action data: data.cell: -1 is less than the minimum of 0 "
        "(and 1 more problems)"
    )


def test_missing_data_with_required_properties_fails() -> None:
    result = validate_action_data(GRID, None)
    assert not result
    assert "'cell' is a required property" in result.reason


def test_missing_data_without_required_properties_is_empty_object() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert validate_action_data(schema, None) == ValidationResult(True, {})


def test_json_null_data_is_not_an_object() -> None:
    # ``data: "null"`` is data, and it is not an object; only *missing* data
    # may stand for {}.
    result = validate_action_data({"type": "object"}, "null")
    assert not result.ok
    assert "data" in result.reason


def test_validation_with_invalid_schema_raises() -> None:
    with pytest.raises(SchemaError):
        validate_action_data({"type": "object", "properties": 5}, "{}")


# ---------------------------------------------------------------------------
# get_validator
# ---------------------------------------------------------------------------


def test_validator_is_cached_for_equal_schemas() -> None:
    a = {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0}}}
    b = {"properties": {"x": {"minimum": 0, "type": "integer"}}, "type": "object"}
    first = get_validator(a)
    assert get_validator(a) is first
    assert get_validator(b) is first
    assert first.is_valid({"x": 1})
    assert not first.is_valid({"x": -1})


def test_different_schemas_get_different_validators() -> None:
    assert get_validator({"const": 1}) is not get_validator({"const": 1.5})
    assert get_validator({"const": 1}) is not get_validator({"const": True})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": 5},
        {"type": "nothing"},
        {"minimum": "0"},
        {"required": [1]},
    ],
)
def test_invalid_schema_raises_schema_error_every_time(schema: dict[str, Any]) -> None:
    for _ in range(2):
        with pytest.raises(SchemaError) as info:
            get_validator(schema)
        assert isinstance(info.value, ValueError)
        assert "(at " in str(info.value)


def test_reasons_for_huge_values_stay_short() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 3}}}
    huge = "x" * 1_000_000
    result = validate_action_data(schema, json.dumps({"s": huge}))
    assert not result.ok
    assert len(result.reason) < 500
    assert result.reason.startswith("Invalid action data: data.s: 'xxx")
    assert result.reason.endswith("xxx' is too long")
    broken = validate_action_data(schema, '{"s": "' + huge)
    assert not broken.ok
    assert len(broken.reason) < 500
