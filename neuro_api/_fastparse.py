"""Fast paths for well-formed game frames, in front of the reference parser.

Nearly every frame a game sends is well formed, and the reference parser's
readers (:mod:`neuro_api._parsing`) cost several times the JSON decoding
itself (a dict copy per object, a method call per field). The functions here
only *recognise* a frame that is exactly right - no unknown key, no null,
every type as expected - and build the message straight from the decoded
object, without copying or mutating it. Anything else returns None, and the
reference parser runs on the same object: it alone produces notes and
ProtocolErrors, so they cannot differ. A fast path must therefore accept only
what the reference parser would accept without a note, and return the very
message it would return.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from neuro_api._cache import SizedCache
from neuro_api._messages import (
    Action,
    ActionResult,
    Context,
    ForceActions,
    ForcePriority,
    GameMessage,
    Message,
    RegisterActions,
    ShutdownReady,
    Startup,
    UnregisterActions,
)
from neuro_api._parsing import (
    GAME_PARSERS,
    MAX_SCHEMA_DEPTH,
    _deeper_than,
    _load_object,
    _parse_object,
)

__all__ = ["parse_game_frame"]

# ``type(x) is str`` is exact here: orjson only makes plain str, bool, int,
# float, list and dict objects.

_GameFastPath = Callable[[dict[str, Any], str], GameMessage | None]
_MISSING: Final = object()
_PRIORITIES: Final = {p.value: p for p in ForcePriority}
_FORCE_KEYS: Final = frozenset(
    {"state", "query", "ephemeral_context", "priority", "action_names"}
)
_RESULT_KEYS: Final = frozenset({"id", "success", "message"})
_ACTION_KEYS: Final = frozenset({"name", "description", "schema"})


def _only_data(obj: dict[str, Any]) -> dict[str, Any] | None:
    """``data`` of a frame with exactly command, game and an object data."""
    data = obj.get("data")
    if type(data) is dict and len(obj) == 3:
        return data
    return None


def _all_str(items: list[Any]) -> bool:
    # map(type, ...) runs in C: no generator frame per item.
    return not items or set(map(type, items)) == _JUST_STR


_JUST_STR: Final = {str}


def _fast_no_data(factory: Callable[..., GameMessage]) -> _GameFastPath:
    def parse(obj: dict[str, Any], game: str) -> GameMessage | None:
        # ``data`` may be absent or ``{}``; any other value goes the full way.
        if len(obj) == 2 or (len(obj) == 3 and obj.get("data") == {}):
            return factory(game=game)
        return None

    return parse


# Builders of the fast paths' messages. The generated frozen ``__init__``
# (keyword parsing, then one object.__setattr__ per field) costs about as much
# as the rest of a fast parse; these set the slots directly. Only for values
# the fast paths have already checked: they skip nothing else, since the
# messages have no __post_init__. Their field lists are checked here, at
# import, and tests hold what they build equal to what __init__ builds.


def _slot_setters(cls: type[Message], *names: str) -> tuple[Any, ...]:
    fields = tuple(field.name for field in dataclasses.fields(cls))
    if set(fields) != {*names, "notes"} or hasattr(cls, "__post_init__"):
        raise TypeError(f"fast builder of {cls.__name__} is out of date: {fields}")
    return tuple(getattr(cls, name).__set__ for name in (*names, "notes"))


_new: Final = object.__new__
_SET_FORCE: Final = _slot_setters(
    ForceActions,
    "game",
    "state",
    "query",
    "ephemeral_context",
    "priority",
    "action_names",
)
_SET_RESULT: Final = _slot_setters(ActionResult, "game", "id", "success", "message")
_SET_CONTEXT: Final = _slot_setters(Context, "game", "message", "silent")


def _build_force(
    game: str,
    state: str | None,
    query: str,
    ephemeral_context: bool,
    priority: ForcePriority,
    action_names: tuple[str, ...],
) -> ForceActions:
    message: ForceActions = _new(ForceActions)
    (
        set_game,
        set_state,
        set_query,
        set_ephemeral,
        set_priority,
        set_names,
        set_notes,
    ) = _SET_FORCE
    set_game(message, game)
    set_state(message, state)
    set_query(message, query)
    set_ephemeral(message, ephemeral_context)
    set_priority(message, priority)
    set_names(message, action_names)
    set_notes(message, ())
    return message


def _build_result(game: str, id_: str, success: bool, text: str | None) -> ActionResult:
    message: ActionResult = _new(ActionResult)
    set_game, set_id, set_success, set_message, set_notes = _SET_RESULT
    set_game(message, game)
    set_id(message, id_)
    set_success(message, success)
    set_message(message, text)
    set_notes(message, ())
    return message


def _build_context(game: str, text: str, silent: bool) -> Context:
    message: Context = _new(Context)
    set_game, set_message, set_silent, set_notes = _SET_CONTEXT
    set_game(message, game)
    set_message(message, text)
    set_silent(message, silent)
    set_notes(message, ())
    return message


def _fast_context(obj: dict[str, Any], game: str) -> GameMessage | None:
    data = _only_data(obj)
    if data is None or len(data) != 2:
        return None
    message = data.get("message")
    silent = data.get("silent")
    if type(message) is not str or type(silent) is not bool:
        return None
    return _build_context(game, message, silent)


def _fast_force(obj: dict[str, Any], game: str) -> GameMessage | None:
    data = _only_data(obj)
    if data is None or not _FORCE_KEYS.issuperset(data):
        return None
    query = data.get("query")
    names = data.get("action_names")
    if type(query) is not str or type(names) is not list or not _all_str(names):
        return None
    # Optional fields: absent is fine, null (a note) or a wrong type is not.
    state = data.get("state", _MISSING)
    if state is _MISSING:
        state = None
    elif type(state) is not str:
        return None
    ephemeral = data.get("ephemeral_context", False)
    if type(ephemeral) is not bool:
        return None
    raw = data.get("priority", "low")
    priority = _PRIORITIES.get(raw) if type(raw) is str else None
    if priority is None:
        return None
    return _build_force(game, state, query, ephemeral, priority, tuple(names))


def _fast_result(obj: dict[str, Any], game: str) -> GameMessage | None:
    data = _only_data(obj)
    if data is None or not _RESULT_KEYS.issuperset(data):
        return None
    id_ = data.get("id")
    success = data.get("success")
    if type(id_) is not str or type(success) is not bool:
        return None
    message = data.get("message", _MISSING)
    if message is _MISSING:
        message = None
    elif type(message) is not str:
        return None
    return _build_result(game, id_, success, message)


def _fast_register(obj: dict[str, Any], game: str) -> GameMessage | None:
    data = _only_data(obj)
    if data is None or len(data) != 1:
        return None
    entries = data.get("actions")
    if type(entries) is not list:
        return None
    actions: list[Action] = []
    schemas: list[dict[str, Any]] = []
    for entry in entries:
        if type(entry) is not dict or not _ACTION_KEYS.issuperset(entry):
            return None
        name = entry.get("name")
        description = entry.get("description")
        if type(name) is not str or type(description) is not str:
            return None
        schema = entry.get("schema", _MISSING)
        if schema is _MISSING:
            schema = None
        elif type(schema) is dict:
            schemas.append(schema)
        else:
            return None
        actions.append(Action(name, description, schema))
    if _any_too_deep(schemas):
        return None  # the full parser says which, and why
    return RegisterActions(game=game, actions=tuple(actions))


_SHALLOW_SCHEMAS: SizedCache[bool] = SizedCache(1 << 20, 64 << 10)
"""JSON texts of schemas already found within MAX_SCHEMA_DEPTH (1 MiB of
them at most, none over 64 KiB): games register the same few schemas on
every connection, and encoding one costs a fraction of walking it."""


def _any_too_deep(schemas: list[dict[str, Any]]) -> bool:
    """Whether one of ``schemas`` nests deeper than MAX_SCHEMA_DEPTH."""
    fresh: list[dict[str, Any]] = []
    texts: list[bytes] = []
    for schema in schemas:
        try:
            text = orjson.dumps(schema)
        except orjson.JSONEncodeError:  # deeper than orjson writes, at least
            return True
        if _SHALLOW_SCHEMAS.get(text) is None:
            fresh.append(schema)
            texts.append(text)
    # One depth walk for the schemas not seen yet: the list adds one level,
    # so it is deeper than the limit + 1 exactly when one of them is too deep.
    if fresh and _deeper_than(fresh, MAX_SCHEMA_DEPTH + 1):
        return True
    for text in texts:
        _SHALLOW_SCHEMAS.put(text, True)
    return False


def _fast_unregister(obj: dict[str, Any], game: str) -> GameMessage | None:
    data = _only_data(obj)
    if data is None or len(data) != 1:
        return None
    names = data.get("action_names")
    if type(names) is not list or not _all_str(names):
        return None
    return UnregisterActions(game=game, action_names=tuple(names))


_FAST_GAME_PARSERS: Final[Mapping[str, _GameFastPath]] = {
    "startup": _fast_no_data(Startup),
    "context": _fast_context,
    "actions/register": _fast_register,
    "actions/unregister": _fast_unregister,
    "actions/force": _fast_force,
    "action/result": _fast_result,
    "shutdown/ready": _fast_no_data(ShutdownReady),
}


def parse_game_frame(frame: str | bytes | bytearray) -> GameMessage:
    """Parse a frame a game sent to Neuro.

    ``bytes`` are accepted and decoded as UTF-8 (the caller decides whether a
    binary frame deserves a diagnostic). Raises :class:`ProtocolError` for
    anything that is not a well-formed game message.
    """
    obj: Any = None
    if type(frame) is str:  # the usual case, without a call
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager)
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            pass
    if type(obj) is not dict:
        obj = _load_object(frame)  # decodes, or raises the reason
    command = obj.get("command")
    game = obj.get("game")
    if type(command) is str and type(game) is str:
        fast = _FAST_GAME_PARSERS.get(command)
        if fast is not None:
            quick = fast(obj, game)
            if quick is not None:
                return quick
    message = _parse_object(obj, GAME_PARSERS, with_game=True)
    assert isinstance(message, GameMessage)
    return message
