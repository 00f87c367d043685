"""The console engine in-process: typed lines in, printed text out.

Input is a Trio memory stream and output a StringIO, so no subprocess or
terminal is needed; games are real WebSocket clients on 127.0.0.1, port 0.
Every wait has a deadline; the game side always closes first.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection, open_websocket_url

from neuro_api import command
from neuro_api.command import (
    Action,
    ActionMessage,
    ForcePriority,
    GracefulShutdown,
    ImmediateShutdown,
    ReregisterAll,
    SpeechFinished,
)
from neuro_api.schema import validate_action_data
from neuro_api.server import Console as ServerConsole
from neuro_api.server import (
    ConsoleInteractiveNeuroServer,
    RandomNeuroServer,
    ServerConfig,
    TrioNeuroServerClient,
)
from neuro_api.server._console import parse_command

TITLE = "Tic Tac Toe"
PLAY = Action(
    "play",
    "Play a cell",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)
PASS = Action("pass", "Pass the turn")
WAIT = 5.0


class Screen(io.StringIO):
    """Console output that wakes whoever waits for new text."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = trio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self.changed.set()
        self.changed = trio.Event()
        return written


class Console:
    """A running console: type lines, wait for printed text."""

    def __init__(
        self,
        server: ConsoleInteractiveNeuroServer,
        keys: trio.testing.MemorySendStream,
        screen: Screen,
        url: str,
    ) -> None:
        self.server = server
        self.keys = keys
        self.screen = screen
        self.url = url
        self.seen = 0

    async def type(self, line: str) -> None:
        await self.keys.send_all(line.encode() + b"\n")

    async def expect(self, text: str) -> str:
        """Wait for ``text`` after the last expected text; return what led to it."""
        with trio.fail_after(WAIT):
            while (found := self.screen.getvalue().find(text, self.seen)) < 0:
                await self.screen.changed.wait()
        end = found + len(text)
        shown = self.screen.getvalue()[self.seen : end]
        self.seen = end
        return shown

    def client(self, title: str = TITLE) -> TrioNeuroServerClient:
        client = self.server.get_client(title)
        assert client is not None, title
        return client


async def eventually(check: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT):
        while True:
            if check():
                return
            await trio.sleep(0.01)


@pytest.fixture
async def console(nursery: trio.Nursery) -> Console:
    keys, typed = trio.testing.memory_stream_one_way_pair()
    screen = Screen()
    server = ConsoleInteractiveNeuroServer(
        ServerConfig(result_timeout=5), input=typed, output=screen, seed=7
    )
    info = await nursery.start(server.run, "127.0.0.1", 0)
    return Console(server, keys, screen, info.url)


@contextlib.asynccontextmanager
async def connect(
    console: Console, title: str = TITLE, actions: Sequence[Action] = (PLAY, PASS)
) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(console.url) as ws:
        await ws.send_message(command.startup_command(title).decode())
        await recv(ws)
        await ws.send_message(command.actions_register_command(title, actions).decode())
        await eventually(
            lambda: (
                (c := console.server.get_client(title)) is not None
                and len(c.actions) == len(actions)
            )
        )
        yield ws


async def recv(ws: WebSocketConnection) -> command.NeuroMessage:
    with trio.fail_after(WAIT):
        return command.parse_neuro_frame(await ws.get_message())


async def recv_action(ws: WebSocketConnection) -> ActionMessage:
    message = await recv(ws)
    assert isinstance(message, ActionMessage), message
    return message


async def force(
    ws: WebSocketConnection, title: str = TITLE, names: Sequence[str] = ("play", "pass")
) -> None:
    await ws.send_message(
        command.actions_force_command(
            title, "board: empty", "Your move", names, priority=ForcePriority.HIGH
        ).decode()
    )


def data_of(message: ActionMessage) -> Any:
    assert message.data_json is not None
    return orjson.loads(message.data_json)


# --- parsing (no event loop needed) -------------------------------------------


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("", ("", [], "")),
        ("   ", ("", [], "")),
        ("list", ("list", [], "")),
        ('diag "Tic Tac Toe"', ("diag", ["Tic Tac Toe"], "")),
        ("shutdown graceful g", ("shutdown", ["graceful", "g"], "")),
        ('send "My Game" play {"a": 1,  "b": [1]}', ("send", ["My Game", "play"], '{"a": 1,  "b": [1]}')),  # noqa: E501
        ("send! g p  not json ", ("send!", ["g", "p"], "not json")),
        ("send g", ("send", ["g"], "")),
    ],
)  # fmt: skip
def test_parse_command(line: str, parsed: tuple[str, list[str], str]) -> None:
    assert parse_command(line) == parsed


def test_parse_command_unbalanced_quote() -> None:
    with pytest.raises(ValueError, match="quotation"):
        parse_command('diag "Tic')


# --- commands -------------------------------------------------------------------


async def test_help_unknown_and_unparsable(console: Console) -> None:
    await console.type("help")
    shown = await console.expect("quit - Stop the server")
    for name in (
        "Available Commands:",
        "list - Show all connected clients",
        "send <client_id> <action_name> [JSON]",
        "send! <client_id>",
        "diag",
        "reregister",
        "shutdown",
    ):
        assert name in shown
    await console.type("bogus")
    await console.expect("unknown command 'bogus'; type help")
    await console.type('diag "Tic')
    await console.expect("cannot parse that line")
    await console.type("list")
    await console.expect("no games connected")


async def test_list_shows_games_actions_and_pending(console: Console) -> None:
    async with connect(console) as ws:
        session = console.client().session_id
        await console.type(f"send {TITLE!r} pass")
        await recv_action(ws)  # left unanswered: stays pending
        await console.type("list")
        shown = await console.expect("pending: ")
        assert f"{TITLE} (session {session})" in shown
        assert '    play: Play a cell {"type":"object"' in shown
        assert "    pass: Pass the turn" in shown
        await console.expect(f"{session[:8]}-{session[8:12]}-{session[12:16]}-")


async def test_send_refuses_off_schema_data(console: Console) -> None:
    async with connect(console) as ws:
        await console.type(f'send "{TITLE}" play {{"cell": 99}}')
        await console.expect("not sent: Invalid action data: data.cell")
        await console.type(f'send "{TITLE}" play {{"cell": 5}}')
        message = await recv_action(ws)  # the first frame: nothing sent before
        assert (message.name, data_of(message)) == ("play", {"cell": 5})
        await ws.send_message(
            command.actions_result_command(TITLE, message.id, True, "placed").decode()
        )
        await console.expect(
            f"[{TITLE}] [CONTEXT] Result of action 'play': succeeded: placed"
        )


async def test_send_without_data_sends_a_valid_example(console: Console) -> None:
    async with connect(console) as ws:
        session = console.client().session_id
        await console.type(f"send {session} play")
        message = await recv_action(ws)
        assert validate_action_data(PLAY.schema, message.data_json).ok
        await ws.send_message(
            command.actions_result_command(TITLE, message.id, True).decode()
        )
        await console.expect("action 'play' succeeded (no message)")
        await console.type(f"send {session[:6]} pass")  # a unique id prefix
        message = await recv_action(ws)
        assert (message.name, message.data_json) == ("pass", None)


async def test_send_bang_sends_anything(console: Console) -> None:
    async with connect(console) as ws:
        await console.type(f"send! '{TITLE}' play not json")
        message = await recv_action(ws)
        assert (message.name, message.data_json) == ("play", "not json")
        await console.type(f"send '{TITLE}' nope")
        await console.expect("unknown action 'nope' (registered: play, pass)")
        await console.type(f"send! '{TITLE}' nope")
        await console.expect("'nope' is not registered; sent anyway")
        message = await recv_action(ws)
        assert (message.name, message.data_json) == ("nope", None)
        await console.type("send Nobody play")
        await console.expect("unknown game 'Nobody'; connected: Tic Tac Toe")
        await console.type("send Nobody")
        await console.expect("usage: send GAME ACTION [JSON]")


async def test_game_messages_reach_every_or_one_game(console: Console) -> None:
    async with connect(console) as one, connect(console, "Chess") as two:
        await console.type("reregister")
        for ws in (one, two):
            assert isinstance(await recv(ws), ReregisterAll)
        await console.type("shutdown graceful Chess")
        await console.type("shutdown cancel Chess")
        await console.type("shutdown immediate Chess")
        await console.type("speech-finished Chess")
        shutdown = await recv(two)
        assert isinstance(shutdown, GracefulShutdown)
        assert shutdown.wants_shutdown
        cancel = await recv(two)
        assert isinstance(cancel, GracefulShutdown)
        assert not cancel.wants_shutdown
        assert isinstance(await recv(two), ImmediateShutdown)
        finished = await recv(two)
        assert isinstance(finished, SpeechFinished)
        assert finished.is_final
        await console.type("shutdown")
        await console.expect("usage: shutdown graceful|cancel|immediate [GAME]")
        await console.type("reregister Nobody")
        await console.expect("unknown game 'Nobody'")
        await console.type("speech-finished")
        await console.expect("[Tic Tac Toe] sent speech_finished")


async def test_context_and_diagnostics_are_printed(console: Console) -> None:
    async with connect(console) as ws:
        await ws.send_message(
            command.context_command(TITLE, "quiet", silent=True).decode()
        )
        await console.expect(f"[{TITLE}] [CONTEXT] quiet")
        await ws.send_message(
            command.context_command(TITLE, "loud", silent=False).decode()
        )
        await console.expect(f"[{TITLE}] [CONTEXT] loud (reply_if_not_busy = True)")
        await ws.send_message(command.context_command(TITLE, " ").decode())
        await console.expect("warning [Tic Tac Toe] context.empty")
        await console.expect("hint: Send context only when")
        await console.type(f"diag '{TITLE}'")
        shown = await console.expect("context.empty: context message is empty")
        assert f"{TITLE}: 1 diagnostics" in shown
        await console.type("diag Nobody")
        await console.expect("unknown game 'Nobody'")


async def test_diag_without_diagnostics(console: Console) -> None:
    await console.type("diag")
    await console.expect("no diagnostics")


# --- force prompts ------------------------------------------------------------------


async def test_force_prompt_accepts_the_defaults(console: Console) -> None:
    async with connect(console) as ws:
        await force(ws)
        shown = await console.expect("action (1-2 or name) [1]: ")
        assert f"[{TITLE}] FORCE (priority high)" in shown
        assert "state: board: empty" in shown
        assert "query: Your move" in shown
        assert "1) play: Play a cell" in shown
        assert "2) pass: Pass the turn" in shown
        await console.type("")
        shown = await console.expect("]: ")
        example = shown.split("data [", 1)[1].removesuffix("]: ")
        await console.type("")
        message = await recv_action(ws)
        assert message.name == "play"
        assert message.data_json == example
        assert validate_action_data(PLAY.schema, example).ok


async def test_force_prompt_reasks_until_valid(console: Console) -> None:
    async with connect(console) as ws:
        await force(ws)
        await console.expect("[1]: ")
        await console.type("3")
        await console.expect("no action '3': type 1 to 2 or an action name")
        await console.type("play")
        await console.expect("data [")
        await console.type("{bad")
        await console.expect("refused: Action data is not valid JSON")
        await console.type('{"cell": 0}')
        await console.expect("refused: Invalid action data: data.cell")
        await console.type('{"cell": 4}')
        message = await recv_action(ws)
        assert data_of(message) == {"cell": 4}


async def test_force_prompt_bang_sends_invalid_data(console: Console) -> None:
    async with connect(console) as ws:
        await force(ws)
        await console.expect("[1]: ")
        await console.type("1")
        await console.expect("data [")
        await console.type('!{"cell": 0}')
        message = await recv_action(ws)
        assert data_of(message) == {"cell": 0}
        await ws.send_message(
            command.actions_result_command(
                TITLE, message.id, False, "no cell 0"
            ).decode()
        )
        await console.expect("failed: no cell 0")
        await console.expect("[1]: ")  # the force is retried
        await console.type("pass")
        await console.expect("data [none]: ")
        await console.type("")
        message = await recv_action(ws)
        assert (message.name, message.data_json) == ("pass", None)


async def test_slash_runs_a_command_during_a_prompt(console: Console) -> None:
    async with connect(console) as ws:
        await force(ws)
        await console.expect("[1]: ")
        await console.type("/list")
        shown = await console.expect("[1]: ")  # listed, then asked again
        assert "force: 'Your move' -> play, pass (priority high)" in shown
        await console.type("2")
        await console.type("")
        assert (await recv_action(ws)).name == "pass"


async def test_replaced_force_cancels_its_prompt(console: Console) -> None:
    async with connect(console) as ws:
        await force(ws)
        await console.expect("[1]: ")
        await force(ws, names=["pass"])
        await console.expect(f"[{TITLE}] force cancelled; moving on")
        shown = await console.expect("(1-1 or name) [1]: ")
        assert "1) pass" in shown
        await console.type("")
        await console.type("")
        assert (await recv_action(ws)).name == "pass"


async def test_forces_of_several_games_are_asked_in_turn(console: Console) -> None:
    async with (
        connect(console) as one,
        connect(console, "Chess") as two,
        connect(console, "Go") as three,
    ):
        await force(one)
        await console.expect(f"[{TITLE}] FORCE")
        await force(two, "Chess")
        await console.expect("[Chess] force waiting its turn")
        await force(three, "Go")
        await console.expect("[Go] force waiting its turn")
        await console.type("pass")
        await console.type("")
        assert (await recv_action(one)).name == "pass"
        await console.expect("[Chess] FORCE (priority high, 1 more force waiting)")
        await console.type("pass")
        await console.type("")
        assert (await recv_action(two)).name == "pass"
        await console.expect("[Go] FORCE (priority high)")
        await console.type("pass")
        await console.type("")
        assert (await recv_action(three)).name == "pass"


async def test_end_of_input_answers_forces_automatically(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(console) as ws:
        await force(ws, names=["play"])
        await console.expect("[1]: ")
        await console.keys.aclose()  # the open prompt is answered for us
        message = await recv_action(ws)
        assert validate_action_data(PLAY.schema, message.data_json).ok
        await ws.send_message(
            command.actions_result_command(TITLE, message.id, True).decode()
        )
        await force(ws, names=["play"])  # and so is every later force
        message = await recv_action(ws)
        assert validate_action_data(PLAY.schema, message.data_json).ok
    assert console.server.input_ended
    ended = [r for r in caplog.records if "console input ended" in r.getMessage()]
    assert len(ended) == 1


async def test_quit_returns_from_run() -> None:
    keys, typed = trio.testing.memory_stream_one_way_pair()
    server = ConsoleInteractiveNeuroServer(input=typed, output=io.StringIO())
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, "127.0.0.1", 0)
            await keys.send_all(b"quit\n")
        # run() returned by itself: the nursery closed without a cancel.


class BrokenOutput(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_closed_output_does_not_stop_the_console(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys, typed = trio.testing.memory_stream_one_way_pair()
    server = ConsoleInteractiveNeuroServer(input=typed, output=BrokenOutput())
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, "127.0.0.1", 0)
            await keys.send_all(b"help\nlist\nquit\n")
    dropped = [r for r in caplog.records if "console output is closed" in r.message]
    assert len(dropped) == 1


async def test_the_idle_prompt_comes_back_below_lines_said_meanwhile() -> None:
    typed, lines = trio.testing.memory_stream_pair()
    output = io.StringIO()
    console = ServerConsole(RandomNeuroServer(), input=lines, output=output)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(console.run)
        await trio.testing.wait_all_tasks_blocked()
        assert output.getvalue() == ""  # no prompt until it is enabled
        console.enable_idle_prompt("neuro> ")
        assert output.getvalue() == "neuro> "
        console.say("[Game] connected")  # said while the prompt waits
        assert output.getvalue() == "neuro> \r\x1b[K[Game] connected\nneuro> "
        await typed.send_all(b"bogus\n")
        await trio.testing.wait_all_tasks_blocked()
        assert output.getvalue().endswith("unknown command 'bogus'; type help\nneuro> ")
        nursery.cancel_scope.cancel()
