"""Tic-tac-toe against Neuro: a complete game on :mod:`neuro_api.trio_ws`.

The player ("O", played at random by this program) and Neuro ("X") take
turns; they start in turn, game after game. On Neuro's turn the game forces
its ``play`` action; a move on a taken cell (or out of turn) gets a failing
result telling her why, so she tries again. Every move and the outcome are
sent as context. Start a Neuro server, then::

    python examples/tic_tac_toe.py --url ws://127.0.0.1:8000 --games 3
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import sys
from collections.abc import Sequence
from typing import Any, Final

import trio

from neuro_api.api import ActionFailed, NotConnected
from neuro_api.command import Action
from neuro_api.trio_ws import NeuroGameClient

LOGGER: Final = logging.getLogger("tic_tac_toe")

NEURO: Final = "X"
PLAYER: Final = "O"
DRAW: Final = "draw"

PLAY: Final = Action(
    "play",
    "Place your X on a free cell. Cells are numbered 1 to 9, left to right, "
    "top to bottom.",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)

_LINES: Final = (
    (0, 1, 2),
    (3, 4, 5),
    (6, 7, 8),
    (0, 3, 6),
    (1, 4, 7),
    (2, 5, 8),
    (0, 4, 8),
    (2, 4, 6),
)


class Board:
    """Nine cells, numbered 1-9 row by row; each empty, "X" or "O"."""

    def __init__(self) -> None:
        self.cells: list[str | None] = [None] * 9

    def free_cells(self) -> list[int]:
        """Return the numbers of the empty cells."""
        return [n for n, mark in enumerate(self.cells, start=1) if mark is None]

    def place(self, cell: int, mark: str) -> None:
        """Put ``mark`` on ``cell``; ValueError if it is taken."""
        if self.cells[cell - 1] is not None:
            raise ValueError(f"cell {cell} is taken")
        self.cells[cell - 1] = mark

    def outcome(self) -> str | None:
        """Return the winner's mark, ``"draw"``, or None while playing."""
        for line in _LINES:
            marks = {self.cells[i] for i in line}
            if len(marks) == 1 and None not in marks:
                return marks.pop()
        return DRAW if not self.free_cells() else None

    def render(self) -> str:
        """Return the board as text; free cells show their number."""
        shown = [mark or str(n) for n, mark in enumerate(self.cells, start=1)]
        rows = [" | ".join(shown[i : i + 3]) for i in (0, 3, 6)]
        return "\n---------\n".join(rows)


class TicTacToe:
    """The game: one board at a time, the player "O" against Neuro "X".

    After a failed move Neuro retries the force by herself, but only a few
    times: if no new move comes within ``retry_grace`` seconds, the game
    forces again. So it does if nothing at all happens for
    ``force_timeout`` seconds.
    """

    def __init__(
        self,
        client: NeuroGameClient,
        rng: random.Random,
        *,
        force_timeout: float = 60.0,
        retry_grace: float = 2.0,
    ) -> None:
        self.client = client
        self.rng = rng
        self.force_timeout = force_timeout
        self.retry_grace = retry_grace
        self.board = Board()
        self._neuro_to_move = False
        self._neuro_moved = trio.Event()
        self._neuro_tried = trio.Event()
        client.add_action(PLAY, self.handle_play)

    async def handle_play(self, data: Any) -> str:
        """Neuro's ``play`` action; ``data`` already matches the schema.

        Validates the move and places it right away, then wakes the game
        loop: the result is sent as soon as this returns.
        """
        self._neuro_tried.set()
        if not self._neuro_to_move:
            raise ActionFailed("It is not your turn; wait for the player to move.")
        cell: int = data["cell"]
        if cell not in self.board.free_cells():
            free = ", ".join(map(str, self.board.free_cells()))
            raise ActionFailed(f"Cell {cell} is taken. Free cells: {free}.")
        self.board.place(cell, NEURO)
        self._neuro_to_move = False
        self._neuro_moved.set()
        return f"You placed X on cell {cell}."

    async def play_game(self, number: int) -> str:
        """Play one game; return the winner's mark or ``"draw"``."""
        self.board = Board()
        turn = NEURO if number % 2 else PLAYER
        first = "You go" if turn == NEURO else "The player goes"
        await self._tell(
            f"Tic-tac-toe game {number} begins. You are X, the player is O. "
            f"{first} first.\n{self.board.render()}"
        )
        while (outcome := self.board.outcome()) is None:
            if turn == NEURO:
                await self._neuro_turn()
                turn = PLAYER
            else:
                await self._player_turn()
                turn = NEURO
        verdict = {NEURO: "You win!", PLAYER: "The player wins.", DRAW: "Draw."}
        await self._tell(
            f"Game {number} is over. {verdict[outcome]}\n{self.board.render()}",
            silent=False,
        )
        return outcome

    async def _neuro_turn(self) -> None:
        self._neuro_moved = trio.Event()
        self._neuro_to_move = True
        while not self._neuro_moved.is_set():
            await self.client.wait_connected()
            try:
                await self.client.send_force_action(
                    self.board.render(),
                    "It is your turn. Place an X on a free cell.",
                    [PLAY.name],
                )
            except NotConnected:
                continue  # lost the connection: force again once back
            await self._wait_for_move()

    async def _wait_for_move(self) -> None:
        """Return once Neuro moved, or when it is time to force again."""
        timeout = self.force_timeout
        while True:
            self._neuro_tried = trio.Event()
            with trio.move_on_after(timeout):
                await self._neuro_tried.wait()
            if self._neuro_moved.is_set() or not self._neuro_tried.is_set():
                return
            # A failed move: Neuro retries at once, or has given up.
            timeout = self.retry_grace

    async def _player_turn(self) -> None:
        cell = self.rng.choice(self.board.free_cells())
        self.board.place(cell, PLAYER)
        await self._tell(f"The player placed O on cell {cell}.\n{self.board.render()}")

    async def _tell(self, message: str, *, silent: bool = True) -> None:
        LOGGER.info("%s", message)
        try:
            await self.client.send_context(message, silent)
        except NotConnected:
            LOGGER.warning("not connected; Neuro missed that")


async def play_games(
    url: str,
    games: int,
    *,
    seed: int | None = None,
    force_timeout: float = 60.0,
    retry_grace: float = 2.0,
) -> list[str]:
    """Connect to Neuro at ``url``, play ``games`` games, and disconnect.

    Returns the outcomes (``"X"``, ``"O"`` or ``"draw"``) in order. Waits
    (reconnecting) until a server answers.
    """
    client = NeuroGameClient("Tic-tac-toe")
    game = TicTacToe(
        client,
        random.Random(seed),
        force_timeout=force_timeout,
        retry_grace=retry_grace,
    )
    # Not connected yet: this only fills the registry, which every
    # connection registers right after its startup.
    await client.register_actions([PLAY])
    outcomes: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run, url)
        for number in range(1, games + 1):
            outcomes.append(await game.play_game(number))
        client.stop()
    return outcomes


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Play tic-tac-toe against Neuro (or any Neuro API server)."
    )
    parser.add_argument(
        "--url",
        default="ws://127.0.0.1:8000",
        help="WebSocket URL of the Neuro server (default: %(default)s)",
    )
    parser.add_argument(
        "--games",
        type=_positive,
        default=1,
        help="number of games to play before exiting (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, help="seed for the player's moves")
    parser.add_argument(
        "--verbose", action="store_true", help="also log connection events"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    LOGGER.setLevel(logging.INFO)
    outcomes: list[str] = []
    interrupted = False
    try:
        outcomes = trio.run(
            functools.partial(play_games, args.url, args.games, seed=args.seed)
        )
    except* KeyboardInterrupt:
        interrupted = True
    if interrupted:
        print("Interrupted.", file=sys.stderr)
        return 130
    print(
        f"Neuro won {outcomes.count(NEURO)}, the player won "
        f"{outcomes.count(PLAYER)}, {outcomes.count(DRAW)} drawn."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
