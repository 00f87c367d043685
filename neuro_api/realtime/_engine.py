"""The Realtime engine: Neuro plays the games through OpenAI's Realtime API.

Each force becomes one out-of-band response (``conversation: "none"``, so
it leaves nothing in the connection's conversation) whose tools are the
forced actions: the model must call one (``tool_choice: "required"``).
The engine keeps every game's context itself and sends it with each
request, so a connection is leased for one force only and any number of
games share a small pool. Wrong arguments get one more try with the
validation error as feedback; when the model is unavailable, too slow, or
wrong twice, the force is answered with random valid data (as the random
engine would), and a ``force.engine-fallback`` diagnostic says why, so a
game never waits on the model.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
from typing import Any, Final

import trio

from neuro_api._redact import redact
from neuro_api._text import printable
from neuro_api.command import Action, ForcePriority
from neuro_api.diagnostics import diagnose
from neuro_api.realtime._connection import Event, RealtimeConnection
from neuro_api.realtime._context import GameContexts
from neuro_api.realtime._errors import (
    ConnectionLost,
    RealtimeAPIError,
    RealtimeError,
    ResponseFailed,
)
from neuro_api.realtime._pool import RealtimePool
from neuro_api.realtime._tools import ToolSet
from neuro_api.schema import SchemaError
from neuro_api.server import RandomNeuroServer, ServerConfig

__all__ = ["DEFAULT_INSTRUCTIONS", "RealtimeNeuroServer"]

LOGGER: Final = logging.getLogger("neuro_api.realtime.engine")

DEFAULT_INSTRUCTIONS: Final = (
    "You are {name}, an AI VTuber, playing video games live on stream. Games "
    "tell you what happens in them and offer you actions; you act by calling "
    "the functions that stand for those actions. Play to win, but play in "
    "character: curious, witty and a little chaotic."
)
"""The default persona; ``{name}`` becomes the character's display name."""

_URGENCY: Final = {
    ForcePriority.LOW: "There is no hurry.",
    ForcePriority.MEDIUM: "Answer soon.",
    ForcePriority.HIGH: "This is urgent: answer right away.",
    ForcePriority.CRITICAL: "This is critical: answer at once, before anything else.",
}
_RULES: Final = (
    "Act by calling exactly one of the functions; its arguments must match "
    "its parameters."
)
_CANCEL_WAIT: Final = 2.0
"""Seconds a cancelled force may take to tell the API to stop its response."""
_QUERY_CHARS: Final = 4000
_ATTEMPTS: Final = 2


class _WrongTwice(Exception):
    """The model answered with an invalid call on every attempt."""


class _TooLarge(Exception):
    """No forced action fits in a request (see MAX_TOOLS_BYTES)."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 6] + " [...]"


def _response_id(event: Event) -> str | None:
    response = event.get("response")
    if isinstance(response, dict) and isinstance(response.get("id"), str):
        return str(response["id"])
    return None


def _call_in(output: object) -> tuple[str, str] | None:
    """The first function call among a finished response's output items."""
    if not isinstance(output, list):
        return None
    for item in output:
        if isinstance(item, dict) and item.get("type") == "function_call":
            name, arguments = item.get("name"), item.get("arguments")
            if isinstance(name, str) and isinstance(arguments, str):
                return name, arguments
    return None


def _status_text(response: dict[str, Any]) -> str:
    status = str(response.get("status"))
    details = response.get("status_details")
    if isinstance(details, dict):
        error = details.get("error")
        reason = details.get("reason")
        if isinstance(error, dict) and error.get("message"):
            return f"{status}: {str(error['message'])[:300]}"
        if reason:
            return f"{status}: {str(reason)[:100]}"
    return status


class RealtimeNeuroServer(RandomNeuroServer):
    """An engine that answers forces with a model of the OpenAI Realtime API.

    ``pool`` is the :class:`~neuro_api.realtime.RealtimePool` it leases
    connections from (run it as a service). ``instructions`` is the persona
    (default :data:`DEFAULT_INSTRUCTIONS`; ``{name}`` becomes the display
    name). ``answer_timeout`` bounds the wait for the model, lease
    included, per force; ``context_chars`` each game's context kept and
    sent. With ``unforced_interval``, every that many seconds on average
    one game is offered all its actions, and the model may act unforced.
    ``seed`` makes the fallback answers repeatable.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        pool: RealtimePool,
        instructions: str | None = None,
        answer_timeout: float = 10.0,
        context_chars: int = 16000,
        max_output_tokens: int = 1024,
        unforced_interval: float | None = None,
        seed: int | None = None,
    ) -> None:
        if not answer_timeout > 0:
            raise ValueError(f"answer_timeout: must be > 0, got {answer_timeout!r}")
        if max_output_tokens < 1:
            raise ValueError("max_output_tokens: must be >= 1")
        super().__init__(config, unforced_interval=unforced_interval, seed=seed)
        self.pool = pool
        self.persona = instructions or DEFAULT_INSTRUCTIONS
        self.answer_timeout = answer_timeout
        self.max_output_tokens = max_output_tokens
        self.contexts = GameContexts(context_chars)
        """Each game's context, as it is sent to the model."""
        self.counts: collections.Counter[str] = collections.Counter()
        """forces, answered, retried, fallbacks, cancelled, unforced."""
        self.fallback_reasons: collections.Counter[str] = collections.Counter()
        self._event_ids = itertools.count(1)

    # --- what games tell Neuro ---------------------------------------------

    def add_context(
        self, game_title: str, message: str, reply_if_not_busy: bool
    ) -> None:
        """Keep ``message`` in the game's context (sent with later requests)."""
        self.contexts.add(game_title, message)

    # --- forces -------------------------------------------------------------

    def choose_force_action_now(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None] | None:
        """Never at once: the model is asked (see :meth:`choose_force_action`)."""
        return None

    async def choose_force_action(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None]:
        """Ask the model to pick one of ``actions``; random valid data if it cannot.

        Cancelled (the force was replaced or its actions unregistered):
        the API is told to stop the response, and the lease is returned.
        """
        self.counts["forces"] += 1
        tools = ToolSet(actions)
        prompt = self._prompt(game_title, state, query)
        reason = f"the model did not answer within {self.answer_timeout:g} s"
        kind = "timeout"
        try:
            if not tools:
                raise _TooLarge("every action's definition is too large to offer")
            with trio.move_on_after(self.answer_timeout):
                answer = await self._decide(
                    tools, self._instructions(priority), prompt, required=True
                )
                if answer is not None:
                    self.counts["answered"] += 1
                    self._remember(game_title, state, query, ephemeral_context, answer)
                    return answer
        except trio.Cancelled:
            self.counts["cancelled"] += 1
            raise
        except _TooLarge as exc:
            reason, kind = str(exc), "too-large"
        except _WrongTwice as exc:
            reason, kind = str(exc), "invalid"
        except RealtimeError as exc:
            reason, kind = f"the model is unavailable: {exc}", "unavailable"
        self._fall_back(game_title, reason, kind)
        answer = await self.pick(actions)
        self._remember(game_title, state, query, ephemeral_context, answer)
        return answer

    def _prompt(self, game: str, state: str | None, query: str | None) -> str:
        parts = [f"Game: {game}"]
        if context := self.contexts.text(game):
            parts.append(f"What the game told you, oldest first:\n{context}")
        if state:
            parts.append(
                f"The game's state now:\n{_cut(state, self.contexts.max_chars)}"
            )
        if query is None:
            parts.append("Nothing is asked of you now: act only if you want to.")
        else:
            parts.append(f"The game asks you to act now: {_cut(query, _QUERY_CHARS)}")
        return "\n\n".join(parts)

    def _instructions(self, priority: ForcePriority) -> str:
        persona = self.persona.replace("{name}", self.config.character_name)
        return f"{persona}\n\n{_RULES} {_URGENCY.get(priority, '')}".rstrip()

    def _remember(
        self,
        game: str,
        state: str | None,
        query: str,
        ephemeral: bool,
        answer: tuple[str, str | None],
    ) -> None:
        """Keep the force and the choice in the context, unless ephemeral."""
        if ephemeral:
            return  # its state and query must be forgotten
        if state:
            self.contexts.add(game, f"State: {state}")
        self.contexts.add(game, f"You were asked: {query}")
        name, data = answer
        shown = "" if data is None else f" with {_cut(data, 500)}"
        self.contexts.add(game, f"You chose {name}{shown}.")

    def _fall_back(self, game: str, reason: str, kind: str) -> None:
        self.counts["fallbacks"] += 1
        self.fallback_reasons[kind] += 1
        # The reason may quote the API (an error, a close reason), which may
        # quote the key: diagnostics are shown to games' developers.
        reason = redact(reason, [self.pool.config.api_key])
        diagnostic = diagnose("force.engine-fallback", game=game, reason=reason)
        client = next(
            (
                c
                for c in self.clients.values()
                if c.game_title == game and c.active_force is not None
            ),
            None,
        )
        if client is not None:
            client.report(diagnostic)
        else:
            LOGGER.info("%s", printable(str(diagnostic)))

    # --- asking the model ----------------------------------------------------

    async def _decide(
        self, tools: ToolSet, instructions: str, prompt: str, *, required: bool
    ) -> tuple[str, str | None] | None:
        """The model's valid choice among ``tools`` (None: it chose nothing).

        One lease, at most two responses: the second carries what was
        wrong with the first. Raises :class:`_WrongTwice`, or a
        :class:`~neuro_api.realtime.RealtimeError` when the model cannot
        be asked.
        """
        problem = "no answer"
        text = prompt
        async with self.pool.connection_context() as conn:
            for attempt in range(_ATTEMPTS):
                call = await self._respond(
                    conn, tools, instructions, text, "required" if required else "auto"
                )
                if call is None:
                    if not required:
                        return None
                    problem = "it called no function"
                else:
                    checked = await self._check(tools, *call)
                    if not isinstance(checked, str):
                        return checked
                    problem = checked
                if attempt + 1 < _ATTEMPTS:
                    self.counts["retried"] += 1
                    text = (
                        f"{prompt}\n\nYour previous answer was invalid: {problem}. "
                        f"{_RULES}"
                    )
        raise _WrongTwice(f"the model answered wrong twice: {problem}")

    async def _check(
        self, tools: ToolSet, tool: str, arguments: str
    ) -> tuple[str, str | None] | str:
        """The action and data of a call, or what is wrong with it."""
        shown = printable(_cut(tool, 80))
        # Bounded as the random engine's answers are, before any parsing: the
        # action frame quotes the data, so text under max_message_size may
        # still make a frame too large to send (and the force would be lost).
        limit = self.config.max_generated_size
        if len(arguments) > limit:
            return f"{shown}: its arguments are too large (over {limit} characters)"
        try:
            action, data = tools.answer(tool, arguments)
        except KeyError:
            return f"{shown!r} is not one of the functions"
        except ValueError as exc:
            return f"{shown}: {exc}"
        try:
            result = await self.validate_data(action.schema, data)
        except SchemaError as exc:  # the game's schema: no model can satisfy it
            return f"{shown}: the action's schema is invalid: {exc}"
        if not result.ok:
            return f"{shown}: {_cut(result.reason, 1000)}"
        return action.name, data

    async def _respond(
        self,
        conn: RealtimeConnection,
        tools: ToolSet,
        instructions: str,
        text: str,
        tool_choice: str,
    ) -> tuple[str, str] | None:
        """One out-of-band response: the function the model called, if any.

        Raises :class:`~neuro_api.realtime.RealtimeAPIError` for an
        ``error`` about the request, :class:`~neuro_api.realtime.ResponseFailed`
        for a response that ended without a call, and
        :class:`~neuro_api.realtime.ConnectionLost`. Cancelled before the
        response is done: ``response.cancel`` is sent (the pool then waits
        for the response to end before the connection serves again).
        """
        event_id = f"neuro_api_{next(self._event_ids)}"
        response: dict[str, Any] = {
            "conversation": "none",
            "output_modalities": ["text"],
            "instructions": instructions,
            "tools": tools.tools,
            "tool_choice": tool_choice,
            "max_output_tokens": self.max_output_tokens,
            "metadata": {"source": "neuro_api"},
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                }
            ],
        }
        await conn.send(
            {"type": "response.create", "event_id": event_id, "response": response}
        )
        response_id: str | None = None
        call: tuple[str, str] | None = None
        done = False
        try:
            while True:
                event = await conn.receive()
                kind = event["type"]
                if kind == "error":
                    error = event.get("error")
                    error = error if isinstance(error, dict) else {}
                    about = error.get("event_id")
                    # Ours: about our request, or about nothing in particular
                    # before the response exists (errors about other events
                    # are not this force's business).
                    if about == event_id or (about is None and response_id is None):
                        raise RealtimeAPIError(error)
                elif kind == "response.created":
                    if response_id is None:
                        response_id = _response_id(event)
                elif kind == "response.function_call_arguments.done":
                    name, arguments = event.get("name"), event.get("arguments")
                    if (
                        call is None
                        and isinstance(name, str)
                        and isinstance(arguments, str)
                        and event.get("response_id", response_id) == response_id
                    ):
                        call = name, arguments
                elif kind == "response.done" and _response_id(event) == response_id:
                    done = True
                    finished = event["response"]
                    if call is None:
                        call = _call_in(finished.get("output"))
                    status = finished.get("status")
                    if call is None and status != "completed":
                        raise ResponseFailed(f"the response {_status_text(finished)}")
                    return call
        finally:
            if response_id is not None and not done and conn.healthy:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + _CANCEL_WAIT
                    with contextlib.suppress(ConnectionLost):
                        # With an id of its own: the API's answer to a cancel
                        # that came too late ("no active response") then
                        # names it, and the next lease does not take it for
                        # an error about its own request.
                        await conn.send(
                            {
                                "type": "response.cancel",
                                "event_id": f"neuro_api_{next(self._event_ids)}",
                                "response_id": response_id,
                            }
                        )

    # --- unforced acting --------------------------------------------------------

    async def background(self) -> None:
        """Offer a game its actions now and then, if ``unforced_interval`` is set."""
        interval = self.unforced_interval
        if interval is None:
            return
        while True:
            await trio.sleep(self.rng.expovariate(1 / interval))
            await self.act_unforced()

    async def act_unforced(self) -> bool:
        """Offer one ready game all its actions; the model may act or not.

        A ready game is served, has actions, no force and is not held,
        before the model is asked and again once it answered (the action
        must still be registered). Returns whether an action was started.
        Failures of the model are logged and nothing is done (nothing waits
        for an unforced action).
        """
        ready = [
            c
            for c in self.games()
            if c.actions and c.active_force is None and not c.forces_held
        ]
        if not ready:
            return False
        client = self.rng.choice(ready)
        title = client.game_title or ""
        tools = ToolSet(client.actions.values())
        if not tools:
            return False  # no definition small enough to offer
        answer = None
        with trio.move_on_after(self.answer_timeout):
            try:
                answer = await self._decide(
                    tools,
                    self._instructions(ForcePriority.LOW),
                    self._prompt(title, None, None),
                    required=False,
                )
            except (_WrongTwice, RealtimeError) as exc:
                LOGGER.info(
                    "not acting unforced on %s: %s",
                    printable(title),
                    redact(str(exc), [self.pool.config.api_key]),
                )
        if answer is None:
            return False
        name, data = answer
        # The game may have changed while the model thought: it left, was
        # held (paused), got a force, or took the action back.
        if (
            not client.serving
            or client.active_force is not None
            or client.forces_held
            or name not in client.actions
        ):
            LOGGER.debug("not acting unforced on %s: it changed", printable(title))
            return False
        self.counts["unforced"] += 1
        self.contexts.add(
            title,
            f"You chose {name}"
            + ("" if data is None else f" with {_cut(data, 500)}")
            + ".",
        )
        client.start_action(name, data)
        return True

    # --- reports -----------------------------------------------------------------

    def engine_stats(self) -> dict[str, Any]:
        """Forces asked, answered by the model, retried, fallen back (by why)."""
        return {
            **{
                key: self.counts[key]
                for key in (
                    "forces",
                    "answered",
                    "retried",
                    "fallbacks",
                    "cancelled",
                    "unforced",
                )
            },
            "fallback_reasons": dict(self.fallback_reasons),
            "games_with_context": len(self.contexts),
        }
