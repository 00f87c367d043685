"""The console engine: a person answers forces and sends commands at a terminal.

Input lines are read by one task; while a force prompt is open they answer
it, otherwise they are commands (``help`` lists them). Reading never blocks
the event loop, so every game keeps being served while a prompt waits.

When the input ends (end of file, a closed or absent stdin), the console
stops prompting, logs one warning and from then on answers forces at once
the way the random engine does (a random forced action with generated valid
data), so no game stays stuck on a force nobody can answer. Commands can no
longer be typed then; everything else keeps being printed.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import math
import shlex
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, TextIO

import orjson
import trio
from trio_websocket import ConnectionClosed

from neuro_api._text import printable
from neuro_api.command import Action, ForcePriority
from neuro_api.diagnostics import Diagnostic, Severity
from neuro_api.schema import GenerationError, SchemaError
from neuro_api.server._base import AbstractTrioNeuroServer
from neuro_api.server._config import ServerConfig
from neuro_api.server._handler import ActionOutcome, OutcomeStatus
from neuro_api.server._lines import LineReader, stdin_stream
from neuro_api.server._random import RandomNeuroServer
from neuro_api.server._ratelimit import Summary, summary_text
from neuro_api.server._trio_client import TrioNeuroServerClient

__all__ = ["ConsoleInteractiveNeuroServer", "parse_command"]

LOGGER: Final = logging.getLogger("neuro_api.server.console")
_DIAGNOSTICS_SHOWN: Final = 20
_SEND_COMMANDS: Final = frozenset({"send", "send!"})

_HELP: Final = """\
Available Commands:
(<client_id> is a game title, a session id, or a unique prefix of 4 or more
characters of a session id; [<client_id>] left out means every game)
  list - Show all connected clients and their available actions, with each
      game's force and pending action ids
  send <client_id> <action_name> [JSON] - Send action to specific client;
      JSON is checked against the action's schema (nothing is sent if it
      does not fit); no JSON sends a generated valid example
  send! <client_id> <action_name> [DATA] - Send action with DATA as is,
      unchecked (even an unregistered action)
  diag [<client_id>] - Recent diagnostics, with hints
  reregister [<client_id>] - Ask games to register their actions again
  shutdown graceful|cancel|immediate [<client_id>] - graceful: save and quit
      at a safe point; cancel: take that back; immediate: closing now
  speech-finished [<client_id>] - Tell games Neuro finished speaking
  help - Show this help message
  quit - Stop the server
JSON and DATA are the rest of the line, written as is (or quoted as one word).
While a force prompt is open, lines answer it: Enter takes the default in
brackets, and !DATA sends DATA unchecked (! alone sends no data). A line
starting with / is always a command (/list, /quit), even at a prompt."""


# --- input -----------------------------------------------------------------


class _InputClosed(Exception):
    """The console input ended while a prompt waited."""


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


async def _refusal(
    server: AbstractTrioNeuroServer, action: Action | None, data: str
) -> str | None:
    """Why ``data`` does not fit ``action`` (``None`` if it does)."""
    schema = None if action is None else action.schema
    try:
        result = await server.validate_data(schema, data)
    except SchemaError as exc:
        return f"the action's schema is invalid: {exc}"
    return None if result.ok else result.reason


def _pick(actions: Sequence[Action], answer: str) -> Action | None:
    if not answer:
        return actions[0]
    if answer.isdigit() and 1 <= int(answer) <= len(actions):
        return actions[int(answer) - 1]
    return next((a for a in actions if a.name == answer), None)


def _compact(value: object) -> str:
    return orjson.dumps(value).decode()


def _title(client: TrioNeuroServerClient) -> str:
    return _p(client.game_title or f"(no startup yet, session {client.session_id})")


def _p(text: str) -> str:
    """Game-supplied ``text`` fit for the console (see neuro_api._text)."""
    return printable(text)


@dataclasses.dataclass(frozen=True, slots=True)
class _Force:
    game: str
    state: str | None
    query: str
    ephemeral: bool
    actions: tuple[Action, ...]
    priority: ForcePriority


_Handler = Callable[[list[str], str], Awaitable[None]]


# --- the engine --------------------------------------------------------------


class ConsoleInteractiveNeuroServer(AbstractTrioNeuroServer):
    """An engine where a person plays Neuro at a console.

    ``input`` is read for lines (default: stdin, read in a worker thread);
    ``output`` receives the console text (default: ``sys.stdout``, looked
    up at each line, so a later redirection is followed); both
    exist so tests can drive the console without a terminal. ``seed`` makes
    generated examples and the answers after the input ended repeatable.
    Context, action outcomes that carry no message, and warning and error
    diagnostics are printed as they happen; a closed output is tolerated
    (its text is dropped with one logged warning).
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        input: trio.abc.ReceiveStream | None = None,
        output: TextIO | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(config)
        self._lines = LineReader(input if input is not None else stdin_stream())
        self._output = output  # None: sys.stdout as it is when printing
        self._output_broken = False
        # The random engine is only used for its decisions (examples and the
        # answers after the input ended); it never serves anything itself.
        self._autopilot = RandomNeuroServer(self.config, seed=seed)
        self._prompt_lock = trio.Lock()  # fair: prompts come in arrival order
        self._prompt_lines: trio.MemorySendChannel[str | None] | None = None
        self._open_prompt: str | None = None
        self._waiting = 0
        self._input_ended = False
        self._commands: Mapping[str, _Handler] = {
            "help": self._cmd_help,
            "list": self._cmd_list,
            "send": functools.partial(self._cmd_send, checked=True),
            "send!": functools.partial(self._cmd_send, checked=False),
            "diag": self._cmd_diag,
            "reregister": self._cmd_reregister,
            "shutdown": self._cmd_shutdown,
            "speech-finished": self._cmd_speech_finished,
            "quit": self._cmd_quit,
        }

    @property
    def input_ended(self) -> bool:
        """Whether the input ended (forces are then answered automatically)."""
        return self._input_ended

    # --- serving -------------------------------------------------------------

    async def background(self) -> None:
        """Read input lines until the input ends or ``quit`` is typed.

        Lines answer the open force prompt, if any; otherwise (or when they
        start with ``/``) they are commands. A command that fails is logged
        and the console goes on.
        """
        while True:
            try:
                line = await self._lines.readline()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._end_input(f"reading failed: {exc}")
                return
            if line is None:
                self._end_input("end of input")
                return
            if line.startswith("/"):
                await self._run_guarded(line[1:])
                if self._open_prompt is not None:
                    self.say(self._open_prompt, end="")
            elif self._prompt_lines is not None:
                self._prompt_lines.send_nowait(line)
            else:
                await self._run_guarded(line)

    async def _run_guarded(self, line: str) -> None:
        try:
            await self.run_command(line)
        except Exception:
            LOGGER.exception("console command %r failed", line)

    def _end_input(self, why: str) -> None:
        self._input_ended = True
        LOGGER.warning(
            "console input ended (%s): forces are answered automatically "
            "from now on, like the random engine",
            why,
        )
        if self._prompt_lines is not None:
            self._prompt_lines.send_nowait(None)

    # --- output ----------------------------------------------------------------

    def say(self, text: str, *, end: str = "\n") -> None:
        """Print console text (flushed); a closed output drops it."""
        if self._output_broken:
            return
        try:
            output = self._output if self._output is not None else sys.stdout
            print(text, end=end, file=output, flush=True)
        except (OSError, ValueError):
            self._output_broken = True
            LOGGER.warning("console output is closed; console text is dropped")

    def add_context(
        self, game_title: str, message: str, reply_if_not_busy: bool
    ) -> None:
        """Print the context; non-silent context is marked."""
        mark = " (reply_if_not_busy = True)" if reply_if_not_busy else ""
        self.say(f"[{_p(game_title)}] [CONTEXT] {_p(message)}{mark}")

    def on_action_outcome(self, game_title: str, outcome: ActionOutcome) -> None:
        """Print outcomes that carry no message (the others arrive as context)."""
        if outcome.message and outcome.status in {
            OutcomeStatus.SUCCESS,
            OutcomeStatus.FAILURE,
        }:
            return
        what = {
            OutcomeStatus.SUCCESS: "succeeded (no message)",
            OutcomeStatus.FAILURE: "failed (no message)",
            OutcomeStatus.TIMEOUT: "got no result in time; counted as failed",
            OutcomeStatus.DISCONNECTED: "ended: the game disconnected",
        }[outcome.status]
        self.say(f"[{_p(game_title)}] action {_p(repr(outcome.action))} {what}")

    def show_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Log the diagnostic; print it too if it is a warning or an error."""
        super().show_diagnostic(diagnostic)
        if diagnostic.severity.rank >= Severity.WARNING.rank:
            self.say(diagnostic.format())

    def show_summary(self, summary: Summary) -> None:
        """Log and print what the rate limit held back."""
        super().show_summary(summary)
        self.say(summary_text(summary))

    def show_event(self, text: str) -> None:
        """Log and print a line about the games (connections ...)."""
        super().show_event(text)
        self.say(text)

    # --- forces ------------------------------------------------------------------

    async def choose_force_action(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None]:
        """Ask at the console which action to perform, and with what data.

        One prompt is open at a time; forces of other games wait their turn
        in arrival order. When the force is cancelled (replaced, or its
        actions unregistered) the prompt says so and the next one opens.
        Once the input has ended, answers at once like the random engine.
        """
        force = _Force(
            _p(game_title), state, query, ephemeral_context, actions, priority
        )
        if not self._input_ended:
            try:
                return await self._prompt_in_turn(force)
            except _InputClosed:
                pass
        name, data = await self._autopilot.choose_force_action(
            game_title, state, query, ephemeral_context, actions, priority
        )
        LOGGER.info(
            "answered a force of %s automatically: %s %s",
            _p(game_title),
            _p(name),
            _p(data or ""),
        )
        return name, data

    async def _prompt_in_turn(self, force: _Force) -> tuple[str, str | None]:
        waiting = True
        self._waiting += 1
        try:
            if self._prompt_lock.locked():
                self.say(f"[{force.game}] force waiting its turn")
            async with self._prompt_lock:
                self._waiting -= 1
                waiting = False
                if self._input_ended:
                    raise _InputClosed
                send, receive = trio.open_memory_channel[str | None](math.inf)
                self._prompt_lines = send
                try:
                    with send, receive:
                        return await self._prompt(force, receive)
                finally:
                    self._prompt_lines = None
        except trio.Cancelled:
            self.say(f"[{force.game}] force cancelled; moving on")
            raise
        finally:
            if waiting:
                self._waiting -= 1

    async def _prompt(
        self, force: _Force, lines: trio.MemoryReceiveChannel[str | None]
    ) -> tuple[str, str | None]:
        self._show_force(force)
        count = len(force.actions)
        while True:
            answer = await self._ask(
                lines, f"[{force.game}] action (1-{count} or name) [1]: "
            )
            action = _pick(force.actions, answer)
            if action is not None:
                break
            self.say(f"  no action {answer!r}: type 1 to {count} or an action name")
        try:
            example = await self._autopilot.make_data(action)
        except (GenerationError, SchemaError) as exc:
            self.say(f"  no valid data could be generated: {printable(str(exc))}")
            example = "{}"
        default = "none" if example is None else _p(example)
        while True:
            answer = await self._ask(lines, f"[{force.game}] data [{default}]: ")
            if not answer:
                data = example
                break
            if answer.startswith("!"):
                data = answer[1:].strip() or None
                break
            why = await _refusal(self, action, answer)
            if why is None:
                data = answer
                break
            self.say(f"  refused: {why}; type it again, or !DATA to send it anyway")
        shown = f"{_p(action.name)} {_p(data or '')}".rstrip()
        self.say(f"[{force.game}] performing {shown}")
        return action.name, data

    async def _ask(
        self, lines: trio.MemoryReceiveChannel[str | None], prompt: str
    ) -> str:
        self.say(prompt, end="")
        self._open_prompt = prompt
        try:
            line = await lines.receive()
        finally:
            self._open_prompt = None
        if line is None:
            self.say("")
            raise _InputClosed
        return line.strip()

    def _show_force(self, force: _Force) -> None:
        details = [f"priority {force.priority}"]
        if force.ephemeral:
            details.append("ephemeral context")
        if self._waiting:
            plural = "s" if self._waiting > 1 else ""
            details.append(f"{self._waiting} more force{plural} waiting")
        self.say(f"[{force.game}] FORCE ({', '.join(details)})")
        if force.state is not None:
            self.say(f"  state: {_p(force.state)}")
        self.say(f"  query: {_p(force.query)}")
        for number, action in enumerate(force.actions, 1):
            self.say(f"  {number}) {_p(action.name)}: {_p(action.description)}")
            if action.schema is not None:
                self.say(f"     schema: {_p(_compact(action.schema))}")
        self.say("  (Enter takes the [default]; !DATA sends DATA unchecked; /help)")

    # --- commands ------------------------------------------------------------------

    async def run_command(self, line: str) -> None:
        """Run one console command line; problems are printed, not raised."""
        try:
            name, args, data = parse_command(line)
        except ValueError as exc:
            self.say(f"cannot parse that line: {exc}")
            return
        if not name:
            return
        handler = self._commands.get(name)
        if handler is None:
            self.say(f"unknown command {name!r}; type help")
            return
        await handler(args, data)

    def _match(self, name: str) -> list[TrioNeuroServerClient]:
        exact = self.clients.get(name)
        if exact is not None:
            return [exact]
        titled = [c for c in self.games() if c.game_title == name]
        if titled:
            return titled
        prefixed = [c for c in self.games() if c.session_id.startswith(name)]
        return prefixed if len(name) >= 4 and len(prefixed) == 1 else []

    def _targets(self, args: list[str], usage: str) -> list[TrioNeuroServerClient]:
        if len(args) > 1:
            self.say(f"usage: {usage}")
            return []
        found = self._match(args[0]) if args else self.games()
        if not found:
            self._say_unknown_game(args[0] if args else None)
        return found

    def _say_unknown_game(self, name: str | None) -> None:
        connected = ", ".join(
            f"{_title(c)} (session {c.session_id})" for c in self.games()
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

    def show_help(self) -> None:
        """Print the console's commands (what ``help`` shows)."""
        self.say(_HELP)

    def list_client_actions(self, client: TrioNeuroServerClient) -> None:
        """Print a game's title, session and registered actions (with schemas)."""
        self.say(f"Game: {_title(client)} (session {client.session_id})")
        if not client.actions:
            self.say("  No actions registered")
            return
        self.say("  Available actions:")
        for action in client.actions.values():
            schema = "" if action.schema is None else f" {_compact(action.schema)}"
            self.say(f"    {_p(action.name)}: {_p(action.description + schema)}")

    def ask_action_json(self, action: Action) -> str | None:
        """Ask with :func:`input` for an action's JSON data (None: no data).

        Upstream's helper, for scripts: it blocks the thread while the
        operator types, so it must not be called from the event loop (the
        console's own prompts read their input without blocking). An
        action without a schema takes no data and asks nothing.
        """
        if action.schema is None:
            return None
        self.say(
            f"{_p(action.name)}\n\t{_p(action.description)}\n\n"
            f"schema: {_p(_compact(action.schema))}\n"
        )
        if input("Do json blob? (y/N) > ").strip().lower() != "y":
            return None
        return input("Json blob > ")

    async def _cmd_help(self, args: list[str], data: str) -> None:
        self.show_help()

    async def _cmd_list(self, args: list[str], data: str) -> None:
        clients = self.games()
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
                text = await self._autopilot.make_data(action)
            except (GenerationError, SchemaError) as exc:
                self.say(
                    f"not sent: no valid data could be generated: "
                    f"{printable(str(exc))}; give the data, or send! it"
                )
                return
        elif text is not None and checked:
            why = await _refusal(self, action, text)
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
            titles = list(self.diagnostics)
        elif args[0] in self.diagnostics:
            titles = [args[0]]
        else:
            titles = [c.game_title for c in self._match(args[0]) if c.game_title]
            if not titles:
                self._say_unknown_game(args[0])
                return
        shown = [(t, list(self.diagnostics.get(t, ()))) for t in dict.fromkeys(titles)]
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
        self.request_stop()
