"""Parsed messages of the Neuro game API: frozen dataclasses and errors.

Public through :mod:`neuro_api.command`; kept apart so the parsers and the
builders can both stand on them.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, ClassVar, NamedTuple

import orjson

JSONObject = dict[str, Any]

# ---------------------------------------------------------------------------
# Public names the upstream SDK's users know
# ---------------------------------------------------------------------------


class ForcePriority(enum.StrEnum):
    """How urgently Neuro should answer an ``actions/force`` while speaking.

    ``LOW`` (the default) waits until she finishes; ``MEDIUM`` shortens the
    current utterance; ``HIGH`` processes the force right after a shortened
    utterance; ``CRITICAL`` interrupts her at once.
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Action(NamedTuple):
    """An action a game registers and Neuro may perform.

    ``schema`` is a JSON schema with ``"type": "object"`` describing the data
    Neuro must send, or ``None`` for an action that takes no data. Use
    :func:`neuro_api.schema.check_action` for the semantic checks (name rules,
    schema validity, unsupported keywords); constructing an ``Action`` checks
    nothing.
    """

    name: str
    description: str
    schema: dict[str, Any] | None = None

    def to_json(self) -> JSONObject:
        """Return the action as the wire object (``schema`` omitted if None)."""
        obj: JSONObject = {"name": self.name, "description": self.description}
        if self.schema is not None:
            obj["schema"] = self.schema
        return obj


# ---------------------------------------------------------------------------
# Errors and notes
# ---------------------------------------------------------------------------


class ProblemKind(enum.StrEnum):
    """What was wrong with a field; stable, so diagnostics can key on it."""

    INVALID_JSON = "invalid_json"
    NOT_TEXT = "not_text"
    NOT_AN_OBJECT = "not_an_object"
    MISSING = "missing"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    UNKNOWN_COMMAND = "unknown_command"
    UNKNOWN_KEY = "unknown_key"
    NULL_VALUE = "null_value"
    IGNORED_DATA = "ignored_data"


@dataclasses.dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with one field of a frame.

    ``field`` is a path such as ``data.actions[2].name`` (empty for the frame
    as a whole).
    """

    field: str
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


class ProtocolError(ValueError):
    """A frame that cannot be understood as a message of the Neuro API.

    ``str(error)`` names the field and what was wrong; :attr:`problem` carries
    the same as data, and :attr:`command` the frame's command when it was
    readable.
    """

    def __init__(self, problem: FieldProblem, command: str | None = None) -> None:
        super().__init__(str(problem))
        self.problem = problem
        self.command = command

    @property
    def field(self) -> str:
        """Path of the offending field (empty for the whole frame)."""
        return self.problem.field

    @property
    def kind(self) -> ProblemKind:
        """Category of the problem."""
        return self.problem.kind


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


def _dumps(obj: JSONObject) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError as exc:
        # orjson names the offending type; say which frame it was.
        raise TypeError(f"cannot encode {obj.get('command')!r} frame: {exc}") from exc


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every parsed message.

    ``notes`` holds harmless oddities found while parsing (unknown keys,
    ``null`` values, a ``data`` that was ignored); it does not take part in
    equality, so a message parsed from a frame equals the one that built it.
    """

    command: ClassVar[str]

    notes: tuple[FieldProblem, ...] = dataclasses.field(
        default=(), compare=False, repr=False
    )

    def data(self) -> JSONObject | None:
        """Return the frame's ``data`` object, or ``None`` to omit it."""
        return None

    def envelope(self) -> JSONObject:
        """Return the whole frame as a JSON-ready dict."""
        frame: JSONObject = {"command": self.command}
        data = self.data()
        if data is not None:
            frame["data"] = data
        return frame

    def to_frame(self) -> str:
        """Return the exact JSON text of the frame."""
        return _dumps(self.envelope())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GameMessage(Message):
    """A message a game sends to Neuro; every one carries the game's name."""

    game: str

    def envelope(self) -> JSONObject:
        """Return the whole frame as a JSON-ready dict (with ``game``)."""
        frame: JSONObject = {"command": self.command, "game": self.game}
        data = self.data()
        if data is not None:
            frame["data"] = data
        return frame


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NeuroMessage(Message):
    """A message Neuro sends to a game (no ``game`` field)."""


# --- game -> Neuro ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Startup(GameMessage):
    """``startup``: first message of a session; clears the game's actions."""

    command: ClassVar[str] = "startup"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Context(GameMessage):
    """``context``: tell Neuro what is happening.

    ``silent=False`` lets her reply if she is not busy.
    """

    command: ClassVar[str] = "context"
    message: str
    silent: bool

    def data(self) -> JSONObject:
        """Return ``{"message", "silent"}``."""
        return {"message": self.message, "silent": self.silent}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RegisterActions(GameMessage):
    """``actions/register``.

    ``rejected`` lists entries of the frame's ``actions`` array that are not
    actions at all (not an object, a non-string name ...); the well-formed
    entries are still in ``actions``, so one bad entry loses nothing else.
    """

    command: ClassVar[str] = "actions/register"
    actions: tuple[Action, ...]
    rejected: tuple[FieldProblem, ...] = ()

    def data(self) -> JSONObject:
        """Return ``{"actions": [...]}``."""
        return {"actions": [action.to_json() for action in self.actions]}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UnregisterActions(GameMessage):
    """``actions/unregister``: unknown names are fine."""

    command: ClassVar[str] = "actions/unregister"
    action_names: tuple[str, ...]

    def data(self) -> JSONObject:
        """Return ``{"action_names": [...]}``."""
        return {"action_names": list(self.action_names)}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ForceActions(GameMessage):
    """``actions/force``: Neuro must pick one of ``action_names`` soon."""

    command: ClassVar[str] = "actions/force"
    query: str
    action_names: tuple[str, ...]
    state: str | None = None
    ephemeral_context: bool = False
    priority: ForcePriority = ForcePriority.LOW

    def data(self) -> JSONObject:
        """Return the force's data, in the upstream SDK's order.

        ``state`` is sent only when set, ``ephemeral_context`` only when true
        (both are optional).
        """
        data: JSONObject = {}
        if self.state is not None:
            data["state"] = self.state
        data["query"] = self.query
        data["action_names"] = list(self.action_names)
        data["priority"] = self.priority.value
        if self.ephemeral_context:
            data["ephemeral_context"] = True
        return data


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ActionResult(GameMessage):
    """``action/result``: the game's answer to an ``action``."""

    command: ClassVar[str] = "action/result"
    id: str
    success: bool
    message: str | None = None

    def data(self) -> JSONObject:
        """Return ``{"id", "success", "message"?}``."""
        data: JSONObject = {"id": self.id, "success": self.success}
        if self.message is not None:
            data["message"] = self.message
        return data


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReady(GameMessage):
    """``shutdown/ready`` (proposal): saved, ready to be closed."""

    command: ClassVar[str] = "shutdown/ready"


# --- Neuro -> game ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StartupAcknowledgement(NeuroMessage):
    """``startup`` sent by Neuro: acknowledges the game's startup.

    The session fields are ``None`` when a server sent the acknowledgement
    without a ``session`` object (older test servers do).
    """

    command: ClassVar[str] = "startup"
    session_id: str | None = None
    character_id: str | None = None
    display_name: str | None = None

    def data(self) -> JSONObject:
        """Return ``{"session": {...}}`` or ``{}`` without a session."""
        if self.session_id is None:
            return {}
        return {
            "session": {
                "sessionId": self.session_id,
                "characterId": self.character_id,
                "displayName": self.display_name,
            }
        }


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ActionMessage(NeuroMessage):
    """``action``: Neuro performs an action.

    ``data`` is a JSON *string* (or ``None``); it may be malformed or off
    schema, which the game must answer with a failing result.
    """

    command: ClassVar[str] = "action"
    id: str
    name: str
    data_json: str | None = None

    def data(self) -> JSONObject:
        """Return ``{"id", "name", "data"?}``."""
        data: JSONObject = {"id": self.id, "name": self.name}
        if self.data_json is not None:
            data["data"] = self.data_json
        return data


def action_frame(id_: str, name: str, data: str | None = None) -> str:
    """The text of an ``action`` frame; ``data`` is already a JSON *string*.

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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReregisterAll(NeuroMessage):
    """``actions/reregister_all`` (proposal): register everything again."""

    command: ClassVar[str] = "actions/reregister_all"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GracefulShutdown(NeuroMessage):
    """``shutdown/graceful`` (proposal); ``wants_shutdown=False`` cancels."""

    command: ClassVar[str] = "shutdown/graceful"
    wants_shutdown: bool

    def data(self) -> JSONObject:
        """Return ``{"wants_shutdown"}``."""
        return {"wants_shutdown": self.wants_shutdown}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ImmediateShutdown(NeuroMessage):
    """``shutdown/immediate`` (proposal): save now, closing in seconds."""

    command: ClassVar[str] = "shutdown/immediate"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SpeechFinished(NeuroMessage):
    """``speech_finished``: Neuro finished, or was cut off, speaking."""

    command: ClassVar[str] = "speech_finished"
    is_final: bool
    cancelled: bool = False
    reason: str | None = None

    def data(self) -> JSONObject:
        """Return ``{"isFinal", "cancelled"?, "reason"?}``."""
        data: JSONObject = {"isFinal": self.is_final}
        if self.cancelled:
            data["cancelled"] = True
        if self.reason is not None:
            data["reason"] = self.reason
        return data
