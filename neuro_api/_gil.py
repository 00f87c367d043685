"""Long work in a worker thread gives the event loop its turn.

CPython runs one thread's Python at a time (the GIL). The event loop's
thread gives the GIL up at every system call, many times per loop turn; a
worker thread busy with a game's large schema takes it each time, and keeps
it until the interpreter's switch interval (5 ms) forces it back. So while
one game's registration was checked for a second, the loop served a few
hundred frames instead of tens of thousands, for every game ("convoy
effect"): one game starved the others although its work was off the loop.

Work run through :func:`yielding` calls :func:`share` from its hot loops
(schema analysis, keyword walks, validation steps, data generation). About
every :data:`SLICE` seconds, :func:`share` sleeps for zero seconds, which
hands the GIL at once to a thread waiting for it: the loop waits at most
about a slice, not a switch interval. Elsewhere (on the loop's own thread,
where small checks run inline) :func:`share` does nothing, so the loop never
gives its turn away. Code that runs in C or Rust without returning to Python
(jsonschema-rs compiling a schema) cannot share; its run time is bounded by
the size limits instead.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["SLICE", "share", "yielding"]

T = TypeVar("T")

SLICE: Final = 0.0002
"""Seconds of work between two turns given to a waiting thread."""

_EVERY: Final = 32
"""Calls of :func:`share` between two looks at the clock."""


class _State(threading.local):
    active = False
    countdown = _EVERY
    last = 0.0


_STATE = _State()
_LOCK = threading.Lock()


class _Working:
    threads = 0
    """Threads inside :func:`yielding` now: while none is, :func:`share`
    returns at once (one attribute read), so the loop's own inline work pays
    next to nothing."""


_WORKING = _Working()


def _give_way() -> None:
    time.sleep(0)  # releases the GIL; a waiting thread takes it


def share() -> None:
    """Let a waiting thread run if this work has had its slice.

    Cheap enough for a hot loop: a thread-local flag and a countdown, with a
    look at the clock every few dozen calls.
    """
    if not _WORKING.threads:
        return
    state = _STATE
    if not state.active:
        return
    state.countdown -= 1
    if state.countdown > 0:
        return
    state.countdown = _EVERY
    if time.perf_counter() - state.last >= SLICE:
        _give_way()
        state.last = time.perf_counter()


def yielding(work: Callable[[], T]) -> Callable[[], T]:
    """``work``, calling which in a worker thread makes :func:`share` active."""

    @functools.wraps(work)
    def run() -> T:
        state = _STATE
        outer = state.active
        state.active = True
        state.last = time.perf_counter()
        with _LOCK:
            _WORKING.threads += 1
        try:
            return work()
        finally:
            with _LOCK:
                _WORKING.threads -= 1
            state.active = outer

    return run
