"""A held game's actions, let go one at a time in the order they came."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator

import trio

__all__ = ["HeldTurns"]


class _Turn:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()


class HeldTurns:
    """Actions waiting while a game is held, then sent in arrival order.

    Each action takes a turn (:meth:`turn`); while :attr:`held`, every turn
    waits. :meth:`release` starts the first, and each turn, once over (its
    frame sent, or failed, or cancelled), starts the next, so frames leave in
    the order their actions were made even though Trio wakes tasks in no
    set order. Holding again while turns are being let go stops after the
    turn in progress (a turn let go but not yet running waits again, first
    in line). :meth:`abandon` wakes every turn at once (the connection
    ends); the owner then refuses them.
    """

    __slots__ = ("_abandoned", "_turns", "held")

    def __init__(self) -> None:
        self.held = True
        self._abandoned = False
        self._turns: collections.deque[_Turn] = collections.deque()

    @property
    def idle(self) -> bool:
        """Released, with no turn waiting or in progress."""
        return not self.held and not self._turns

    def __len__(self) -> int:
        return len(self._turns)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for this action's turn; the next one starts when it ends."""
        turn = _Turn()
        self._turns.append(turn)
        if not self.held and self._turns[0] is turn:
            turn.event.set()
        try:
            await turn.event.wait()
            while self.held and not self._abandoned:
                # Let go, then held again before it ran: wait again.
                turn.event = trio.Event()
                await turn.event.wait()
            yield
        finally:
            first = bool(self._turns) and self._turns[0] is turn
            with contextlib.suppress(ValueError):
                self._turns.remove(turn)
            if first and not self.held and self._turns:
                self._turns[0].event.set()

    def release(self) -> None:
        """Let the turns go, first come first."""
        self.held = False
        if self._turns:
            self._turns[0].event.set()

    def abandon(self) -> None:
        """Wake every turn now (their owner refuses them: it is closing)."""
        self.held = False
        self._abandoned = True
        for turn in self._turns:
            turn.event.set()
