"""Parsers of Neuro game API frames: a dispatch table per direction.

The reference parser: every field read, checked and noted. Public through
:mod:`neuro_api.command` (``parse_neuro_frame`` here; ``parse_game_frame``
in :mod:`neuro_api._fastparse`, which recognises well-formed game frames
first and falls back to this).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
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


def _short(text: str, limit: int = 60) -> str:
    """Return ``text`` cut to ``limit`` characters.

    Names a frame chose are echoed in messages and logs, and a frame may be
    a megabyte.
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    def peek(self, key: str) -> Any:
        """The value of ``key`` (None if absent), left in place."""
        return self._obj.get(key)

    def finish(self) -> None:
        """Record every key nobody took as an unknown key."""
        for key in self._obj:
            self.notes.append(
                FieldProblem(
                    _path(self.path, _short(key)),
                    ProblemKind.UNKNOWN_KEY,
                    "unknown key (ignored)",
                )
            )


# ---------------------------------------------------------------------------
# Parsers
# ---------------------------------------------------------------------------

_Parser = Callable[[_Reader, str | None], Message]


def _load_object(frame: str | bytes | bytearray) -> dict[str, Any]:
    if isinstance(frame, (bytes, bytearray)):
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


_CONTAINERS: Final = (dict, list)  # a tuple: isinstance is twice as fast with it


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests objects/arrays more than ``limit`` deep."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, _CONTAINERS)
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
    """Parser for a message without data: ``data`` may be absent or ``{}``.

    A ``data`` that is not an object (some SDKs send ``[]``: Lua's empty
    table) cannot change what the command means: it is ignored with a note,
    rather than the whole message refused.
    """

    def parse(top: _Reader, game: str | None) -> Message:
        data = top.peek("data")
        if data is not None and not isinstance(data, dict):
            top.take_raw("data")
            top.notes.append(
                FieldProblem(
                    "data",
                    ProblemKind.IGNORED_DATA,
                    f"expected an object or nothing, got {_describe(data)}; ignored",
                )
            )
        else:
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


# --- did you mean ...? -------------------------------------------------------

_SEPARATORS: Final = str.maketrans(dict.fromkeys(":._\\-", "/"))
_HINT_CHARS: Final = 64
"""Unknown commands are compared up to this many characters (a frame's
command may be a megabyte). Past about 1.7 times the longest command nothing
is close at the cutoff anyway."""
_HINT_CUTOFF: Final = 0.75
"""difflib ratio a typo needs (``contxt`` is 0.92 from ``context``); below
it, hints turn into noise (``action`` would be ``action/result``)."""


def _spelling(command: str) -> str:
    """``command`` without case and with ``/`` for every separator."""
    return command.strip().lower().translate(_SEPARATORS)


def _did_you_mean(command: str, known: Iterable[str]) -> str | None:
    """The known command that ``command`` most likely misspells, or None.

    Same letters with other case or separators first (the C SDK's
    ``action:result``), then the closest typo.
    """
    wanted = _spelling(command[:_HINT_CHARS])
    spellings = {_spelling(name): name for name in known}
    if wanted in spellings:
        return spellings[wanted]
    close = difflib.get_close_matches(wanted, spellings, n=1, cutoff=_HINT_CUTOFF)
    return spellings[close[0]] if close else None


def _unknown_command(command: str, table: Mapping[str, _Parser]) -> str:
    """The error text for an unknown command, with a hint when one is close."""
    text = f"unknown command {_short(command)!r}"
    hint = _did_you_mean(command, table)
    if hint is not None:
        text += f"; did you mean {hint!r}?"
    return f"{text} (known: {', '.join(sorted(table))})"


def _parse(
    frame: str | bytes | bytearray,
    table: Mapping[str, _Parser],
    *,
    with_game: bool,
) -> Message:
    return _parse_object(_load_object(frame), table, with_game=with_game)


def _parse_object(
    obj: dict[str, Any], table: Mapping[str, _Parser], *, with_game: bool
) -> Message:
    notes: list[FieldProblem] = []
    top = _Reader(obj, "", notes, None)
    command = top.take_str("command")
    top._command = command
    parser = table.get(command)
    if parser is None:
        raise ProtocolError(
            FieldProblem(
                "command", ProblemKind.UNKNOWN_COMMAND, _unknown_command(command, table)
            ),
            command,
        )
    game = top.take_str("game") if with_game else None
    message = parser(top, game)
    top.finish()
    if notes:
        message = dataclasses.replace(message, notes=tuple(notes))
    return message


def parse_neuro_frame(frame: str | bytes | bytearray) -> NeuroMessage:
    """Parse a frame Neuro sent to a game.

    A ``game`` key is tolerated (reported in ``notes`` as an unknown key).
    Raises :class:`ProtocolError` for anything else that is wrong.
    """
    message = _parse(frame, NEURO_PARSERS, with_game=False)
    assert isinstance(message, NeuroMessage)
    return message


def load_frame(frame: str | bytes | bytearray) -> dict[str, Any]:
    """The JSON object of a frame; :class:`ProtocolError` if it is not one."""
    return _load_object(frame)


def parse_neuro_object(obj: dict[str, Any]) -> NeuroMessage:
    """:func:`parse_neuro_frame` of a frame already decoded from JSON."""
    message = _parse_object(obj, NEURO_PARSERS, with_game=False)
    assert isinstance(message, NeuroMessage)
    return message
