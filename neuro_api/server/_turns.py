"""A held game's actions, let go one at a time in the order they came."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator

import trio

__all__ = ["HeldTurns", "Turn"]


class Turn:
    """One action's place in line (see :meth:`HeldTurns.reserve`)."""

    __slots__ = ("event", "key")

    def __init__(self, key: object = None) -> None:
        self.event = trio.Event()
        self.key = key


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
        self._turns: collections.deque[Turn] = collections.deque()

    @property
    def idle(self) -> bool:
        """Released, with no turn waiting or in progress."""
        return not self.held and not self._turns

    def __len__(self) -> int:
        return len(self._turns)

    def reserve(self, key: object = None) -> Turn:
        """Take a place in line now, for a :meth:`turn` taken later.

        The place is kept until that turn ends, or :meth:`give_up` is
        called (when the turn will never be taken). ``key`` identifies it
        for :meth:`has`.
        """
        turn = Turn(key)
        self._turns.append(turn)
        if not self.held and self._turns[0] is turn:
            turn.event.set()
        return turn

    def has(self, key: object) -> bool:
        """Whether a place reserved with ``key`` is in line."""
        return any(turn.key == key for turn in self._turns)

    def give_up(self, turn: Turn) -> None:
        """Leave the line (a reserved place whose turn is not taken)."""
        first = bool(self._turns) and self._turns[0] is turn
        with contextlib.suppress(ValueError):
            self._turns.remove(turn)
        if first and not self.held and self._turns:
            self._turns[0].event.set()

    @contextlib.asynccontextmanager
    async def turn(self, reserved: Turn | None = None) -> AsyncIterator[None]:
        """Wait for this action's turn; the next one starts when it ends.

        ``reserved`` is a place taken with :meth:`reserve` (default: a new
        one, at the end of the line).
        """
        turn = reserved if reserved is not None else self.reserve()
        try:
            await turn.event.wait()
            while self.held and not self._abandoned:
                # Let go, then held again before it ran: wait again.
                turn.event = trio.Event()
                await turn.event.wait()
            yield
        finally:
            self.give_up(turn)

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
