"""Schemas are written by games: nothing in one may freeze, fetch or exhaust.

Each test here is an attack that worked before the hardening of issue 10:
a catastrophic regex run by Python's ``re`` (minutes on the event loop), a
``$ref`` to a URL (fetched by both validators), meta-validation of a large
schema (12 s), data generation without a size bound. A per-test timeout
turns a regression into a failure instead of a hang.
"""

from __future__ import annotations

import json
import random
import socket
import types
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from test_generate import CORPUS

from neuro_api import _generate, _regex, _validators
from neuro_api.command import Action
from neuro_api.schema import (
    GenerationError,
    GenerationLimitError,
    SchemaError,
    check_action,
    encode_data,
    generate_data,
    least_size,
    validate_action_data,
)

EVIL = "^(a+)+$"
"""Exponential for a backtracking engine on ``"a" * 40 + "!"``."""
EVIL_TEXT = "a" * 40 + "!"
DRAFTS = [
    "http://json-schema.org/draft-04/schema#",
    "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-07/schema#",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
]


def ids(found: list[Any]) -> list[str]:
    return [d.id for d in found]


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


# --- regular expressions ------------------------------------------------------


@pytest.mark.timeout(10)
def test_search_runs_a_catastrophic_pattern_in_linear_time() -> None:
    assert not _regex.search(EVIL, EVIL_TEXT)
    assert not _regex.search(EVIL, "a" * 200_000 + "!")
    assert _regex.search(EVIL, "aaaa")
    assert _regex.search("b", "abc")  # unanchored, like JSON Schema


@pytest.mark.timeout(10)
def test_backreferences_are_bounded_too() -> None:
    # fancy-regex backtracks for a backreference; its limit ends the match.
    assert not _regex.search(r"^(a|a)*\1$", "a" * 40 + "b")
    assert _regex.search(r"^(\w+)\1$", "abab")


@pytest.mark.timeout(10)
def test_python_only_patterns_use_the_timed_fallback() -> None:
    # Rust's engines refuse \Z and a{,3}; the regex package matches them.
    assert _regex.search(r"ab\Z", "cab")
    assert not _regex.search(r"ab\Z", "abc")
    assert _regex.search(r"^a{,3}$", "aa")
    # A catastrophic one times out, which counts as no match.
    assert not _regex.search(r"^(a|a)*\Z", EVIL_TEXT)


def test_a_pattern_nobody_can_compile_matches_nothing() -> None:
    assert not _regex.search("(unclosed", "(unclosed")


def test_safe_re_refuses_flags() -> None:
    assert _regex.SafeRe.search("a", "a") is True
    assert _regex.SafeRe.search("a", "b") is None
    with pytest.raises(ValueError, match="flags"):
        _regex.SafeRe.search("a", "a", 2)


def test_generation_cost() -> None:
    cost = _regex.generation_cost
    assert cost("^[a-z]{3}$") == 3 * 26
    assert cost("abc") == 3
    assert (cost("^(((a+)+)+)+$") or 0) >= 100**4
    assert (cost(r"^[\x00-\U0010ffff]{50}$") or 0) > 50_000_000
    assert cost("(a)|(bb)") == 2
    assert cost(r"(ab)\1") == 4
    assert cost("(unclosed") is None


def _reachable(function: types.FunctionType) -> Iterator[types.FunctionType]:
    seen: set[types.FunctionType] = set()
    todo = [function]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        for name in _validators._code_names(current.__code__):
            helper = current.__globals__.get(name)
            if isinstance(helper, types.FunctionType) and helper.__module__.startswith(
                "jsonschema"
            ):
                todo.append(helper)


@pytest.mark.parametrize("cls", _validators._DRAFTS, ids=lambda c: c.__name__)
def test_the_reference_validator_never_reaches_re(cls: Any) -> None:
    """Every keyword, and every helper it calls, sees SafeRe as ``re``.

    If a jsonschema release starts using another ``re`` function, SafeRe
    lacks it: the first assertion names it.
    """
    assert _validators.regex_calls_of(cls) <= {"search"}
    safe = _validators.safe_validator_class(cls)
    for function in safe.VALIDATORS.values():
        if not isinstance(function, types.FunctionType):
            continue
        for reached in _reachable(function):
            if "re" in set(_validators._code_names(reached.__code__)):
                assert reached.__globals__["re"] is _regex.SafeRe, reached


REDOS_SCHEMAS = {
    "pattern": obj(a={"type": "string", "pattern": EVIL}),
    "pattern-with-multipleOf": {
        **obj(a={"type": "string", "pattern": EVIL}),
        "multipleOf": 1,  # the reference validator decides for these
    },
    "patternProperties": {"type": "object", "patternProperties": {EVIL: {}}},
    "additionalProperties": {
        "type": "object",
        "patternProperties": {EVIL: {}},
        "additionalProperties": False,
    },
    "unevaluatedProperties": {
        "type": "object",
        "allOf": [{"patternProperties": {EVIL: {}}}],
        "unevaluatedProperties": False,
    },
    "propertyNames": {"type": "object", "propertyNames": {"pattern": EVIL}},
    "python-only-pattern": obj(a={"type": "string", "pattern": r"^(a|a)*\Z"}),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("schema", REDOS_SCHEMAS.values(), ids=list(REDOS_SCHEMAS))
@pytest.mark.parametrize("draft", DRAFTS, ids=lambda d: d.split("/")[-2])
def test_validation_never_backtracks(schema: dict[str, Any], draft: str) -> None:
    schema = {**schema, "$schema": draft}
    for data in ({"a": EVIL_TEXT}, {EVIL_TEXT: 1}):
        result = validate_action_data(schema, orjson.dumps(data).decode())
        assert result.ok in {True, False}
    # And the reference agrees with jsonschema's own answer on easy input.
    assert validate_action_data(schema, orjson.dumps({"a": "aaa"}).decode()).ok


@pytest.mark.timeout(20)
def test_generated_data_for_two_patterns_is_checked_safely() -> None:
    # The second pattern makes xeger's output for the first fail the
    # first: the old reference check then ran ^(a+)+$ on it.
    schema = obj(a={"type": "string", "allOf": [{"pattern": EVIL}, {"pattern": "!"}]})
    for seed in range(3):
        with pytest.raises(GenerationError):
            generate_data(schema, rng=random.Random(seed))


def test_reference_messages_for_patterns() -> None:
    result = validate_action_data(
        obj(a={"type": "string", "pattern": "^x$"}), '{"a": "y"}'
    )
    assert not result.ok
    assert result.reason == "Invalid action data: data.a: 'y' does not match '^x$'"


# --- references are never fetched -------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP listener; a test asserts nobody connected to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_no_connection(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


def test_a_remote_ref_is_refused_and_never_fetched(listener: socket.socket) -> None:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/cell.json"
    schema = obj(cell={"$ref": url})
    found = check_action(Action("play", "Play", schema))
    assert "action.schema-invalid" in ids(found)
    message = next(d.message for d in found if d.id == "action.schema-invalid")
    assert "never fetched" in message
    with pytest.raises(SchemaError):
        validate_action_data(schema, '{"cell": 1}')
    with pytest.raises(SchemaError):
        generate_data(schema)
    assert_no_connection(listener)


def test_an_unknown_meta_schema_is_not_fetched(listener: socket.socket) -> None:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/meta.json"
    schema = {**obj(cell={"type": "integer"}), "$schema": url}
    # Validated as the latest draft, like jsonschema does, without a warning.
    assert "action.schema-invalid" not in ids(check_action(Action("p", "P", schema)))
    assert validate_action_data(schema, '{"cell": 1}').ok
    assert not validate_action_data(schema, '{"cell": "x"}').ok
    assert isinstance(generate_data(schema)["cell"], int)
    assert_no_connection(listener)


def test_local_refs_still_resolve() -> None:
    schema = {
        **obj(cell={"$ref": "#/$defs/cell"}),
        "$defs": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
    }
    assert "action.schema-invalid" not in ids(check_action(Action("p", "P", schema)))
    assert validate_action_data(schema, '{"cell": 3}').ok
    assert not validate_action_data(schema, '{"cell": 10}').ok


@pytest.mark.timeout(10)
def test_meta_validation_of_a_large_schema_is_fast() -> None:
    # 30,000 properties: about a megabyte. jsonschema's check_schema took
    # 12 s for it, on the event loop, for one registration frame.
    schema = {
        "type": "object",
        "properties": {
            f"p{i}": {"type": "integer", "minimum": 0} for i in range(30_000)
        },
    }
    assert len(orjson.dumps(schema)) > 1_000_000
    assert "action.schema-invalid" not in ids(check_action(Action("p", "P", schema)))
    broken = {**schema, "required": "p1"}
    assert "action.schema-invalid" in ids(check_action(Action("p", "P", broken)))


# --- generation is bounded ---------------------------------------------------------

HUGE = {
    "string": obj(a={"type": "string", "minLength": 10_000_000}),
    "array": obj(a={"type": "array", "minItems": 10_000_000}),
    "nested-arrays": obj(
        a={
            "type": "array",
            "minItems": 300,
            "items": {
                "type": "array",
                "minItems": 300,
                "items": {"type": "array", "minItems": 300},
            },
        }
    ),
    "many-required": {
        "type": "object",
        "properties": {
            f"p{i}": {"type": "string", "minLength": 100} for i in range(700)
        },
        "required": [f"p{i}" for i in range(700)],
    },
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("schema", HUGE.values(), ids=list(HUGE))
def test_huge_data_is_refused_not_built(schema: dict[str, Any]) -> None:
    with pytest.raises(GenerationLimitError, match="bytes"):
        generate_data(schema, rng=random.Random(1))
    found = check_action(Action("big", "Big", schema), max_generated_size=65536)
    assert "action.schema-unanswerable" in ids(found)
    warning = next(d for d in found if d.id == "action.schema-unanswerable")
    assert "within 65536 bytes" in warning.message


@pytest.mark.parametrize("size", [1000, 20_000, 60_000])
def test_data_stays_within_the_budget(size: int) -> None:
    schema = obj(
        a={
            "type": "array",
            "minItems": 10,
            "maxItems": 10_000,
            "items": {"type": "integer"},
        },
        b={"type": "string", "minLength": 0, "maxLength": 100_000},
    )
    for seed in range(5):
        try:
            value = generate_data(schema, rng=random.Random(seed), max_size=size)
        except GenerationLimitError:
            continue
        assert len(orjson.dumps(value)) <= size


def test_a_budget_just_big_enough_is_enough() -> None:
    schema = obj(a={"type": "string", "minLength": 50_000, "maxLength": 50_000})
    value = generate_data(schema, max_size=50_100)
    assert len(value["a"]) == 50_000
    assert "action.schema-unanswerable" not in ids(
        check_action(Action("a", "A", schema), max_generated_size=50_100)
    )
    with pytest.raises(GenerationLimitError):
        generate_data(schema, max_size=49_000)


@pytest.mark.timeout(10)
def test_the_time_limit_ends_generation() -> None:
    # Unique items are found by comparing with every item so far: slow.
    schema = obj(
        a={
            "type": "array",
            "minItems": 20_000,
            "uniqueItems": True,
            "items": {"type": "integer", "minimum": 0, "maximum": 10**9},
        }
    )
    with pytest.raises(GenerationLimitError, match=r"within 0\.05 s"):
        generate_data(schema, max_size=1 << 20, timeout=0.05)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("pattern", ["^(((a+)+)+)+$", r"^[\x00-\U0010ffff]{50}$"])
def test_patterns_too_large_to_expand_are_refused(pattern: str) -> None:
    with pytest.raises(GenerationError, match="too large to expand"):
        generate_data(obj(a={"type": "string", "pattern": pattern}))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("pattern", ["^((a{100}){100}){100}$", "(?:a{1000}){1001}"])
def test_patterns_too_large_to_compile_make_the_schema_invalid(pattern: str) -> None:
    # Rust's engine refuses them for size; the regex package would take
    # seconds and hundreds of MiB to compile them.
    schema = obj(a={"type": "string", "pattern": pattern})
    found = check_action(Action("a", "A", schema))
    invalid = [d for d in found if d.id == "action.schema-invalid"]
    assert invalid
    assert "is too large to use" in invalid[0].message
    with pytest.raises(SchemaError, match="too large"):
        generate_data(schema)


NUMBERS = {
    "tiny-multiple": obj(a={"type": "number", "multipleOf": 5e-324}),
    "whole-float-range": obj(
        a={"type": "number", "minimum": -1.7e308, "maximum": 1.7e308}
    ),
    "top-of-float-range": obj(
        a={"type": "number", "minimum": 1e308, "maximum": 1.7e308}
    ),
    "huge-integer": obj(a={"type": "integer", "minimum": 1e308}),
    "huge-integer-step": obj(a={"type": "integer", "minimum": 1e300, "multipleOf": 7}),
    "tiny-multiple-with-bounds": obj(
        a={"type": "number", "minimum": -1e300, "maximum": 1e300, "multipleOf": 1e-300}
    ),
}


@pytest.mark.parametrize("schema", NUMBERS.values(), ids=list(NUMBERS))
def test_extreme_numbers_give_valid_json_or_a_generation_error(
    schema: dict[str, Any],
) -> None:
    # Before: OverflowError from the generator, TypeError from orjson.
    for seed in range(5):
        try:
            value = generate_data(schema, rng=random.Random(seed))
        except GenerationError:
            continue
        text = encode_data(value)
        assert json.loads(text) == value
        assert validate_action_data(schema, text).ok


def test_integers_stay_within_64_bits_when_the_schema_allows() -> None:
    schema = obj(a={"type": "integer", "minimum": -1e30, "maximum": 1e30})
    for seed in range(20):
        value = generate_data(schema, rng=random.Random(seed))["a"]
        assert -(2**63) <= value < 2**63


def test_encode_data() -> None:
    assert encode_data({"a": 10**30}) == '{"a":1000000000000000000000000000000}'
    assert encode_data([1, "x"]) == '[1,"x"]'


def test_try_quickly_leaves_large_data_to_a_slower_path() -> None:
    rng = random.Random(1)
    small = obj(a={"type": "integer", "minimum": 1, "maximum": 3})
    assert _generate.try_quickly(small, rng, 4096, 1.0)["a"] in {1, 2, 3}
    big = obj(a={"type": "string", "minLength": 10_000, "maxLength": 10_000})
    assert _generate.try_quickly(big, rng, 4096, 1.0) is _generate.NOT_QUICK
    plan = _generate._plan_for(big)
    assert plan is not None
    assert plan.slow  # remembered: not tried quickly again
    assert len(generate_data(big, max_size=20_000)["a"]) == 10_000
    assert _generate.try_quickly(None, rng, 4096, 1.0) is None


def test_try_quickly_does_not_plan_a_long_schema() -> None:
    schema = {"type": "object", "properties": {f"p{i}": {} for i in range(2000)}}
    assert (
        _generate.try_quickly(schema, random.Random(), 4096, 1.0) is _generate.NOT_QUICK
    )


# --- the lower bound of valid data's size ----------------------------------------

LEAST = [
    ({"type": "string", "minLength": 10}, 12),
    ({"type": "array", "minItems": 3, "items": {"type": "integer"}}, 7),
    ({"type": "object", "required": ["ab"], "properties": {"ab": {"const": 1}}}, 8),
    ({"enum": ["long value", 1]}, 1),
    ({"const": [1, 2]}, 5),
    ({"anyOf": [{"type": "string", "minLength": 5}, {"type": "integer"}]}, 1),
    ({"allOf": [{"type": "string", "minLength": 5}, {"minLength": 9}]}, 7),
    ({"type": ["string", "null"], "minLength": 8}, 4),
    ({"minLength": 100}, 0),  # any type: a number would do
    ({"type": "object", "minProperties": 2}, 11),
    (True, 0),
    (False, 0),
]


@pytest.mark.parametrize(("schema", "size"), LEAST)
def test_least_size(schema: Any, size: int) -> None:
    assert least_size(schema) == size


@pytest.mark.timeout(10)
def test_least_size_of_recursive_references_is_bounded() -> None:
    schema = {"anyOf": [{"$ref": "#"}, {"$ref": "#"}], "type": "array", "minItems": 2}
    assert least_size(schema) >= 5


def test_least_size_is_a_lower_bound_of_generated_data() -> None:
    for schema in CORPUS.values():
        bound = least_size(schema)
        for seed in range(5):
            try:
                value = generate_data(schema, rng=random.Random(seed))
            except GenerationError:
                continue
            assert len(orjson.dumps(value)) >= bound, schema


# --- work a schema can cause, whatever its size (review of issue 10) -------------


def reference_bomb(levels: int) -> dict[str, Any]:
    """2 ** levels evaluations at one place, in about 100 bytes per level."""
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "object"}
    return {"type": "object", "$defs": defs, "not": {"$ref": "#/$defs/d0"}}


@pytest.mark.timeout(10)
def test_a_reference_bomb_is_refused_at_registration() -> None:
    schema = reference_bomb(30)
    found = check_action(Action("boom", "Boom", schema))
    costly = [d for d in found if d.id == "action.schema-too-complex"]
    assert costly
    assert "more than 256 subschemas" in costly[0].message
    assert "action.schema-invalid" not in ids(found)
    with pytest.raises(SchemaError):
        validate_action_data(schema, "{}")
    with pytest.raises(SchemaError):
        generate_data(schema)


@pytest.mark.timeout(10)
def test_a_reference_back_to_the_same_place_is_refused() -> None:
    for schema in (
        {"type": "object", "allOf": [{"$ref": "#"}]},
        {
            "type": "object",
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"not": {"$ref": "#/$defs/a"}}},
            "anyOf": [{"$ref": "#/$defs/a"}],
        },
    ):
        found = check_action(Action("loop", "Loop", schema))
        messages = [d.message for d in found if d.id == "action.schema-too-complex"]
        assert messages
        assert "leads back to itself" in messages[0]


def test_a_recursive_data_structure_is_fine() -> None:
    tree = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 5},
            "children": {"type": "array", "maxItems": 2, "items": {"$ref": "#"}},
        },
        "required": ["name"],
    }
    assert "action.schema-invalid" not in ids(check_action(Action("t", "T", tree)))
    assert validate_action_data(tree, '{"name": "a", "children": [{"name": "b"}]}').ok
    assert not validate_action_data(tree, '{"name": "a", "children": [{}]}').ok
    assert validate_action_data(tree, orjson.dumps(generate_data(tree)).decode()).ok


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "not": {"$ref": "#/$defs/missing"}},
        {"type": "object", "properties": {"a": {"$ref": "#nope"}}},
        {"type": "object", "properties": {"a": {"$dynamicRef": "#meta"}}},
    ],
)
def test_a_local_reference_that_does_not_resolve_is_refused(
    schema: dict[str, Any],
) -> None:
    # Before: registered, then every force on it ended in force.engine-error.
    found = check_action(Action("r", "R", schema))
    messages = [d.message for d in found if d.id == "action.schema-invalid"]
    assert messages
    assert "cannot be resolved within the schema" in messages[0]


def nested_choices(levels: int, branches: int) -> dict[str, Any]:
    """Plans that multiply: each ``anyOf`` branch is planned with the rest."""
    node: dict[str, Any] = {"type": "integer"}
    for _ in range(levels):
        node = {
            "type": "object",
            "anyOf": [{"minProperties": 0} for _ in range(branches)],
            "properties": {"p": node},
        }
    return node


@pytest.mark.timeout(10)
def test_planning_is_bounded() -> None:
    schema = nested_choices(4, 30)  # 30 ** 4 plans, in 2.6 KB
    assert _generate.try_quickly(schema, random.Random(1), 16 << 10, 0.005) is (
        _generate.NOT_QUICK
    )
    refusals = []
    for seed in range(5):  # parts planned in time may still give a value
        try:
            value = generate_data(schema, rng=random.Random(seed))
        except GenerationError as exc:
            refusals.append(str(exc))
            continue
        assert validate_action_data(schema, orjson.dumps(value).decode()).ok
    assert all("too large to plan" in refusal for refusal in refusals)


@pytest.mark.timeout(10)
def test_least_size_works_each_schema_object_out_once() -> None:
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(13)
    }
    defs["d13"] = {"enum": [0] * 3000}
    assert least_size({"$defs": defs, "allOf": [{"$ref": "#/$defs/d0"}]}) == 1


def test_data_checked_by_the_slow_engine_is_never_drawn_on_the_loop() -> None:
    # A backreference needs the regex package (it lets other threads run,
    # not its caller): such schemas are generated in a worker thread.
    schema = obj(a={"type": "string", "maxLength": 5, "not": {"pattern": "(a)\\1"}})
    assert _generate.try_quickly(schema, random.Random(1), 16 << 10, 1.0) is (
        _generate.NOT_QUICK
    )
    assert validate_action_data(schema, '{"a": "ab"}').ok
    assert not validate_action_data(schema, '{"a": "aa"}').ok
    value = generate_data(schema, rng=random.Random(1))
    assert "aa" not in value["a"]
