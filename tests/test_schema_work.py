"""Checking a value against a game's schema takes bounded work, whatever the schema.

A second review of issue 10 found schemas of a few kilobytes that passed
registration and then froze the event loop for seconds to minutes: in-place
fan-out through draft-07 ``dependencies``, references the analysis resolved
differently from the validators (``$id``-relative, percent-encoded), and
work that multiplies with the value's depth (``allOf`` of branches that all
send the same property back). Each is refused, or bounded per value; real
schemas (long unions, recursive trees, dynamic references) still pass. A
per-test timeout turns a regression into a failure instead of a hang.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from test_generate import CORPUS

from neuro_api import _complexity, _generate, _regex, _steps, _validators
from neuro_api.command import Action
from neuro_api.schema import (
    GenerationError,
    SchemaError,
    check_action,
    generate_data,
    validate_action_data,
)

pytestmark = pytest.mark.timeout(20)

DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"


def ids(schema: dict[str, Any]) -> list[str]:
    return [d.id for d in check_action(Action("a", "A", schema))]


def refused_as_too_complex(schema: dict[str, Any]) -> str:
    found = check_action(Action("a", "A", schema))
    costly = [d for d in found if d.id == "action.schema-too-complex"]
    assert costly, [d.id for d in found]
    assert "action.rejected" not in [d.id for d in found]  # reported once...
    with pytest.raises(SchemaError):  # ...and never checked against
        validate_action_data(schema, "{}")
    return costly[0].message


# --- in place: every value would cost too much -----------------------------------


def dependencies_bomb(levels: int) -> dict[str, Any]:
    """Draft-07 ``dependencies`` doubling per level (5.6 s at 27 levels)."""
    defs: dict[str, Any] = {
        f"D{i}": {
            "dependencies": {
                "k": {"$ref": f"#/definitions/D{i + 1}"},
                "j": {"$ref": f"#/definitions/D{i + 1}"},
            }
        }
        for i in range(levels)
    }
    defs[f"D{levels}"] = {"type": "object"}
    return {
        "$schema": DRAFT7,
        "type": "object",
        "definitions": defs,
        "properties": {"k": {"const": 1}, "j": {"const": 1}},
        "required": ["k", "j"],
        "dependencies": {"k": {"$ref": "#/definitions/D0"}},
    }


def test_dependencies_count_in_place() -> None:
    message = refused_as_too_complex(dependencies_bomb(27))
    assert "more than 256 subschemas" in message
    assert "dependencies" in message


def test_references_resolve_as_the_validators_resolve_them() -> None:
    # Relative to each $id, and percent-encoded pointers: before, both
    # counted as nothing, and the reference validator took about a minute.
    levels = 20
    # Each reference is relative to the $id of the schema it is in (a
    # directory below the root's).
    by_id: dict[str, Any] = {
        f"a{i}": {
            "$id": f"https://example.com/deep/a{i}",
            "allOf": [{"$ref": f"a{i + 1}"}, {"$ref": f"a{i + 1}#"}],
        }
        for i in range(levels)
    }
    by_id[f"a{levels}"] = {
        "$id": f"https://example.com/deep/a{levels}",
        "type": "object",
    }
    refused_as_too_complex(
        {
            "$id": "https://example.com/root",
            "type": "object",
            "$defs": by_id,
            "$ref": "deep/a0",
        }
    )
    encoded: dict[str, Any] = {
        f"a {i}": {"allOf": [{"$ref": f"#/$defs/a%20{i + 1}"}] * 2}
        for i in range(levels)
    }
    encoded[f"a {levels}"] = {"type": "object"}
    refused_as_too_complex(
        {"type": "object", "$defs": encoded, "$ref": "#/$defs/a%200"}
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "other.json"}}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/a%2"}}},
        {"type": "object", "properties": {"a": {"$dynamicRef": "#nowhere"}}},
    ],
)
def test_a_reference_that_resolves_to_nothing_is_invalid(
    schema: dict[str, Any],
) -> None:
    found = check_action(Action("a", "A", schema))
    invalid = [d.message for d in found if d.id == "action.schema-invalid"]
    assert invalid
    assert "cannot be resolved" in invalid[0]


# --- real schemas pass ----------------------------------------------------------


def union(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "item": {
                "oneOf": [
                    {"const": f"item_{i}", "description": f"Item {i}"}
                    for i in range(count)
                ]
            }
        },
        "required": ["item"],
    }


def tagged_union(count: int) -> dict[str, Any]:
    """As pydantic writes a discriminated union of ``count`` models."""
    return {
        "type": "object",
        "$defs": {
            f"C{i}": {
                "type": "object",
                "properties": {"kind": {"const": f"k{i}"}, "arg": {"type": "string"}},
                "required": ["kind"],
            }
            for i in range(count)
        },
        "properties": {
            "cmd": {
                "oneOf": [{"$ref": f"#/$defs/C{i}"} for i in range(count)],
                "discriminator": {"propertyName": "kind"},
            }
        },
        "required": ["cmd"],
    }


TREE = {
    "type": "object",
    "properties": {
        "v": {"type": "integer"},
        "left": {"$ref": "#"},
        "right": {"$ref": "#"},
    },
}
DYNAMIC_TREE = {
    "$id": "https://example.com/tree",
    "$dynamicAnchor": "node",
    "type": "object",
    "properties": {
        "data": True,
        "children": {"type": "array", "items": {"$dynamicRef": "#node"}},
    },
}
RECURSIVE_2019 = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "$recursiveAnchor": True,
    "type": "object",
    "properties": {"c": {"$recursiveRef": "#"}},
}
GENERIC_LIST = {
    # A list whose items are whatever schema extends it: $dynamicRef may
    # land on either anchor, never on both at once.
    "$id": "https://example.com/root",
    "$dynamicAnchor": "node",
    "type": "object",
    "$ref": "list",
    "$defs": {
        "list": {
            "$id": "list",
            "$dynamicAnchor": "node",
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$dynamicRef": "#node"}}
            },
        }
    },
    "properties": {"extra": {"type": "string"}},
}
NESTED_ID = {
    # The $ref in p is relative to p's own $id, not the root's.
    "type": "object",
    "$defs": {"a0": {"$id": "https://example.com/deep/a0", "type": "integer"}},
    "properties": {"p": {"$id": "https://example.com/deep/p", "$ref": "a0"}},
}
META = {
    "type": "object",
    "properties": {"s": {"$ref": "https://json-schema.org/draft/2020-12/schema"}},
}


@pytest.mark.parametrize(
    "schema",
    [
        union(70),
        union(250),
        tagged_union(70),
        TREE,
        DYNAMIC_TREE,
        RECURSIVE_2019,
        GENERIC_LIST,
        NESTED_ID,
        META,
        {
            "type": "object",
            "allOf": [
                {"properties": {"a": {"$ref": "#"}}},
                {"properties": {"b": {"$ref": "#"}}},
            ],
        },
    ],
    ids=[
        "union-70",
        "union-250",
        "tagged-union-70",
        "binary-tree",
        "dynamic-tree",
        "recursive-2019",
        "generic-list",
        "nested-id",
        "meta-schema",
        "allOf-of-trees",
    ],
)
def test_real_schemas_are_not_refused(schema: dict[str, Any]) -> None:
    found = ids(schema)
    assert "action.schema-invalid" not in found
    assert "action.schema-too-complex" not in found
    assert "action.schema-depth-limited" not in found


def test_no_schema_of_the_corpus_is_refused() -> None:
    for name, schema in CORPUS.items():
        problem = _validators.schema_problem_kind(schema)
        assert problem is None or problem[0] != _validators.TOO_COMPLEX, name
        assert _validators.depth_limited(schema) is None, name


def test_a_union_too_long_to_check_says_to_use_enum() -> None:
    found = check_action(Action("a", "A", union(300)))
    costly = [d for d in found if d.id == "action.schema-too-complex"]
    assert costly
    assert "enum" in costly[0].kind.hint


# --- in depth: work that multiplies with the value's depth --------------------------


def fan(branches: int) -> dict[str, Any]:
    """``L = allOf: [M0..Mk]``, each ``Mi`` sending ``x`` back to ``L``.

    860 bytes at 8 branches; the reference validator took 6.5 s on a value
    5 levels deep.
    """
    defs: dict[str, Any] = {
        "L": {
            "type": "object",
            "allOf": [{"$ref": f"#/$defs/M{j}"} for j in range(branches)],
        }
    }
    for j in range(branches):
        defs[f"M{j}"] = {"properties": {"x": {"$ref": "#/$defs/L"}}}
    return {"type": "object", "$defs": defs, "$ref": "#/$defs/L"}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def test_work_growing_with_depth_is_bounded_per_value() -> None:
    schema = fan(8)
    assert "action.schema-depth-limited" in ids(schema)
    # 10 subschemas at the top, 8 * 9 one level down, 8 * 8 * 9 > 256 below.
    assert _validators.depth_limited(schema) == 2
    # Shallow data is checked as usual...
    assert validate_action_data(schema, json.dumps(nested(2))).ok
    assert not validate_action_data(schema, '{"x": 5}').ok
    # ...deep data is refused before any checking (it would be 8 ** 30).
    result = validate_action_data(schema, json.dumps(nested(30)))
    assert not result.ok
    assert "nested too deep for this action's schema" in result.reason
    assert _validators.too_costly_to_check(schema, nested(30))
    assert not _validators.is_valid(schema, nested(30))


def test_the_work_of_a_value_is_added_up_by_depth() -> None:
    complexity = _complexity.analyse(fan(2), DRAFT2020)
    assert complexity.problem is None
    profile = complexity.profile
    # The top: itself, L, the two {$ref} in allOf and the two M; then twice
    # ({$ref: L} and L's closure of 5) per level, doubling.
    assert profile[:3] == (6, 12, 24)
    assert complexity.work({}, 10**9) == profile[0]
    assert complexity.work({"x": {}}, 10**9) == profile[0] + profile[1]
    assert complexity.work(nested(40), 10**6) is None  # stops counting early


def test_a_tree_repeats_and_costs_the_same_at_every_depth() -> None:
    complexity = _complexity.analyse(TREE, DRAFT2020)
    assert complexity.problem is None
    assert complexity.profile == ()  # no per-value work to add up
    assert complexity.place_cost == 2  # a child: {$ref: #} and the root


def test_slow_growth_is_found_beyond_the_first_levels() -> None:
    # Doubling once every 21 levels: past 256 at a depth of about 170.
    defs: dict[str, Any] = {
        f"L{i}": {"properties": {"a": {"$ref": f"#/$defs/L{i + 1}"}}} for i in range(20)
    }
    defs["L20"] = {"allOf": [{"$ref": "#/$defs/L0"}, {"$ref": "#/$defs/L0"}]}
    schema = {"type": "object", "$defs": defs, "$ref": "#/$defs/L0"}
    depth = _validators.depth_limited(schema)
    assert depth is not None
    assert 100 < depth < _complexity.MAX_DEPTH_STEPS


def test_generated_data_of_a_deep_schema_is_checkable() -> None:
    schema = fan(8) | {"required": ["x"]}
    for seed in range(3):
        try:
            value = generate_data(schema, rng=random.Random(seed))
        except GenerationError:
            continue
        assert not _validators.too_costly_to_check(schema, value)


# --- the reference validator's step budget ---------------------------------------


def test_steps_are_counted_and_run_out() -> None:
    validator = _validators.get_validator(union(250))
    with (
        _steps.reference_steps(100) as budget,
        pytest.raises(_steps.CheckTooCostly),
    ):
        validator.is_valid({"item": "none of them"})
    assert budget.exhausted
    with _steps.reference_steps(10_000) as budget:
        assert validator.is_valid({"item": "item_3"})
    assert not budget.exhausted
    assert budget.left < 10_000  # it counted


def test_an_inner_budget_takes_from_the_outer_one() -> None:
    with _steps.reference_steps(50) as outer:
        with _steps.reference_steps(1_000) as inner:
            assert inner.left == 50  # no more than the outer one has
            inner.left -= 20
        assert outer.left == 30
        with _steps.reference_steps(10) as small:
            small.left -= 10
        assert outer.left == 20
        with _steps.reference_steps(100) as spent:
            spent.left = -1  # ran out: of the outer one's 20
        assert outer.exhausted
    with _steps.reference_steps(50) as outer:
        with _steps.reference_steps(10) as small:
            small.left = -1  # ran out of its own 10 only
        assert outer.left == 40


def test_invalid_data_costly_to_describe_is_refused_in_bounded_steps() -> None:
    # 250 failed branches per item, each building its errors: millions of
    # steps without a budget; the answer is still "invalid", with a reason.
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "array", "items": union(250)["properties"]["item"]}
        },
    }
    data = json.dumps({"a": [999] * 2_000})
    with _steps.reference_steps(10**9) as budget:
        result = validate_action_data(schema, data)
    assert not result.ok
    assert result.reason.startswith("Invalid action data: data.a[0]")
    assert "(and at least" in result.reason  # cut short: there are more
    used = 10**9 - budget.left
    steps = _validators.steps_to_check(schema, {"a": [999] * 2_000})
    assert used <= 2 * steps  # two questions: is it valid, and what is wrong


def test_quick_generation_stops_checking_after_its_steps() -> None:
    # multipleOf: every drawn value goes to the reference validator, whose
    # checks of this schema cost thousands of steps: not quick.
    schema = {
        "type": "object",
        "properties": {
            "a": {
                "type": "array",
                "minItems": 50,
                "maxItems": 50,
                "items": union(250)["properties"]["item"],
            },
            "n": {"type": "number", "multipleOf": 0.5},
        },
        "required": ["a", "n"],
    }
    rng = random.Random(1)
    with _steps.reference_steps(10**9) as budget:
        result = _generate.try_quickly(schema, rng, 16 << 10, 5.0)
    assert result is _generate.NOT_QUICK
    assert 10**9 - budget.left == _generate.QUICK_STEPS
    # Elsewhere (a worker thread), with the real limits, it is generated.
    value = generate_data(schema, rng=rng)
    assert validate_action_data(schema, json.dumps(value)).ok


# --- backtracking patterns: compiled once, matched within one budget --------------


SLOW = r"(x)\1|^(a|a)*b$"
"""A backreference (the ``regex`` package, not Rust's linear engine), and
catastrophic on ``aaa...a!``: each match runs out its 20 ms."""


def test_matching_is_bounded_per_question_not_per_string() -> None:
    schema = {"type": "object", "patternProperties": {SLOW: {"type": "integer"}}}
    assert _validators.schema_problem(schema) is None
    value = {"a" * 30 + f"{i}!": 1 for i in range(50)}  # 50 slow matches
    with (
        _steps.reference_steps(10**9) as budget,
        pytest.raises(_steps.CheckTooCostly),
    ):
        _validators.get_validator(schema).is_valid(value)
    assert budget.exhausted
    assert budget.regex_seconds <= 0  # ran out of seconds (about 3 matches)
    # Through the public check: "invalid", within the budget.
    result = validate_action_data(schema, json.dumps(value))
    assert not result.ok


def test_a_long_pattern_is_compiled_once() -> None:
    alternatives = "|".join(f"w{i:05d}" for i in range(1400))
    pattern = f"^(a)\\1(?:{alternatives})$"  # 9.8 KB, a backreference
    key = pattern.encode()
    cache = _regex._matcher.cache  # type: ignore[attr-defined]
    assert _regex.search(pattern, "aaw00001")
    assert cache.get(key) is not None  # kept: it was compiled anew per call


def test_a_pattern_too_long_to_keep_is_refused() -> None:
    pattern = "a" * (_regex.MAX_PATTERN + 1)
    found = check_action(
        Action("a", "A", {"type": "object", "properties": {"s": {"pattern": pattern}}})
    )
    invalid = [d.message for d in found if d.id == "action.schema-invalid"]
    assert invalid
    assert "is too long" in invalid[0]


# --- the analysis's own bounds, and older drafts ------------------------------------


def test_older_drafts_are_analysed_with_their_own_keywords() -> None:
    draft4_tree = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {
            "t": {"type": "array", "items": [{"$ref": "#"}, {"type": "integer"}]}
        },
    }
    assert _validators.schema_problem(draft4_tree) is None
    assert _validators.depth_limited(draft4_tree) is None
    draft3_loop = {
        "$schema": "http://json-schema.org/draft-03/schema#",
        "type": "object",
        "extends": {"$ref": "#"},
    }
    problem = _validators.schema_problem_kind(draft3_loop)
    assert problem is not None
    assert problem[0] == _validators.TOO_COMPLEX
    assert "leads back to itself" in problem[1]


def test_the_analysis_itself_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = {"type": "object", "properties": {f"p{i}": {} for i in range(20)}}
    monkeypatch.setattr(_complexity, "MAX_NODES", 10)
    found = _complexity.analyse(wide, DRAFT2020)
    assert found.problem == "it has more than 10 subschemas to analyse"
    monkeypatch.undo()
    monkeypatch.setattr(_complexity, "_MAX_WORK", 5)
    found = _complexity.analyse(fan(2), DRAFT2020)
    assert found.problem == "its references are too involved to analyse"


def test_places_past_the_profile_cost_too_much_unless_it_repeats() -> None:
    ending = _complexity.Complexity(profile=(1, 300), repeats_from=None)
    assert ending.work([1], 10**6) == 301
    assert ending.work([[1]], 10**6) is None  # deeper than worked out
    repeating = _complexity.Complexity(profile=(1, 300, 2), repeats_from=1)
    assert repeating.work([[[1]]], 10**6) == 1 + 300 + 2 + 300
    assert repeating.depth_limited == 1
