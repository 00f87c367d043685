"""Actions as Realtime tools, and the engine's bounded context (no I/O)."""

from __future__ import annotations

import re

import orjson
import pytest

from neuro_api.command import Action
from neuro_api.realtime import GameContexts, ToolSet, tool_name
from neuro_api.realtime._tools import MAX_DESCRIPTION, MAX_TOOLS, MAX_TOOLS_BYTES

ACCEPTED = re.compile(r"[A-Za-z0-9_-]{1,64}")


@pytest.mark.parametrize(
    "name",
    ["play", "move-left", "a" * 64, "place piece!", "é", "", "a" * 65, "x/y", "\x00"],
)
def test_tool_names_are_accepted_by_the_api(name: str) -> None:
    mapped = tool_name(name)
    assert ACCEPTED.fullmatch(mapped)
    assert tool_name(name) == mapped  # stable
    if ACCEPTED.fullmatch(name):
        assert mapped == name


def test_names_that_clean_up_alike_stay_apart() -> None:
    assert tool_name("a b") != tool_name("a!b")
    assert tool_name("a" * 70) != tool_name("a" * 71)


def test_tools_map_back_to_actions_and_data() -> None:
    actions = [
        Action("play", "Play a cell", {"type": "object", "properties": {}}),
        Action("say hi", "Wave", None),
        Action("pick", "Pick", {"type": "integer"}),
    ]
    tools = ToolSet(actions)
    assert [t["name"] for t in tools.tools] == ["play", tool_name("say hi"), "pick"]
    assert tools.answer("play", '{"x": 1}') == (actions[0], '{"x": 1}')
    assert tools.answer(tool_name("say hi"), "{}") == (actions[1], None)
    assert tools.answer("pick", '{"value": 3}') == (actions[2], "3")
    pick = tools.tools[2]["parameters"]
    assert pick["required"] == ["value"]
    with pytest.raises(KeyError):
        tools.answer("nope", "{}")
    with pytest.raises(ValueError, match="value"):
        tools.answer("pick", '{"other": 3}')
    with pytest.raises(ValueError, match="not JSON"):
        tools.answer("pick", "{")


def test_a_tool_set_is_bounded() -> None:
    actions = [Action(f"a{n}", "d", None) for n in range(MAX_TOOLS + 10)]
    tools = ToolSet(actions)
    assert len(tools) == MAX_TOOLS
    assert tools.left_out == 10
    actions = [Action(f"a{n}", "d" * 5000, None) for n in range(MAX_TOOLS + 10)]
    tools = ToolSet(actions)
    assert all(len(t["description"]) == MAX_DESCRIPTION for t in tools.tools)
    assert len(orjson.dumps(tools.tools)) <= MAX_TOOLS_BYTES
    assert tools.left_out == len(actions) - len(tools)


def test_context_keeps_the_newest_lines_within_the_budget() -> None:
    contexts = GameContexts(200)
    for n in range(100):
        contexts.add("g", f"line {n}")
    text = contexts.text("g")
    assert text.endswith("line 99")
    assert "line 0\n" not in text
    assert len(text) <= 200
    assert contexts.chars("g") == len(text) + 1


def test_a_line_longer_than_the_budget_is_cut() -> None:
    contexts = GameContexts(200)
    contexts.add("g", "old")
    contexts.add("g", "x" * 10_000)
    assert len(contexts.text("g")) == 200
    assert contexts.text("g").endswith("[...]")


def test_games_are_forgotten_least_recently_heard_first() -> None:
    contexts = GameContexts(100, max_games=3)
    for game in ("a", "b", "c"):
        contexts.add(game, "hello")
    contexts.add("a", "again")
    contexts.add("d", "new")
    assert len(contexts) == 3
    assert contexts.text("b") == ""
    assert contexts.text("a") == "hello\nagain"
