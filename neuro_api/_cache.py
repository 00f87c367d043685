"""Caches keyed by a schema's JSON text, bounded by the size of what they hold.

Games register the same few schemas on every connection, so the work done
for a schema (checks, validators, generation plans) is cached by its JSON
text. A game also chooses those texts: a count bound (1024 entries) let a
thousand one-megabyte schemas stay in memory after their games left. These
caches are bounded by the total length of their keys instead, and do not
keep a schema whose text is longer than a per-entry limit at all (its work is
redone when asked again, which only that schema's game pays for). What a
cached value costs grows with its schema, so the key length stands for it.

Thread-safe: worker threads (data generation, large schema checks) use them
too. A value may be computed twice by two threads at once; one is kept.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

__all__ = ["SizedCache", "sized_cache"]

V = TypeVar("V")

_MISSING: Final = object()


class SizedCache(Generic[V]):
    """A least-recently-used map from ``bytes`` keys, bounded by key length.

    Holds at most ``max_total`` bytes of keys and ``max_entries`` entries (a
    short key may stand for a large value: a compiled pattern, a plan); a key
    longer than ``max_entry`` is never stored.
    """

    def __init__(self, max_total: int, max_entry: int, max_entries: int = 256) -> None:
        if max_entry > max_total or max_entry < 1 or max_entries < 1:
            raise ValueError("need 1 <= max_entry <= max_total and max_entries >= 1")
        self.max_total = max_total
        self.max_entry = max_entry
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[bytes, V] = collections.OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total(self) -> int:
        """Bytes of keys held now."""
        return self._total

    def get(self, key: bytes, default: Any = None) -> Any:
        """The value cached for ``key`` (made the most recent), or ``default``."""
        with self._lock:
            value = self._entries.get(key, _MISSING)
            if value is _MISSING:
                return default
            self._entries.move_to_end(key)
            return value

    def put(self, key: bytes, value: V) -> None:
        """Keep ``value`` for ``key`` unless the key is too long to keep."""
        size = len(key)
        if size > self.max_entry:
            return
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
            self._entries[key] = value
            self._total += size
            while self._total > self.max_total or len(self._entries) > self.max_entries:
                old, _ = self._entries.popitem(last=False)
                self._total -= len(old)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._total = 0


def sized_cache(
    max_total: int, max_entry: int, max_entries: int = 256
) -> Callable[[Callable[[bytes], V]], Callable[[bytes], V]]:
    """Cache a function of one ``bytes`` argument in a :class:`SizedCache`.

    The wrapper has the cache as its ``cache`` attribute (tests clear it).
    Exceptions are not cached: the call is made again next time.
    """

    def decorator(function: Callable[[bytes], V]) -> Callable[[bytes], V]:
        cache: SizedCache[V] = SizedCache(max_total, max_entry, max_entries)

        @functools.wraps(function)
        def wrapper(key: bytes) -> V:
            value = cache.get(key, _MISSING)
            if value is _MISSING:
                value = function(key)
                cache.put(key, value)
            return value  # type: ignore[no-any-return]

        wrapper.cache = cache  # type: ignore[attr-defined]
        return wrapper

    return decorator
