"""Giving memory back to the system after many games left.

A game connection costs some 30 KiB while it lasts (sockets, WebSocket
state, the game's actions). When games leave, Python frees those objects,
but the allocators keep most of the memory for later: after 1,000 games came
and went, a server held half again its idle size. Once a wave of
disconnections is over, :func:`keep_memory_low` runs a collection and asks
the C allocator to return its free pages (``malloc_trim``, glibc only).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from neuro_api.server._base import AbstractTrioNeuroServer

__all__ = ["keep_memory_low", "return_free_memory"]

LOGGER: Final = logging.getLogger("neuro_api.server")

PERIOD: Final = 5.0
"""Seconds between two looks at the disconnections."""
QUIET: Final = 2
"""Looks without a disconnection before memory is given back: the wave is
over, and what trio still held for the closed connections (their timeouts)
is gone."""
MIN_LEFT: Final = 64
"""Disconnections since the last time worth giving memory back for."""


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


_TRIM: Final = _malloc_trim()


def return_free_memory() -> None:
    """Collect garbage, then return the C allocator's free pages to the system."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


async def keep_memory_low(
    server: AbstractTrioNeuroServer, *, period: float = PERIOD
) -> None:
    """Run for ever: after each wave of disconnections, give memory back.

    Every ``period`` seconds it looks at how many games left; once at least
    64 left since the last time and none for two looks, it calls
    :func:`return_free_memory` (a collection: milliseconds).
    """
    handled = server.stats.disconnections
    seen = handled
    quiet = 0
    while True:
        await trio.sleep(period)
        now = server.stats.disconnections
        quiet = quiet + 1 if now == seen else 0
        seen = now
        if quiet >= QUIET and now - handled >= MIN_LEFT:
            LOGGER.debug("%d games left: returning free memory", now - handled)
            handled = now
            return_free_memory()
