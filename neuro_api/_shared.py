"""Helpers several parts of the package need, written once.

* exception groups: :func:`leaves`, :func:`first_leaf`, :func:`find_exception`,
  :func:`raise_one`
  (Trio nurseries and Hypercorn nest the real error some groups deep);
* :func:`exponential_delay`, the delay between retries (the supervisor's
  restarts, a game's reconnections);
* :class:`StatusCallback`, a ``task_status`` that hands what a task reports
  to a function;
* :func:`host_port`, an address as URLs write it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Generic, NoReturn, TypeVar

import trio

__all__ = [
    "StatusCallback",
    "exponential_delay",
    "find_exception",
    "first_leaf",
    "host_port",
    "leaves",
    "raise_one",
]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions in ``exc``, exception groups unwrapped at any depth."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def first_leaf(exc: BaseException) -> BaseException:
    """The first exception in ``exc`` that is not a group (``exc`` if none is)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def find_exception(exc: BaseException | None, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc``, its groups and its causes, if any."""
    if exc is None:
        return None
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := find_exception(inner, kind)) is not None:
                return found
    return find_exception(exc.__cause__, kind)


def exponential_delay(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    factor: float = 2.0,
    jitter: float = 0.0,
    rand: float = 0.0,
) -> float:
    """Seconds before retry number ``attempt`` (counted from 0).

    ``min(initial * factor ** attempt, maximum)`` (no overflow, however
    many attempts), reduced by up to ``jitter`` (a fraction) with ``rand``
    in [0, 1), so that things failing together do not retry in lockstep.
    """
    if initial <= 0:
        return 0.0
    try:
        base = min(initial * factor**attempt, maximum)
    except OverflowError:
        base = maximum
    if not math.isfinite(base):
        base = maximum
    return base * (1.0 - jitter * rand)


class StatusCallback(trio.TaskStatus[T], Generic[T]):
    """A ``task_status`` that hands the started value to a callback.

    Lets a wrapper see (or translate, or hold back) what a task reports to
    ``nursery.start``, or learn that it is ready without a nursery.
    """

    def __init__(self, on_started: Callable[[T], None]) -> None:
        self._on_started = on_started

    def started(self, value: T | None = None) -> None:
        """Forward ``value`` to the callback."""
        self._on_started(value)  # type: ignore[arg-type]


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def raise_one(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise what ended a task: the one real error, else the Cancelled.

    Our own nurseries are an implementation detail; a caller should see
    :class:`trio.Cancelled` or the bug itself, not groups of our making.
    More than one real error: the group itself.
    """
    found = list(leaves(group))
    errors = [e for e in found if not isinstance(e, trio.Cancelled)]
    if len(errors) > 1:
        raise group
    chosen = errors[0] if errors else found[0]
    # Raising here would set chosen.__context__ to the group that contains
    # it; keep its own context instead (as trio-websocket does).
    context = chosen.__context__
    try:
        raise chosen
    finally:
        chosen.__context__ = context
        del chosen, context
