"""How many log lines one game may cause: a burst per window, then a count.

A game sending nothing but bad frames made the server write one error line
per frame (20,000 lines a second from two clients), burying everything else
in the log and the console. Lines are grouped by a key (the game and the
diagnostic id, say): the first ``burst`` lines of a key in a ``window`` are
shown, the rest only counted, and once the window is over one summary line
says how many were held back. The diagnostics themselves are all kept and
counted as before; only what is printed is limited.

All games together are limited too (:data:`ALL_GAMES`): many games, or a
game taking a new title for each connection, are many keys. A summary of one
game's key is a line like any other and is charged to that overall key; once
it is spent, the summary's count is added to the overall key's own, so one
line a window says how much all games had held back.

The caller passes the time (see :func:`current_time`), and shows what comes
back.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Final, TypeAlias

import trio

__all__ = [
    "ALL_GAMES",
    "Key",
    "LogLimiter",
    "Summary",
    "current_time",
    "show_when_due",
    "summary_text",
]

Key: TypeAlias = tuple[str | None, str]
"""``(game, what)``: a diagnostic id, or an event such as ``"connections"``
(``game`` is ``None`` for events of no one game)."""

ALL_GAMES: Final[Key] = (None, "diagnostics of all games")
"""The key of all games' diagnostics together (``burst`` x 20 a window)."""

LOGGER: Final = logging.getLogger("neuro_api.server")
_MAX_KEYS: Final = 4096
_ALL_GAMES_BURSTS: Final = 20
_FLUSH_TICK: Final = 1.0
"""Seconds at least between two wake-ups of :func:`show_when_due`."""


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """Lines of one key held back during one window."""

    key: Key
    count: int
    window: float


@dataclasses.dataclass(slots=True)
class _Window:
    start: float
    shown: int = 0
    held: int = 0


class LogLimiter:
    """At most ``burst`` lines per key per ``window`` seconds, then summaries.

    Remembers at most 4096 keys (a game choosing new titles cannot grow it):
    the oldest is forgotten first, with its summary if lines were held;
    :data:`ALL_GAMES` is never forgotten. Summaries of one game's keys (a
    game in the key) are charged to :data:`ALL_GAMES` before they are
    returned (see the module's docstring).
    """

    def __init__(self, burst: int = 5, window: float = 10.0) -> None:
        if burst < 1 or window <= 0:
            raise ValueError("need burst >= 1 and window > 0")
        self.burst = burst
        self.window = window
        self.all_games_burst = burst * _ALL_GAMES_BURSTS
        """Lines of :data:`ALL_GAMES` shown per window."""
        self.flushing = False
        """Whether a task is waiting to show due summaries (one is enough)."""
        self._windows: collections.OrderedDict[Key, _Window] = collections.OrderedDict()

    def allow(
        self, key: Key, now: float, burst: int | None = None
    ) -> tuple[bool, list[Summary]]:
        """Whether a line of ``key`` may be shown now, and summaries now due.

        ``burst`` replaces the limiter's own for this key. The summaries are
        for windows that ended (this key's, or one forgotten to make room);
        show them before the line.
        """
        due: list[Summary] = []
        shown = self._take(key, now, self.burst if burst is None else burst, 1, due)
        return shown, self._charged(due, now)

    def allow_diagnostic(self, key: Key, now: float) -> tuple[bool, list[Summary]]:
        """:meth:`allow` a diagnostic's line: by its key, then by all games'.

        A line its key lets through is charged to :data:`ALL_GAMES`, and held
        there once all games have used their lines of the window.
        """
        due: list[Summary] = []
        shown = self._take(key, now, self.burst, 1, due)
        if shown:
            shown = self._take(ALL_GAMES, now, self.all_games_burst, 1, due)
        return shown, self._charged(due, now)

    def flush(
        self,
        now: float,
        *,
        final: Callable[[Key], bool] | None = None,
    ) -> list[Summary]:
        """Summaries of every window that ended by ``now``.

        Also of the windows still open whose key ``final`` accepts (a game
        that left). Their keys are forgotten.
        """
        due: list[Summary] = []
        for key, window in list(self._windows.items()):
            if now >= window.start + self.window or (final and final(key)):
                del self._windows[key]
                if window.held:
                    due.append(Summary(key, window.held, self.window))
        return self._charged(due, now)

    def next_due(self) -> float | None:
        """When the earliest window holding lines ends (``None``: none holds)."""
        ends = [w.start + self.window for w in self._windows.values() if w.held]
        return min(ends, default=None)

    def holding(self, key: Key) -> bool:
        """Whether lines of ``key`` are being held back now."""
        window = self._windows.get(key)
        return window is not None and window.held > 0

    def _take(
        self, key: Key, now: float, burst: int, count: int, due: list[Summary]
    ) -> bool:
        """Show one line of ``key`` if within ``burst``, else hold ``count``.

        Summaries of ended or forgotten windows are appended to ``due``.
        """
        window = self._windows.get(key)
        if window is not None and now >= window.start + self.window:
            if window.held:
                due.append(Summary(key, window.held, self.window))
            # Reused, not replaced: an object made in the middle of a burst
            # of connections would outlive it and keep its memory pages.
            window.start, window.shown, window.held = now, 0, 0
        if window is None:
            window = self._windows[key] = _Window(now)
            while len(self._windows) > _MAX_KEYS:
                old_key = next(iter(self._windows))
                if old_key == ALL_GAMES:
                    # Forgetting it would give all games a fresh window.
                    self._windows.move_to_end(old_key)
                    continue
                old = self._windows.pop(old_key)
                if old.held:
                    due.append(Summary(old_key, old.held, self.window))
        if window.shown < burst:
            window.shown += 1
            return True
        window.held += count
        return False

    def _charged(self, due: list[Summary], now: float) -> list[Summary]:
        """The summaries of ``due`` to show, each game's charged to all games'.

        A game's summary that :data:`ALL_GAMES` has no line left for adds its
        count to what all games hold back. Charging can end that key's
        window or forget a key: those summaries are handled the same way.
        """
        shown: list[Summary] = []
        index = 0
        while index < len(due):  # grows while it is read
            summary = due[index]
            index += 1
            if summary.key[0] is None or self._take(
                ALL_GAMES, now, self.all_games_burst, summary.count, due
            ):
                shown.append(summary)
        return shown


async def show_when_due(limiter: LogLimiter, show: Callable[[Summary], None]) -> None:
    """Show each summary ``limiter`` holds once its window ends; then return.

    Run as the limiter's one flushing task: the caller sets
    ``limiter.flushing`` once ``start_soon`` returned, and it is cleared when
    this ends (cancelled or done), so that the next line held back starts
    another.
    Wakes at most once a second (a summary may come up to a second late) and
    shows all that is due then: each wake-up scans every key. An exception
    from ``show`` is logged (the first of this task's) and the next summary
    is shown: this runs beside all games, in the server's upkeep.
    """
    logged = False
    woke = -math.inf
    try:
        while (due_at := limiter.next_due()) is not None:
            await trio.sleep_until(max(due_at, woke + _FLUSH_TICK))
            woke = trio.current_time()
            for summary in limiter.flush(woke):
                try:
                    show(summary)
                except Exception:
                    if not logged:
                        logged = True
                        LOGGER.exception("showing a log summary failed")
    finally:
        limiter.flushing = False


def current_time() -> float:
    """Trio's clock in a run (tests jump it), else the monotonic clock."""
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


def summary_text(summary: Summary) -> str:
    """The line saying what the rate limit held back."""
    game, what = summary.key
    source = f" from {game}" if game else ""
    return f"... {summary.count:,} more {what}{source} in the last {summary.window:g} s"
