"""Helpers of the Realtime tests: a pool (and an engine) on the fake Realtime API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import trio
from fake_realtime import FakeRealtime

from neuro_api.realtime import PoolConfig, RealtimePool


def pool_config(fake: FakeRealtime, **overrides: Any) -> PoolConfig:
    """A pool configuration pointed at ``fake`` (small timeouts for tests)."""
    options: dict[str, Any] = {
        "api_key": fake.key,
        "url": fake.url,
        "connect_timeout": 5.0,
        "close_timeout": 2.0,
        "lease_timeout": 5.0,
    }
    options.update(overrides)
    return PoolConfig(**options)


@contextlib.asynccontextmanager
async def running_pool(
    fake: FakeRealtime, **overrides: Any
) -> AsyncIterator[RealtimePool]:
    """A :class:`RealtimePool` running on ``fake`` for the block."""
    pool = RealtimePool(pool_config(fake, **overrides))
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        yield pool
        nursery.cancel_scope.cancel()
