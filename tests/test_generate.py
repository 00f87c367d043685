"""Random data for action schemas: always valid, checked by jsonschema itself.

The oracle is a jsonschema validator built here (with format checking), not
the module's own cached validator.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.validators import validator_for

from neuro_api import _generate
from neuro_api.schema import (
    GenerationError,
    SchemaError,
    generate_data,
    validate_action_data,
)

SEEDS = range(12)


def _plan(schema: dict[str, Any]) -> Any:
    plan = _generate._plan_for(schema)
    assert plan is not None
    return plan


def assert_valid(schema: dict[str, Any], value: Any) -> None:
    """Validate with a fresh jsonschema validator, formats included."""
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = [e.message for e in validator.iter_errors(value)]
    assert errors == [], f"{value!r} fails {schema!r}"


def obj(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    """An object schema with these properties (all required by default)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


POINT = obj(
    x={"type": "integer", "minimum": 0, "maximum": 7},
    y={"type": "integer", "minimum": 0, "maximum": 7},
)

CORPUS: dict[str, dict[str, Any]] = {
    "enum-card": obj(card={"type": "string", "enum": ["ace", "king", "queen"]}),
    "enum-mixed-with-null": obj(choice={"enum": ["left", 2, None, True]}),
    "const": obj(confirm={"const": True}),
    "boolean": obj(fold={"type": "boolean"}),
    "nested-objects": obj(
        player=obj(
            name={"type": "string", "minLength": 1, "maxLength": 16},
            position=POINT,
        )
    ),
    "array-min-max-items": obj(
        cards={
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": 52},
            "minItems": 2,
            "maxItems": 5,
        }
    ),
    "array-unique-items": obj(
        colours={
            "type": "array",
            "items": {"enum": ["red", "green", "blue", "cyan", "magenta", "yellow"]},
            "minItems": 3,
            "maxItems": 4,
            "uniqueItems": True,
        }
    ),
    "array-of-objects": obj(
        order={
            "type": "array",
            "items": obj(
                item={"type": "string", "format": "uuid"},
                quantity={"type": "integer", "minimum": 1, "maximum": 99},
            ),
            "maxItems": 3,
        }
    ),
    "prefix-items": obj(
        step={
            "type": "array",
            "prefixItems": [
                {"type": "integer", "minimum": 1, "maximum": 6},
                {"enum": ["north", "south", "east", "west"]},
            ],
            "minItems": 2,
            "maxItems": 2,
        }
    ),
    "integer-bounds": obj(cell={"type": "integer", "minimum": 0, "maximum": 8}),
    "integer-exclusive-bounds": obj(
        bet={"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}
    ),
    "integer-single-value": obj(level={"type": "integer", "minimum": 3, "maximum": 3}),
    "integer-negative-range": obj(
        depth={"type": "integer", "minimum": -10, "maximum": -5}
    ),
    "integer-only-maximum": obj(floor={"type": "integer", "maximum": -3}),
    "integer-multiple-of": obj(
        amount={"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 5}
    ),
    "number-multiple-of-integer": obj(
        volume={"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 10}
    ),
    "number-range": obj(angle={"type": "number", "minimum": -1.5, "maximum": 1.5}),
    "number-exclusive-range": obj(
        ratio={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    ),
    "number-only-minimum": obj(speed={"type": "number", "minimum": 1000.5}),
    "string-lengths": obj(
        word={"type": "string", "minLength": 3, "maxLength": 8},
        code={"type": "string", "minLength": 5, "maxLength": 5},
        note={"type": "string", "maxLength": 0},
    ),
    "string-formats": obj(
        when={"type": "string", "format": "date-time"},
        day={"type": "string", "format": "date"},
        at={"type": "string", "format": "time"},
        mail={"type": "string", "format": "email"},
        link={"type": "string", "format": "uri"},
        id={"type": "string", "format": "uuid"},
        host={"type": "string", "format": "ipv4"},
    ),
    "string-pattern": obj(
        square={"type": "string", "pattern": "^[a-h][1-8]$"},
        colour={"type": "string", "pattern": "^#[0-9a-f]{6}$"},
    ),
    "ref-defs": {
        "type": "object",
        "$defs": {"point": POINT},
        "properties": {
            "from": {"$ref": "#/$defs/point"},
            "to": {"$ref": "#/$defs/point"},
        },
        "required": ["from", "to"],
    },
    "ref-draft7-definitions": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "definitions": {"dir": {"enum": ["up", "down"]}},
        "properties": {"go": {"$ref": "#/definitions/dir"}},
        "required": ["go"],
    },
    "any-of": obj(
        target={
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 3},
                {"type": "string", "enum": ["self", "all"]},
            ]
        }
    ),
    "one-of-tagged": obj(
        move={
            "oneOf": [
                obj(
                    kind={"const": "attack"},
                    power={"type": "integer", "minimum": 1, "maximum": 10},
                ),
                obj(kind={"const": "defend"}),
            ]
        }
    ),
    "all-of": {
        "type": "object",
        "allOf": [
            obj(a={"type": "integer", "minimum": 0}),
            obj(b={"type": "boolean"}),
        ],
    },
    "type-list-with-null": obj(
        target={"type": ["string", "null"], "maxLength": 5},
        count={"type": ["integer", "null"], "minimum": 1, "maximum": 3},
    ),
    "type-null": obj(nothing={"type": "null"}),
    "not": obj(
        pick={"type": "integer", "minimum": 0, "maximum": 3, "not": {"const": 2}}
    ),
    "additional-properties-false": {
        **obj(x={"type": "integer"}, y={"type": "string"}, required=["x"]),
        "additionalProperties": False,
    },
    "min-properties": {
        **obj(
            a={"type": "integer"},
            b={"type": "integer"},
            c={"type": "integer"},
            required=[],
        ),
        "minProperties": 2,
    },
    "if-then": {
        **obj(
            mode={"enum": ["safe", "risky"]},
            n={"type": "integer", "minimum": 0, "maximum": 5},
        ),
        "if": {"properties": {"mode": {"const": "safe"}}},
        "then": {"properties": {"n": {"maximum": 2}}},
    },
    "optional-properties": obj(
        a={"type": "string"}, b={"type": "number"}, c={"type": "boolean"}, required=[]
    ),
    "empty-properties": {"type": "object", "properties": {}},
    "bare-object": {"type": "object"},
}


@pytest.mark.parametrize("schema", list(CORPUS.values()), ids=list(CORPUS))
def test_corpus_values_validate(schema: dict[str, Any]) -> None:
    for seed in SEEDS:
        value = generate_data(schema, rng=random.Random(seed))
        assert_valid(schema, value)
        assert isinstance(value, dict)


def test_corpus_size() -> None:
    assert len(CORPUS) >= 30


def test_uses_the_whole_enum_eventually() -> None:
    schema = CORPUS["enum-card"]
    seen = {generate_data(schema, rng=random.Random(s))["card"] for s in range(60)}
    assert seen == {"ace", "king", "queen"}


def test_optional_properties_are_sometimes_present() -> None:
    schema = CORPUS["optional-properties"]
    sizes = {len(generate_data(schema, rng=random.Random(s))) for s in range(40)}
    assert 0 in sizes or 1 in sizes
    assert 3 in sizes


# ---------------------------------------------------------------------------
# Satisfiable schemas the generator gets wrong (each is a bug report)
# ---------------------------------------------------------------------------


def test_integer_with_negative_fractional_bounds() -> None:
    # Only -2 is in [-2.5, -1.5]; int() truncates toward zero instead of
    # rounding the bounds inwards (ceil/floor).
    schema = obj(depth={"type": "integer", "minimum": -2.5, "maximum": -1.5})
    value = generate_data(schema, rng=random.Random(0))
    assert value == {"depth": -2}


def test_integer_with_negative_fractional_exclusive_minimum() -> None:
    # Only -3 is in (-3.5, -3].
    schema = obj(t={"type": "integer", "exclusiveMinimum": -3.5, "maximum": -3})
    assert generate_data(schema, rng=random.Random(0)) == {"t": -3}


def test_number_with_fractional_multiple_of() -> None:
    schema = obj(
        bet={"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 0.25}
    )
    for seed in SEEDS:
        assert_valid(schema, generate_data(schema, rng=random.Random(seed)))


def test_pattern_respects_max_length() -> None:
    schema = obj(name={"type": "string", "pattern": "^[a-z]+$", "maxLength": 8})
    for seed in range(30):
        assert_valid(schema, generate_data(schema, rng=random.Random(seed)))


def test_recursive_ref_retries_instead_of_giving_up() -> None:
    # A tree of menu entries: most draws are shallow; one draw that goes too
    # deep must be retried, not end the whole generation.
    schema = {
        "$defs": {
            "node": obj(
                label={"type": "string"},
                children={"type": "array", "items": {"$ref": "#/$defs/node"}},
                required=["label"],
            )
        },
        "$ref": "#/$defs/node",
    }
    for seed in range(60):
        assert_valid(schema, generate_data(schema, rng=random.Random(seed)))


# ---------------------------------------------------------------------------
# No data, unsatisfiable and invalid schemas, determinism
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [None, {}])
def test_no_schema_gives_none(schema: dict[str, Any] | None) -> None:
    assert generate_data(schema) is None
    assert generate_data(schema, rng=random.Random(1)) is None


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "integer", "minimum": 5, "maximum": 1}, id="int-range"),
        pytest.param({"minimum": 5, "maximum": 1}, id="untyped-range"),
        pytest.param({"type": "number", "minimum": 5, "maximum": 1}, id="number-range"),
        pytest.param(
            {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            id="no-integer-between",
        ),
        pytest.param({"not": {}}, id="not-anything"),
        pytest.param(
            obj(x={"type": "string", "minLength": 5, "maxLength": 2}),
            id="string-lengths",
        ),
        pytest.param({"type": "array", "minItems": 3, "maxItems": 1}, id="items"),
        pytest.param({"type": "string", "enum": [1, 2]}, id="enum-vs-type"),
        pytest.param({"allOf": [{"type": "string"}, {"type": "integer"}]}, id="allOf"),
        pytest.param(obj(x=False), id="false-subschema"),
        pytest.param(
            {"type": "integer", "minimum": 1, "maximum": 4, "multipleOf": 5},
            id="no-multiple",
        ),
    ],
)
def test_unsatisfiable_schema_raises(schema: dict[str, Any]) -> None:
    with pytest.raises(GenerationError):
        generate_data(schema, rng=random.Random(0))


def test_generation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot generate data"):
        generate_data({"not": {}})


def test_generation_error_names_the_step() -> None:
    schema = {"type": "integer", "minimum": 1, "maximum": 4, "multipleOf": 5}
    with pytest.raises(GenerationError) as info:
        generate_data(schema)
    assert "{step}" not in str(info.value)
    assert "multiple of 5" in str(info.value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": 5},
        {"type": "nothing"},
        {"type": "object", "required": "x"},
    ],
)
def test_invalid_schema_raises_schema_error(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        generate_data(schema)


@pytest.mark.parametrize("name", ["string-formats", "array-of-objects", "ref-defs"])
def test_seeded_rng_is_deterministic(name: str) -> None:
    schema = CORPUS[name]
    runs = [generate_data(schema, rng=random.Random(1234)) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    others = {repr(generate_data(schema, rng=random.Random(s))) for s in range(10)}
    assert len(others) > 1


def test_generated_data_matches_validator_draft() -> None:
    # A draft-07 schema is checked under draft 7 rules by both sides.
    schema = CORPUS["ref-draft7-definitions"]
    value = generate_data(schema, rng=random.Random(3))
    assert Draft7Validator(schema).is_valid(value)


# ---------------------------------------------------------------------------
# Random simple schemas
# ---------------------------------------------------------------------------


@st.composite
def integer_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    low = draw(st.integers(-1000, 1000))
    span = draw(st.integers(0, 200))
    if draw(st.booleans()):
        schema["minimum"] = low
    if draw(st.booleans()):
        schema["maximum"] = low + span
    if span >= 2 and draw(st.booleans()):
        schema.pop("minimum", None)
        schema.pop("maximum", None)
        schema["exclusiveMinimum"] = low
        schema["exclusiveMaximum"] = low + span
    return schema


@st.composite
def number_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    low = draw(st.floats(-1e6, 1e6))
    span = draw(st.floats(0.01, 1e4))
    keys = draw(
        st.sampled_from(
            [
                (),
                ("minimum",),
                ("maximum",),
                ("minimum", "maximum"),
                ("exclusiveMinimum", "exclusiveMaximum"),
                ("minimum", "exclusiveMaximum"),
            ]
        )
    )
    for key in keys:
        schema[key] = low if "inimum" in key else low + span
    return schema


@st.composite
def string_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    low = draw(st.integers(0, 20))
    if draw(st.booleans()):
        schema["minLength"] = low
    if draw(st.booleans()):
        schema["maxLength"] = low + draw(st.integers(0, 20))
    return schema


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-100, 100),
    st.text(max_size=8),
)
enum_schemas = st.lists(scalars, min_size=1, max_size=5, unique_by=repr).map(
    lambda values: {"enum": values}
)
simple_schemas: st.SearchStrategy[dict[str, Any]] = st.one_of(
    integer_schemas(),
    number_schemas(),
    string_schemas(),
    enum_schemas,
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
)


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("type"), str) and schema["type"] != "null":
        return {**schema, "type": [schema["type"], "null"]}
    return schema


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(
        st.lists(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), max_size=5, unique=True)
    )
    properties: dict[str, Any] = {}
    for name in names:
        schema = draw(simple_schemas)
        if draw(st.integers(0, 4)) == 0:
            schema = nullable(schema)
        elif draw(st.integers(0, 5)) == 0:
            schema = {
                "type": "array",
                "items": schema,
                "maxItems": draw(st.integers(0, 4)),
            }
        properties[name] = schema
    required = [name for name in names if draw(st.booleans())]
    return {"type": "object", "properties": properties, "required": required}


@settings(max_examples=150, deadline=None)
@given(schema=object_schemas(), seed=st.integers(0, 2**32 - 1))
def test_random_simple_schemas(schema: dict[str, Any], seed: int) -> None:
    value = generate_data(schema, rng=random.Random(seed))
    assert_valid(schema, value)
    assert set(schema["required"]) <= set(value)


@settings(max_examples=100, deadline=None)
@given(schema=simple_schemas, seed=st.integers(0, 2**32 - 1))
def test_random_top_level_scalar_schemas(schema: dict[str, Any], seed: int) -> None:
    # Not what an action sends, but the generator works on any schema.
    value = generate_data(schema, rng=random.Random(seed))
    assert_valid(schema, value)


def test_fractional_multiple_of_follows_the_reference_validator() -> None:
    # jsonschema-rs and jsonschema disagree on 0.3 as a multiple of 0.1; the
    # reference (jsonschema) decides, for checks and for generated data.
    schema = {
        "type": "object",
        "properties": {"x": {"type": "number", "multipleOf": 0.1, "maximum": 1}},
        "required": ["x"],
    }
    reference = Draft202012Validator(schema)
    assert validate_action_data(schema, '{"x": 0.3}').ok is reference.is_valid(
        {"x": 0.3}
    )
    rng = random.Random(5)
    for _ in range(200):
        assert reference.is_valid(generate_data(schema, rng=rng))


def test_all_of_branches_constraining_one_property_are_combined() -> None:
    schema = {
        "type": "object",
        "allOf": [
            {"properties": {"n": {"type": "integer", "minimum": 5}}, "required": ["n"]},
            {"properties": {"n": {"maximum": 7}}},
        ],
    }
    rng = random.Random(2)
    seen = {generate_data(schema, rng=rng)["n"] for _ in range(100)}
    assert seen == {5, 6, 7}


# ---------------------------------------------------------------------------
# Plans: cached per schema, checked only when a draw may be invalid
# ---------------------------------------------------------------------------

EXACT = [
    "enum-card",
    "enum-mixed-with-null",
    "const",
    "boolean",
    "nested-objects",
    "array-min-max-items",
    "integer-bounds",
    "integer-only-maximum",
    "number-range",
    "string-lengths",
    "type-null",
    "bare-object",
]


@pytest.mark.parametrize("name", EXACT)
def test_schemas_valid_by_construction_are_not_checked_again(name: str) -> None:
    # What actions mostly declare: the plan alone keeps every draw valid.
    assert _plan(CORPUS[name]).check is None


NAN = float("nan")
CHECKED: dict[str, dict[str, Any]] = {
    "enum-vs-type": {"type": "string", "enum": ["a", 1]},
    "enum-of-nan": {"enum": [NAN, 1]},
    "const-nan": {"const": NAN},
    "enum-of-objects": {"enum": [{"a": 1}]},
    "multiple-of": {"type": "integer", "minimum": 0, "maximum": 9, "multipleOf": 3},
    "exclusive-bound": {"type": "integer", "minimum": 5, "exclusiveMinimum": 5},
    "huge-bound": {"type": "number", "minimum": 1e300},
    "fractional-length": {"type": "string", "minLength": 2.0},
    "format": {"type": "string", "format": "email"},
    "pattern": {"type": "string", "pattern": "^a+$"},
    "type-list": {"type": ["integer", "null"]},
    "untyped": {"minimum": 1},
    "optional-property": obj(
        x={"type": "integer"}, y={"type": "integer"}, required=["x"]
    ),
    "additional-schema": {**obj(x={"type": "integer"}), "additionalProperties": {}},
    "min-properties": {**obj(x={"type": "integer"}), "minProperties": 1},
    "true-subschema": obj(x=True),
    "nested-multiple-of": obj(p=obj(x={"type": "integer", "multipleOf": 2})),
    "unique-items": {
        "type": "array",
        "items": {"type": "integer"},
        "uniqueItems": True,
    },
    "untyped-items": {"type": "array", "maxItems": 2},
    "ref": {"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"},
    "draft": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"},
    "not": {"type": "integer", "not": {"const": 1}},
}


@pytest.mark.parametrize("schema", list(CHECKED.values()), ids=list(CHECKED))
def test_schemas_the_plan_may_miss_are_checked(schema: dict[str, Any]) -> None:
    assert _plan(schema).check is not None


def test_too_deep_for_the_plan_is_checked() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(_generate._MAX_DEPTH + 1):
        schema = obj(x=schema)
    assert _plan(schema).check is not None


def test_nan_in_an_enum_is_never_drawn_as_valid() -> None:
    with pytest.raises(GenerationError):
        generate_data({"enum": [NAN]}, rng=random.Random(1))


def test_a_schema_changed_in_place_is_planned_again() -> None:
    schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 1}
    assert generate_data(schema, rng=random.Random(1)) == 1
    schema["minimum"] = schema["maximum"] = 2
    assert generate_data(schema, rng=random.Random(1)) == 2
    schema["multipleOf"] = 3  # no longer satisfiable
    with pytest.raises(GenerationError):
        generate_data(schema, rng=random.Random(1))


def test_a_plan_is_not_changed_through_the_schema_it_came_from() -> None:
    schema = obj(mood={"type": "string", "enum": ["happy"]})
    assert generate_data(schema, rng=random.Random(1)) == {"mood": "happy"}
    drawn = generate_data(schema, rng=random.Random(1))
    drawn["mood"] = "sad"
    assert generate_data(schema, rng=random.Random(1)) == {"mood": "happy"}
