"""Checks whose cost grows with what a game or a client sent, off the loop when large.

Checking a registration or validating data takes time in proportion to the
schema and the data: microseconds for what games usually send, up to a
second for a frame's worth (a megabyte) of either. Small work is done at
once; large work in a worker thread (two at a time per run), so the event
loop, and every other game, keeps going meanwhile; the thread gives the
loop its turn often (:mod:`neuro_api._gil`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import orjson
import trio

from neuro_api._gil import yielding
from neuro_api.command import Action
from neuro_api.diagnostics import Diagnostic
from neuro_api.schema import ValidationResult, check_action, validate_action_data

__all__ = ["INLINE_BYTES", "check_actions", "validate_data"]

INLINE_BYTES: Final = 64 << 10
"""Schema and data text checked on the event loop; more goes to a thread."""

T = TypeVar("T")

_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "neuro_api_checks_limiter"
)


def _limiter() -> trio.CapacityLimiter:
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(2)
        _LIMITER.set(limiter)
        return limiter


def _size(schema: Mapping[str, Any] | None) -> int:
    if schema is None:
        return 0
    try:
        return len(orjson.dumps(schema))
    except TypeError:  # too deep to encode: the check says so, at once
        return 0


async def _run(work: Callable[[], T], size: int) -> T:
    if size <= INLINE_BYTES:
        await trio.lowlevel.checkpoint()
        return work()
    return await trio.to_thread.run_sync(
        yielding(work), limiter=_limiter(), abandon_on_cancel=True
    )


async def validate_data(
    schema: Mapping[str, Any] | None, data: str | None
) -> ValidationResult:
    """:func:`~neuro_api.schema.validate_action_data`, in a thread when large.

    Raises :class:`~neuro_api.schema.SchemaError` for an invalid schema.
    """
    size = _size(schema) + (0 if data is None else len(data))
    return await _run(functools.partial(validate_action_data, schema, data), size)


async def check_actions(
    actions: Sequence[Action], *, game: str | None, max_generated_size: int
) -> list[list[Diagnostic]]:
    """:func:`~neuro_api.schema.check_action` of each action, in a thread when large."""

    def work() -> list[list[Diagnostic]]:
        return [
            check_action(action, game=game, max_generated_size=max_generated_size)
            for action in actions
        ]

    return await _run(work, sum(_size(action.schema) for action in actions))
