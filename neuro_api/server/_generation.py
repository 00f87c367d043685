"""Schema-valid random data for engines and tools, bounded, off the event loop.

Action schemas come from games, and data for one may be large or slow to
find. :class:`DataGenerator` draws small data at once, on the event loop,
under a small budget (a few microseconds for what actions declare); data that
does not fit that budget is drawn in a worker thread, under the real size
and time limits, with at most ``threads`` such draws at a time. Nothing a
game registers can hold the event loop for longer than the small budget.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Iterator, Mapping
from typing import Any, Final

import trio

from neuro_api._generate import NOT_QUICK, try_quickly
from neuro_api._gil import yielding
from neuro_api.schema import (
    DEFAULT_MAX_SIZE,
    GenerationError,
    GenerationLimitError,
    SchemaError,
    encode_data,
    generate_data,
)

__all__ = ["NOT_QUICK", "DataGenerator"]

QUICK_SIZE: Final = 16 << 10
"""Bytes of data drawn on the event loop; more is drawn in a thread."""
QUICK_TIME: Final = 0.005
"""Seconds a draw may take on the event loop before it moves to a thread."""
_THREAD_GRACE: Final = 1.0
"""Past the time limit, how long to wait for a worker to notice it."""


@contextlib.contextmanager
def _as_generation_error() -> Iterator[None]:
    """Anything but the documented errors is a generation failure too.

    An engine falls back on a :class:`GenerationError` (another action, or a
    fallback answer); an unexpected exception would drop the force instead.
    """
    try:
        yield
    except (GenerationError, SchemaError):
        raise
    except Exception as exc:  # RecursionError, a reference that fails ...
        raise GenerationError(f"cannot generate data: {exc!r}") from exc


class DataGenerator:
    """Random data valid for a schema, within ``max_size`` bytes and ``timeout`` s.

    ``rng`` makes the data repeatable (for a seeded engine); ``threads``
    bounds the worker threads drawing large data at once (later draws wait
    their turn, within their own ``timeout``).
    """

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        timeout: float = 2.0,
        rng: random.Random | None = None,
        threads: int = 2,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size: must be >= 1, got {max_size!r}")
        if timeout <= 0:
            raise ValueError(f"timeout: must be > 0, got {timeout!r}")
        self.max_size = max_size
        self.timeout = timeout
        self.rng = rng or random.Random()
        self._limiter = trio.CapacityLimiter(threads)

    def now(self, schema: Mapping[str, Any] | None) -> Any:
        """Data for ``schema`` drawn at once, or ``NOT_QUICK``.

        ``NOT_QUICK`` (from :mod:`neuro_api._generate`) means the data is
        too large or slow to draw on the event loop: ask :meth:`generate`.
        Raises :class:`~neuro_api.schema.GenerationError` for a schema no
        data can be found for, :class:`~neuro_api.schema.SchemaError` for an
        invalid one.
        """
        with _as_generation_error():
            return try_quickly(
                schema, self.rng, min(self.max_size, QUICK_SIZE), QUICK_TIME
            )

    async def generate(self, schema: Mapping[str, Any] | None) -> Any:
        """Data for ``schema`` (``None`` for an action without data).

        Drawn at once when small, else in a worker thread. Raises
        :class:`~neuro_api.schema.GenerationLimitError` when no valid data
        fits ``max_size`` or was found within ``timeout`` (waiting for a
        thread included), :class:`~neuro_api.schema.GenerationError` and
        :class:`~neuro_api.schema.SchemaError` as :meth:`now`. On
        cancellation the worker is abandoned; it stops at its time limit.
        """
        value = self.now(schema)
        if value is not NOT_QUICK:
            await trio.lowlevel.checkpoint()
            return value
        draw = functools.partial(
            generate_data,
            schema,
            rng=self.rng,
            max_size=self.max_size,
            timeout=self.timeout,
        )
        with trio.move_on_after(self.timeout + _THREAD_GRACE), _as_generation_error():
            return await trio.to_thread.run_sync(
                yielding(draw), limiter=self._limiter, abandon_on_cancel=True
            )
        raise GenerationLimitError(
            f"no valid data within {self.timeout:g} s (the generator is busy)"
        )

    async def generate_json(self, schema: Mapping[str, Any] | None) -> str | None:
        """:meth:`generate`'s data as the JSON text an ``action`` carries."""
        value = await self.generate(schema)
        return None if value is None else encode_data(value)
