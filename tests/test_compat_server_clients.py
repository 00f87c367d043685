"""The four per-connection classes under neuro-api 4.0.0's contract.

Code written for 4.0.0 subclasses them implementing upstream's abstract
methods (positional ``handle_*(game_title, ...)``, ``register_action``,
``add_context``, a four-argument ``choose_force_action`` ...) and calls
upstream's helpers (``get_next_id``, ``submit_action``,
``perform_actions_force``, ``send_*_command``). Each is exercised here the
way such code uses it, on the same machinery our own server runs on.
"""

from __future__ import annotations

import collections
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

import orjson
import pytest
import trio
from server_helpers import PASS, PLAY, connect
from trio_websocket import ConnectionClosed

from neuro_api import command
from neuro_api.command import Action, ForcePriority
from neuro_api.server import (
    AbstractHandlerNeuroServerClient,
    AbstractNeuroServerClient,
    AbstractRecordingNeuroServerClient,
    AbstractTrioNeuroServer,
    ForcePolicy,
    RandomNeuroServer,
    ServerConfig,
    TrioNeuroServerClient,
)
from neuro_api.server._handler import ActionNames

pytestmark = pytest.mark.timeout(30)


def frames_of(sent: list[str]) -> list[dict[str, Any]]:
    return [orjson.loads(frame) for frame in sent]


# --- layer 1 ---------------------------------------------------------------------


class Layer1(AbstractNeuroServerClient):
    """Only what 4.0.0 makes abstract; ``__init__`` does not call super."""

    def __init__(self, frames: list[str | bytes] | None = None) -> None:
        self._next = 0
        self.sent: list[str] = []
        self.frames = list(frames or [])
        self.calls: list[tuple[Any, ...]] = []

    def get_next_id(self) -> str:
        self._next += 1
        return str(uuid.UUID(int=self._next))

    async def write_to_websocket(self, data: str) -> None:
        self.sent.append(data)

    async def read_from_websocket(self) -> str | bytes:
        return self.frames.pop(0)

    async def handle_actions_register(
        self, game_title: str, actions: list[Action]
    ) -> None:
        self.calls.append(("register", game_title, actions))

    async def handle_actions_unregister(
        self, game_title: str, action_names: list[str]
    ) -> None:
        self.calls.append(("unregister", game_title, action_names))

    async def handle_actions_force(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: list[str],
        priority: ForcePriority,
    ) -> None:
        self.calls.append(
            (
                "force",
                game_title,
                state,
                query,
                ephemeral_context,
                action_names,
                priority,
            )
        )

    async def handle_action_result(
        self, game_title: str, id_: str, success: bool, message: str | None
    ) -> None:
        self.calls.append(("result", game_title, id_, success, message))


async def test_layer1_sends_upstreams_commands() -> None:
    client = Layer1()
    id_ = await client.send_action_command("play", '{"cell": 1}')
    assert id_ == str(uuid.UUID(int=1))
    assert await client.send_action_command("pass") == str(uuid.UUID(int=2))
    await client.send_reregister_all_command()
    await client.send_graceful_shutdown_command(True)
    await client.send_immediate_shutdown_command()
    await client.send_setup_acknowledgement_command("s", "neuro", "Neuro-sama")
    assert frames_of(client.sent) == [
        {
            "command": "action",
            "data": {"id": id_, "name": "play", "data": '{"cell": 1}'},
        },
        {"command": "action", "data": {"id": str(uuid.UUID(int=2)), "name": "pass"}},
        {"command": "actions/reregister_all"},
        {"command": "shutdown/graceful", "data": {"wants_shutdown": True}},
        {"command": "shutdown/immediate"},
        {
            "command": "startup",
            "data": {
                "session": {
                    "sessionId": "s",
                    "characterId": "neuro",
                    "displayName": "Neuro-sama",
                }
            },
        },
    ]


async def test_layer1_read_message_calls_positional_handlers() -> None:
    frames: list[str | bytes] = [
        command.startup_command("Game").decode(),
        command.context_command("Game", "hi", True).decode(),
        command.actions_register_command("Game", [PLAY, PASS]).decode(),
        command.actions_unregister_command("Game", ["pass"]).decode(),
        command.actions_force_command(
            "Game", "board", "Your turn", ["play"], True, ForcePriority.HIGH
        ).decode(),
        command.actions_result_command("Game", "some-id", False, "no").decode(),
        command.shutdown_ready_command("Game").decode(),
    ]
    client = Layer1(frames)
    for _ in frames:
        await client.read_message()
    assert client.calls == [
        ("register", "Game", [PLAY, PASS]),
        ("unregister", "Game", ["pass"]),
        ("force", "Game", "board", "Your turn", True, ["play"], ForcePriority.HIGH),
        ("result", "Game", "some-id", False, "no"),
    ]
    assert client.sent == []  # startup and context do nothing at this layer


async def test_layer1_reports_a_bad_frame_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Upstream raises ValueError; the production server reports and goes on.
    client = Layer1(['{"command": "actions/force", "game": "Game"}', "not json"])
    await client.read_message()
    await client.read_message()
    assert client.calls == []
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]


async def test_layer1_reads_through_a_replaced_read_raw_client_message() -> None:
    class Raw(Layer1):
        async def read_raw_client_message(
            self,
        ) -> tuple[str, str, dict[str, object] | None]:
            return "actions/unregister", "Game", {"action_names": ["a"]}

    client = Raw()
    await client.read_message()
    assert client.calls == [("unregister", "Game", ["a"])]


# --- layer 2: a handler keeping its own registry, as upstream's tests do ----------


class Handler(AbstractHandlerNeuroServerClient):
    """4.0.0's handler contract: four-argument choose, inline async soon."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.context: list[tuple[str, bool]] = []
        self.registered: dict[str, Action] = {}
        self.chosen: list[frozenset[str]] = []
        self.warnings: list[str] = []

    def get_character_id(self) -> str:
        return "test_character"

    def get_websocket_session_id(self) -> str:
        return "session"

    async def write_to_websocket(self, data: str) -> None:
        self.sent.append(data)

    def clear_registered_actions(self) -> None:
        self.registered.clear()

    def add_context(self, message: str, reply_if_not_busy: bool) -> None:
        self.context.append((message, reply_if_not_busy))

    def register_action(self, action: Action) -> None:
        self.registered[action.name] = action

    def unregister_action(self, action_name: str) -> None:
        self.registered.pop(action_name, None)

    async def choose_force_action(  # type: ignore[override]
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: frozenset[str],
    ) -> tuple[str, str | None]:
        self.chosen.append(action_names)
        return next(iter(action_names)), None

    async def submit_call_async_soon(
        self, function: Callable[[], Awaitable[Any]]
    ) -> None:
        await function()

    def log_warning(self, message: str) -> None:
        self.warnings.append(message)


async def test_handler_startup_context_and_registry() -> None:
    client = Handler()
    client.registered["old"] = PASS
    await client.handle_startup("Game")
    assert client.game_title == "Game"
    assert client.registered == {}
    assert frames_of(client.sent) == [
        {
            "command": "startup",
            "data": {
                "session": {
                    "sessionId": "session",
                    "characterId": "test_character",
                    "displayName": "Test Character",
                }
            },
        }
    ]
    await client.handle_context("Game", "quiet", True)
    await client.handle_context("Game", "loud", False)
    assert client.context == [("quiet", False), ("loud", True)]
    await client.handle_actions_register("Game", [PLAY, PASS])
    await client.handle_actions_unregister("Game", ["pass"])
    assert client.registered == {"play": PLAY}
    assert client.warnings == []


def test_handler_check_game_title_in_upstreams_words() -> None:
    client = Handler()
    client.check_game_title("Game")
    assert client.warnings == [
        "A non-setup action fired before setup action, game title not set.",
        "Attempted to change game title from None to 'Game', not allowed",
    ]
    client.game_title = "Game"  # writable, as upstream's attribute
    client.warnings.clear()
    client.check_game_title("Game")
    client.check_game_title("Other")
    assert client.warnings == [
        "Attempted to change game title from 'Game' to 'Other', not allowed"
    ]


def test_handler_ids_are_unique_uuids() -> None:
    client = Handler()
    ids = [client.get_next_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(str(uuid.UUID(id_)) == id_ for id_ in ids)
    assert Handler().get_next_id() != ids[0]  # and per connection


async def test_submit_action_waits_for_its_result(nursery: trio.Nursery) -> None:
    client = Handler()
    client.game_title = "Game"
    results: list[tuple[bool, str | None]] = []

    async def submit() -> None:
        results.append(await client.submit_action("play", '{"cell": 1}'))

    nursery.start_soon(submit)
    await trio.testing.wait_all_tasks_blocked()
    [frame] = frames_of(client.sent)
    assert frame["data"]["name"] == "play"
    await client.handle_action_result("Game", frame["data"]["id"], True, "Success")
    await trio.testing.wait_all_tasks_blocked()
    assert results == [(True, "Success")]
    # The result's message reached the engine as context.
    assert client.context == [("Result of action 'play': succeeded: Success", False)]


async def test_submit_action_times_out_without_a_nursery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Not served (no nursery, no timer task): the waiter keeps the deadline.
    client = Handler()
    client.game_title = "Game"
    with trio.fail_after(client.config.result_timeout + 1):
        assert await client.submit_action("play") == (False, None)
    assert client.pending_ids == ()


async def test_unknown_result_id_is_warned_in_upstreams_words() -> None:
    client = Handler()
    client.game_title = "Game"
    await client.handle_action_result("Game", "unknown-id", True, "Success")
    assert client.warnings == [
        "Got action result for unknown action id 'unknown-id' "
        "(success = True message = 'Success')"
    ]
    assert client.diagnostics[-1].id == "result.unknown-id"


async def test_perform_actions_force_retries_within_max_retries(
    nursery: trio.Nursery,
) -> None:
    client = Handler()
    client.game_title = "Game"
    client.config = ServerConfig(max_retries=1)

    async def answer_failures() -> None:
        answered = 0
        while answered < 2:
            await trio.testing.wait_all_tasks_blocked()
            if len(client.sent) > answered:
                id_ = frames_of(client.sent)[answered]["data"]["id"]
                await client.handle_action_result("Game", id_, False, "nope")
                answered += 1

    nursery.start_soon(answer_failures)
    await client.perform_actions_force(
        "state", "query", False, ["play", "pass"], ForcePriority.LOW
    )
    assert len(client.sent) == 2  # the first try and one retry
    assert [d.id for d in client.diagnostics][-2:] == [
        "force.retry",
        "force.retries-exhausted",
    ]
    assert list(client.chosen[0]) == ["play", "pass"]  # in the force's order


async def test_a_force_frame_reaches_a_four_argument_choose() -> None:
    client = Handler()
    for frame in (
        command.startup_command("Game"),
        command.actions_register_command("Game", [PLAY, PASS]),
        command.actions_force_command("Game", None, "Go", ["pass", "play"]),
    ):
        await client.handle_frame(frame.decode())
    # No registry lookup at this layer (get_action not answered): the names
    # are offered as the game sent them.
    assert [list(names) for names in client.chosen] == [["pass", "play"]]
    action = frames_of(client.sent)[-1]
    assert (action["command"], action["data"]["name"]) == ("action", "pass")


def test_action_names_is_a_frozenset_in_the_forces_order() -> None:
    names = ActionNames(["b", "a", "c", "a"])
    assert names == frozenset("abc")
    assert isinstance(names, frozenset)
    assert list(names) == ["b", "a", "c"]
    assert repr(names) == "ActionNames(['b', 'a', 'c'])"


# --- layer 3 -----------------------------------------------------------------


class Recording(AbstractRecordingNeuroServerClient):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.warnings: list[str] = []

    async def write_to_websocket(self, data: str) -> None:
        self.sent.append(data)

    def add_context(self, message: str, reply_if_not_busy: bool) -> None:
        pass

    async def choose_force_action(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: frozenset[str],
        priority: ForcePriority = ForcePriority.LOW,
    ) -> tuple[str, str | None]:
        return next(iter(action_names)), None

    def log_warning(self, message: str) -> None:
        self.warnings.append(message)


def test_recording_registry_methods() -> None:
    client = Recording()
    client.register_action(PLAY)
    client.actions["pass"] = PASS  # upstream's registry is a plain dict
    assert client.get_action("play") == PLAY
    assert client.get_action("nope") is None
    assert client.has_action("pass")
    assert not client.has_action("nope")
    assert client.get_action_names() == frozenset({"play", "pass"})
    client.unregister_action("pass")
    client.unregister_action("nope")
    assert client.warnings == ["Attempted to unregister non-existent action: nope"]
    assert list(client.actions) == ["play"]
    client.clear_registered_actions()
    assert client.actions == {}
    assert client.memory_budget().usage(client) == 0


async def test_budget_is_given_back_even_if_a_schema_changed_meanwhile() -> None:
    # What an action holds is remembered when it is registered, so code that
    # changes a registered schema in place cannot unbalance the budget.
    client = Recording()
    schema = {"type": "object", "properties": {"cell": {"type": "integer"}}}
    frame = command.actions_register_command("Game", [Action("play", "Play", schema)])
    await client.handle_frame(frame.decode())
    budget = client.memory_budget()
    assert budget.usage(client) > 0
    cast(dict[str, Any], client.actions["play"].schema)["description"] = "x" * 10_000
    await client.handle_frame(command.actions_unregister_command("Game", ["play"]))
    assert budget.usage(client) == 0
    assert budget.used == 0


def test_register_action_keeps_the_memory_budget() -> None:
    client = Recording()
    client.config = ServerConfig(max_game_memory=4096)
    client.register_action(Action("big", "x" * 10_000))
    assert "big" not in client.actions
    assert client.diagnostics[-1].id == "action.memory-limit"


# --- layers 4 and 5 ------------------------------------------------------------


def test_trio_client_holds_its_server_weakly() -> None:
    server = RandomNeuroServer()
    client = TrioNeuroServerClient(cast(Any, None), server, "session-1")
    assert client.server is server
    assert client.get_websocket_session_id() == "session-1"
    assert client.websocket_session_id == "session-1"
    assert client.get_character_id() == "neuro"
    client._server_ref = weakref.ref(cast(Any, lambda: None))
    with pytest.raises(ValueError, match="Reference to server is dead"):
        _ = client.server


def test_trio_client_log_warning_names_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Remote:
        address, port = "127.0.0.1", 1234

    class Socket:
        CONNECTION_ID = 7
        remote = Remote()

    server = RandomNeuroServer()
    client = TrioNeuroServerClient(cast(Any, Socket()), server)
    client.game_title = "Game"
    with caplog.at_level(logging.WARNING, logger="neuro_api.server"):
        client.log_warning("careful")
    assert caplog.records[-1].getMessage() == "[Game (7 127.0.0.1:1234)] careful"


class OwnLoop(TrioNeuroServerClient):
    """A client that runs forces its own way (upstream's override point)."""

    performed: ClassVar[list[tuple[Any, ...]]] = []

    async def perform_actions_force(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: list[str],
        priority: ForcePriority = ForcePriority.LOW,
    ) -> None:
        self.performed.append((state, query, ephemeral_context, action_names, priority))
        await self.submit_action(action_names[0])


class OwnLoopServer(RandomNeuroServer):
    client_class = OwnLoop


async def test_an_overridden_perform_actions_force_gets_each_force(
    nursery: trio.Nursery,
) -> None:
    server = OwnLoopServer()
    info = await nursery.start(server.run, "127.0.0.1", 0)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await game.force("nope", "pass", "play")
        action = await game.expect_action()
        assert (action.name, action.data_json) == ("pass", None)
        await game.result(action.id, True, "ok")
    # Unknown names are left out (reported), as for every force.
    assert OwnLoop.performed == [(None, "Your turn", False, ["pass", "play"], "low")]


async def test_submit_call_async_soon_runs_in_the_connection(
    nursery: trio.Nursery,
) -> None:
    ran = trio.Event()

    class Spawning(TrioNeuroServerClient):
        async def handle_startup(self, game_title: str) -> None:
            await super().handle_startup(game_title)

            async def work() -> None:
                ran.set()

            await self.submit_call_async_soon(work)

    class Server(RandomNeuroServer):
        client_class = Spawning

    server = Server()
    info = await nursery.start(server.run, "127.0.0.1", 0)
    async with connect(info.url, "Game") as game:
        await game.startup()
        with trio.fail_after(5):
            await ran.wait()


def test_upstreams_client_constructor_order() -> None:
    class Server(AbstractTrioNeuroServer):
        def add_context(self, game_title: str, message: str, reply: bool) -> None:
            pass

        async def choose_force_action(  # type: ignore[override]
            self,
            game_title: str,
            state: str | None,
            query: str,
            ephemeral_context: bool,
            actions: tuple[Action, ...],
        ) -> tuple[str, str | None]:
            return actions[0].name, None

    server = Server("evil")
    client = TrioNeuroServerClient(cast(Any, None), server, "id")
    assert (client.server, client.get_character_id()) == (server, "evil")


class CustomClient(AbstractRecordingNeuroServerClient):
    """The reference page's "Custom Client Handler", as written there.

    Plus what a runnable one needs: a socket to write to, the AI system and
    the task scheduler it names.
    """

    def __init__(self, ai_system: Any, task_scheduler: Any) -> None:
        super().__init__()
        self.ai_system = ai_system
        self.task_scheduler = task_scheduler
        self.sent: list[str] = []

    async def write_to_websocket(self, data: str) -> None:
        self.sent.append(data)

    def add_context(self, message, reply_if_not_busy):  # type: ignore[no-untyped-def]
        # Custom context handling
        self.log_info(f"Game context: {message}")

    async def choose_force_action(self, state, query, ephemeral_context, action_names):  # type: ignore[no-untyped-def,override]
        # Custom AI integration
        return await self.ai_system.choose_action(state, query, list(action_names))

    async def submit_call_async_soon(self, function):  # type: ignore[no-untyped-def]
        # Schedule with custom task manager
        await self.task_scheduler.schedule(function)


async def test_the_reference_pages_custom_client_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class AI:
        asked: list[tuple[Any, ...]] = []  # noqa: RUF012

        async def choose_action(
            self, state: str | None, query: str, names: list[str]
        ) -> tuple[str, str | None]:
            self.asked.append((state, query, names))
            return names[-1], '{"cell": 4}'

    class Scheduler:
        async def schedule(self, function: Callable[[], Awaitable[Any]]) -> None:
            await function()

    caplog.set_level(logging.INFO, logger="neuro_api.server")
    client = CustomClient(AI(), Scheduler())
    for frame in (
        command.startup_command("Game"),
        command.context_command("Game", "the board is empty"),
        command.actions_register_command("Game", [PASS, PLAY]),
        command.actions_force_command("Game", "board", "Your turn", ["pass", "play"]),
    ):
        await client.handle_frame(frame.decode())
    assert AI.asked == [("board", "Your turn", ["pass", "play"])]
    action = frames_of(client.sent)[-1]
    assert action["data"]["name"] == "play"
    assert action["data"]["data"] == '{"cell": 4}'
    assert "Game context: the board is empty" in caplog.text


# --- robustness of the upstream-shaped paths (found in review) ----------------


class Answering(Recording):
    """Upstream style, not served: the game answers during the very write."""

    def __init__(self, nursery: trio.Nursery | None = None) -> None:
        super().__init__()
        self.nursery = nursery
        self.answer: bool | None = None  # answer actions while writing

    async def write_to_websocket(self, data: str) -> None:
        await super().write_to_websocket(data)
        frame = orjson.loads(data)
        if self.answer is not None and frame["command"] == "action":
            await self.handle_action_result(
                "Game", frame["data"]["id"], self.answer, "answered"
            )

    async def submit_call_async_soon(
        self, function: Callable[[], Awaitable[Any]]
    ) -> None:
        if self.nursery is None:
            await function()
        else:
            self.nursery.start_soon(function)


async def start(client: AbstractNeuroServerClient, *actions: Action) -> None:
    await client.handle_frame(command.startup_command("Game").decode())
    await client.handle_frame(command.actions_register_command("Game", actions))


async def test_a_result_handled_during_the_write_is_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = Answering()
    await start(client, PLAY)
    client.answer = True
    with trio.fail_after(1):
        assert await client.submit_action("play") == (True, "answered")
    assert "result.timeout" not in [d.id for d in client.diagnostics]


async def test_an_unserved_clients_actions_still_time_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # No nursery, so no timer task: what is due times out with the next frame.
    client = Answering()
    await start(client, PLAY)
    for _ in range(50):
        await client.handle_frame(
            command.actions_force_command("Game", None, "go", ["play"]).decode()
        )
    await trio.sleep(client.config.result_timeout + 1)
    await client.handle_frame(command.context_command("Game", "hello").decode())
    assert client.pending_ids == ()
    assert client.active_force is None
    assert "result.timeout" in [d.id for d in client.diagnostics]


async def test_queued_forces_of_an_unserved_client_do_not_raise() -> None:
    client = Answering()
    client.config = ServerConfig(force_policy=ForcePolicy.QUEUE)
    client._queued = collections.deque(maxlen=8)
    await start(client, PLAY)
    for query in ("first", "second"):
        await client.handle_frame(
            command.actions_force_command("Game", None, query, ["play"]).decode()
        )
    id_ = frames_of(client.sent)[-1]["data"]["id"]
    await client.handle_frame(
        command.actions_result_command("Game", id_, True, "ok").decode()
    )
    assert client.active_force is None  # the first ended; the queue waits


async def test_a_hand_made_clients_failed_send_cannot_stop_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Leaving:
        """A socket whose game left before the engine answered."""

        CONNECTION_ID = 1
        remote = "x"

        async def send_message(self, message: str) -> None:
            if '"action"' in message:
                raise ConnectionClosed(None)

    class Slow(RandomNeuroServer):
        def choose_force_action_now(self, *args: Any, **kwargs: Any) -> None:
            return None

        async def choose_force_action(
            self, *args: Any, **kwargs: Any
        ) -> tuple[str, str | None]:
            await trio.sleep(1)
            return "play", None

    server = Slow()
    async with trio.open_nursery() as nursery:
        server.handler_nursery = nursery  # what run() sets
        client = TrioNeuroServerClient(cast(Any, Leaving()), server, "sid")
        await start(client, PLAY)
        await client.handle_frame(
            command.actions_force_command("Game", None, "go", ["play"]).decode()
        )
    # The nursery ended normally: the failed send ended the force only.
    assert client.active_force is None


async def test_an_overridden_perform_actions_force_runs_one_force_at_a_time(
    nursery: trio.Nursery,
) -> None:
    started: list[str] = []

    class Thinking(Answering):
        async def perform_actions_force(
            self,
            state: str | None,
            query: str,
            ephemeral_context: bool,
            action_names: list[str],
            priority: ForcePriority = ForcePriority.LOW,
        ) -> None:
            started.append(query)
            await trio.sleep_forever()  # an operator who takes their time

    async with trio.open_nursery() as forces:
        client = Thinking(forces)
        await start(client, PLAY)
        for i in range(1000):
            await client.handle_frame(
                command.actions_force_command("Game", None, f"q{i}", ["play"])
            )
        await trio.testing.wait_all_tasks_blocked()
        assert len(forces.child_tasks) == 1  # each force replaced the last
        assert client.active_force is not None
        assert client.active_force.query == "q999"
        forces.cancel_scope.cancel()


async def test_unknown_result_ids_are_warned_a_few_times_shortened() -> None:
    client = Recording()
    await start(client, PLAY)
    for i in range(100):
        await client.handle_frame(
            command.actions_result_command("Game", f"id{i}", False, "x" * 5000)
        )
    assert len(client.warnings) == 5
    assert all(len(warning) < 600 for warning in client.warnings)
    assert [d.id for d in client.diagnostics].count("result.unknown-id") == 100


async def test_game_frames_go_through_overridden_registry_methods() -> None:
    seen: list[tuple[str, str]] = []

    class Hooked(Recording):
        def register_action(self, action: Action) -> None:
            seen.append(("register", action.name))
            super().register_action(action)

        def unregister_action(self, action_name: str) -> None:
            seen.append(("unregister", action_name))
            super().unregister_action(action_name)

    client = Hooked()
    bad = Action("bad", "Bad", {"type": "string"})
    await start(client, PLAY, PASS, bad)
    await client.handle_frame(
        command.actions_unregister_command("Game", ["pass", "no"])
    )
    # Checked first (the bad one never reaches the hook), then upstream's hooks.
    assert seen == [("register", "play"), ("register", "pass"), ("unregister", "pass")]
    assert list(client.actions) == ["play"]


async def test_unknown_commands_reach_the_hook_on_the_server_side() -> None:
    got: list[tuple[str, dict[str, object] | None]] = []

    class Listening(Recording):
        async def handle_unknown_command(
            self, command: str, data: dict[str, object] | None
        ) -> None:
            got.append((command, data))

    client = Listening()
    await start(client, PLAY)
    await client.handle_frame('{"command": "dance", "game": "Game", "data": {"x": 1}}')
    assert got == [("dance", {"x": 1})]
    assert client.diagnostics[-1].id == "protocol.unknown-command"


def test_websocket_session_id_is_writable() -> None:
    server = RandomNeuroServer()
    client = TrioNeuroServerClient(cast(Any, None), server)
    client.websocket_session_id = "mine"
    assert client.get_websocket_session_id() == "mine"


async def test_an_overridden_force_replaced_before_it_starts_sends_nothing() -> None:
    class Eager(Answering):
        async def perform_actions_force(
            self,
            state: str | None,
            query: str,
            ephemeral_context: bool,
            action_names: list[str],
            priority: ForcePriority = ForcePriority.LOW,
        ) -> None:
            await self.send_action_command(action_names[0])  # no checkpoint first

    async with trio.open_nursery() as forces:
        client = Eager(forces)
        await start(client, PLAY)
        for i in range(10):
            await client.handle_frame(
                command.actions_force_command("Game", None, f"q{i}", ["play"])
            )
        await trio.testing.wait_all_tasks_blocked()
        sent = [f for f in frames_of(client.sent) if f["command"] == "action"]
        assert len(sent) == 1  # only the last force's
        forces.cancel_scope.cancel()


def assert_no_force(client: AbstractHandlerNeuroServerClient) -> None:
    assert client.active_force is None


async def test_an_overriding_unregister_still_ends_the_force_it_empties() -> None:
    class OwnRegistry(Answering):
        def unregister_action(self, action_name: str) -> None:
            self.actions.pop(action_name, None)  # not calling super()

    async with trio.open_nursery() as nursery:
        client = OwnRegistry(nursery)
        await start(client, PLAY)
        await client.handle_frame(
            command.actions_force_command("Game", None, "go", ["play"])
        )
        assert client.active_force is not None  # its action waits for a result
        client._pending.clear()  # (say it was answered and the game moved on)
        await client.handle_frame(command.actions_unregister_command("Game", ["play"]))
        assert_no_force(client)
        nursery.cancel_scope.cancel()


async def test_an_overriding_register_still_gets_collisions_reported() -> None:
    class Hooked(TrioNeuroServerClient):
        def register_action(self, action: Action) -> None:
            super().register_action(action)

    async def quiet(data: str) -> None:
        pass

    server = RandomNeuroServer()
    for game, cls in (("A", TrioNeuroServerClient), ("B", Hooked)):
        client = cls(cast(Any, None), server, game)
        client.write_to_websocket = quiet  # type: ignore[method-assign]
        await client.handle_frame(command.startup_command(game))
        await client.handle_frame(command.actions_register_command(game, [PLAY]))
    assert "action.name-collision" in [d.id for d in client.diagnostics]


async def test_queued_forces_of_an_unserved_client_start_in_order() -> None:
    client = Answering()
    client.config = ServerConfig(force_policy=ForcePolicy.QUEUE)
    client._queued = collections.deque(maxlen=8)
    await start(client, PLAY)
    for query in ("first", "second"):
        await client.handle_frame(
            command.actions_force_command("Game", None, query, ["play"]).decode()
        )
    id_ = frames_of(client.sent)[-1]["data"]["id"]
    await client.handle_frame(command.actions_result_command("Game", id_, True, "ok"))
    await client.handle_frame(
        command.actions_force_command("Game", None, "third", ["play"])
    )
    # The queued one first, not overtaken by the newest.
    assert client.active_force is not None
    assert client.active_force.query == "second"


async def test_a_failing_unknown_command_hook_does_not_end_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Recording):
        async def handle_unknown_command(
            self, command: str, data: dict[str, object] | None
        ) -> None:
            raise RuntimeError("bug in a hook")

    client = Broken()
    await start(client, PLAY)
    await client.handle_frame('{"command": "dance", "game": "Game"}')
    assert "handle_unknown_command failed" in caplog.text


async def test_a_choice_run_in_the_reader_is_not_cut_off_mid_send(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 4.0.0's documented submit_call_async_soon awaits the work in place, so
    # the engine's answer is sent by the connection's reader. Ending the
    # force (here: its result timer, shorter than the send timeout) must not
    # cancel that send halfway; only the send guard may, after send_timeout.
    cut: list[float] = []

    class NotReading:
        CONNECTION_ID = 1
        remote = "x"
        closed = None

        def __init__(self) -> None:
            self.to_server, self.incoming = trio.open_memory_channel[str](100)

        async def get_message(self) -> str:
            try:
                return await self.incoming.receive()
            except trio.EndOfChannel:
                raise ConnectionClosed(None) from None

        async def send_message(self, message: str) -> None:
            if '"action"' in message:
                try:
                    await trio.sleep_forever()  # the game does not read
                except trio.Cancelled:
                    cut.append(trio.current_time())
                    raise

        async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
            await trio.lowlevel.checkpoint()

    class Slow(RandomNeuroServer):
        def choose_force_action_now(self, *args: Any, **kwargs: Any) -> None:
            return None

    class Inline(TrioNeuroServerClient):
        async def submit_call_async_soon(
            self, function: Callable[[], Awaitable[Any]]
        ) -> None:
            await function()

    server = Slow(ServerConfig(result_timeout=1.0, send_timeout=10.0))
    socket = NotReading()
    client = Inline(cast(Any, socket), server, "sid")
    start_time = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.serve)
        for _ in range(4):  # the reader's guard is active from now on
            await socket.to_server.send(command.startup_command("Game").decode())
        await socket.to_server.send(
            command.actions_register_command("Game", [PLAY]).decode()
        )
        await socket.to_server.send(
            command.actions_force_command("Game", None, "go", ["play"]).decode()
        )
    # Cut by the send guard at send_timeout (and the connection closed),
    # not at the 1 s result timeout.
    assert len(cut) == 1
    assert cut[0] - start_time >= 10.0
