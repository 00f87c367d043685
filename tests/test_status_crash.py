"""``kill -9`` of the real server during a storm of status writes.

The command runs as a subprocess with its files looked at every 5 ms; the
test changes the lists through the HTTP API and connects and drops games
as fast as it can, kills the process at a random moment, and parses every
file. Each round starts the server again on the same files: temporaries a
kill left behind are gone, and the lists are those of the files.
"""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from server_helpers import RawGame
from test_cli import control_url, server_process

from neuro_api import command
from neuro_api._atomic import TEMP_SUFFIX
from neuro_api.status._files import INPUT_FILES, OUTPUT_FILES

pytestmark = pytest.mark.timeout(90)
ROUNDS = 4


def check_files(directory: Path) -> dict[str, list[str]]:
    """Every file is valid JSON of the seed's shape, sorted; returns them."""
    found = {}
    for name in (*INPUT_FILES.values(), *OUTPUT_FILES.values()):
        document = orjson.loads((directory / name).read_bytes())
        assert isinstance(document, dict), name
        clients = document["clients"]
        assert isinstance(clients, list), name
        assert all(isinstance(c, str) for c in clients), name
        assert clients == sorted(set(clients)), name
        found[name] = clients
    return found


async def storm(control: str, games: str, seed: int) -> None:
    rng = random.Random(seed)

    async def admin() -> None:
        async with httpx.AsyncClient(base_url=control, timeout=5) as http:
            while True:
                kind = rng.choice(("paused", "blocked"))
                name = f"game {rng.randrange(40)}"
                method = http.put if rng.random() < 0.6 else http.delete
                try:
                    await method(f"/status/{kind}/{name}")
                except httpx.HTTPError:
                    return  # killed

    async def player() -> None:
        port = int(games.rsplit(":", 1)[1])
        while True:
            title = f"game {rng.randrange(40)}"
            try:
                game = await RawGame.connect(port, title)
            except Exception:
                await trio.sleep(0.01)
                continue
            try:
                await game.send(command.startup_command(title).decode())
                with trio.move_on_after(0.05):
                    await game.receive()  # acknowledged, or closed: blocked
            except Exception:
                pass
            finally:
                # Half of them without a close handshake: network errors.
                await game.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(admin)
            nursery.start_soon(player)
        await trio.sleep(rng.uniform(0.3, 1.0))
        nursery.cancel_scope.cancel()


async def test_kill_9_during_a_storm_of_writes_leaves_every_file_valid(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "Server_Data"
    flags = ["--engine", "random", "--data-dir", str(tmp_path)]
    flags += ["--status-period", "0.005", "--log-level", "error"]
    changed = 0
    for round_ in range(ROUNDS):
        async with server_process(*flags) as server:
            # Started again: no temporary of the last kill is left.
            assert not [p for p in directory.iterdir() if p.name.endswith(TEMP_SUFFIX)]
            before = check_files(directory)
            control = await control_url(server)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(storm, control, server.url, round_)
                await trio.sleep(random.Random(round_).uniform(0.2, 0.8))
                server.process.kill()  # SIGKILL, mid-storm
            await server.process.wait()
            after = check_files(directory)
        changed += after != before
    assert changed  # the storm did change the files before the kills
