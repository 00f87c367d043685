"""The console: command lines typed at a terminal, with any engine.

:class:`Console` reads lines without blocking the event loop and runs them
as commands (``help`` lists them): the built-in ones (``list``, ``send``,
``diag``, ``quit``...) and those capabilities add (:class:`ConsoleCommand`).
The console engine (:class:`~neuro_api.server.ConsoleInteractiveNeuroServer`)
has one, whose force prompts take the lines while they are open;
``python -m neuro_api.server --console`` gives any other engine one.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import shlex
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, TextIO

import orjson
import trio
from trio_websocket import ConnectionClosed

from neuro_api._text import printable
from neuro_api.command import Action
from neuro_api.schema import GenerationError, SchemaError
from neuro_api.server._lines import LineReader, stdin_stream
from neuro_api.server._random import RandomNeuroServer
from neuro_api.server._trio_client import TrioNeuroServerClient

if TYPE_CHECKING:
    from neuro_api.server._base import AbstractTrioNeuroServer

__all__ = ["Console", "ConsoleCommand", "parse_command"]

LOGGER: Final = logging.getLogger("neuro_api.server.console")
_DIAGNOSTICS_SHOWN: Final = 20
_SEND_COMMANDS: Final = frozenset({"send", "send!"})
_WIDTH: Final = 79
_HELP_HEAD: Final = """\
Available Commands:
(<client_id> is a game title, a session id, or a unique prefix of 4 or more
characters of a session id; [<client_id>] left out means every game)"""
_HELP_TAIL: Final = """\
JSON and DATA are the rest of the line, written as is (or quoted as one word).
While a force prompt is open, lines answer it: Enter takes the default in
brackets, and !DATA sends DATA unchecked (! alone sends no data). A line
starting with / is always a command (/list, /quit), even at a prompt."""
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_!")


# --- pure helpers ----------------------------------------------------------


def _split(line: str, words: int) -> tuple[list[str], str]:
    stream = io.StringIO(line)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    found: list[str] = []
    while len(found) < words:
        token = lexer.get_token()
        if token is None:
            break
        found.append(token)
    return found, stream.read()


def parse_command(line: str) -> tuple[str, list[str], str]:
    """Split a console line into ``(command, arguments, data)``.

    Words are split like a shell (``shlex``), so titles with spaces are
    quoted. For ``send`` and ``send!`` the arguments are the game and the
    action, and ``data`` is the rest of the line as typed (stripped), so
    JSON needs no quoting; for other commands ``data`` is empty. Raises
    :class:`ValueError` for unbalanced quotes. An empty line gives ``""``.
    """
    head, rest = _split(line, 3)
    if not head:
        return "", [], ""
    if head[0] in _SEND_COMMANDS:
        return head[0], head[1:], rest.strip()
    words = shlex.split(line)
    return words[0], words[1:], ""


def _data_text(raw: str) -> str | None:
    """Typed data as JSON text: as typed, or unquoted if that makes it JSON."""
    if not raw:
        return None
    if _is_json(raw):
        return raw
    try:
        words = shlex.split(raw)
    except ValueError:
        return raw
    if len(words) == 1 and _is_json(words[0]):
        return words[0]
    return raw


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


async def data_refusal(
    server: AbstractTrioNeuroServer, action: Action | None, data: str
) -> str | None:
    """Why ``data`` does not fit ``action`` (``None`` if it does)."""
    schema = None if action is None else action.schema
    try:
        result = await server.validate_data(schema, data)
    except SchemaError as exc:
        return f"the action's schema is invalid: {exc}"
    return None if result.ok else result.reason


def compact_json(value: object) -> str:
    return orjson.dumps(value).decode()


def _title(client: TrioNeuroServerClient) -> str:
    return _p(client.game_title or f"(no startup yet, session {client.session_id})")


def _p(text: str) -> str:
    """Game-supplied ``text`` fit for the console (see neuro_api._text)."""
    return printable(text)


CommandHandler = Callable[["Console", list[str], str], Awaitable[None]]
"""``async def handler(console, args, data)``: ``args`` are the words after
the command's name (split like a shell), ``data`` is empty (only ``send``
gets the rest of the line). Print with ``console.say``."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleCommand:
    """One console command: its name, how to call it, what it does.

    ``usage`` is what ``help`` shows before the dash (``pause <client_id>``);
    ``help`` one or two sentences. ``name`` is lower case letters, digits,
    ``-``, ``_`` or ``!``. Raises :class:`ValueError` otherwise.
    """

    name: str
    usage: str
    help: str
    handler: CommandHandler

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _NAME_CHARS:
            raise ValueError(
                f"console command name {self.name!r}: use a-z, 0-9, -, _ or !"
            )
        if not self.usage.startswith(self.name):
            raise ValueError(f"usage of {self.name!r} must start with its name")

    def help_lines(self) -> str:
        """``  usage - help``, wrapped as ``help`` shows it."""
        return textwrap.fill(
            f"{self.usage} - {self.help}",
            width=_WIDTH,
            initial_indent="  ",
            subsequent_indent="      ",
            break_on_hyphens=False,
        )


class Console:
    """Command lines for a running server, read without blocking.

    ``input`` is read for lines (default: stdin, read in a worker thread);
    ``output`` receives the text (default: ``sys.stdout``, looked up at
    each line, so a later redirection is followed); both exist so tests
    can drive a console without a terminal. ``seed`` makes generated
    examples repeatable. ``idle_prompt`` (such as ``"neuro> "``) is shown
    whenever the console waits for a command. A closed output is tolerated
    (its text is dropped with one logged warning).

    A line the :attr:`line_filter` takes (the console engine's open force
    prompt) is not a command; a line starting with ``/`` always is.
    """

    def __init__(
        self,
        server: AbstractTrioNeuroServer,
        *,
        input: trio.abc.ReceiveStream | None = None,
        output: TextIO | None = None,
        seed: int | None = None,
        idle_prompt: str | None = None,
    ) -> None:
        self.server = server
        self._lines = LineReader(input if input is not None else stdin_stream())
        self._output = output  # None: sys.stdout as it is when printing
        self._output_broken = False
        self.idle_prompt = idle_prompt
        self._at_prompt = False  # the idle prompt is the last thing shown
        self._running = False
        self.examples = RandomNeuroServer(server.config, seed=seed)
        """Makes the generated data of ``send`` (and the console engine's
        examples); it never serves anything itself."""
        self.line_filter: Callable[[str], bool] | None = None
        """Takes a line that is not a command (returns True), if set."""
        self.prompt_open: Callable[[], str | None] | None = None
        """The prompt waiting for a line, shown again after a ``/`` command."""
        self.on_input_end: Callable[[str], None] | None = None
        """Called with why the input ended (its last line was read)."""
        self._commands: dict[str, ConsoleCommand] = {}
        for command in self._builtin_commands():
            self.add_command(command)

    # --- commands ------------------------------------------------------------

    def add_command(self, command: ConsoleCommand) -> None:
        """Add a command; :class:`ValueError` if its name is taken."""
        if command.name in self._commands:
            raise ValueError(f"console command {command.name!r} exists already")
        self._commands[command.name] = command

    @property
    def commands(self) -> Sequence[ConsoleCommand]:
        """Every command, in ``help`` order: ``help`` and ``quit`` last."""
        last = ("help", "quit")
        ordered = [c for c in self._commands.values() if c.name not in last]
        return ordered + [self._commands[name] for name in last]

    def help_text(self) -> str:
        """What ``help`` prints: every command with its usage and help."""
        lines = [_HELP_HEAD, *(c.help_lines() for c in self.commands)]
        return "\n".join([*lines, _HELP_TAIL])

    def show_help(self) -> None:
        """Print the console's commands (what ``help`` shows)."""
        self.say(self.help_text())

    async def run_command(self, line: str) -> None:
        """Run one console command line; problems are printed, not raised."""
        try:
            name, args, data = parse_command(line)
        except ValueError as exc:
            self.say(f"cannot parse that line: {exc}")
            return
        if not name:
            return
        command = self._commands.get(name)
        if command is None:
            self.say(f"unknown command {name!r}; type help")
            return
        await command.handler(self, args, data)

    # --- reading -------------------------------------------------------------

    async def run(self) -> None:
        """Read lines until the input ends; returns then.

        Lines the :attr:`line_filter` takes are passed to it; the others
        (and all that start with ``/``) are commands. A command that fails
        is logged and the console goes on.
        """
        self._running = True
        self._show_idle_prompt()
        while True:
            try:
                line = await self._lines.readline()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._ended(f"reading failed: {exc}")
                return
            if line is None:
                self._ended("end of input")
                return
            self._at_prompt = False  # Enter moved the terminal to a new line
            if line.startswith("/"):
                await self._run_guarded(line[1:])
                prompt = self.prompt_open() if self.prompt_open else None
                if prompt is not None:
                    self.say(prompt, end="")
                    continue
            elif self.line_filter is not None and self.line_filter(line):
                continue
            else:
                await self._run_guarded(line)
            self._show_idle_prompt()

    def enable_idle_prompt(self, prompt: str) -> None:
        """Show ``prompt`` whenever the console waits for a command, from now.

        For a process that prints its own lines first (the listening line
        must start stdout): it turns the prompt on once they are out.
        """
        self.idle_prompt = prompt
        if self._running:
            self._show_idle_prompt()

    def _show_idle_prompt(self) -> None:
        if self.idle_prompt and not (self.prompt_open and self.prompt_open()):
            self.say(self.idle_prompt, end="")
            self._at_prompt = True

    def _ended(self, why: str) -> None:
        self._running = False
        if self.on_input_end is not None:
            self.on_input_end(why)
        else:
            LOGGER.warning("console input ended (%s)", why)

    async def _run_guarded(self, line: str) -> None:
        try:
            await self.run_command(line)
        except Exception:
            LOGGER.exception("console command %r failed", line)

    # --- output --------------------------------------------------------------

    def say(self, text: str, *, end: str = "\n") -> None:
        """Print console text (flushed); a closed output drops it."""
        if self._output_broken:
            return
        at_prompt, self._at_prompt = self._at_prompt, False
        if at_prompt:
            # Said while the idle prompt waits (a game connected, say): the
            # line replaces the prompt, which is shown again below it.
            text = "\r\x1b[K" + text
        try:
            output = self._output if self._output is not None else sys.stdout
            print(text, end=end, file=output, flush=True)
            if at_prompt and end == "\n" and self.idle_prompt:
                print(self.idle_prompt, end="", file=output, flush=True)
                self._at_prompt = True
        except (OSError, ValueError):
            self._output_broken = True
            LOGGER.warning("console output is closed; console text is dropped")

    # --- the built-in commands ---------------------------------------------------

    def _builtin_commands(self) -> Iterable[ConsoleCommand]:
        def bound(
            method: Callable[[list[str], str], Awaitable[None]],
        ) -> CommandHandler:
            async def handler(console: Console, args: list[str], data: str) -> None:
                await method(args, data)

            return handler

        send = functools.partial(self._cmd_send, checked=True)
        send_unchecked = functools.partial(self._cmd_send, checked=False)
        return (
            ConsoleCommand("list", "list", "Show all connected clients and their "
                           "available actions, with each game's force and pending "
                           "action ids", bound(self._cmd_list)),
            ConsoleCommand("send", "send <client_id> <action_name> [JSON]",
                           "Send action to specific client; JSON is checked against "
                           "the action's schema (nothing is sent if it does not "
                           "fit); no JSON sends a generated valid example",
                           bound(send)),
            ConsoleCommand("send!", "send! <client_id> <action_name> [DATA]",
                           "Send action with DATA as is, unchecked (even an "
                           "unregistered action)", bound(send_unchecked)),
            ConsoleCommand("diag", "diag [<client_id>]",
                           "Recent diagnostics, with hints", bound(self._cmd_diag)),
            ConsoleCommand("reregister", "reregister [<client_id>]",
                           "Ask games to register their actions again",
                           bound(self._cmd_reregister)),
            ConsoleCommand("shutdown",
                           "shutdown graceful|cancel|immediate [<client_id>]",
                           "graceful: save and quit at a safe point; cancel: take "
                           "that back; immediate: closing now",
                           bound(self._cmd_shutdown)),
            ConsoleCommand("speech-finished", "speech-finished [<client_id>]",
                           "Tell games Neuro finished speaking",
                           bound(self._cmd_speech_finished)),
            ConsoleCommand("help", "help", "Show this help message",
                           bound(self._cmd_help)),
            ConsoleCommand("quit", "quit", "Stop the server", bound(self._cmd_quit)),
        )  # fmt: skip

    def _match(self, name: str) -> list[TrioNeuroServerClient]:
        exact = self.server.clients.get(name)
        if exact is not None:
            return [exact]
        titled = [c for c in self.server.games() if c.game_title == name]
        if titled:
            return titled
        prefixed = [c for c in self.server.games() if c.session_id.startswith(name)]
        return prefixed if len(name) >= 4 and len(prefixed) == 1 else []

    def _targets(self, args: list[str], usage: str) -> list[TrioNeuroServerClient]:
        if len(args) > 1:
            self.say(f"usage: {usage}")
            return []
        found = self._match(args[0]) if args else self.server.games()
        if not found:
            self._say_unknown_game(args[0] if args else None)
        return found

    def _say_unknown_game(self, name: str | None) -> None:
        connected = ", ".join(
            f"{_title(c)} (session {c.session_id})" for c in self.server.games()
        )
        if name is None or not connected:
            self.say("no games connected")
        else:
            self.say(f"unknown game {name!r}; connected: {connected}")

    async def _send_each(
        self,
        clients: list[TrioNeuroServerClient],
        what: str,
        send: Callable[[TrioNeuroServerClient], Awaitable[None]],
    ) -> None:
        for client in clients:
            try:
                await send(client)
            except ConnectionClosed:
                self.say(f"[{_title(client)}] not sent: the game disconnected")
            else:
                self.say(f"[{_title(client)}] sent {what}")

    def list_client_actions(self, client: TrioNeuroServerClient) -> None:
        """Print a game's title, session and registered actions (with schemas)."""
        self.say(f"Game: {_title(client)} (session {client.session_id})")
        if not client.actions:
            self.say("  No actions registered")
            return
        self.say("  Available actions:")
        for action in client.actions.values():
            schema = "" if action.schema is None else f" {compact_json(action.schema)}"
            self.say(f"    {_p(action.name)}: {_p(action.description + schema)}")

    async def _cmd_help(self, args: list[str], data: str) -> None:
        self.show_help()

    async def _cmd_list(self, args: list[str], data: str) -> None:
        clients = self.server.games()
        if not clients:
            self.say("no games connected")
        for client in clients:
            self.list_client_actions(client)
            force = client.active_force
            if force is not None:
                names = _p(", ".join(force.action_names))
                self.say(
                    f"  force: {_p(repr(force.query))} -> {names} "
                    f"(priority {force.priority})"
                )
            if client.pending_ids:
                self.say(f"  pending: {_p(', '.join(client.pending_ids))}")

    async def _cmd_send(self, args: list[str], data: str, *, checked: bool) -> None:
        command = "send" if checked else "send!"
        if len(args) != 2:
            self.say(f"usage: {command} GAME ACTION [{'JSON' if checked else 'DATA'}]")
            return
        found = self._match(args[0])
        if not found:
            self._say_unknown_game(args[0])
            return
        client, name = found[0], args[1]
        action = client.get_action(name)
        if action is None:
            registered = _p(", ".join(client.actions) or "none")
            if checked:
                self.say(
                    f"[{_title(client)}] unknown action {_p(repr(name))} (registered: "
                    f"{registered}); send! sends it anyway"
                )
                return
            self.say(
                f"[{_title(client)}] {_p(repr(name))} is not registered; sent anyway"
            )
        text = _data_text(data)
        if text is None and action is not None:
            try:
                text = await self.examples.make_data(action)
            except (GenerationError, SchemaError) as exc:
                self.say(
                    f"not sent: no valid data could be generated: "
                    f"{printable(str(exc))}; give the data, or send! it"
                )
                return
        elif text is not None and checked:
            why = await data_refusal(self.server, action, text)
            if why is not None:
                self.say(f"not sent: {why}; send! sends it anyway")
                return
        try:
            client.start_action(name, text)
        except RuntimeError:
            self.say(f"[{_title(client)}] not sent: the game disconnected")
            return
        shown = f"{_p(name)} {_p(text or '')}".rstrip()
        self.say(f"[{_title(client)}] sending {shown}")

    async def _cmd_diag(self, args: list[str], data: str) -> None:
        if len(args) > 1:
            self.say("usage: diag [GAME]")
            return
        if not args:
            titles = list(self.server.diagnostics)
        elif args[0] in self.server.diagnostics:
            titles = [args[0]]
        else:
            titles = [c.game_title for c in self._match(args[0]) if c.game_title]
            if not titles:
                self._say_unknown_game(args[0])
                return
        shown = [
            (t, list(self.server.diagnostics.get(t, ()))) for t in dict.fromkeys(titles)
        ]
        if not any(kept for _, kept in shown):
            self.say("no diagnostics")
            return
        for title, kept in shown:
            recent = kept[-_DIAGNOSTICS_SHOWN:]
            earlier = len(kept) - len(recent)
            more = f" ({earlier} earlier not shown)" if earlier else ""
            self.say(f"{title}: {len(kept)} diagnostics{more}")
            for diagnostic in recent:
                self.say("  " + diagnostic.format().replace("\n", "\n  "))

    async def _cmd_reregister(self, args: list[str], data: str) -> None:
        clients = self._targets(args, "reregister [GAME]")
        await self._send_each(
            clients, "actions/reregister_all", lambda c: c.send_reregister_all_command()
        )

    async def _cmd_shutdown(self, args: list[str], data: str) -> None:
        usage = "shutdown graceful|cancel|immediate [GAME]"
        mode = args[0] if args else ""
        if mode not in {"graceful", "cancel", "immediate"}:
            self.say(f"usage: {usage}")
            return
        clients = self._targets(args[1:], usage)
        if mode == "immediate":
            await self._send_each(
                clients,
                "shutdown/immediate",
                lambda c: c.send_immediate_shutdown_command(),
            )
            return
        wants = mode == "graceful"
        await self._send_each(
            clients,
            f"shutdown/graceful (wants_shutdown {str(wants).lower()})",
            lambda c: c.send_graceful_shutdown_command(wants),
        )

    async def _cmd_speech_finished(self, args: list[str], data: str) -> None:
        clients = self._targets(args, "speech-finished [GAME]")
        await self._send_each(
            clients, "speech_finished", lambda c: c.send_speech_finished()
        )

    async def _cmd_quit(self, args: list[str], data: str) -> None:
        self.say("stopping the server")
        self.server.request_stop()
