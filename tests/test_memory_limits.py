"""What games make the server keep is bounded, per game and in all (item 5).

Before issue 10, the per-game caps were counts (1,000 actions, 1,000 held
messages), 40 games held 881 MiB, and the schema caches kept about 5 MiB per
unique schema (1,024 entries) after their games left.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest
import trio
import trio.testing
from server_helpers import PASS, RecordingServer, connect, start_server

from neuro_api import _fastparse, _generate, _validators
from neuro_api.command import Action
from neuro_api.schema import check_action, generate_data, validate_action_data
from neuro_api.server import ServerConfig, _memory
from neuro_api.server._budget import MemoryBudget, footprint
from neuro_api.server._trio_client import _SHARED_SCHEMAS, _shared


def test_footprint_counts_what_python_holds() -> None:
    # 3 bytes of JSON per empty list, 56 of Python.
    assert footprint([[]] * 1000) >= 56 * 1000
    assert footprint({"a": "x" * 1000}) > 1000
    assert footprint(None) == footprint(True) == 0
    deep: list[object] = []
    for _ in range(100_000):  # no recursion limit
        deep = [deep]
    assert footprint(deep) > 100_000


def test_budget_per_game_and_in_all() -> None:
    budget = MemoryBudget(total=100, per_game=60)
    assert budget.reserve("a", 50) is None
    assert "at most 60 bytes" in (budget.reserve("a", 20) or "")
    assert budget.reserve("b", 40) is None
    assert "budget (100 bytes) is used up" in (budget.reserve("b", 20) or "")
    budget.release("a", 30)
    assert budget.reserve("b", 20) is None
    assert (budget.usage("a"), budget.usage("b"), budget.used) == (20, 60, 80)
    budget.release_all("b")
    assert (budget.usage("b"), budget.used) == (0, 20)
    budget.release("a", 1000)  # never below zero
    assert budget.used == 0
    with pytest.raises(ValueError, match="budgets"):
        MemoryBudget(0, 1)


def big_action(name: str, size: int) -> Action:
    return Action(name, "Big", {"type": "object", "description": "x" * size})


async def test_a_game_cannot_register_more_than_its_share(
    nursery: trio.Nursery,
) -> None:
    # Four of these actions fit, not five.
    size = footprint(("a0", "Big", big_action("a0", 10_000).schema))
    server = RecordingServer(
        ServerConfig(max_game_memory=4 * size + 100, memory_budget=1 << 20)
    )
    info = await start_server(nursery, server)
    async with connect(info.url, "Greedy") as game:
        await game.startup()
        await game.register(*(big_action(f"a{i}", 10_000) for i in range(6)))
        found = await server.wait_diag("action.memory-limit", game="Greedy")
        assert "2 action(s) not registered (a4, a5)" in found.message
        assert f"at most {4 * size + 100} bytes" in found.message
        client = server.client_of(game)
        assert list(client.actions) == ["a0", "a1", "a2", "a3"]
        # Unregistering frees its share: the next registration fits.
        await game.unregister("a0")
        await game.register(big_action("a6", 10_000))
        await server.settle(game)
        assert "a6" in client.actions
        used = server.memory.usage(client)
        assert used == 4 * size
        await game.startup()  # clears every action
        await server.settle(game)
        assert server.memory.usage(client) == 0
        await game.register(big_action("b0", 10_000))
        await server.settle(game)
    await server.wait_until(lambda: bool(server.disconnected))
    assert server.memory.used == 0  # the game left


async def test_all_games_together_stay_within_the_budget(nursery: trio.Nursery) -> None:
    config = ServerConfig(max_game_memory=30_000, memory_budget=50_000)
    server = RecordingServer(config)
    info = await start_server(nursery, server)
    async with connect(info.url, "One") as one, connect(info.url, "Two") as two:
        await one.startup()
        await two.startup()
        await one.register(big_action("one", 25_000))
        await server.settle(one)
        await two.register(big_action("two", 25_000))
        found = await server.wait_diag("action.memory-limit", game="Two")
        assert "memory budget (50000 bytes) is used up" in found.message
    await server.wait_until(lambda: len(server.disconnected) == 2)
    assert server.memory.used == 0


async def test_held_context_is_dropped_when_the_game_has_no_room(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer(
        ServerConfig(max_game_memory=20_000, memory_budget=1 << 20)
    )
    info = await start_server(nursery, server)
    async with connect(info.url, "Full") as game:
        await game.startup()
        await game.register(PASS, big_action("big", 17_000))
        await game.force("pass")
        action = await game.expect_action()
        await game.context("a" * 2000)
        await game.context("b" * 2000)  # no room: the older one goes
        dropped = await server.wait_diag("context.dropped", game="Full")
        assert "at most 20000 bytes" in dropped.message
        assert "the oldest held message was dropped" in dropped.message
        await game.context("c" * 5000)  # too big even alone: dropped itself
        itself = await server.wait_diag("context.dropped", game="Full", count=2)
        assert "this message was dropped" in itself.message
        await game.result(action.id, True, "passed")
        await server.wait_until(lambda: "b" * 2000 in server.messages())
        client = server.client_of(game)
        assert server.memory.usage(client) < 20_000
    assert "a" * 2000 not in server.messages()
    assert "c" * 5000 not in server.messages()


def distinct_schema(index: int, padding: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f"p{index}": {"type": "integer", "description": "x" * padding}},
    }


def test_schema_caches_are_bounded_by_size() -> None:
    # 200 distinct schemas of about 40 KB: 8 MB of text in all.
    for index in range(200):
        schema = distinct_schema(index, 40_000)
        check_action(Action("a", "A", schema))
        assert validate_action_data(schema, "{}").ok
        generate_data(schema, rng=random.Random(index))
        _fastparse._any_too_deep([schema])
    for cache in (
        _validators._problem_for_text.cache,  # type: ignore[attr-defined]
        _validators._validator_for_text.cache,  # type: ignore[attr-defined]
        _validators._check_for_text.cache,  # type: ignore[attr-defined]
        _generate._plan_for_text.cache,  # type: ignore[attr-defined]
        _fastparse._SHALLOW_SCHEMAS,
    ):
        assert cache.total <= cache.max_total
    assert _validators._check_for_text.cache.total > 0  # type: ignore[attr-defined]
    # A schema over the per-entry limit is never kept.
    huge = distinct_schema(-1, 300_000)
    assert validate_action_data(huge, "{}").ok
    assert len(_validators._validator_for_text.cache) <= 8 << 20  # type: ignore[attr-defined]


def test_shared_schema_copies_are_bounded_by_size() -> None:
    for index in range(2000):
        _shared(distinct_schema(index, 1000))
    assert 0 < _SHARED_SCHEMAS.total <= 1 << 20
    big = distinct_schema(0, 5000)
    assert _shared(big) is big  # too big to share


async def test_memory_is_given_back_after_a_wave_of_departures(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    monkeypatch.setattr(
        _memory, "return_free_memory", lambda: calls.append(trio.current_time())
    )
    server = RecordingServer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_memory.keep_memory_low, server)
        await trio.sleep(1)
        for _ in range(4):  # a wave of 100 departures over 20 s
            server.stats.disconnections += 25
            await trio.sleep(5)
        assert calls == []  # still leaving
        await trio.sleep(11)
        assert len(calls) == 1  # two quiet looks after the wave
        await trio.sleep(60)
        assert len(calls) == 1  # nothing new to give back
        server.stats.disconnections += 10  # too few to bother
        await trio.sleep(60)
        assert len(calls) == 1
        nursery.cancel_scope.cancel()


def test_return_free_memory_runs() -> None:
    _memory.return_free_memory()  # a collection and malloc_trim where glibc


def test_schema_footprints_are_remembered_by_identity_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from neuro_api.server import _budget  # noqa: PLC0415 (module under test)

    walks: list[object] = []
    real = _budget.footprint

    def counting(value: object) -> int:
        walks.append(value)
        return real(value)

    monkeypatch.setattr(_budget, "footprint", counting)
    monkeypatch.setattr(_budget, "_footprints", collections.OrderedDict())
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    size = _budget.schema_footprint(schema)
    assert size == real(schema)
    assert _budget.schema_footprint(schema) == size
    assert walks == [schema]  # the second time: remembered
    equal_copy = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert _budget.schema_footprint(equal_copy) == size
    assert len(walks) == 2  # another object: walked (it may change)
    assert _budget.schema_footprint(None) == 0
    # Bounded: only the most recent are kept, and no large schema.
    schemas = [{"n": i} for i in range(_budget._REMEMBERED + 10)]
    for s in schemas:
        _budget.schema_footprint(s)
    assert len(_budget._footprints) == _budget._REMEMBERED
    big = {"enum": ["x" * 100] * 1000}
    _budget.schema_footprint(big)
    assert id(big) not in _budget._footprints


@pytest.mark.parametrize(
    "action",
    [
        Action("n", "d"),
        Action("név" * 10, "d" * 1000, {"type": "object", "properties": {}}),
        Action("emoji", "🎮" * 3, {"type": "object", "required": ["a"]}),
    ],
)
def test_an_actions_size_is_its_footprint(action: Action) -> None:
    from neuro_api.server._budget import footprint  # noqa: PLC0415
    from neuro_api.server._recording import _size  # noqa: PLC0415 (private)

    assert _size(action) == footprint((action.name, action.description, action.schema))
