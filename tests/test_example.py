"""examples/tic_tac_toe.py plays whole games against an in-test Neuro.

The Neuro side answers every force by trying cells 1, 2, 3 ... in order, so
it also hits taken cells and must get failing results for them.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from neuro_api.api import ActionFailed
from neuro_api.command import action_command
from neuro_api.trio_ws import NeuroGameClient

if TYPE_CHECKING:
    from conftest import FakeNeuro

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tic_tac_toe.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tic_tac_toe_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NeuroSide:
    """What the in-test Neuro saw, and its answers to forces."""

    def __init__(self, neuro: FakeNeuro, tries_per_force: int = 9) -> None:
        self.neuro = neuro
        self.tries_per_force = tries_per_force
        self.contexts: list[str] = []
        self.results: list[dict[str, Any]] = []
        self.commands: list[str] = []
        self._ids = itertools.count(1)
        self._next_cell = 1

    async def play(self, websocket: WebSocketConnection) -> None:
        """Answer forces until the game closes the connection."""
        try:
            while True:
                frame = await self._next(websocket)
                if frame["command"] == "actions/force":
                    assert frame["data"]["action_names"] == ["play"]
                    await self._move(websocket)
        except ConnectionClosed:
            return

    async def _move(self, websocket: WebSocketConnection) -> None:
        """Try cells 1, 2, 3 ... (over several forces if ``tries_per_force``
        runs out first) until one is accepted."""
        for _ in range(self.tries_per_force):
            cell = self._next_cell
            id_ = str(next(self._ids))
            data = orjson.dumps({"cell": cell}).decode()
            await websocket.send_message(action_command(id_, "play", data))
            while (frame := await self._next(websocket))["command"] != "action/result":
                pass
            assert frame["data"]["id"] == id_
            self.results.append(frame["data"])
            if frame["data"]["success"]:
                self._next_cell = 1
                return
            self._next_cell += 1

    async def _next(self, websocket: WebSocketConnection) -> dict[str, Any]:
        frame = await self.neuro.receive(websocket)
        self.commands.append(frame["command"])
        if frame["command"] == "context":
            self.contexts.append(frame["data"]["message"])
        return frame


async def test_play_games_in_process(
    example: ModuleType, fake_neuro: FakeNeuro
) -> None:
    side = NeuroSide(fake_neuro)

    async def neuro() -> None:
        await side.play(await fake_neuro.accept())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(neuro)
            outcomes = await example.play_games(fake_neuro.url, 2, seed=4)
    assert len(outcomes) == 2
    assert set(outcomes) <= {"X", "O", "draw"}
    assert side.commands[:2] == ["startup", "actions/register"]
    over = [c.partition(" is over")[0] for c in side.contexts if "is over" in c]
    assert over == ["Game 1", "Game 2"]
    failures = [r for r in side.results if not r["success"]]
    assert failures, "cells are tried in order, so some must be taken"
    assert all("is taken. Free cells:" in r["message"] for r in failures)
    assert all(
        r["message"].startswith("You placed X") for r in side.results if r["success"]
    )


async def test_game_forces_again_when_neuro_gives_up(
    example: ModuleType, fake_neuro: FakeNeuro
) -> None:
    # One try per force, like a server whose retries ran out at once.
    side = NeuroSide(fake_neuro, tries_per_force=1)

    async def neuro() -> None:
        await side.play(await fake_neuro.accept())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(neuro)
            [outcome] = await example.play_games(
                fake_neuro.url, 1, seed=4, retry_grace=0.05
            )
    assert outcome in {"X", "O", "draw"}
    forces = side.commands.count("actions/force")
    moves = sum(r["success"] for r in side.results)
    failures = len(side.results) - moves
    assert failures > 0
    assert forces == moves + failures


async def test_cli_plays_a_game_and_exits(fake_neuro: FakeNeuro) -> None:
    side = NeuroSide(fake_neuro)

    async def neuro() -> None:
        await side.play(await fake_neuro.accept())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(neuro)
            process = await trio.run_process(
                [
                    sys.executable,
                    str(EXAMPLE),
                    "--url",
                    fake_neuro.url,
                    "--games",
                    "1",
                    "--seed",
                    "1",
                ],
                capture_stdout=True,
                capture_stderr=True,
            )
    assert process.returncode == 0, process.stderr.decode()
    assert process.stdout.decode().startswith("Neuro won ")
    assert sum("is over" in c for c in side.contexts) == 1


def test_cli_help_and_bad_arguments(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        example.main(["--help"])
    assert info.value.code == 0
    assert "--games" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        example.main(["--games", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_board(example: ModuleType) -> None:
    board = example.Board()
    assert board.outcome() is None
    assert board.render().splitlines()[0] == "1 | 2 | 3"
    for cell in (1, 5, 9):
        board.place(cell, "X")
    assert board.outcome() == "X"
    with pytest.raises(ValueError, match="taken"):
        board.place(5, "O")
    draw = example.Board()
    for cell, mark in zip(range(1, 10), "XOXXOOOXX", strict=True):
        draw.place(cell, mark)
    assert draw.outcome() == "draw"
    column = example.Board()
    for cell in (2, 5, 8):
        column.place(cell, "O")
    assert column.outcome() == "O"
    assert "O" in column.render()


async def test_play_handler_validates_moves(example: ModuleType) -> None:
    game = example.TicTacToe(NeuroGameClient("Test"), random.Random(0))
    with pytest.raises(ActionFailed, match="not your turn"):
        await game.handle_play({"cell": 1})
    game._neuro_to_move = True
    game.board.place(1, "O")
    with pytest.raises(ActionFailed, match=r"Cell 1 is taken\. Free cells: 2, 3"):
        await game.handle_play({"cell": 1})
    assert await game.handle_play({"cell": 2}) == "You placed X on cell 2."
    assert game._neuro_moved.is_set()
