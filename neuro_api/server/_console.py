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
import logging
import math
from collections.abc import Sequence
from typing import Final, TextIO

import trio

from neuro_api._numbers import whole_number
from neuro_api._text import printable
from neuro_api.command import Action, ForcePriority
from neuro_api.diagnostics import Diagnostic, Severity
from neuro_api.schema import GenerationError, SchemaError
from neuro_api.server._base import AbstractTrioNeuroServer
from neuro_api.server._commands import (
    Console,
    compact_json,
    data_refusal,
    parse_command,
)
from neuro_api.server._config import ServerConfig
from neuro_api.server._handler import ActionOutcome, OutcomeStatus
from neuro_api.server._ratelimit import Summary, summary_text
from neuro_api.server._trio_client import TrioNeuroServerClient

__all__ = ["ConsoleInteractiveNeuroServer", "parse_command"]

_p = printable

LOGGER: Final = logging.getLogger("neuro_api.server.console")


# --- input -----------------------------------------------------------------


class _InputClosed(Exception):
    """The console input ended while a prompt waited."""


def _pick(actions: Sequence[Action], answer: str) -> Action | None:
    if not answer:
        return actions[0]
    number = whole_number(answer, at_most=len(actions))
    if number:  # 1 to len(actions)
        return actions[number - 1]
    return next((a for a in actions if a.name == answer), None)


@dataclasses.dataclass(frozen=True, slots=True)
class _Prompt:
    game: str
    state: str | None
    query: str
    ephemeral: bool
    actions: tuple[Action, ...]
    priority: ForcePriority


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
    (its text is dropped with one logged warning). Its :attr:`console`
    (a :class:`~neuro_api.server.Console`) takes the commands; with
    ``read_input=False`` nothing is read and forces are answered
    automatically from the start; ``idle_prompt`` is shown while the
    console waits for a command.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        input: trio.abc.ReceiveStream | None = None,
        output: TextIO | None = None,
        seed: int | None = None,
        read_input: bool = True,
        idle_prompt: str | None = None,
    ) -> None:
        super().__init__(config)
        self.console = Console(
            self, input=input, output=output, seed=seed, idle_prompt=idle_prompt
        )
        """The console this engine prompts at (its commands: ``help``)."""
        self.console.line_filter = self._answer_prompt
        self.console.prompt_open = lambda: self._open_prompt
        self.console.on_input_end = self._end_input
        # Only used for its decisions (examples and the answers after the
        # input ended); it never serves anything itself.
        self._autopilot = self.console.examples
        self._prompt_lock = trio.Lock()  # fair: prompts come in arrival order
        self._prompt_lines: trio.MemorySendChannel[str | None] | None = None
        self._open_prompt: str | None = None
        self._waiting = 0
        self._input_ended = False
        self._read_input = read_input

    def configure(self, config: ServerConfig) -> None:
        """Use ``config``, for the console's examples and autopilot too."""
        super().configure(config)
        self.console.examples.configure(self.config)

    @property
    def input_ended(self) -> bool:
        """Whether the input ended (forces are then answered automatically)."""
        return self._input_ended

    # --- serving -------------------------------------------------------------

    async def background(self) -> None:
        """Run the console until its input ends (see :class:`Console`).

        Lines answer the open force prompt, if any; otherwise (or when they
        start with ``/``) they are commands. Without ``read_input`` nothing
        is read: forces are answered automatically from the start.
        """
        if not self._read_input:
            self._end_input("no console input (--no-console)")
            return
        await self.console.run()

    def _answer_prompt(self, line: str) -> bool:
        if self._prompt_lines is None:
            return False
        self._prompt_lines.send_nowait(line)
        return True

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
        self.console.say(text, end=end)

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
        force = _Prompt(
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

    async def _prompt_in_turn(self, force: _Prompt) -> tuple[str, str | None]:
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
        self, force: _Prompt, lines: trio.MemoryReceiveChannel[str | None]
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
            why = await data_refusal(self, action, answer)
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

    def _show_force(self, force: _Prompt) -> None:
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
                self.say(f"     schema: {_p(compact_json(action.schema))}")
        self.say("  (Enter takes the [default]; !DATA sends DATA unchecked; /help)")

    # --- commands ------------------------------------------------------------------

    async def run_command(self, line: str) -> None:
        """Run one console command line; problems are printed, not raised."""
        await self.console.run_command(line)

    def show_help(self) -> None:
        """Print the console's commands (what ``help`` shows)."""
        self.console.show_help()

    def list_client_actions(self, client: TrioNeuroServerClient) -> None:
        """Print a game's title, session and registered actions (with schemas)."""
        self.console.list_client_actions(client)

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
            f"schema: {_p(compact_json(action.schema))}\n"
        )
        if input("Do json blob? (y/N) > ").strip().lower() != "y":
            return None
        return input("Json blob > ")
