"""Tic-tac-toe against Neuro: a complete game on :mod:`neuro_api.trio_ws`.

The player ("O", played at random by this program) and Neuro ("X") take
turns; they start in turn, game after game. On Neuro's turn the game
registers its ``play`` action, with the free cells as the only choices, and
forces it; once she has moved, ``play`` is unregistered until her next turn.
A move the game cannot take gets a failing result telling her why, so she
tries again. Every move and the outcome are sent as context. Start a Neuro
server, then::

    python examples/tic_tac_toe.py --games 3

It connects to ``NEURO_SDK_WS_URL`` (the variable the official SDKs read),
else to ``ws://127.0.0.1:8000``; ``--url`` overrides both.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
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

DEFAULT_URL: Final = "ws://127.0.0.1:8000"
PLAY: Final = "play"


def play_action(free_cells: Sequence[int]) -> Action:
    """The ``play`` action, offering exactly ``free_cells``.

    Neuro can only choose among the free cells, so valid data is always a
    legal move: she does not spend the retries of a force on taken cells.
    """
    return Action(
        PLAY,
        "Place your X on a free cell. Cells are numbered 1 to 9, left to "
        "right, top to bottom.",
        {
            "type": "object",
            "properties": {"cell": {"type": "integer", "enum": list(free_cells)}},
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

    After a failed move Neuro retries the force by herself, a few times. The
    game cannot see when she gives up, so it forces again only once she has
    neither moved nor tried for ``force_timeout`` seconds: forcing sooner
    could replace a force she is still working on (a retry takes a person at
    the console, or a model, seconds).

    The player thinks ``player_delay`` seconds before each move, as a person
    would: against an engine that answers at once, games would otherwise
    flood Neuro with context.
    """

    def __init__(
        self,
        client: NeuroGameClient,
        rng: random.Random,
        *,
        force_timeout: float = 60.0,
        player_delay: float = 0.5,
    ) -> None:
        self.client = client
        self.rng = rng
        self.force_timeout = force_timeout
        self.player_delay = player_delay
        self.board = Board()
        self._neuro_to_move = False
        self._neuro_moved = trio.Event()
        self._neuro_tried = trio.Event()
        client.add_action(play_action(range(1, 10)), self.handle_play)

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
        # Registered while disconnected too: every connection registers
        # the client's registry right after its startup.
        await self.client.register_actions([play_action(self.board.free_cells())])
        self._neuro_moved = trio.Event()
        self._neuro_to_move = True
        while not self._neuro_moved.is_set():
            await self.client.wait_connected()
            self._neuro_tried = trio.Event()
            try:
                await self.client.send_force_action(
                    self.board.render(),
                    "It is your turn. Place an X on a free cell.",
                    [PLAY],
                )
            except NotConnected:
                continue  # lost the connection: force again once back
            await self._wait_for_move()
        # Her move's result goes out first: the client's action task queued
        # it before this task woke up, and the client sends in order.
        await self.client.unregister_actions([PLAY])

    async def _wait_for_move(self) -> None:
        """Return once Neuro moved, or when it is time to force again.

        Each failed try restarts the wait: she may retry again. Silence for
        ``force_timeout`` seconds means she gave up (or the force was lost).
        """
        while True:
            with trio.move_on_after(self.force_timeout):
                await self._neuro_tried.wait()
            if self._neuro_moved.is_set() or not self._neuro_tried.is_set():
                return
            self._neuro_tried = trio.Event()

    async def _player_turn(self) -> None:
        await trio.sleep(self.player_delay)
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
    player_delay: float = 0.5,
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
        player_delay=player_delay,
    )
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


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Play tic-tac-toe against Neuro (or any Neuro API server)."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("NEURO_SDK_WS_URL") or DEFAULT_URL,
        help="WebSocket URL of the Neuro server (default: $NEURO_SDK_WS_URL, "
        f"else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--games",
        type=_positive,
        default=1,
        help="number of games to play before exiting (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, help="seed for the player's moves")
    parser.add_argument(
        "--player-delay",
        type=_seconds,
        default=0.5,
        metavar="SECONDS",
        help="the player's thinking time before each move (default: %(default)s)",
    )
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
            functools.partial(
                play_games,
                args.url,
                args.games,
                seed=args.seed,
                player_delay=args.player_delay,
            )
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
