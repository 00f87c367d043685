"""examples/tic_tac_toe.py plays whole games against an in-test Neuro.

The in-test Neuro answers every force by trying cells 1, 2, 3 ... in order, so
it also hits taken cells and must get failing results for them. The real
server (its random engine) plays too: a normal game must earn no warning.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import random
import re
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
from neuro_api.diagnostics import Diagnostic, Severity
from neuro_api.server import RandomNeuroServer, ServerInfo
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
            await websocket.send_message(action_command(id_, "play", data).decode())
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

    def play_sequence(self) -> str:
        """The frames about ``play`` as letters: Register, Force, result
        (``s``/``f`` for success/failure), Unregister."""
        letters = {
            "actions/register": "R",
            "actions/force": "F",
            "actions/unregister": "U",
        }
        results = iter(self.results)
        sequence = ""
        for command in self.commands:
            if command == "action/result":
                sequence += "s" if next(results)["success"] else "f"
            else:
                sequence += letters.get(command, "")
        return sequence


async def test_play_games_in_process(
    example: ModuleType, fake_neuro: FakeNeuro
) -> None:
    side = NeuroSide(fake_neuro)

    async def neuro() -> None:
        await side.play(await fake_neuro.accept())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(neuro)
            outcomes = await example.play_games(
                fake_neuro.url, 2, seed=4, player_delay=0
            )
    assert len(outcomes) == 2
    assert set(outcomes) <= {"X", "O", "draw"}
    # Game 1 begins with Neuro's turn: play is registered for it only.
    assert side.commands[:4] == [
        "startup",
        "context",
        "actions/register",
        "actions/force",
    ]
    over = [c.partition(" is over")[0] for c in side.contexts if "is over" in c]
    assert over == ["Game 1", "Game 2"]
    failures = [r for r in side.results if not r["success"]]
    assert failures, "cells are tried in order, so some must be taken"
    # Taken cells are not offered: the client refuses them by the schema.
    assert all(" is not one of [" in r["message"] for r in failures)
    assert all(
        r["message"].startswith("You placed X") for r in side.results if r["success"]
    )
    # Each of Neuro's turns: register, force, tries until one succeeds, and
    # play is unregistered only after the successful result.
    assert re.fullmatch(r"(RFf*sU)+", side.play_sequence()), side.play_sequence()


async def test_game_forces_again_when_neuro_gives_up(
    example: ModuleType, fake_neuro: FakeNeuro
) -> None:
    # One try per force, like a server whose retries ran out at once.
    side = NeuroSide(fake_neuro, tries_per_force=1)

    async def neuro() -> None:
        await side.play(await fake_neuro.accept())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(neuro)
            [outcome] = await example.play_games(
                fake_neuro.url, 1, seed=4, force_timeout=0.5, player_delay=0
            )
    assert outcome in {"X", "O", "draw"}
    forces = side.commands.count("actions/force")
    moves = sum(r["success"] for r in side.results)
    failures = len(side.results) - moves
    assert failures > 0
    assert forces == moves + failures


class RecordingRandomServer(RandomNeuroServer):
    """The random engine, keeping every diagnostic."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[Diagnostic] = []

    def record_diagnostic(self, diagnostic: Diagnostic) -> None:
        super().record_diagnostic(diagnostic)
        self.seen.append(diagnostic)


async def play_against_the_server(
    example: ModuleType, server: RecordingRandomServer, games: int, **options: Any
) -> list[str]:
    async with trio.open_nursery() as nursery:
        info = await nursery.start(server.run, "127.0.0.1", 0)
        assert isinstance(info, ServerInfo)
        outcomes: list[str] = await example.play_games(
            info.url, games, seed=7, **options
        )
        nursery.cancel_scope.cancel()
    return outcomes


def complaints(server: RecordingRandomServer) -> list[str]:
    return [str(d) for d in server.seen if d.severity.rank >= Severity.WARNING.rank]


async def test_normal_games_against_the_server_earn_no_warning(
    example: ModuleType,
) -> None:
    # The random engine answers at once with valid data, and only free cells
    # are valid: when every cell was, it exhausted retries on taken ones.
    server = RecordingRandomServer(seed=3)
    with trio.fail_after(30):
        outcomes = await play_against_the_server(example, server, 3, player_delay=0.1)
    assert len(outcomes) == 3
    assert complaints(server) == []


async def test_a_slow_neuro_gets_no_second_force(
    example: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    # Neuro taking seconds per answer (a person at the console, a model):
    # the game must not force again while her force is still under way.
    server = RecordingRandomServer(seed=3, delay=5.0)
    with trio.fail_after(600):
        outcomes = await play_against_the_server(example, server, 2)
    assert len(outcomes) == 2
    assert "force.while-active" not in [d.id for d in server.seen]
    assert complaints(server) == []


async def test_cli_plays_a_game_and_exits(fake_neuro: FakeNeuro) -> None:
    side = NeuroSide(fake_neuro)

    async def neuro() -> None:
        await side.play(await fake_neuro.accept())

    # --url wins over NEURO_SDK_WS_URL (which points nowhere here).
    env = {**os.environ, "NEURO_SDK_WS_URL": "ws://127.0.0.1:1"}
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
                    "--player-delay",
                    "0",
                ],
                capture_stdout=True,
                capture_stderr=True,
                env=env,
            )
    assert process.returncode == 0, process.stderr.decode()
    assert process.stdout.decode().startswith("Neuro won ")
    assert sum("is over" in c for c in side.contexts) == 1


async def test_cli_connects_to_neuro_sdk_ws_url(fake_neuro: FakeNeuro) -> None:
    # The variable the official SDKs read, and the README promises.
    side = NeuroSide(fake_neuro)

    async def neuro() -> None:
        await side.play(await fake_neuro.accept())

    env = {**os.environ, "NEURO_SDK_WS_URL": fake_neuro.url}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(neuro)
            process = await trio.run_process(
                [sys.executable, str(EXAMPLE), "--games", "1", "--player-delay", "0"],
                capture_stdout=True,
                capture_stderr=True,
                env=env,
            )
    assert process.returncode == 0, process.stderr.decode()
    assert process.stdout.decode().startswith("Neuro won ")
    assert side.commands[0] == "startup"
    assert sum("is over" in c for c in side.contexts) == 1


def test_cli_help_and_bad_arguments(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        example.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--games" in out
    assert "$NEURO_SDK_WS_URL" in out
    with pytest.raises(SystemExit) as info:
        example.main(["--games", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit) as info:
            example.main(["--player-delay", bad])
        assert info.value.code == 2
        assert "--player-delay" in capsys.readouterr().err


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
