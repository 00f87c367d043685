"""The Neuro game API wire format, both directions.

Every frame is one JSON object in a text WebSocket frame. This module turns
frames into typed, immutable messages and back, with no I/O:

* each message is a frozen dataclass; ``message.to_frame()`` is the exact JSON
  text to send, and ``parse_game_frame`` / ``parse_neuro_frame`` turn received
  text back into the same value;
* the upstream SDK's builder functions (``startup_command``,
  ``actions_force_command`` ...) are kept with the same meaning, but return
  ``str`` so a WebSocket library sends a *text* frame (the spec forbids binary);
* a frame that cannot be understood raises exactly one :class:`ProtocolError`
  (a :class:`ValueError`) naming the field and what was wrong. Things that are
  odd but harmless (unknown extra keys, ``null`` where a value may be omitted)
  are kept in :attr:`Message.notes` instead, so a server can report them
  without refusing the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from neuro_api._messages import (
    Action,
    ActionMessage,
    ActionResult,
    Context,
    FieldProblem,
    ForceActions,
    ForcePriority,
    GameMessage,
    GracefulShutdown,
    ImmediateShutdown,
    Message,
    NeuroMessage,
    ProblemKind,
    ProtocolError,
    RegisterActions,
    ReregisterAll,
    ShutdownReady,
    SpeechFinished,
    Startup,
    StartupAcknowledgement,
    UnregisterActions,
    _dumps,
)
from neuro_api._parsing import parse_game_frame, parse_neuro_frame

__all__ = [
    "Action",
    "ActionMessage",
    "ActionResult",
    "ActionResultData",
    "ActionSchema",
    "Context",
    "ContextData",
    "FieldProblem",
    "ForceActions",
    "ForceActionsData",
    "ForcePriority",
    "GameMessage",
    "GracefulShutdown",
    "ImmediateShutdown",
    "Message",
    "NeuroMessage",
    "ProblemKind",
    "ProtocolError",
    "RegisterActions",
    "RegisterActionsData",
    "ReregisterAll",
    "ShutdownReady",
    "SpeechFinished",
    "Startup",
    "StartupAcknowledgement",
    "UnregisterActions",
    "UnregisterActionsData",
    "action_command",
    "actions_force_command",
    "actions_register_command",
    "actions_result_command",
    "actions_unregister_command",
    "context_command",
    "parse_game_frame",
    "parse_neuro_frame",
    "reregister_all_command",
    "shutdown_graceful_command",
    "shutdown_immediate_command",
    "shutdown_ready_command",
    "speech_finished_command",
    "startup_acknowledgement_command",
    "startup_command",
]


class ContextData(TypedDict):
    """``data`` of a ``context`` frame."""

    message: str
    silent: bool


class ActionSchema(TypedDict):
    """One entry of ``actions/register``'s ``actions`` list."""

    name: str
    description: str
    schema: NotRequired[dict[str, Any]]


class RegisterActionsData(TypedDict):
    """``data`` of an ``actions/register`` frame."""

    actions: list[ActionSchema]


class UnregisterActionsData(TypedDict):
    """``data`` of an ``actions/unregister`` frame."""

    action_names: list[str]


class ForceActionsData(TypedDict):
    """``data`` of an ``actions/force`` frame."""

    state: NotRequired[str]
    query: str
    ephemeral_context: NotRequired[bool]
    priority: NotRequired[Literal["low", "medium", "high", "critical"]]
    action_names: list[str]


class ActionResultData(TypedDict):
    """``data`` of an ``action/result`` frame."""

    id: str
    success: bool
    message: NotRequired[str]


# ---------------------------------------------------------------------------
# Builders with the upstream SDK's names (return the frame text)
# ---------------------------------------------------------------------------


def startup_command(game: str) -> str:
    """Return a game's ``startup`` frame."""
    return Startup(game=game).to_frame()


def context_command(game: str, message: str, silent: bool = True) -> str:
    """Return a ``context`` frame (``silent=True`` by default)."""
    return Context(game=game, message=message, silent=silent).to_frame()


def actions_register_command(game: str, actions: Iterable[Action]) -> str:
    """Return an ``actions/register`` frame.

    Raises :class:`ValueError` for an empty list: registering nothing is
    always a mistake in the caller.
    """
    actions = tuple(actions)
    if not actions:
        raise ValueError("actions/register needs at least one action")
    return RegisterActions(game=game, actions=actions).to_frame()


def actions_unregister_command(game: str, action_names: Sequence[str]) -> str:
    """Return an ``actions/unregister`` frame (raises on an empty list)."""
    if not action_names:
        raise ValueError("actions/unregister needs at least one action name")
    return UnregisterActions(game=game, action_names=tuple(action_names)).to_frame()


def actions_force_command(
    game: str,
    state: str | None,
    query: str,
    action_names: Sequence[str],
    ephemeral_context: bool = False,
    priority: ForcePriority | None = ForcePriority.LOW,
) -> str:
    """Return an ``actions/force`` frame (raises on an empty name list).

    ``priority=None`` leaves the ``priority`` key out, for servers that
    predate it and refuse unknown fields (Jippity does); servers that know it
    read a missing priority as ``low``. The default sends ``"low"``.
    """
    if not action_names:
        raise ValueError("actions/force needs at least one action name")
    message = ForceActions(
        game=game,
        state=state,
        query=query,
        action_names=tuple(action_names),
        ephemeral_context=ephemeral_context,
        priority=ForcePriority.LOW if priority is None else ForcePriority(priority),
    )
    if priority is not None:
        return message.to_frame()
    # The parsed message cannot tell a missing priority from "low" (both
    # mean low), so the key is dropped here, from the frame, not the message.
    frame = message.envelope()
    del frame["data"]["priority"]
    return _dumps(frame)


def actions_result_command(
    game: str, id_: str, success: bool, message: str | None = None
) -> str:
    """Return an ``action/result`` frame.

    ``message`` is optional, as in the spec, but a failing result should say
    why: Neuro reads the message, and retries a force with nothing to go on
    without one (servers report it: ``result.failure-without-message``).
    """
    return ActionResult(game=game, id=id_, success=success, message=message).to_frame()


def shutdown_ready_command(game: str) -> str:
    """Return a ``shutdown/ready`` frame."""
    return ShutdownReady(game=game).to_frame()


def startup_acknowledgement_command(
    session_id: str, character_id: str, display_name: str
) -> str:
    """Return Neuro's ``startup`` acknowledgement frame."""
    return StartupAcknowledgement(
        session_id=session_id, character_id=character_id, display_name=display_name
    ).to_frame()


def action_command(id_: str, name: str, data: str | None = None) -> str:
    """Return an ``action`` frame; ``data`` is already a JSON *string*.

    The same text as ``ActionMessage(...).to_frame()``, built without the
    message object: the server sends one per force.
    """
    if (
        type(id_) is not str
        or type(name) is not str
        or (data is not None and type(data) is not str)
    ):  # the message's own encoding says what is wrong
        return ActionMessage(id=id_, name=name, data_json=data).to_frame()
    fields = {"id": id_, "name": name}
    if data is not None:
        fields["data"] = data
    return orjson.dumps({"command": "action", "data": fields}).decode()


def reregister_all_command() -> str:
    """Return an ``actions/reregister_all`` frame."""
    return ReregisterAll().to_frame()


def shutdown_graceful_command(wants_shutdown: bool) -> str:
    """Return a ``shutdown/graceful`` frame."""
    return GracefulShutdown(wants_shutdown=wants_shutdown).to_frame()


def shutdown_immediate_command() -> str:
    """Return a ``shutdown/immediate`` frame."""
    return ImmediateShutdown().to_frame()


def speech_finished_command(
    is_final: bool, cancelled: bool = False, reason: str | None = None
) -> str:
    """Return a ``speech_finished`` frame."""
    return SpeechFinished(
        is_final=is_final, cancelled=cancelled, reason=reason
    ).to_frame()
