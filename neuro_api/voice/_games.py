"""The games' actions as a call's tools, and a tool call performed on a game.

A call's tools are the registered actions of ``--voice-game`` (one title)
or of every connected game, mapped to names the Realtime API accepts as
the realtime engine maps them (:class:`~neuro_api.realtime.ToolSet`). When
several games are offered, an action name two games share is offered once
(the first game's), and each tool's description starts with its game's
title. A call to a tool is an action sent to its game through the same
path as the control plane's ``POST /games/{game}/actions/{name}``: the
data is validated first (an invalid call is answered with the validator's
message and never reaches the game), and the game's result comes back as
the function's output.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson
from trio_websocket import ConnectionClosed

from neuro_api.command import Action
from neuro_api.realtime import MAX_TOOLS, ToolSet, tool_name
from neuro_api.schema import SchemaError
from neuro_api.server import (
    AbstractTrioNeuroServer,
    ActionOutcome,
    ContextMessage,
    FrameTooLarge,
    TooManyHeldActions,
    TrioNeuroServerClient,
)

__all__ = ["GameTools", "ToolResult"]

LOGGER: Final = logging.getLogger("neuro_api.voice")
MAX_OUTPUT: Final = 4000
"""Characters of a game's message passed back to the model."""
MAX_HELD: Final = 64
"""Result messages held back while the call awaits an action of that name."""


@dataclasses.dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call came to: the function output the model gets."""

    ok: bool
    output: str
    """JSON text: ``{"status", "message"}``."""
    game: str | None = None
    action: str | None = None


def _output(status: str, message: str | None) -> str:
    text = None if message is None else message[:MAX_OUTPUT]
    return orjson.dumps({"status": status, "message": text}).decode()


class GameTools:
    """The tools of the games a call may act in, rebuilt when they change.

    ``title`` limits them to one game (None: every connected game).
    :meth:`refresh` says whether the tools changed since the last call
    (then send a ``session.update`` with :attr:`tools`).
    """

    def __init__(
        self,
        server: AbstractTrioNeuroServer,
        title: str | None,
        *,
        reserved: Iterable[str] = (),
    ) -> None:
        self.server = server
        self.title = title
        self.tools: list[dict[str, Any]] = []
        self._set = ToolSet(())
        self._games: dict[str, TrioNeuroServerClient] = {}
        self._key: object = None
        self._running: collections.Counter[tuple[str, str]] = collections.Counter()
        self._held: dict[tuple[str, str], list[ContextMessage]] = {}
        self.reserved = frozenset(reserved)
        """Tool names the call keeps for itself (a game's action so named is
        not offered)."""
        self.release: Callable[[ContextMessage], object] = lambda message: None
        """Where a result message :meth:`hold` kept goes once it turned out
        not to report this call's own action (another party's)."""

    def _clients(self) -> list[TrioNeuroServerClient]:
        games = [c for c in self.server.games() if c.game_title]
        if self.title is not None:
            games = [c for c in games if c.game_title == self.title]
        return games

    def refresh(self) -> bool:
        """Rebuild the tools from the games now; True if they changed."""
        clients = self._clients()
        key = tuple(
            (client.session_id, tuple(id(a) for a in client.actions.values()))
            for client in clients
        )
        if key == self._key:
            return False
        self._key = key
        offered: list[Action] = []
        owner: dict[str, TrioNeuroServerClient] = {}
        several = len(clients) > 1
        for client in clients:
            for action in list(client.actions.values()):
                if action.name in owner:
                    continue  # offered by an earlier game
                if tool_name(action.name) in self.reserved:
                    continue  # the call's own tool (end_call) wins
                owner[action.name] = client
                if several:
                    described = f"[{client.game_title}] {action.description}"
                    offered.append(Action(action.name, described, action.schema))
                else:
                    offered.append(action)
        # The API takes at most MAX_TOOLS: the call's own tools count too.
        self._set = ToolSet(offered[: MAX_TOOLS - len(self.reserved)])
        self._games = {
            tool["name"]: owner[found.name]
            for tool in self._set.tools
            if (found := self._set.action(tool["name"])) is not None
        }
        self.tools = list(self._set.tools)
        return True

    def names(self) -> Iterable[str]:
        """The titles of the games offered now."""
        return [client.game_title or "" for client in self._clients()]

    def performing(self, session_id: str, action: str) -> bool:
        """Whether this call is waiting for ``action`` of game ``session_id``."""
        return self._running[session_id, action] > 0

    def hold(self, message: ContextMessage) -> bool:
        """Keep back a result message while this call awaits that action.

        A game's result message is context for everyone else; the call that
        performed the action gets the result as its tool's output already.
        Which of the same action's outcomes is this call's is known once its
        own returns (the message comes first): then its own is dropped and
        any other party's goes to :attr:`release`. Returns False (not held:
        pass it on) for other messages, or when :data:`MAX_HELD` are held.
        """
        result = message.result_of
        if result is None or not self.performing(message.session_id, result.action):
            return False
        held = self._held.setdefault((message.session_id, result.action), [])
        if len(held) >= MAX_HELD:
            return False
        held.append(message)
        return True

    def _settle(self, key: tuple[str, str], outcome: ActionOutcome | None) -> None:
        """One of this call's actions ``key`` returned ``outcome`` (None: none)."""
        held = self._held.get(key, [])
        held[:] = [m for m in held if m.result_of is not outcome]
        self._running[key] -= 1
        if self._running[key]:
            return
        del self._running[key]
        for message in self._held.pop(key, ()):
            self.release(message)

    async def call(self, tool: str, arguments: str) -> ToolResult:
        """Perform the action behind ``tool`` with the model's ``arguments``.

        Never raises for what the model or the game does: an unknown tool,
        arguments that are not valid for the action's schema, a game that
        left, a timeout or a failure are all a :class:`ToolResult` whose
        output says so (the model reads it and may tell the caller).
        """
        client = self._games.get(tool)
        if client is None or self._set.action(tool) is None:
            return ToolResult(False, _output("unknown_tool", f"no tool {tool!r}"))
        try:
            action, data = self._set.answer(tool, arguments)
        except ValueError as exc:
            return ToolResult(False, _output("invalid", str(exc)))
        return await self._perform(client, action.name, data)

    async def perform(self, name: str, data: str | None) -> ToolResult:
        """Perform action ``name`` of the first offered game that has it.

        For what the caller does (a keypad digit), not the model: the data
        is validated as for :meth:`call`; never raises for the game.
        """
        for client in self._clients():
            if client.get_action(name) is not None:
                return await self._perform(client, name, data)
        return ToolResult(
            False, _output("unavailable", f"no game has an action {name!r}")
        )

    async def _perform(
        self, client: TrioNeuroServerClient, name: str, data: str | None
    ) -> ToolResult:
        game = client.game_title
        registered = client.get_action(name)
        if registered is None or self.server.get_client(client.session_id) is None:
            return ToolResult(
                False, _output("unavailable", "the game or action is gone"), game
            )
        try:
            verdict = await self.server.validate_data(registered.schema, data)
        except SchemaError as exc:
            return ToolResult(False, _output("invalid", str(exc)), game, name)
        if not verdict.ok:
            return ToolResult(False, _output("invalid", verdict.reason), game, name)
        key = (client.session_id, name)
        self._running[key] += 1
        outcome = None
        try:
            outcome = await client.execute_action(name, data)
        except (TooManyHeldActions, FrameTooLarge) as exc:
            return ToolResult(False, _output("refused", str(exc)), game, name)
        except (RuntimeError, ConnectionClosed):
            # The game's connection ended after the look above (validating
            # awaits): as gone as a game that left before.
            return ToolResult(
                False, _output("unavailable", "the game or action is gone"), game, name
            )
        finally:
            self._settle(key, outcome)
        return ToolResult(
            outcome.success,
            _output(outcome.status.value, outcome.message),
            game,
            name,
        )
