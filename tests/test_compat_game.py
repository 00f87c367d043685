"""The game side as code written for neuro-api 4.0.0 uses it.

Upstream's games subclass ``AbstractNeuroAPI`` (or ``TrioNeuroAPI``),
implement ``handle_action(NeuroAction)`` and
``handle_startup_acknowledgement(NeuroStartupData)``, send with the
``send_*`` methods (which go through ``send_command_data(bytes)``) and call
``read_message()`` without arguments in a loop. ``TrioNeuroAPIComponent``
is its libcomponent flavour. These run against our own server and a plain
WebSocket "Neuro" on loopback.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
import trio
from conftest import FakeNeuro
from libcomponent.component import ComponentManager, Event
from server_helpers import RecordingServer, start_server
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from neuro_api import command
from neuro_api.api import (
    AbstractNeuroAPI,
    NeuroAction,
    NeuroSessionData,
    NeuroStartupData,
)
from neuro_api.client import AbstractNeuroAPIClient
from neuro_api.command import Action
from neuro_api.trio_ws import TrioNeuroAPI, TrioNeuroAPIComponent

pytestmark = pytest.mark.timeout(30)

JUMP = Action(
    "jump", "Jump", {"type": "object", "properties": {"h": {"type": "integer"}}}
)


class Scripted(AbstractNeuroAPI):
    """Upstream's test double: reads from a list, writes to a list."""

    def __init__(self, game_title: str, incoming: list[Any] | None = None) -> None:
        super().__init__(game_title)
        self.incoming = list(incoming or [])
        self.sent: list[str] = []
        self.actions_seen: list[NeuroAction] = []
        self.acks: list[NeuroStartupData] = []

    async def write_to_websocket(self, data: str) -> None:
        self.sent.append(data)

    async def read_from_websocket(self) -> str | bytes:
        return self.incoming.pop(0)  # type: ignore[no-any-return]

    async def handle_startup_acknowledgement(
        self, startup_ack: NeuroStartupData
    ) -> None:
        self.acks.append(startup_ack)

    async def handle_action(self, action: NeuroAction) -> None:
        self.actions_seen.append(action)


async def test_send_command_data_sends_text() -> None:
    game = Scripted("G")
    await game.send_command_data(b"test command")
    await game.send_startup_command()
    await game.send_context("hello", silent=False)
    assert game.sent == [
        "test command",
        command.startup_command("G").decode(),
        command.context_command("G", "hello", False).decode(),
    ]
    assert all(type(frame) is str for frame in game.sent)


async def test_registration_force_result_and_shutdown_ready_frames() -> None:
    game = Scripted("G")
    await game.register_actions([JUMP])
    await game.send_force_action("state", "query", ["jump"])
    await game.send_force_action("s", "q", ["jump"], ephemeral_context=True)
    await game.send_action_result("1", True)
    await game.send_action_result("2", True, "done")
    await game.unregister_actions(action_names=["jump"])
    await game.send_shutdown_ready()
    assert game.sent == [
        command.actions_register_command("G", [JUMP]).decode(),
        command.actions_force_command("G", "state", "query", ["jump"], False).decode(),
        command.actions_force_command("G", "s", "q", ["jump"], True).decode(),
        command.actions_result_command("G", "1", True).decode(),
        command.actions_result_command("G", "2", True, "done").decode(),
        command.actions_unregister_command("G", ["jump"]).decode(),
        command.shutdown_ready_command("G").decode(),
    ]
    assert game.get_registered() == ()


async def test_forcing_an_unregistered_action_says_so() -> None:
    game = Scripted("G")
    with pytest.raises(ValueError, match=r"'jump' is not currently registered\."):
        await game.send_force_action("s", "q", ["jump"])


async def test_read_message_without_a_frame_reads_and_dispatches() -> None:
    game = Scripted(
        "G",
        [
            command.startup_acknowledgement_command("s-1", "neuro", "Neuro-sama"),
            '{"command":"startup","data":{}}',
            command.action_command("1", "jump", '{"h": 2}').decode(),
            b'{"command":"action","data":{"id":"2","name":"jump"}}',
        ],
    )
    for _ in range(4):
        await game.read_message()
    assert game.acks == [
        NeuroStartupData(NeuroSessionData("s-1", "neuro", "Neuro-sama")),
        NeuroStartupData(None),
    ]
    assert game.actions_seen == [
        NeuroAction("1", "jump", '{"h": 2}'),
        NeuroAction("2", "jump", None),
    ]
    assert game.actions_seen[0].id_ == "1"


async def test_read_message_reregisters_and_answers_shutdowns() -> None:
    game = Scripted(
        "G",
        [
            command.reregister_all_command(),
            command.shutdown_graceful_command(False),
            command.shutdown_graceful_command(True),
            command.shutdown_immediate_command(),
        ],
    )
    await game.register_actions([JUMP])
    for _ in range(4):
        await game.read_message()
    assert [orjson.loads(f)["command"] for f in game.sent] == [
        "actions/register",
        "actions/register",  # reregister_all
        "shutdown/ready",  # graceful, wants_shutdown=True (not for False)
        "shutdown/ready",  # immediate
    ]


async def test_read_message_hands_unknown_commands_to_their_hook() -> None:
    seen: list[tuple[str, object]] = []

    class Game(Scripted):
        async def handle_unknown_command(
            self, command: str, data: dict[str, object] | None
        ) -> None:
            seen.append((command, data))

    game = Game("G", ['{"command":"dance","data":{"x":1}}', '{"command":"spin"}'])
    await game.read_message()
    await game.read_message()
    assert seen == [("dance", {"x": 1}), ("spin", None)]


async def test_read_message_without_a_frame_survives_bad_json() -> None:
    # Deliberate: upstream raised orjson.JSONDecodeError out of read_message.
    game = Scripted("G", ["{not json", "[1]", command.reregister_all_command()])
    assert await game.read_message() is None
    assert await game.read_message() is None
    assert await game.read_message() is not None


async def test_raw_readers() -> None:
    game = Scripted(
        "G",
        [
            b'{"command":"action","data":{"id":"1","name":"a"}}',
            '{"command":"context","game":"G","data":{"message":"m","silent":true}}',
            '{"command":"context","data":{}}',
            "{not json",
        ],
    )
    assert await game.read_raw_server_message() == ("action", {"id": "1", "name": "a"})
    assert await game.read_raw_client_message() == (
        "context",
        "G",
        {"message": "m", "silent": True},
    )
    with pytest.raises(TypeError, match="`game` field missing"):
        await game.read_raw_client_message()
    with pytest.raises(orjson.JSONDecodeError) as caught:
        await game.read_raw_full_message()
    assert any("not json" in note for note in caught.value.__notes__)


async def test_a_client_that_does_not_read_says_how_to() -> None:
    class WriteOnly(AbstractNeuroAPIClient):
        async def write_to_websocket(self, data: str) -> None:
            pass

    with pytest.raises(NotImplementedError, match="read_message"):
        await WriteOnly().read_raw_server_message()
    with pytest.raises(TypeError, match="abstract"):
        AbstractNeuroAPIClient()  # type: ignore[abstract]


class JeraldGame(TrioNeuroAPI):
    """The example game of upstream's test suite, on a real connection."""

    def __init__(self, game_title: str, connection: WebSocketConnection) -> None:
        super().__init__(game_title, connection)
        self.acks: list[NeuroStartupData] = []
        self.done = trio.Event()

    async def handle_startup_acknowledgement(
        self, startup_ack: NeuroStartupData
    ) -> None:
        self.acks.append(startup_ack)

    async def handle_action(self, action: NeuroAction) -> None:
        await self.send_action_result(action.id_, True, "it's jerald time")
        self.done.set()


async def test_upstream_style_game_against_our_server(nursery: trio.Nursery) -> None:
    server = RecordingServer(character_id="evil", display_name="Evil Neuro")
    info = await start_server(nursery, server)
    async with open_websocket_url(info.url) as connection:
        game = JeraldGame("Jerald Game", connection)
        await game.send_startup_command()
        await game.register_actions([Action("trigger_jerald_time", "become jerald")])
        await game.send_force_action("State here", "query", ["trigger_jerald_time"])
        with trio.fail_after(10):
            while not game.done.is_set():
                await game.read_message()
    [ack] = game.acks
    assert ack.session is not None
    assert (ack.session.character_id, ack.session.display_name) == (
        "evil",
        "Evil Neuro",
    )
    await server.wait_until(lambda: server.outcomes)
    [(title, outcome)] = server.outcomes
    assert title == "Jerald Game"
    assert outcome.success
    assert outcome.message == "it's jerald time"
    assert not [d for d in server.seen if d.severity != "info"]


@pytest.fixture
def manager() -> ComponentManager:
    return ComponentManager("manager")


async def test_component_actions_as_events(
    fake_neuro: FakeNeuro, manager: ComponentManager
) -> None:
    performed: list[NeuroAction] = []

    async def jump(action: NeuroAction) -> tuple[bool, str | None]:
        performed.append(action)
        return True, "jumped"

    async with open_websocket_url(fake_neuro.url) as connection:
        neuro = await fake_neuro.accept()
        component = TrioNeuroAPIComponent("game", "Jumper", connection)
        with manager.temporary_component(component):
            await component.register_neuro_actions([(JUMP, jump)])
            assert component.has_handler("neuro_jump")
            assert (await fake_neuro.receive(neuro))["command"] == "actions/register"
            await neuro.send_message(
                command.action_command("7", "jump", '{"h":1}').decode()
            )
            await component.read_message()
            result = await fake_neuro.receive(neuro)
            assert result["data"] == {"id": "7", "success": True, "message": "jumped"}
            assert performed == [NeuroAction("7", "jump", '{"h":1}')]
            # No handler: Neuro still gets a failing result, then the error.
            with pytest.raises(ValueError, match="no handler registered"):
                await component.handle_action(NeuroAction("8", "fly", None))
            result = await fake_neuro.receive(neuro)
            assert result["data"]["id"] == "8"
            assert result["data"]["success"] is False
            await component.stop()
            assert component.not_connected


async def drain(neuro: WebSocketConnection) -> None:
    """Read what the game sends, so its sends and its close go through."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await neuro.get_message()


async def test_component_temporary_actions(
    fake_neuro: FakeNeuro, manager: ComponentManager, nursery: trio.Nursery
) -> None:
    outcomes = iter([(False, "not yet"), (True, "ok")])

    async def once(action: NeuroAction) -> tuple[bool, str | None]:
        return next(outcomes)

    async with open_websocket_url(fake_neuro.url) as connection:
        nursery.start_soon(drain, await fake_neuro.accept())
        component = TrioNeuroAPIComponent("game", "G", connection)
        with manager.temporary_component(component):
            await component.register_temporary_actions([(JUMP, once)])
            await component.handle_action(NeuroAction("1", "jump", None))
            assert component.has_handler("neuro_jump")  # failed: stays
            await component.handle_action(NeuroAction("2", "jump", None))
            assert not component.has_handler("neuro_jump")  # succeeded: gone
            assert component.get_registered() == ()
            other = Action("duck", "Duck")
            names = await component.register_temporary_actions_group(
                [(JUMP, once_ok), (other, once_ok)]
            )
            assert names == ("jump", "duck")
            await component.handle_action(NeuroAction("3", "duck", None))
            assert not component.has_handler("neuro_jump")
            assert component.get_registered() == ()


async def once_ok(action: NeuroAction) -> tuple[bool, str | None]:
    return True, None


async def test_component_connects_on_its_event(
    fake_neuro: FakeNeuro, manager: ComponentManager, nursery: trio.Nursery
) -> None:
    component = TrioNeuroAPIComponent("game", "G")
    manager.add_component(component)
    component.register_handler("connect", component.handle_connect)
    done = trio.Event()

    async def connect() -> None:
        await manager.raise_event(Event("connect", fake_neuro.url))
        done.set()

    nursery.start_soon(connect)
    neuro = await fake_neuro.accept()
    with trio.fail_after(10):
        await component.wait_connected()
    await neuro.send_message(command.shutdown_immediate_command().decode())
    assert (await fake_neuro.receive(neuro))["command"] == "shutdown/ready"
    await neuro.aclose()
    with trio.fail_after(10):
        await done.wait()
    assert component.not_connected


async def test_read_message_without_a_frame_answers_broken_actions() -> None:
    # The frame is read whole and parsed as a received frame is: odd but
    # harmless keys are fine, and a broken action still gets its result.
    game = Scripted(
        "G",
        [
            '{"command":"action","data":{"id":"1","name":"jump"},"extra":1}',
            '{"command":"action","data":{"id":"2","name":5}}',
            '{"command":"actions/reregister_all","data":null}',
        ],
    )
    for _ in range(3):
        await game.read_message()
    assert game.actions_seen == [NeuroAction("1", "jump", None)]
    [result] = [orjson.loads(f) for f in game.sent]
    assert result["command"] == "action/result"
    assert result["data"]["id"] == "2"
    assert result["data"]["success"] is False


def test_star_import_works_without_libcomponent() -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys; sys.modules['libcomponent'] = None\n"
        "from neuro_api.trio_ws import *\n"
        "try:\n"
        "    from neuro_api.trio_ws import TrioNeuroAPIComponent\n"
        "except ImportError as exc:\n"
        "    assert 'trio-neuro-api[component]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('imported without libcomponent')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


async def test_hook_errors_are_logged_or_raised_as_upstream_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(Scripted):
        async def handle_immediate_shutdown(self) -> None:
            raise EOFError("jerald waz here")

    frame = command.shutdown_immediate_command()
    game = Failing("G", [frame, frame])
    await game.read_message()  # ours: logged, the loop goes on
    assert "error while handling a 'shutdown/immediate' frame" in caplog.text
    game.raise_hook_errors = True  # 4.0.0's behaviour
    with pytest.raises(EOFError, match="jerald waz here"):
        await game.read_message()


async def test_invalid_actions_are_refused_unless_told_otherwise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    string_schema = Action("say", "Say something", {"type": "string"})
    game = Scripted("G")
    with pytest.raises(ValueError, match='has type "string", not "object"'):
        await game.register_actions([string_schema])
    assert game.sent == []
    assert game.get_registered() == ()
    game.refuse_invalid_actions = False  # 4.0.0 sends it as it is
    await game.register_actions([string_schema])
    [frame] = game.sent
    assert orjson.loads(frame)["data"]["actions"][0]["schema"] == {"type": "string"}
    assert "registered anyway: refuse_invalid_actions is off" in caplog.text
