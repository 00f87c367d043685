"""A step budget for the reference validator: its work per question, bounded.

jsonschema (the reference validator) is pure Python: a step (one keyword
evaluated at one place) takes about a microsecond, ten when it builds the
errors of a failed ``oneOf``, and it holds the interpreter meanwhile. How
many steps a question takes depends on the schema a game wrote and on the
value: a oneOf of 250 constants over 10,000 items is millions. Every keyword
of the validators built here counts its evaluations
(:func:`counted`) against the budget of the :func:`reference_steps` block
around the question, and past it raises :class:`CheckTooCostly`.

A budget is per thread (a question asked in a worker thread has its own).
Blocks nest: an inner block gets at most what the outer one has left, and
what it uses is taken from the outer one, so a caller can bound a whole
series of questions (data generation on the event loop does).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from neuro_api._gil import share

__all__ = [
    "REFERENCE_STEPS",
    "REGEX_SECONDS",
    "STEPS_PER_SUBSCHEMA",
    "CheckTooCostly",
    "StepBudget",
    "counted",
    "current",
    "reference_steps",
    "steps_for",
]

REFERENCE_STEPS: Final = 10_000
"""Steps for one question, plus :data:`STEPS_PER_SUBSCHEMA` for each
subschema the schema may check at each place of the value (so the bound
grows with the value's size and the schema's cost per place, as the real
work does): milliseconds for the data of real actions."""
REGEX_SECONDS: Final = 0.05
"""Seconds one question may spend in the ``regex`` package (the patterns
Rust's linear engine does not take; each match also stops after 20 ms)."""
STEPS_PER_SUBSCHEMA: Final = 4
"""Steps allowed per subschema checked at one place (a step is one keyword:
a subschema has a few)."""


class CheckTooCostly(Exception):
    """The reference validator used up its :func:`reference_steps`."""


class StepBudget:
    """Steps (and seconds of backtracking regex) left in one block."""

    __slots__ = ("left", "regex_seconds")

    def __init__(self, left: int, regex_seconds: float = REGEX_SECONDS) -> None:
        self.left = left
        self.regex_seconds = regex_seconds

    def spent_on_regex(self, seconds: float) -> None:
        """Take ``seconds`` of a match; raise :class:`CheckTooCostly` if out."""
        self.regex_seconds -= seconds
        if self.regex_seconds <= 0:
            self.left = -1
            raise CheckTooCostly

    @property
    def exhausted(self) -> bool:
        """Whether a question in the block ran out of steps (``left`` is -1)."""
        return self.left < 0


class _Current(threading.local):
    budget: StepBudget | None = None


_CURRENT: Final = _Current()


def current() -> StepBudget | None:
    """The budget of the innermost :func:`reference_steps` block, if any."""
    return _CURRENT.budget


def steps_for(value: Any, place_cost: int = 1) -> int:
    """The steps to allow for checking ``value`` (see :data:`REFERENCE_STEPS`).

    ``place_cost`` is the most subschemas the schema checks at one place
    (:attr:`neuro_api._complexity.Complexity.place_cost`).
    """
    places = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            places += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            places += len(item)
            stack.extend(item)
    return REFERENCE_STEPS + STEPS_PER_SUBSCHEMA * place_cost * (places + 1)


@contextlib.contextmanager
def reference_steps(limit: int) -> Iterator[StepBudget]:
    """Let the reference validator take ``limit`` steps in this block.

    Past them, a keyword evaluation raises :class:`CheckTooCostly` (out of
    ``iter_errors`` or ``is_valid``); likewise past :data:`REGEX_SECONDS` of
    matching with the ``regex`` package. Inside another block, at most what
    that one has left; what is used is taken from it too.
    """
    outer = _CURRENT.budget
    seconds = REGEX_SECONDS
    if outer is not None:
        limit = min(limit, max(outer.left, 0))
        seconds = min(seconds, max(outer.regex_seconds, 0.0))
    budget = StepBudget(limit, seconds)
    _CURRENT.budget = budget
    try:
        yield budget
    finally:
        _CURRENT.budget = outer
        if outer is not None:
            outer.left -= limit - max(budget.left, 0)
            outer.regex_seconds -= seconds - max(budget.regex_seconds, 0.0)
            if budget.exhausted and outer.left <= 0:
                outer.left = -1  # it ran out because the outer one did


def counted(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a jsonschema keyword) counting against the budget."""

    @functools.wraps(function)
    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        share()
        budget = _CURRENT.budget
        if budget is not None:
            if budget.left <= 0:
                budget.left = -1
                raise CheckTooCostly
            budget.left -= 1
        return function(validator, value, instance, schema)

    return keyword
