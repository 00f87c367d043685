"""Session rules of the server over real WebSocket connections.

Rules: 127.0.0.1 port 0, a deadline on every wait, the game closes first
(see ``server_helpers``).
"""

from __future__ import annotations

import gc
import weakref

import orjson
import pytest
import trio
from server_helpers import (
    PASS,
    PLAY,
    RawGame,
    RecordingServer,
    connect,
    start_server,
)
from trio_websocket import ConnectionClosed

from neuro_api import command
from neuro_api.command import StartupAcknowledgement
from neuro_api.diagnostics import Severity
from neuro_api.server import ServerConfig

pytestmark = pytest.mark.timeout(30)


async def test_startup_acknowledged_with_default_character(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Tic Tac Toe") as game:
        ack = await game.startup()
    assert ack.character_id == "neuro"
    assert ack.display_name == "Neuro-sama"
    assert ack.session_id
    assert server.seen == []


async def test_session_id_unique_per_connection(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    session_ids = []
    for _ in range(3):
        async with connect(info.url, "Tic Tac Toe") as game:
            session_ids.append((await game.startup()).session_id)
    async with connect(info.url, "A") as a, connect(info.url, "B") as b:
        session_ids.append((await a.startup()).session_id)
        session_ids.append((await b.startup()).session_id)
        # The server knows each connection by the id it handed out.
        assert {a.session_id, b.session_id} <= set(server.clients)
    assert len(set(session_ids)) == len(session_ids)


async def test_repeated_startup_keeps_the_session_id(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        first = await game.startup()
        second = await game.startup()
    assert first.session_id == second.session_id


@pytest.mark.parametrize(
    ("config", "character_id", "display_name"),
    [
        (ServerConfig(), "neuro", "Neuro-sama"),
        (ServerConfig(character_id="evil"), "evil", "Evil Neuro"),
        (ServerConfig(display_name="Neuro (test)"), "neuro", "Neuro (test)"),
        (
            ServerConfig(character_id="evil", display_name="Evilyn"),
            "evil",
            "Evilyn",
        ),
        (ServerConfig(character_id="randy"), "randy", "randy"),
    ],
)
async def test_startup_acknowledgement_character(
    nursery: trio.Nursery, config: ServerConfig, character_id: str, display_name: str
) -> None:
    server = RecordingServer(config)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.send(command.startup_command("Game").decode())
        raw = await game.ws.get_message()
    assert orjson.loads(raw)["data"]["session"]["characterId"] == character_id
    ack = command.parse_neuro_frame(raw)
    assert isinstance(ack, StartupAcknowledgement)
    assert (ack.character_id, ack.display_name) == (character_id, display_name)


async def test_startup_clears_the_games_actions(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await server.settle(game)
        assert set(server.client_of(game).actions) == {"play", "pass"}
        await game.startup()
        await server.wait_diag("protocol.repeated-startup", game="Game")
        assert server.client_of(game).actions == {}
        await game.force("play")
        await server.wait_diag("force.before-registration", game="Game")
        await game.expect_silence(30)
    assert server.force_calls == []


async def test_message_before_startup_reported_once(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.context("first")
        await game.register(PLAY)
        await game.context("second")
        await server.settle(game)
        diag = await server.wait_diag("protocol.before-startup", game="Game")
        # Still handled: the context arrived and the action registered.
        assert server.messages("Game") == ["first", "second"]
        assert "play" in server.client_of(game).actions
        await game.startup()
        await game.context("third")
        await server.settle(game)
    assert diag.severity is Severity.WARNING
    assert "context" in diag.message
    assert server.ids("Game").count("protocol.before-startup") == 1


async def test_repeated_startup_reported(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        assert server.ids() == []
        await game.startup()
        await game.startup()
        await server.settle(game)
    assert server.ids("Game") == ["protocol.repeated-startup"] * 2


async def test_game_renamed_frame_dropped(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.send(command.actions_register_command("Other Game", [PLAY]).decode())
        await game.send(command.context_command("Other Game", "renamed").decode())
        await game.context("kept")
        await server.settle(game)
        client = server.client_of(game)
        assert client.actions == {}
        assert client.game_title == "Game"
    renamed = server.diags("protocol.game-renamed")
    assert len(renamed) == 2
    assert renamed[0].game == "Game"
    assert "Other Game" in renamed[0].message
    assert renamed[0].severity is Severity.ERROR
    assert server.messages() == ["kept"]


@pytest.mark.parametrize(
    "frame",
    [
        '{"command": "startup", "game": "Game", "data": {}}',
        '{"command": "startup", "game": "Game"}',
    ],
)
async def test_startup_with_or_without_empty_data(
    nursery: trio.Nursery, frame: str
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.send(frame)
        ack = await game.receive()
    assert isinstance(ack, StartupAcknowledgement)
    assert server.seen == []


@pytest.mark.parametrize("data", [[], "", 0, False], ids=repr)
async def test_startup_with_data_that_is_not_an_object(
    nursery: trio.Nursery, data: object
) -> None:
    # The Lua SDK sends "data": [] (its empty table): still a startup.
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.send_obj({"command": "startup", "game": "Game", "data": data})
        ack = await game.receive()
        assert isinstance(ack, StartupAcknowledgement)
        await game.register(PLAY)
        await game.context("after startup")
        await server.settle(game)
        assert "play" in server.client_of(game).actions
    [diag] = server.seen  # and no protocol.before-startup
    assert diag.id == "protocol.ignored-data"
    assert diag.severity is Severity.WARNING
    assert diag.game == "Game"
    assert diag.subject == "data"
    assert diag.message.startswith("'startup' frame: data: expected an object")
    assert server.messages("Game") == ["after startup"]


async def test_shutdown_ready_with_list_data_is_handled(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.send_obj({"command": "shutdown/ready", "game": "Game", "data": []})
        await server.wait_diag("protocol.shutdown-ready", game="Game")
        await server.settle(game)
    assert server.ids("Game") == ["protocol.ignored-data", "protocol.shutdown-ready"]


async def test_near_miss_command_gets_a_hint(nursery: trio.Nursery) -> None:
    # The C SDK spells the result command "action:result".
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.send_obj(
            {
                "command": "action:result",
                "game": "Game",
                "data": {"id": "1", "success": True},
            }
        )
        await game.send_obj({"command": "jump", "game": "Game"})
        await server.settle(game)
    near, far = server.diags("protocol.unknown-command", game="Game")
    assert "unknown command 'action:result'; did you mean 'action/result'?" in (
        near.message
    )
    assert "did you mean" not in far.message


async def test_unknown_keys_reported_and_tolerated(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.send_obj({"command": "startup", "game": "Game", "main_thread": 1})
        assert isinstance(await game.receive(), StartupAcknowledgement)
        await game.send_obj(
            {
                "command": "context",
                "game": "Game",
                "data": {"message": "hello", "silent": True, "mood": "happy"},
            }
        )
        await game.send_obj(
            {
                "command": "actions/register",
                "game": "Game",
                "data": {
                    "actions": [{"name": "pass", "description": "Skip", "icon": "x"}]
                },
            }
        )
        await server.settle(game)
        assert "pass" in server.client_of(game).actions
    unknown = server.diags("protocol.unknown-key", game="Game")
    assert [d.subject for d in unknown] == [
        "main_thread",
        "data.mood",
        "data.actions[0].icon",
    ]
    assert {d.severity for d in unknown} == {Severity.WARNING}
    assert server.messages() == ["hello"]


async def test_binary_frame_reported_and_processed(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.send(command.startup_command("Game"))
        ack = await game.receive()
        await game.send(command.context_command("Game", "binary hello"))
        await server.settle(game)
    assert isinstance(ack, StartupAcknowledgement)
    assert server.ids() == ["protocol.binary-frame"] * 2
    assert {d.severity for d in server.seen} == {Severity.WARNING}
    assert server.messages() == ["binary hello"]


async def test_binary_first_frame_diagnostic_names_the_game(
    nursery: trio.Nursery,
) -> None:
    """The binary frame names its game: its diagnostic must be filed under it.

    Parser notes about the very first frame (unknown keys) already are; a
    binary ``startup`` ends up under "?" instead, out of the game's view.
    """
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.send(command.startup_command("Game"))
        await game.receive()
    binary = server.diags("protocol.binary-frame")
    assert len(binary) == 1
    assert binary[0].game == "Game"
    assert "?" not in server.diagnostics


async def test_oversized_frame_closes_with_1009(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer(max_message_size=2048)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.context("x" * 1500)  # within the limit
        await server.settle(game)
        await game.context("y" * 4096)
        closed = await game.expect_closed()
    assert closed.code == 1009
    diag = await server.wait_diag("protocol.oversized-frame")
    assert diag.game == "Game"
    assert diag.severity is Severity.ERROR
    # The diagnostic outlives the connection, kept on the server per game.
    assert any(d.id == "protocol.oversized-frame" for d in server.diagnostics["Game"])
    assert server.messages() == ["x" * 1500]
    await server.wait_until(lambda: not server.clients)


async def test_oversized_frame_does_not_stop_the_server(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer(max_message_size=2048)
    info = await start_server(nursery, server)
    async with connect(info.url, "Big") as big:
        await big.startup()
        await big.context("y" * 4096)
        await big.expect_closed()
    async with connect(info.url, "Small") as small:
        ack = await small.startup()
    assert ack.session_id


async def test_oversized_frame_connection_is_closed_at_tcp_level(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """After the 1009 close the server also closes TCP (the RFC asks it to)."""
    server = RecordingServer(max_message_size=2048)
    info = await start_server(nursery, server)
    raw = await RawGame.connect(info.port, "Game")
    try:
        await raw.send(command.startup_command("Game").decode())
        assert isinstance(await raw.receive(), StartupAcknowledgement)
        await raw.send(command.context_command("Game", "y" * 4096).decode())
        with pytest.raises(ConnectionError, match="1009"):
            await raw.receive()
        with trio.fail_after(30):
            assert await raw.stream.receive_some(1024) == b""
    finally:
        await raw.aclose()
    await server.wait_diag("protocol.oversized-frame", game="Game")


async def test_shutdown_ready_reported_as_info(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.send(command.shutdown_ready_command("Game").decode())
        diag = await server.wait_diag("protocol.shutdown-ready", game="Game")
        # The game is still served afterwards.
        await game.startup()
    assert diag.severity is Severity.INFO


async def test_closed_connection_is_forgotten(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        assert game.session_id in server.clients
    await server.wait_until(lambda: not server.clients)
    assert len(server.disconnected) == 1
    with pytest.raises(ConnectionClosed):
        await game.ws.send_message("late")


async def test_nothing_of_a_closed_connection_stays_reachable(
    nursery: trio.Nursery,
) -> None:
    """Memory a game used is the allocator's to keep, never the server's.

    The game registers actions, is forced and answers, then leaves: its
    client object, and with it everything the server kept for it, is
    garbage once its disconnection has been reported.
    """
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        await game.result(action.id, True, "ok")
        [client] = server.clients.values()
        gone = weakref.ref(client)
        del client
    await server.wait_until(lambda: not server.clients)
    server.disconnected.clear()  # the test's own record of it
    for _ in range(3):
        await trio.sleep(0.05)  # tasks of the connection wind down
        gc.collect()
        if gone() is None:
            break
    assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
