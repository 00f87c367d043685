"""Parsers of Neuro game API frames: a dispatch table per direction.

Public through :mod:`neuro_api.command` (``parse_game_frame`` and
``parse_neuro_frame``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

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
)

# ---------------------------------------------------------------------------
# Field readers (shared by every parser)
# ---------------------------------------------------------------------------

_TYPE_NAMES: Final = {
    str: "a string",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _describe(value: object) -> str:
    """Name a JSON value's type and show a short preview of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        preview = value if len(value) <= 40 else value[:37] + "..."
        return f"string {preview!r}"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - JSON has no other types


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


class _Reader:
    """Reads typed fields out of one JSON object, collecting notes.

    ``take_*`` methods pop the key so that whatever is left at the end is an
    unknown key; wrong types raise :class:`ProtocolError` at once.
    """

    __slots__ = ("_command", "_obj", "notes", "path")

    def __init__(
        self,
        obj: Mapping[str, Any],
        path: str,
        notes: list[FieldProblem],
        command: str | None,
    ) -> None:
        self._obj = dict(obj)
        self.path = path
        self.notes = notes
        self._command = command

    def fail(self, key: str | int, kind: ProblemKind, detail: str) -> ProtocolError:
        field = _path(self.path, key)
        return ProtocolError(FieldProblem(field, kind, detail), self._command)

    def _take(self, key: str, expected: type, *, required: bool) -> Any:
        if key not in self._obj:
            if required:
                raise self.fail(key, ProblemKind.MISSING, "required field is missing")
            return None
        value = self._obj.pop(key)
        if value is None:
            if required:
                raise self.fail(
                    key,
                    ProblemKind.WRONG_TYPE,
                    f"expected {_TYPE_NAMES[expected]}, got null",
                )
            self.notes.append(
                FieldProblem(
                    _path(self.path, key),
                    ProblemKind.NULL_VALUE,
                    "null where the field may simply be omitted",
                )
            )
            return None
        # bool is a subclass of int, but JSON keeps them apart; nothing here
        # expects a number, so a plain isinstance check is exact.
        if not isinstance(value, expected):
            raise self.fail(
                key,
                ProblemKind.WRONG_TYPE,
                f"expected {_TYPE_NAMES[expected]}, got {_describe(value)}",
            )
        return value

    def take_str(self, key: str) -> str:
        value: str = self._take(key, str, required=True)
        return value

    def take_opt_str(self, key: str) -> str | None:
        value: str | None = self._take(key, str, required=False)
        return value

    def take_bool(self, key: str) -> bool:
        value: bool = self._take(key, bool, required=True)
        return value

    def take_opt_bool(self, key: str) -> bool | None:
        value: bool | None = self._take(key, bool, required=False)
        return value

    def take_obj(self, key: str, *, required: bool = True) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._take(key, dict, required=required)
        return value

    def take_str_list(self, key: str) -> tuple[str, ...]:
        items = self.take_list(key)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise self.fail(
                    f"{key}[{index}]",
                    ProblemKind.WRONG_TYPE,
                    f"expected a string, got {_describe(item)}",
                )
        return tuple(items)

    def take_list(self, key: str) -> list[Any]:
        value: list[Any] = self._take(key, list, required=True)
        return value

    def take_raw(self, key: str) -> Any:
        return self._obj.pop(key, None)

    def has(self, key: str) -> bool:
        return key in self._obj

    def finish(self) -> None:
        """Record every key nobody took as an unknown key."""
        for key in self._obj:
            self.notes.append(
                FieldProblem(
                    _path(self.path, key),
                    ProblemKind.UNKNOWN_KEY,
                    "unknown key (ignored)",
                )
            )


# ---------------------------------------------------------------------------
# Parsers
# ---------------------------------------------------------------------------

_Parser = Callable[[_Reader, str | None], Message]


def _load_object(frame: str | bytes | bytearray) -> dict[str, Any]:
    if isinstance(frame, bytes | bytearray):
        try:
            frame = bytes(frame).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                FieldProblem(
                    "", ProblemKind.NOT_TEXT, f"frame is not UTF-8 text: {exc}"
                )
            ) from None
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(
            FieldProblem(
                "", ProblemKind.INVALID_JSON, f"frame is not valid JSON: {exc}"
            )
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(
            FieldProblem(
                "",
                ProblemKind.NOT_AN_OBJECT,
                f"frame must be a JSON object, got {_describe(obj)}",
            )
        )
    return obj


def _data_reader(top: _Reader, command: str, *, required: bool) -> _Reader:
    """Return a reader over ``data`` (an empty one if absent and optional)."""
    data = top.take_obj("data", required=required)
    return _Reader(data or {}, "data", top.notes, command)


MAX_SCHEMA_DEPTH: Final = 64
"""Deeper schemas are refused: no action needs them, and JSON encoders
(orjson stops at 255 levels) could not send them on."""


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests objects/arrays more than ``limit`` deep."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return bool(level)


def _parse_action(entry: Any, path: str, notes: list[FieldProblem]) -> Action:
    if not isinstance(entry, dict):
        raise ProtocolError(
            FieldProblem(
                path,
                ProblemKind.WRONG_TYPE,
                f"expected an action object, got {_describe(entry)}",
            )
        )
    reader = _Reader(entry, path, notes, "actions/register")
    name = reader.take_str("name")
    description = reader.take_str("description")
    schema: dict[str, Any] | None
    if not reader.has("schema"):
        schema = None
    else:
        raw = reader.take_raw("schema")
        if raw is None:
            notes.append(
                FieldProblem(
                    _path(path, "schema"),
                    ProblemKind.NULL_VALUE,
                    "schema is null; omit it for an action without data",
                )
            )
            schema = None
        elif isinstance(raw, dict):
            if _deeper_than(raw, MAX_SCHEMA_DEPTH):
                raise reader.fail(
                    "schema",
                    ProblemKind.INVALID_VALUE,
                    f"schema is nested deeper than {MAX_SCHEMA_DEPTH} levels",
                )
            schema = raw
        else:
            raise reader.fail(
                "schema",
                ProblemKind.WRONG_TYPE,
                f"expected a JSON schema object, got {_describe(raw)}",
            )
    reader.finish()
    return Action(name, description, schema)


def _parse_register(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "actions/register", required=True)
    entries: list[Any] = data.take_list("actions")
    data.finish()
    actions: list[Action] = []
    rejected: list[FieldProblem] = []
    for index, entry in enumerate(entries):
        try:
            actions.append(_parse_action(entry, f"data.actions[{index}]", top.notes))
        except ProtocolError as exc:
            rejected.append(exc.problem)
    return RegisterActions(
        game=_game(game), actions=tuple(actions), rejected=tuple(rejected)
    )


def _parse_unregister(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "actions/unregister", required=True)
    names = data.take_str_list("action_names")
    data.finish()
    return UnregisterActions(game=_game(game), action_names=names)


def _parse_priority(data: _Reader) -> ForcePriority:
    raw = data.take_opt_str("priority")
    if raw is None:
        return ForcePriority.LOW
    try:
        return ForcePriority(raw)
    except ValueError:
        allowed = ", ".join(p.value for p in ForcePriority)
        raise data.fail(
            "priority",
            ProblemKind.INVALID_VALUE,
            f"{raw!r} is not a priority (expected one of {allowed})",
        ) from None


def _parse_force(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "actions/force", required=True)
    state = data.take_opt_str("state")
    query = data.take_str("query")
    ephemeral = data.take_opt_bool("ephemeral_context")
    priority = _parse_priority(data)
    names = data.take_str_list("action_names")
    data.finish()
    return ForceActions(
        game=_game(game),
        state=state,
        query=query,
        ephemeral_context=bool(ephemeral),
        priority=priority,
        action_names=names,
    )


def _parse_context(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "context", required=True)
    message = data.take_str("message")
    silent = data.take_bool("silent")
    data.finish()
    return Context(game=_game(game), message=message, silent=silent)


def _parse_result(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "action/result", required=True)
    id_ = data.take_str("id")
    success = data.take_bool("success")
    message = data.take_opt_str("message")
    data.finish()
    return ActionResult(game=_game(game), id=id_, success=success, message=message)


def _no_data(factory: Callable[..., Message], command: str) -> _Parser:
    """Parser for a message without data: ``data`` may be absent or ``{}``."""

    def parse(top: _Reader, game: str | None) -> Message:
        _data_reader(top, command, required=False).finish()
        if game is None:
            return factory()
        return factory(game=game)

    return parse


def _game(game: str | None) -> str:
    assert game is not None  # the game-frame parser checked it
    return game


def _parse_startup_ack(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "startup", required=False)
    session = data.take_obj("session", required=False)
    data.finish()
    if session is None:
        return StartupAcknowledgement()
    reader = _Reader(session, "data.session", top.notes, "startup")
    ack = StartupAcknowledgement(
        session_id=reader.take_str("sessionId"),
        character_id=reader.take_str("characterId"),
        display_name=reader.take_str("displayName"),
    )
    reader.finish()
    return ack


def _parse_action_message(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "action", required=True)
    id_ = data.take_str("id")
    name = data.take_str("name")
    data_json = data.take_opt_str("data")
    data.finish()
    return ActionMessage(id=id_, name=name, data_json=data_json)


def _parse_graceful(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "shutdown/graceful", required=True)
    wants = data.take_bool("wants_shutdown")
    data.finish()
    return GracefulShutdown(wants_shutdown=wants)


def _parse_speech_finished(top: _Reader, game: str | None) -> Message:
    data = _data_reader(top, "speech_finished", required=True)
    is_final = data.take_bool("isFinal")
    cancelled = data.take_opt_bool("cancelled")
    reason = data.take_opt_str("reason")
    data.finish()
    return SpeechFinished(is_final=is_final, cancelled=bool(cancelled), reason=reason)


GAME_PARSERS: Final[Mapping[str, _Parser]] = {
    "startup": _no_data(Startup, "startup"),
    "context": _parse_context,
    "actions/register": _parse_register,
    "actions/unregister": _parse_unregister,
    "actions/force": _parse_force,
    "action/result": _parse_result,
    "shutdown/ready": _no_data(ShutdownReady, "shutdown/ready"),
}
"""Dispatch table of game -> Neuro commands (the keys are every command)."""

NEURO_PARSERS: Final[Mapping[str, _Parser]] = {
    "startup": _parse_startup_ack,
    "action": _parse_action_message,
    "actions/reregister_all": _no_data(ReregisterAll, "actions/reregister_all"),
    "shutdown/graceful": _parse_graceful,
    "shutdown/immediate": _no_data(ImmediateShutdown, "shutdown/immediate"),
    "speech_finished": _parse_speech_finished,
}
"""Dispatch table of Neuro -> game commands."""


def _parse(
    frame: str | bytes | bytearray,
    table: Mapping[str, _Parser],
    *,
    with_game: bool,
) -> Message:
    obj = _load_object(frame)
    notes: list[FieldProblem] = []
    top = _Reader(obj, "", notes, None)
    command = top.take_str("command")
    top._command = command
    parser = table.get(command)
    if parser is None:
        known = ", ".join(sorted(table))
        raise ProtocolError(
            FieldProblem(
                "command",
                ProblemKind.UNKNOWN_COMMAND,
                f"unknown command {command!r} (known: {known})",
            ),
            command,
        )
    game = top.take_str("game") if with_game else None
    message = parser(top, game)
    top.finish()
    if notes:
        message = dataclasses.replace(message, notes=tuple(notes))
    return message


def parse_game_frame(frame: str | bytes | bytearray) -> GameMessage:
    """Parse a frame a game sent to Neuro.

    ``bytes`` are accepted and decoded as UTF-8 (the caller decides whether a
    binary frame deserves a diagnostic). Raises :class:`ProtocolError` for
    anything that is not a well-formed game message.
    """
    message = _parse(frame, GAME_PARSERS, with_game=True)
    assert isinstance(message, GameMessage)
    return message


def parse_neuro_frame(frame: str | bytes | bytearray) -> NeuroMessage:
    """Parse a frame Neuro sent to a game.

    A ``game`` key is tolerated (reported in ``notes`` as an unknown key).
    Raises :class:`ProtocolError` for anything else that is wrong.
    """
    message = _parse(frame, NEURO_PARSERS, with_game=False)
    assert isinstance(message, NeuroMessage)
    return message
