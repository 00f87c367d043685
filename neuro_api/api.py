"""The protocol logic of a game's side of the Neuro API, free of I/O.

:class:`AbstractNeuroAPI` knows what to send and how to answer what Neuro
sends; a subclass supplies one coroutine, :meth:`~AbstractNeuroAPI.write_to_websocket`,
and feeds every received frame to :meth:`~AbstractNeuroAPI.read_message`.
:class:`neuro_api.trio_ws.TrioNeuroAPI` is that subclass for trio-websocket.

Actions are answered by handlers registered by name::

    game = SomeNeuroAPI("Tic Tac Toe")
    PLAY = Action("play", "Play a cell", schema)

    @game.action(PLAY)
    async def play(data: Any) -> str | None:
        if not board.is_free(data["cell"]):
            raise ActionFailed("That cell is taken")
        board.place(data["cell"])
        return None

    await game.register_actions([PLAY])  # when the action becomes available

The data a handler receives has already been checked against the action's
schema; every ``action`` Neuro sends gets exactly one result, whatever
happens (unknown action, malformed data, a bug in the handler).

Code written for the upstream package ``neuro-api`` 4.0.0 runs unchanged:
override :meth:`~AbstractNeuroAPI.handle_action` (it receives a
:class:`NeuroAction`) and :meth:`~AbstractNeuroAPI.handle_startup_acknowledgement`
(a :class:`NeuroStartupData`), implement
:meth:`~neuro_api.client.AbstractNeuroAPIClient.read_from_websocket` and call
:meth:`~AbstractNeuroAPI.read_message` without arguments in a loop.
"""

from __future__ import annotations

import logging
import math
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar

import trio

from neuro_api._parsing import load_frame, parse_neuro_object
from neuro_api._text import printable
from neuro_api.client import AbstractNeuroAPIClient
from neuro_api.command import (
    Action,
    ActionMessage,
    ForcePriority,
    GracefulShutdown,
    ImmediateShutdown,
    NeuroMessage,
    ProblemKind,
    ProtocolError,
    ReregisterAll,
    SpeechFinished,
    StartupAcknowledgement,
    actions_force_command,
    actions_register_command,
    actions_result_command,
    actions_unregister_command,
    context_command,
    shutdown_ready_command,
    startup_command,
)
from neuro_api.diagnostics import Severity
from neuro_api.schema import SchemaError, check_action, validate_action_data

__all__ = [
    "AbstractNeuroAPI",
    "ActionFailed",
    "ActionHandler",
    "NeuroAction",
    "NeuroSessionData",
    "NeuroStartupData",
    "NotConnected",
]

LOGGER: Final = logging.getLogger(__name__)

ActionHandler = Callable[[Any], Awaitable[str | None]]
"""``async def handler(data) -> str | None``: performs one action.

``data`` is the parsed, schema-valid JSON value Neuro sent (``None`` for an
action without a schema that came without data). The return value is the
optional message of the successful result; raise :class:`ActionFailed` to
fail the action with a message.
"""

_HandlerT = TypeVar("_HandlerT", bound=ActionHandler)


class ActionFailed(Exception):
    """Raised by an action handler to fail the action.

    The message is sent to Neuro in the failing result, so write it for her:
    say what was wrong and what she can do instead (during a force, Neuro
    retries, and reads this message first).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotConnected(RuntimeError):
    """A frame could not be sent because there is no open connection.

    Raised by :meth:`AbstractNeuroAPI.write_to_websocket` implementations (and
    so by every ``send_*`` method) while disconnected, and when the connection
    closes during the send. Registration does not raise it: see
    :meth:`AbstractNeuroAPI.register_actions`.
    """


class NeuroSessionData(NamedTuple):
    """The session Neuro's ``startup`` acknowledgement describes."""

    session_id: str
    """The server's WebSocket session id: opaque, for routing and debugging."""
    character_id: str
    """The stable id of the character the game is connected to (``"neuro"``)."""
    display_name: str
    """The character's name for people (``"Neuro-sama"``)."""


class NeuroStartupData(NamedTuple):
    """Neuro's ``startup`` acknowledgement.

    ``session`` is ``None`` when the server acknowledged without a
    ``session`` object (older test servers do; upstream raised).
    """

    session: NeuroSessionData | None


class NeuroAction(NamedTuple):
    """An ``action`` Neuro sent: perform ``name`` with ``data``, answer ``id_``.

    ``data`` is the JSON *text* Neuro sent (``None`` without data), not yet
    parsed or checked against the schema.
    """

    id_: str
    name: str
    data: str | None


def _startup_data(ack: StartupAcknowledgement) -> NeuroStartupData:
    if ack.session_id is None:
        return NeuroStartupData(None)
    return NeuroStartupData(
        NeuroSessionData(ack.session_id, ack.character_id or "", ack.display_name or "")
    )


class AbstractNeuroAPI(AbstractNeuroAPIClient):
    """A game's side of the Neuro API: registry, sending, and dispatch.

    ``game_title`` is the display name sent in every frame; it must not
    change during a session.

    The *registry* (:meth:`get_registered`) holds the actions this game
    wants Neuro to have: it is updated by :meth:`register_actions` and
    :meth:`unregister_actions` and replayed by :meth:`reregister_all` (and by
    :class:`~neuro_api.trio_ws.TrioNeuroAPI` after every (re)connect).
    *Handlers* (:meth:`add_action`, :meth:`action`) say how to perform an
    action; binding a handler does not register the action.

    All hooks (``handle_*``) are coroutines with working defaults; override
    them to react. An exception escaping a hook is logged by
    :meth:`read_message` and does not end the connection; set
    :attr:`raise_hook_errors` to have it raised instead, as neuro-api 4.0.0
    does.

    :meth:`register_actions` refuses an action the production server could
    not use (an error-severity diagnostic, e.g. a schema whose ``type`` is
    not ``"object"``); set :attr:`refuse_invalid_actions` to False to log
    those problems and send the action anyway, as 4.0.0 does.

    ``action_timeout`` bounds each action handler (``None``: no bound). A
    handler still running then is cancelled and the action fails with a
    message saying so: production Neuro counts about 20 s without a result
    as a failure anyway, and a late result would be discarded.
    """

    raise_hook_errors: bool = False
    """Whether an exception escaping a hook ends :meth:`read_message` (and
    with it the connection's loop) instead of being logged."""

    refuse_invalid_actions: bool = True
    """Whether :meth:`register_actions` raises :class:`ValueError` for an
    action with an error-severity diagnostic (False: logs it and sends)."""

    def __init__(self, game_title: str, *, action_timeout: float | None = 15.0) -> None:
        if action_timeout is not None and not action_timeout > 0:
            raise ValueError(f"action_timeout: must be > 0, got {action_timeout!r}")
        self.game_title = game_title
        self.action_timeout = action_timeout
        self.session: NeuroStartupData | None = None
        """Neuro's last startup acknowledgement (``None`` until one arrives,
        and again after each new ``startup``)."""
        self.shutdown_requested = False
        """The last ``wants_shutdown`` Neuro sent in ``shutdown/graceful``.

        The default :meth:`handle_graceful_shutdown_request` already answers
        ``shutdown/ready`` (as upstream does): a game that saves first must
        override it rather than poll this flag."""
        self._registry: dict[str, Action] = {}
        self._handlers: dict[str, ActionHandler] = {}

    # I/O: a subclass provides write_to_websocket(data), which raises
    # NotConnected when there is no open connection (or it closes during the
    # send), and read_from_websocket() if it lets read_message() read.

    # ------------------------------------------------------------------
    # Registry and handlers
    # ------------------------------------------------------------------

    def get_registered(self) -> tuple[str, ...]:
        """Return the names in the registry, in registration order."""
        return tuple(self._registry)

    @property
    def registered_actions(self) -> Mapping[str, Action]:
        """A read-only view of the registry (name -> :class:`Action`)."""
        return types.MappingProxyType(self._registry)

    def add_action(self, action: Action, handler: ActionHandler) -> None:
        """Bind ``handler`` to perform the action named ``action.name``.

        Does not register the action with Neuro: call :meth:`register_actions`
        when it becomes available. Binding a name again replaces its handler.
        Raises :class:`ValueError` if the action has error-severity problems
        (see :func:`neuro_api.schema.check_action`), so mistakes show up when
        the game starts rather than when Neuro first tries the action.
        """
        self._check(action)
        self._handlers[action.name] = handler

    def action(self, action: Action) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`add_action`; returns the handler unchanged."""

        def decorator(handler: _HandlerT) -> _HandlerT:
            self.add_action(action, handler)
            return handler

        return decorator

    def remove_action(self, name: str) -> None:
        """Forget the handler bound to ``name`` (no error if there is none)."""
        self._handlers.pop(name, None)

    def _check(self, action: Action) -> None:
        """Raise ValueError for error diagnostics; log the others."""
        errors: list[str] = []
        for diagnostic in check_action(action, game=self.game_title):
            if diagnostic.severity is Severity.ERROR:
                errors.append(diagnostic.message)
            else:
                LOGGER.warning("%s: %s", diagnostic.id, diagnostic.message)
        if not errors:
            return
        problems = f"cannot register action {action.name!r}: {'; '.join(errors)}"
        if self.refuse_invalid_actions:
            raise ValueError(problems)
        LOGGER.warning(
            "%s (registered anyway: refuse_invalid_actions is off)", problems
        )

    def _register_all_frame(self) -> bytes | None:
        """Return the frame registering the whole registry (None if empty)."""
        if not self._registry:
            return None
        return actions_register_command(self.game_title, self._registry.values())

    async def _send_registration(self, frame: bytes) -> None:
        # Registration is state, not an event: the registry is already
        # updated, and a (re)connect replays it after its startup.
        try:
            await self.send_command_data(frame)
        except NotConnected:
            LOGGER.debug("not connected: registry change is sent on connect")

    async def register_actions(self, actions: Iterable[Action]) -> None:
        """Add actions to the registry and register them with Neuro.

        Names already in the registry are not sent again (Neuro would ignore
        them; to change an action, unregister it first): a different
        definition under a registered name is logged as a warning. Every
        action is checked before anything changes: one with error-severity
        problems (empty name, a schema whose type is not ``object``, an
        invalid schema) raises :class:`ValueError` naming the problems, and
        nothing is registered. Warnings are logged.

        While disconnected the registry is still updated and no error is
        raised: the next connection registers the whole registry after its
        ``startup``.
        """
        new: dict[str, Action] = {}
        for action in actions:
            self._check(action)
            known = self._registry.get(action.name) or new.get(action.name)
            if known is None:
                new[action.name] = action
            elif known != action:
                LOGGER.warning(
                    "action %r is already registered with another definition; "
                    "unregister it first to change it",
                    action.name,
                )
        if not new:
            return
        self._registry.update(new)
        await self._send_registration(
            actions_register_command(self.game_title, new.values())
        )

    async def unregister_actions(self, action_names: Iterable[str]) -> None:
        """Remove actions from the registry and unregister them with Neuro.

        Names that are not registered are ignored (and not sent). As with
        :meth:`register_actions`, no error is raised while disconnected.
        """
        removed = [
            name for name in dict.fromkeys(action_names) if name in self._registry
        ]
        if not removed:
            return
        for name in removed:
            del self._registry[name]
        await self._send_registration(
            actions_unregister_command(self.game_title, removed)
        )

    async def reregister_all(self) -> None:
        """Send the whole registry again (nothing if it is empty).

        Raises :class:`NotConnected` while disconnected.
        """
        frame = self._register_all_frame()
        if frame is not None:
            await self.send_command_data(frame)

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    async def send_startup_command(self) -> None:
        """Send ``startup``: Neuro forgets every action of this game.

        The registry and :attr:`session` are cleared to match. (A
        :class:`~neuro_api.trio_ws.TrioNeuroAPI` connection sends its own
        ``startup`` and then the registry; this method is for starting over.)
        """
        await self.send_command_data(startup_command(self.game_title))
        self._registry.clear()
        self.session = None

    def _startup_frames(self) -> list[str]:
        """Frames that begin a connection: ``startup`` and the registry.

        Clears :attr:`session`; the registry is kept, because it is the
        state the new connection must restore.
        """
        self.session = None
        frames = [startup_command(self.game_title).decode()]
        register = self._register_all_frame()
        if register is not None:
            frames.append(register.decode())
        return frames

    async def send_context(self, message: str, silent: bool = True) -> None:
        """Tell Neuro what is happening.

        ``silent=False`` lets her reply if she is not busy. Raises
        :class:`NotConnected` while disconnected (context is an event of
        this moment; the caller decides whether it is still worth sending).
        """
        await self.send_command_data(context_command(self.game_title, message, silent))

    async def send_force_action(
        self,
        state: str | None,
        query: str,
        action_names: Sequence[str],
        ephemeral_context: bool = False,
        priority: ForcePriority | None = ForcePriority.LOW,
    ) -> None:
        """Make Neuro pick one of ``action_names`` as soon as possible.

        ``priority=None`` leaves the ``priority`` field out of the frame, for
        servers that predate it and refuse unknown fields (Jippity does);
        the default sends ``"low"``, which is what a missing priority means.
        Raises :class:`ValueError` for an empty list or for names that are
        not in the registry (Neuro could only fail them), and
        :class:`NotConnected` while disconnected.
        """
        unknown = [name for name in action_names if name not in self._registry]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise ValueError(
                f"{names} {'is' if len(unknown) == 1 else 'are'} not currently "
                f"registered. (registered: {self._registered_list()})"
            )
        await self.send_command_data(
            actions_force_command(
                self.game_title,
                state,
                query,
                action_names,
                ephemeral_context,
                priority,
            )
        )

    async def send_action_result(
        self, id_: str, success: bool, message: str | None = None
    ) -> None:
        """Answer the action ``id_``.

        ``message`` may be left out of a successful result; a failing one
        must say why (Neuro reads it, and retries a force with nothing to go
        on otherwise): ``success=False`` without a message raises
        :class:`ValueError`, as in upstream. Raises :class:`NotConnected`
        while disconnected.
        """
        await self.send_command_data(
            actions_result_command(self.game_title, id_, success, message)
        )

    async def send_shutdown_ready(self) -> None:
        """Tell Neuro the game has saved and may be closed."""
        await self.send_command_data(shutdown_ready_command(self.game_title))

    def _registered_list(self) -> str:
        return ", ".join(self._registry) or "(none)"

    # ------------------------------------------------------------------
    # Receiving
    # ------------------------------------------------------------------

    async def read_message(
        self, frame: str | bytes | None = None
    ) -> NeuroMessage | None:
        """Handle one frame from Neuro: call the matching ``handle_*`` hook.

        ``frame`` is the frame received; without it, the next one is read
        with :meth:`~neuro_api.client.AbstractNeuroAPIClient.read_from_websocket`
        and handled the same way (or, if a subclass replaced
        :meth:`~neuro_api.client.AbstractNeuroAPIClient.read_raw_server_message`,
        from what that returns, as upstream's ``read_message()`` does).
        Returns the parsed message,
        or ``None`` for a frame that does not parse: such a frame is logged
        and ignored, except an ``action`` frame whose ``id`` is readable,
        which gets a failing result naming the problem, and a frame of a
        command this side does not know, which goes to
        :meth:`~neuro_api.client.AbstractNeuroAPIClient.handle_unknown_command`.
        An exception escaping a hook is logged with its traceback and not
        raised, so one bad frame or one bug cannot end the connection
        (:class:`trio.Cancelled` and other base exceptions propagate, and so
        do the transport's errors of ``read_from_websocket``).
        """
        if frame is None and not self._reads_raw():
            received = await self.read_from_websocket()
            # bytearray and memoryview too, as upstream's readers may return
            frame = received if isinstance(received, str) else bytes(received)
        if frame is None:
            try:
                command, data = await self.read_raw_server_message()
            except (ValueError, TypeError) as exc:  # JSON, but not a frame
                LOGGER.warning("ignoring a malformed frame from Neuro: %s", exc)
                return None
            obj: dict[str, Any] = {"command": command}
            if data is not None:
                obj["data"] = data
        else:
            try:
                obj = load_frame(frame)
            except ProtocolError as exc:
                await self._handle_bad_frame(None, exc)
                return None
        try:
            message = parse_neuro_object(obj)
        except ProtocolError as exc:
            await self._handle_bad_frame(obj, exc)
            return None
        for note in message.notes:
            LOGGER.debug("%s frame: %s", message.command, note)
        dispatch = _DISPATCH.get(type(message))
        if dispatch is None:  # pragma: no cover - the parser knows no others
            LOGGER.warning("no handler for %r frames", message.command)
            return message
        await self._run_hook(message.command, dispatch(self, message))
        return message

    def _reads_raw(self) -> bool:
        """Whether ``read_raw_server_message`` was replaced (class or instance).

        Then frames come from it; otherwise the frame is read whole, so a
        broken ``action`` still gets its failing result.
        """
        replaced = type(self).read_raw_server_message is not (
            AbstractNeuroAPIClient.read_raw_server_message
        )
        return replaced or "read_raw_server_message" in getattr(self, "__dict__", {})

    async def _run_hook(self, command: str, hook: Awaitable[None]) -> None:
        try:
            await hook
        except NotConnected:
            if self.raise_hook_errors:
                raise
            LOGGER.info("connection lost while handling %r", command)
        except Exception:
            if self.raise_hook_errors:
                raise
            LOGGER.exception("error while handling a %r frame", command)

    async def _handle_bad_frame(
        self, obj: dict[str, Any] | None, exc: ProtocolError
    ) -> None:
        if obj is not None and exc.problem.kind is ProblemKind.UNKNOWN_COMMAND:
            data = obj.get("data")
            await self._run_hook(
                "unknown",
                self.handle_unknown_command(
                    str(obj.get("command")), data if isinstance(data, dict) else None
                ),
            )
            return
        action_id = _readable_action_id(obj) if exc.command == "action" else None
        if action_id is None:
            LOGGER.warning("ignoring a malformed frame from Neuro: %s", exc)
            return
        LOGGER.warning(
            "malformed action %s from Neuro: %s", printable(repr(action_id)), exc
        )
        try:
            await self.send_action_result(
                action_id, False, f"Malformed action message: {exc}"
            )
        except NotConnected:
            LOGGER.info(
                "connection lost before answering action %s", printable(repr(action_id))
            )

    async def handle_startup_acknowledgement(
        self, startup_ack: NeuroStartupData
    ) -> None:
        """Neuro acknowledged the ``startup``: stored in :attr:`session`."""
        self.session = startup_ack
        session = startup_ack.session
        if session is None:
            LOGGER.info("startup acknowledged (no session data)")
            return
        LOGGER.info(
            "startup acknowledged by %s (character %s, session %s)",
            printable(session.display_name),
            printable(session.character_id),
            printable(session.session_id),
        )

    async def handle_action(self, action: NeuroAction) -> None:
        """Perform an action and send its result (exactly one, always).

        A failing result is sent, with a message for Neuro, when the name is
        not in the registry, no handler is bound to it, the data is not
        valid JSON or breaks the schema (checked *before* the handler runs),
        or the handler raises (:class:`ActionFailed` gives its message; any
        other exception is logged with its traceback and gets a generic
        message). Otherwise the handler's return value is the success
        message.

        Neuro waits for the result (production counts about 20 s without one
        as a failure), so a handler should validate, change the game state
        and return at once; for anything slow, start it in a nursery of your
        own (or wake your game loop) and return, so the result goes out right
        after validation as the best practices ask. Called from
        :meth:`read_message`, the handler runs in the reader; under
        :meth:`~neuro_api.trio_ws.TrioNeuroAPI.serve` actions run one at a
        time in a task of their own, so the reader keeps reading.
        A handler that runs longer than :attr:`action_timeout` is cancelled
        and the action fails. If the caller is cancelled no result is sent.
        """
        try:
            success, message = await self._perform(action)
        except Exception:  # a bug in a hook _perform calls (validation, ...)
            LOGGER.exception("performing action %r failed", action.name)
            success, message = (
                False,
                (f"The game hit an internal error performing {action.name!r}."),
            )
        try:
            await self.send_action_result(action.id_, success, message)
        except NotConnected:
            LOGGER.warning(
                "connection lost before the result of action %r (%s) was sent",
                action.id_,
                action.name,
            )

    async def _perform(self, action: NeuroAction) -> tuple[bool, str | None]:
        registered = self._registry.get(action.name)
        if registered is None:
            return False, (
                f"Unknown action {action.name!r}; registered: {self._registered_list()}"
            )
        handler = self._handlers.get(action.name)
        if handler is None:
            LOGGER.error("action %r is registered but has no handler", action.name)
            return False, f"The game cannot perform {action.name!r} right now."
        try:
            checked = validate_action_data(registered.schema, action.data)
        except SchemaError:  # register_actions refuses these; a subclass may not
            LOGGER.exception("schema of action %r is invalid", action.name)
            return False, f"The game cannot perform {action.name!r} right now."
        if not checked.ok:
            return False, checked.reason
        timeout = math.inf if self.action_timeout is None else self.action_timeout
        try:
            with trio.move_on_after(timeout) as scope:
                result: object = await handler(checked.value)
        except ActionFailed as exc:
            return False, exc.message
        except Exception:
            LOGGER.exception("handler of action %r failed", action.name)
            return False, (
                f"The game hit an internal error performing {action.name!r}."
            )
        if scope.cancelled_caught:
            LOGGER.error(
                "handler of action %r took longer than %g s; cancelled",
                action.name,
                timeout,
            )
            return False, f"The game took too long to perform {action.name!r}."
        if result is not None and not isinstance(result, str):
            LOGGER.error(
                "handler of action %r returned %s, not a str or None; the action "
                "succeeded but its message was dropped",
                action.name,
                type(result).__name__,
            )
            return True, None
        return True, result

    async def handle_reregister_all(self) -> None:
        """Neuro asked for every action again: sends the whole registry."""
        await self.reregister_all()

    async def handle_graceful_shutdown_request(self, wants_shutdown: bool) -> None:
        """Neuro wants the game to quit at the next safe point (or not).

        The default stores the flag in :attr:`shutdown_requested`, logs it,
        and on a request answers ``shutdown/ready`` at once (as upstream
        does: a game with nothing to save is ready). A game that saves
        overrides this: it quits to its menu at its next safe point, then
        calls :meth:`send_shutdown_ready`.
        """
        self.shutdown_requested = wants_shutdown
        LOGGER.info(
            "graceful shutdown %s", "requested" if wants_shutdown else "cancelled"
        )
        if wants_shutdown:
            await self.send_shutdown_ready()

    async def handle_immediate_shutdown(self) -> None:
        """The game will be closed within seconds.

        The default logs it and answers ``shutdown/ready`` at once (as
        upstream does); a game that saves overrides this, saves what it can,
        then calls :meth:`send_shutdown_ready`.
        """
        LOGGER.warning("immediate shutdown announced by Neuro")
        await self.send_shutdown_ready()

    async def handle_speech_finished(self, speech: SpeechFinished) -> None:
        """Neuro finished (or was cut off) speaking; the default only logs."""
        LOGGER.debug(
            "speech finished (final=%s, cancelled=%s, reason=%s)",
            speech.is_final,
            speech.cancelled,
            speech.reason,
        )


def _readable_action_id(obj: dict[str, Any] | None) -> str | None:
    """Return ``data.id`` of a broken ``action`` frame if it is a string."""
    data = obj.get("data") if obj is not None else None
    action_id = data.get("id") if isinstance(data, dict) else None
    return action_id if isinstance(action_id, str) else None


_Dispatch = Callable[[AbstractNeuroAPI, Any], Awaitable[None]]

# Looked up by the parsed message's type. The lambdas call the hooks by name,
# so a subclass's overrides are used.
_DISPATCH: Final[Mapping[type[NeuroMessage], _Dispatch]] = {
    StartupAcknowledgement: lambda api, msg: api.handle_startup_acknowledgement(
        _startup_data(msg)
    ),
    ActionMessage: lambda api, msg: api.handle_action(
        NeuroAction(msg.id, msg.name, msg.data_json)
    ),
    ReregisterAll: lambda api, msg: api.handle_reregister_all(),
    GracefulShutdown: lambda api, msg: api.handle_graceful_shutdown_request(
        msg.wants_shutdown
    ),
    ImmediateShutdown: lambda api, msg: api.handle_immediate_shutdown(),
    SpeechFinished: lambda api, msg: api.handle_speech_finished(msg),
}
