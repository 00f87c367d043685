"""Caches keyed by schema text are bounded by what they hold, not by count."""

from __future__ import annotations

import threading

import pytest

from neuro_api._cache import SizedCache, sized_cache


def test_bounded_by_the_total_size_of_keys() -> None:
    cache: SizedCache[int] = SizedCache(max_total=10, max_entry=4)
    for index, key in enumerate([b"aaaa", b"bbbb", b"cc"]):
        cache.put(key, index)
    assert cache.total == 10
    cache.put(b"dd", 3)  # evicts the oldest: aaaa
    assert cache.get(b"aaaa") is None
    assert cache.get(b"bbbb") == 1
    assert cache.total == 8
    assert len(cache) == 3


def test_least_recently_used_goes_first() -> None:
    cache: SizedCache[int] = SizedCache(max_total=6, max_entry=2)
    cache.put(b"aa", 1)
    cache.put(b"bb", 2)
    cache.put(b"cc", 3)
    assert cache.get(b"aa") == 1  # now the most recent
    cache.put(b"dd", 4)
    assert cache.get(b"bb") is None
    assert cache.get(b"aa") == 1


def test_an_entry_too_long_is_never_kept() -> None:
    cache: SizedCache[int] = SizedCache(max_total=100, max_entry=10)
    cache.put(b"x" * 11, 1)
    assert len(cache) == 0
    assert cache.get(b"x" * 11, "missing") == "missing"


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_entry"):
        SizedCache(max_total=1, max_entry=2)


def test_decorator_caches_values_not_exceptions() -> None:
    calls: list[bytes] = []

    @sized_cache(max_total=100, max_entry=50)
    def work(key: bytes) -> int | None:
        calls.append(key)
        if key == b"bad":
            raise ValueError(key)
        return None if key == b"none" else len(key)

    assert work(b"abc") == 3
    assert work(b"abc") == 3
    assert work(b"none") is None
    assert work(b"none") is None  # None is a value like any other
    for _ in range(2):
        with pytest.raises(ValueError, match="bad"):
            work(b"bad")
    assert calls == [b"abc", b"none", b"bad", b"bad"]
    work.cache.clear()  # type: ignore[attr-defined]
    assert work(b"abc") == 3
    assert calls[-1] == b"abc"


def test_threads_share_one_cache_safely() -> None:
    cache: SizedCache[int] = SizedCache(max_total=1000, max_entry=10)

    def fill(offset: int) -> None:
        for index in range(2000):
            key = str(offset * 10_000 + index % 300).encode()
            cache.put(key, index)
            cache.get(key)

    threads = [threading.Thread(target=fill, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.total <= 1000
    assert cache.total == sum(len(key) for key in cache._entries)
