"""How much memory games may make the server hold: per game, and in all.

What a game registers (its actions and their schemas) and the context held
for it while a result is pending stay in memory as long as the game wants.
Counts alone do not bound that (a thousand one-megabyte schemas are a
gigabyte), so every such byte is accounted here: against a limit per game,
and against one budget for the whole process, so no game can take what the
others need and all of them together cannot exhaust the machine.

Bytes are what Python holds, not the JSON text: ``[[],[],...]`` is 3 bytes
of JSON per item and 56 bytes of Python (:func:`footprint`).
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Hashable
from typing import Any, Final

__all__ = ["MemoryBudget", "footprint"]

_MIB: Final = 1 << 20


class MemoryBudget:
    """Bytes held for games: at most ``per_game`` each, ``total`` in all.

    ``owner`` is any hashable standing for one game's connection (the
    client object). Sizes are what the data takes as text, a lower bound of
    what Python holds for it; the limits are set with that in mind.
    """

    def __init__(self, total: int, per_game: int) -> None:
        if total < 1 or per_game < 1:
            raise ValueError("memory budgets must be >= 1 byte")
        self.total = total
        self.per_game = per_game
        self.used = 0
        self._by_owner: dict[Hashable, int] = {}

    def usage(self, owner: Hashable) -> int:
        """Bytes held for ``owner``."""
        return self._by_owner.get(owner, 0)

    def refusal(self, owner: Hashable, size: int) -> str | None:
        """Why ``size`` more bytes for ``owner`` do not fit (``None``: they do)."""
        if self.usage(owner) + size > self.per_game:
            return f"a game may hold at most {_shown(self.per_game)} on the server"
        if self.used + size > self.total:
            return f"the server's memory budget ({_shown(self.total)}) is used up"
        return None

    def reserve(self, owner: Hashable, size: int) -> str | None:
        """Hold ``size`` bytes for ``owner``; return why not, if they do not fit."""
        why = self.refusal(owner, size)
        if why is None:
            self._by_owner[owner] = self.usage(owner) + size
            self.used += size
        return why

    def release(self, owner: Hashable, size: int) -> None:
        """``owner`` no longer holds ``size`` bytes."""
        left = self.usage(owner) - size
        self.used -= min(size, self.usage(owner))
        if left > 0:
            self._by_owner[owner] = left
        else:
            self._by_owner.pop(owner, None)

    def release_all(self, owner: Hashable) -> None:
        """``owner`` is gone: everything it held is free again."""
        self.used -= self._by_owner.pop(owner, 0)


def footprint(value: Any) -> int:
    """About what ``value`` (parsed JSON) takes in memory, in bytes.

    CPython's sizes, rounded up: a dict 100 bytes and 50 per entry, a list
    56 and 8 per item, a string its :func:`sys.getsizeof`, a number 32;
    ``true``, ``false`` and ``null`` are shared. Never recursive.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            total += 100 + 50 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 56 + 8 * len(item)
            stack.extend(item)
        elif isinstance(item, str):
            total += sys.getsizeof(item)
        elif item is not None and not isinstance(item, bool):
            total += 32
    return total


_REMEMBERED: Final = 256
"""Schemas whose footprint is remembered (the most recently asked)."""
_REMEMBERED_SIZE: Final = 16 << 10
"""Largest footprint remembered: at most 4 MiB of schemas kept alive."""
_footprints: collections.OrderedDict[int, tuple[object, int]] = (
    collections.OrderedDict()
)


def schema_footprint(schema: object) -> int:
    """:func:`footprint` of a registered schema, remembered by identity.

    Registries share one copy of equal schemas (see ``_trio_client``), so a
    game registering the same twenty actions as the last one costs a
    dictionary lookup per action instead of a walk. A schema is never
    changed once registered; the entry holds it, so its id is not reused.
    """
    if schema is None:
        return 0
    key = id(schema)
    known = _footprints.get(key)
    if known is not None and known[0] is schema:
        _footprints.move_to_end(key)
        return known[1]
    size = footprint(schema)
    if size <= _REMEMBERED_SIZE:
        _footprints[key] = (schema, size)
        if len(_footprints) > _REMEMBERED:
            _footprints.popitem(last=False)
    return size


def _shown(size: int) -> str:
    if size % _MIB == 0:
        return f"{size // _MIB} MiB"
    return f"{size} bytes"
