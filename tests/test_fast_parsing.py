"""The parser's fast paths give exactly what the full parser gives.

``parse_game_frame`` first tries a fast path for the common frames and falls
back to the full parser (which reads every field and records notes) when the
fast path declines. Here frames near the fast paths' edges (missing, extra,
null and mistyped fields) are parsed both ways and compared: the same
message type, the same fields, the same notes, or the same error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuro_api import _fastparse, _parsing
from neuro_api.command import (
    ActionResult,
    Context,
    ForceActions,
    ForcePriority,
    ProtocolError,
    parse_game_frame,
)

ODD_VALUES: list[Any] = [None, True, 0, 1.5, "", "x", [], ["a"], {}, {"k": 1}]
values = st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=8))
name_lists = st.one_of(
    st.lists(st.text(max_size=8), max_size=4),
    st.lists(values, max_size=3),
    values,
)

# Each field: a valid value, mostly, or an odd one now and then.
FIELDS: dict[str, dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]] = {
    "actions/force": {
        "state": (st.one_of(st.none(), st.text(max_size=8)), values),
        "query": (st.text(max_size=8), values),
        "action_names": (st.lists(st.text(max_size=8), max_size=4), name_lists),
        "ephemeral_context": (st.booleans(), values),
        "priority": (st.sampled_from([p.value for p in ForcePriority]), values),
    },
    "action/result": {
        "id": (st.text(max_size=8), values),
        "success": (st.booleans(), values),
        "message": (st.one_of(st.none(), st.text(max_size=8)), values),
    },
    "context": {
        "message": (st.text(max_size=8), values),
        "silent": (st.booleans(), values),
    },
    "startup": {},
    "shutdown/ready": {},
}


@st.composite
def frames(draw: st.DrawFn) -> str:
    command = draw(st.sampled_from(sorted(FIELDS)))
    fields = FIELDS[command]
    data = {
        key: draw(odd if draw(st.integers(0, 5)) == 0 else valid)
        for key, (valid, odd) in fields.items()
        if draw(st.integers(0, 7))  # now and then a field is missing
    }
    if draw(st.integers(0, 8)) == 0:
        data[draw(st.sampled_from(["extra", "id", "names"]))] = draw(values)
    frame: dict[str, Any] = {"command": command, "game": "Game"}
    shape = draw(st.integers(0, 12))
    if shape == 0:
        frame["data"] = draw(values)  # data itself of a wrong type
    elif shape != 1 or fields:  # shape 1 and no fields: no data at all
        frame["data"] = data
    if draw(st.integers(0, 12)) == 0:
        frame["extra"] = draw(values)
    if draw(st.integers(0, 12)) == 0:
        frame["game"] = draw(values)
    return orjson.dumps(frame).decode()


def _full(text: str) -> Any:
    """What the full parser alone makes of ``text`` (message or error)."""
    try:
        return _parsing._parse_object(
            orjson.loads(text), _parsing.GAME_PARSERS, with_game=True
        )
    except ProtocolError as exc:
        return exc


def _fields(message: Any) -> dict[str, Any]:
    return {
        field.name: getattr(message, field.name)
        for field in dataclasses.fields(message)
    }


@settings(max_examples=600, deadline=None)
@given(text=frames())
def test_the_fast_paths_agree_with_the_full_parser(text: str) -> None:
    expected = _full(text)
    try:
        got: Any = parse_game_frame(text)
    except ProtocolError as exc:
        got = exc
    assert type(got) is type(expected)
    if isinstance(expected, ProtocolError):
        assert str(got) == str(expected)
    else:
        assert _fields(got) == _fields(expected)  # notes included


@pytest.mark.parametrize(
    ("built", "made"),
    [
        (
            _fastparse._build_force(
                "g", None, "q", True, ForcePriority.HIGH, ("a", "b")
            ),
            ForceActions(
                game="g",
                state=None,
                query="q",
                ephemeral_context=True,
                priority=ForcePriority.HIGH,
                action_names=("a", "b"),
            ),
        ),
        (
            _fastparse._build_result("g", "7", False, "no"),
            ActionResult(game="g", id="7", success=False, message="no"),
        ),
        (
            _fastparse._build_context("g", "hi", True),
            Context(game="g", message="hi", silent=True),
        ),
    ],
    ids=["force", "result", "context"],
)
def test_fast_builders_make_what_init_makes(built: Any, made: Any) -> None:
    assert type(built) is type(made)
    assert _fields(built) == _fields(made)
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.game = "other"


def test_a_builder_out_of_date_with_its_class_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="out of date"):
        _fastparse._slot_setters(Context, "game", "message")


def _wrapped(levels: int) -> dict[str, Any]:
    """A schema of exactly ``levels`` nested objects (``{}`` is one level)."""
    schema: dict[str, Any] = {}
    for _ in range(levels - 1):
        schema = {"not": schema}
    return schema


def _register(*schemas: dict[str, Any]) -> Any:
    actions = [
        {"name": f"a{index}", "description": "d", "schema": schema}
        for index, schema in enumerate(schemas)
    ]
    frame = {"command": "actions/register", "game": "G", "data": {"actions": actions}}
    return parse_game_frame(orjson.dumps(frame).decode())


@pytest.mark.parametrize("repeat", [1, 2], ids=["first-time", "seen-before"])
def test_schema_depth_limit_holds_for_schemas_seen_before(repeat: int) -> None:
    """Schemas found shallow are remembered; the limit stays exact."""
    limit = _parsing.MAX_SCHEMA_DEPTH
    for _ in range(repeat):
        ok = _register({"type": "object"}, _wrapped(limit))
        assert [a.name for a in ok.actions] == ["a0", "a1"]
        assert not ok.rejected
        deep = _register({"type": "object"}, _wrapped(limit + 1))
        assert [a.name for a in deep.actions] == ["a0"]
        (problem,) = deep.rejected
        assert f"nested deeper than {limit} levels" in problem.detail
