"""Long checks and generation in worker threads give the event loop its turn.

A game registering a megabyte of schema had a worker thread checking it for
about a second; the thread held the GIL for a whole switch interval (5 ms)
each time the loop made a system call, and the loop, serving every other
game, slowed a hundredfold (the flood client of ``test_attacks`` waited
seconds for its close). The work now gives way often; the effect on the
loop's throughput is measured in ``benchmarks/bench_gil.py``, the mechanism
here.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from neuro_api import _gil
from neuro_api.command import Action
from neuro_api.schema import check_action, validate_action_data
from neuro_api.server._checks import INLINE_BYTES, check_actions, validate_data
from neuro_api.server._generation import DataGenerator

pytestmark = pytest.mark.timeout(30)

WIDE = Action(
    "wide",
    "A large schema: checked in a worker thread",
    {
        "type": "object",
        "properties": {f"p{i}": {"type": "integer", "minimum": 0} for i in range(6000)},
    },
)


class GiveWays:
    """Counts the turns given, by thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[str] = []
        monkeypatch.setattr(_gil, "SLICE", 0.0)  # every look at the clock
        monkeypatch.setattr(_gil, "_give_way", self._record)

    def _record(self) -> None:
        self.threads.append(threading.current_thread().name)

    @property
    def on_the_loop(self) -> int:
        return self.threads.count(threading.main_thread().name)

    @property
    def elsewhere(self) -> int:
        return len(self.threads) - self.on_the_loop


@pytest.fixture
def give_ways(monkeypatch: pytest.MonkeyPatch) -> GiveWays:
    return GiveWays(monkeypatch)


async def test_a_large_registration_check_gives_way(give_ways: GiveWays) -> None:
    assert len(str(WIDE.schema)) > INLINE_BYTES  # so it goes to a thread
    [diagnostics] = await check_actions([WIDE], game="g", max_generated_size=1 << 20)
    assert not [d for d in diagnostics if d.severity == "error"]
    # Analysis and keyword walks over 6,000 properties: many turns given.
    assert give_ways.elsewhere > 100
    assert give_ways.on_the_loop == 0


async def test_large_data_validation_gives_way(give_ways: GiveWays) -> None:
    # A backreference: jsonschema-rs cannot take it, Python's validator runs.
    schema = {"type": "array", "items": {"type": "string", "pattern": "^(a)\\1$"}}
    data = "[" + ",".join(['"aa"'] * 20_000) + "]"
    assert len(data) > INLINE_BYTES
    result = await validate_data(schema, data)
    assert "steps" in result.reason  # it worked through its whole step budget
    assert give_ways.elsewhere > 100


async def test_generation_in_a_thread_gives_way(give_ways: GiveWays) -> None:
    schema = {"type": "array", "minItems": 20_000, "items": {"type": "string"}}
    generator = DataGenerator(rng=random.Random(1), max_size=1 << 20, timeout=10)
    value = await generator.generate(schema)
    assert len(value) >= 20_000
    assert give_ways.elsewhere > 10
    assert give_ways.on_the_loop == 0


async def test_small_checks_on_the_loop_keep_its_turn(give_ways: GiveWays) -> None:
    small = Action("small", "Small", {"type": "object", "properties": {"a": {}}})
    await check_actions([small], game="g", max_generated_size=1 << 20)
    await validate_data(small.schema, '{"a": 1}')
    # And the same large work called directly, not through a worker:
    check_action(WIDE)
    validate_action_data(WIDE.schema, "{}")
    assert give_ways.threads == []


def test_share_is_inactive_outside_yielding(give_ways: GiveWays) -> None:
    def busy() -> None:
        for _ in range(10_000):
            _gil.share()

    thread = threading.Thread(target=busy)
    thread.start()
    thread.join()
    assert give_ways.threads == []
    thread = threading.Thread(target=_gil.yielding(busy))
    thread.start()
    thread.join()
    # Every _EVERY-th call looks at the clock; a zero slice always gives way.
    assert len(give_ways.threads) == 10_000 // 32


def test_yielding_nests_and_restores(give_ways: GiveWays) -> None:
    seen: list[bool] = []

    def inner() -> Any:
        seen.append(_gil._STATE.active)
        raise ValueError("boom")

    def outer() -> None:
        with pytest.raises(ValueError, match="boom"):
            _gil.yielding(inner)()
        seen.append(_gil._STATE.active)

    _gil.yielding(outer)()
    assert seen == [True, True]
    assert _gil._STATE.active is False
