"""The Neuro game API wire format, both directions.

Every frame is one JSON object in a text WebSocket frame. This module turns
frames into typed, immutable messages and back, with no I/O:

* each message is a frozen dataclass; ``message.to_frame()`` is the exact JSON
  text to send, and ``parse_game_frame`` / ``parse_neuro_frame`` turn received
  text back into the same value;
* the builder functions of the upstream package ``neuro-api`` 4.0.0
  (``startup_command``, ``actions_force_command`` ...) are kept with the same
  names, arguments and results: the frame as UTF-8 JSON *bytes*, to be sent
  as a *text* frame (``.decode()``; the spec forbids binary frames), with
  upstream's helpers (``format_command``, ``check_typed_dict``,
  ``check_action`` ...) beside them;
* a frame that cannot be understood raises exactly one :class:`ProtocolError`
  (a :class:`ValueError`) naming the field and what was wrong. Things that are
  odd but harmless (unknown extra keys, ``null`` where a value may be omitted)
  are kept in :attr:`Message.notes` instead, so a server can report them
  without refusing the message.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

import orjson

from neuro_api._fastparse import parse_game_frame
from neuro_api._keywords import NAME_CHARS, UNSUPPORTED_KEYWORDS, find_keywords
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
    action_frame,
)
from neuro_api._parsing import parse_neuro_frame
from neuro_api._typed_dict import (
    check_typed_dict,
    convert_parameterized_generic,
    convert_parameterized_generic_nonunion,
    convert_parameterized_generic_union_items,
)

__all__ = [
    "ACTION_NAME_ALLOWED_CHARS",
    "INVALID_SCHEMA_KEYS",
    "Action",
    "ActionMessage",
    "ActionResult",
    "ActionResultData",
    "ActionSchema",
    "Context",
    "ContextData",
    "EmptyListError",
    "FieldProblem",
    "ForceActions",
    "ForceActionsData",
    "ForcePriority",
    "GameMessage",
    "GracefulShutdown",
    "ImmediateShutdown",
    "IncomingActionMessageSchema",
    "IncomingStartupAcknowledgementSchema",
    "IncomingStartupAcknowledgementSessionSchema",
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
    "check_action",
    "check_invalid_keys_recursive",
    "check_typed_dict",
    "context_command",
    "convert_parameterized_generic",
    "convert_parameterized_generic_nonunion",
    "convert_parameterized_generic_union_items",
    "format_command",
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
# Upstream's incoming schemas and checks
# ---------------------------------------------------------------------------


class IncomingStartupAcknowledgementSessionSchema(TypedDict):
    """``data.session`` of Neuro's ``startup`` acknowledgement."""

    sessionId: str
    characterId: str
    displayName: str


class IncomingStartupAcknowledgementSchema(TypedDict):
    """``data`` of Neuro's ``startup`` acknowledgement."""

    session: IncomingStartupAcknowledgementSessionSchema


class IncomingActionMessageSchema(TypedDict):
    """``data`` of an ``action`` frame (``data`` is a JSON *string*)."""

    id: str
    name: str
    data: NotRequired[str]


ACTION_NAME_ALLOWED_CHARS: Final = NAME_CHARS
"""Characters an action name may use: lowercase letters, digits, ``_``, ``-``."""

INVALID_SCHEMA_KEYS: Final = UNSUPPORTED_KEYWORDS
"""Schema keywords the spec says Neuro probably does not support well."""


class EmptyListError(ValueError, AssertionError):
    """A builder was given an empty list of actions or action names.

    A :class:`ValueError` here, an :class:`AssertionError` in the upstream
    package ``neuro-api`` 4.0.0: catching either works.
    """


def check_invalid_keys_recursive(sub_schema: Mapping[str, Any]) -> list[str]:
    """Each key of ``sub_schema``, at any depth, in :data:`INVALID_SCHEMA_KEYS`.

    Upstream's helper, with its results in its order: keys are found
    wherever they are, property names included, depth first (the value of a
    key found is not searched); objects in lists are searched, nested lists
    are not. ``null`` values are fine (upstream raised for them); a value
    that is not JSON (a set, bytes ...) raises :class:`ValueError`. Depth
    does not matter (no recursion). To know which keywords a schema really
    uses, see :func:`neuro_api.schema.check_action`.
    """
    found: list[str] = []
    # Iterators of the objects and lists being searched, innermost last.
    stack: list[Iterator[Any]] = [iter(sub_schema.items())]
    in_list: list[bool] = [False]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            in_list.pop()
            continue
        if in_list[-1]:
            if isinstance(item, Mapping):
                stack.append(iter(item.items()))
                in_list.append(False)
            continue
        key, value = item
        if key in INVALID_SCHEMA_KEYS:
            found.append(key)
        elif value is None or isinstance(value, (str, int, float, bool)):
            pass
        elif isinstance(value, Mapping):
            stack.append(iter(value.items()))
            in_list.append(False)
        elif isinstance(value, list):
            stack.append(iter(value))
            in_list.append(True)
        else:
            raise ValueError(f"Unhandled schema value type {type(value)!r} ({value!r})")
    return found


def check_action(action: Action) -> None:
    """Check an action the way upstream's ``check_action`` did, before sending it.

    Raises :class:`ValueError` if the name has characters outside
    :data:`ACTION_NAME_ALLOWED_CHARS`, and warns (:class:`UserWarning`) when
    the schema uses keywords Neuro probably does not support. Only keywords
    in keyword position count (a property named ``title`` is fine, unlike
    upstream). For every check with its reason, see
    :func:`neuro_api.schema.check_action`.
    """
    bad = set(action.name) - ACTION_NAME_ALLOWED_CHARS
    if bad:
        raise ValueError(
            f"Following invalid characters found in name {action.name!r}: {bad}"
        )
    if isinstance(action.schema, Mapping):
        keys = list(
            dict.fromkeys(
                keyword
                for keyword, _ in find_keywords(action.schema)
                if keyword in INVALID_SCHEMA_KEYS
            )
        )
        if keys:
            warnings.warn(
                f"Discouraged keys found in schema: {keys} ({action.name = })\n"
                "Please make sure you accurately check for them in your "
                "integration.",
                stacklevel=2,
            )


# ---------------------------------------------------------------------------
# Builders with the upstream SDK's names (return the frame as UTF-8 bytes)
# ---------------------------------------------------------------------------


def format_command(
    command: str, game: str | None = None, data: Mapping[str, object] | None = None
) -> bytes:
    """Return the frame ``{"command", "game"?, "data"?}`` as UTF-8 JSON bytes.

    Send it as a *text* frame (``bytes.decode()``; the spec forbids binary
    frames): :meth:`neuro_api.api.AbstractNeuroAPI.send_command_data` does.
    Raises :class:`TypeError` for a value JSON cannot encode, with a note
    showing the frame.
    """
    payload: dict[str, object] = {"command": command}
    if game is not None:
        payload["game"] = game
    if data is not None:
        payload["data"] = data
    try:
        return orjson.dumps(payload)
    except TypeError as exc:
        exc.add_note(f"payload = {payload!r}"[:_NOTE_CHARS])
        raise


_NOTE_CHARS: Final = 2000


def _encoded(message: Message) -> bytes:
    frame = message.envelope()
    return format_command(frame["command"], frame.get("game"), frame.get("data"))


def startup_command(game: str) -> bytes:
    """Return a game's ``startup`` frame."""
    return _encoded(Startup(game=game))


def context_command(game: str, message: str, silent: bool = True) -> bytes:
    """Return a ``context`` frame (``silent=True`` by default)."""
    return _encoded(Context(game=game, message=message, silent=silent))


def actions_register_command(game: str, actions: Iterable[Action]) -> bytes:
    """Return an ``actions/register`` frame.

    An action without a schema is sent without a ``schema`` key (upstream
    sent ``"schema": null``, which servers report). Raises
    :class:`EmptyListError` for an empty list: registering nothing is always
    a mistake in the caller.
    """
    actions = tuple(actions)
    if not actions:
        raise EmptyListError("Must register at least one action.")
    return _encoded(RegisterActions(game=game, actions=actions))


def actions_unregister_command(game: str, action_names: Sequence[str]) -> bytes:
    """Return an ``actions/unregister`` frame (:class:`EmptyListError` if empty)."""
    if not action_names:
        raise EmptyListError("Must unregister at least one action.")
    return _encoded(UnregisterActions(game=game, action_names=tuple(action_names)))


def actions_force_command(
    game: str,
    state: str | None,
    query: str,
    action_names: Sequence[str],
    ephemeral_context: bool = False,
    priority: ForcePriority | None = ForcePriority.LOW,
) -> bytes:
    """Return an ``actions/force`` frame (:class:`EmptyListError` if no names).

    ``state=None`` leaves ``state`` out (upstream sent ``null``), and
    ``ephemeral_context`` is sent only when true, as upstream does.
    ``priority=None`` leaves the ``priority`` key out, for servers that
    predate it and refuse unknown fields (Jippity does); servers that know it
    read a missing priority as ``low``. The default sends ``"low"``.
    """
    if not action_names:
        raise EmptyListError("Must force at least one action name.")
    message = ForceActions(
        game=game,
        state=state,
        query=query,
        action_names=tuple(action_names),
        ephemeral_context=ephemeral_context,
        priority=ForcePriority.LOW if priority is None else ForcePriority(priority),
    )
    frame = message.envelope()
    if priority is None:
        # The parsed message cannot tell a missing priority from "low" (both
        # mean low), so the key is dropped here, from the frame.
        del frame["data"]["priority"]
    return format_command(frame["command"], game, frame["data"])


def actions_result_command(
    game: str, id_: str, success: bool, message: str | None = None
) -> bytes:
    """Return an ``action/result`` frame.

    A failing result must say why (Neuro reads the message, and retries a
    force with nothing to go on without one): ``success=False`` without a
    message raises :class:`ValueError`, as upstream does.
    """
    if message is None and not success:
        raise ValueError(
            "Message can only be omitted if successful, otherwise should be "
            "error message."
        )
    return _encoded(ActionResult(game=game, id=id_, success=success, message=message))


def shutdown_ready_command(game: str) -> bytes:
    """Return a ``shutdown/ready`` frame."""
    return _encoded(ShutdownReady(game=game))


def startup_acknowledgement_command(
    session_id: str, character_id: str, display_name: str
) -> bytes:
    """Return Neuro's ``startup`` acknowledgement frame."""
    return _encoded(
        StartupAcknowledgement(
            session_id=session_id, character_id=character_id, display_name=display_name
        )
    )


def action_command(id_: str, name: str, data: str | None = None) -> bytes:
    """Return an ``action`` frame; ``data`` is already a JSON *string*."""
    return action_frame(id_, name, data).encode()


def reregister_all_command() -> bytes:
    """Return an ``actions/reregister_all`` frame."""
    return _encoded(ReregisterAll())


def shutdown_graceful_command(wants_shutdown: bool) -> bytes:
    """Return a ``shutdown/graceful`` frame."""
    return _encoded(GracefulShutdown(wants_shutdown=wants_shutdown))


def shutdown_immediate_command() -> bytes:
    """Return a ``shutdown/immediate`` frame."""
    return _encoded(ImmediateShutdown())


def speech_finished_command(
    is_final: bool, cancelled: bool = False, reason: str | None = None
) -> bytes:
    """Return a ``speech_finished`` frame."""
    return _encoded(
        SpeechFinished(is_final=is_final, cancelled=cancelled, reason=reason)
    )
