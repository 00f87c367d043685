"""Held games and first frames: injections, duplicates, unknown commands (a review)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing
from quart.typing import TestClientProtocol as HttpClient
from server_helpers import (
    PASS,
    RecordingServer,
    connect,
    start_server,
)

from neuro_api.control import create_app
from neuro_api.server import ForceGate

pytestmark = pytest.mark.timeout(30)


async def test_a_game_held_by_an_unknown_first_command_is_released(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    gate = server.add_force_gate(ForceGate("t"))
    gate.hold("G")
    info = await start_server(nursery, server)
    async with connect(info.url, "G") as game:
        # The first frame is a custom command naming the game: admission
        # runs and applies the gate (hold_forces), but game_title stays None.
        await game.send('{"command": "custom/hello", "game": "G", "data": {}}')
        await server.wait_until(
            lambda: any(getattr(c, "handled", 0) for c in server.clients.values())
        )
        gate.release("G")  # _apply_gates looks for game_title == "G": none
        await game.startup()
        await game.register(PASS)
        await server.settle(game)
        client = server.client_of(game)
        # before the fix: the client stays held for ever (no later release reaches it)
        assert not client.forces_held
        await game.force("pass")
        assert (await game.expect_action()).name == "pass"


# --- Randy's POST / for a held game ------------------------------------------


TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _post(server: RecordingServer, raw: object) -> tuple[int, dict[str, Any]]:
    app = create_app(server, token=TOKEN, settings=lambda: {"port": 1})
    async with app.test_app() as test_app:
        http: HttpClient = test_app.test_client()
        response = await http.post("/", data=orjson.dumps(raw), headers=AUTH)
        return response.status_code, orjson.loads(await response.get_data())


async def test_a_held_game_whose_queue_is_full_is_not_listed_as_held_for(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer(max_pending_actions=1)
    gate = server.add_force_gate(ForceGate("t"))
    gate.hold("G")
    info = await start_server(nursery, server)
    async with connect(info.url, "G") as game:
        await game.startup()
        await game.register(PASS)
        await server.settle(game)
        client = server.client_of(game)
        client.start_action("pass", None)  # the held queue is now full
        await trio.testing.wait_all_tasks_blocked()
        raw = {"command": "action", "data": {"id": "raw-1", "name": "pass"}}
        status, answer = await _post(server, raw)
        gate.release("G")
        first = await game.expect_action()
        assert first.name == "pass"
        assert first.id != "raw-1"
        # The message was dropped (TooManyHeldActions, logged at debug) ...
        await game.expect_silence(0.5)
        # ... so the answer must not say the game gets it once released.
        # before the fix: (200, {'sent_to': [], 'held_for': ['G']})
        assert "G" not in answer.get("held_for", []), (status, answer)


async def test_a_held_game_with_the_id_pending_is_a_duplicate(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    gate = server.add_force_gate(ForceGate("t"))
    info = await start_server(nursery, server)
    async with connect(info.url, "G") as game:
        await game.startup()
        await game.register(PASS)
        await server.settle(game)
        raw = {"command": "action", "data": {"id": "raw-1", "name": "pass"}}
        status, _ = await _post(server, raw)
        assert status == 200
        assert (await game.expect_action()).id == "raw-1"  # pending now
        gate.hold("G")
        # Not held, the same id is a 409 (duplicate_id); held, it is
        # accepted and silently dropped once released.
        status, answer = await _post(server, raw)
        gate.release("G")
        await game.expect_silence(0.5)
        # before the fix: (200, {'sent_to': [], 'held_for': ['G']})
        assert status == 409, (status, answer)


async def test_a_raw_context_for_a_held_game_is_sent_at_once_and_said_so(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    gate = server.add_force_gate(ForceGate("t"))
    gate.hold("G")
    info = await start_server(nursery, server)
    async with connect(info.url, "G") as game:
        await game.startup()
        await server.settle(game)
        raw = {"command": "actions/reregister_all"}
        status, answer = await _post(server, raw)
        # Only actions are held: this one goes out now, while the game is held
        message = await game.receive()
        assert message.command == "actions/reregister_all"
        # before the fix: {'sent_to': [], 'held_for': ['G']} -- reported as waiting
        assert answer == {"sent_to": ["G"]}, (status, answer)
