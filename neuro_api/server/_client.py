"""Layer 1: parse and dispatch one game connection's frames (no I/O)."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson

from neuro_api import command
from neuro_api._messages import ProblemKind, action_frame
from neuro_api.client import AbstractNeuroAPIClient
from neuro_api.command import (
    Action,
    ActionResult,
    Context,
    ForceActions,
    ForcePriority,
    GameMessage,
    ProtocolError,
    RegisterActions,
    ShutdownReady,
    Startup,
    UnregisterActions,
)
from neuro_api.diagnostics import (
    Diagnostic,
    Severity,
    diagnose,
    from_note,
    from_protocol_error,
)
from neuro_api.server._compat import check_action_names_type, deserialize_actions

__all__ = ["AbstractNeuroServerClient"]

LOGGER: Final = logging.getLogger("neuro_api.server")

_Dispatch = Callable[[Any, Any], Awaitable[None]]
"""A message to the call of its handler."""


# The dispatch table: a parsed message to the positional handler (upstream's
# signatures). Plain functions returning the handler's coroutine, so a frame
# costs no coroutine of its own. A register frame's rejected entries and
# emptiness are reported here, where the whole frame is still known.


async def _nothing() -> None:
    pass


def _startup(client: AbstractNeuroServerClient, m: Startup) -> Awaitable[None]:
    return client.handle_startup(m.game)


def _context(client: AbstractNeuroServerClient, m: Context) -> Awaitable[None]:
    return client.handle_context(m.game, m.message, m.silent)


def _register(client: AbstractNeuroServerClient, m: RegisterActions) -> Awaitable[None]:
    for problem in m.rejected:
        client.report(diagnose("action.rejected", game=m.game, detail=str(problem)))
    if not m.actions:
        if not m.rejected:
            client.report(diagnose("action.register-empty", game=m.game))
        return _nothing()
    return client.handle_actions_register(m.game, list(m.actions))


def _unregister(
    client: AbstractNeuroServerClient, m: UnregisterActions
) -> Awaitable[None]:
    return client.handle_actions_unregister(m.game, list(m.action_names))


def _force(client: AbstractNeuroServerClient, m: ForceActions) -> Awaitable[None]:
    return client.handle_actions_force(
        m.game,
        m.state,
        m.query,
        m.ephemeral_context,
        list(m.action_names),
        m.priority,
    )


def _result(client: AbstractNeuroServerClient, m: ActionResult) -> Awaitable[None]:
    return client.handle_action_result(m.game, m.id, m.success, m.message)


def _shutdown_ready(
    client: AbstractNeuroServerClient, m: ShutdownReady
) -> Awaitable[None]:
    return client.handle_shutdown_ready(m.game)


_DISPATCH: Final[Mapping[type[GameMessage], _Dispatch]] = {
    Startup: _startup,
    Context: _context,
    RegisterActions: _register,
    UnregisterActions: _unregister,
    ForceActions: _force,
    ActionResult: _result,
    ShutdownReady: _shutdown_ready,
}


class AbstractNeuroServerClient(AbstractNeuroAPIClient):
    """Turns one game's frames into calls of ``handle_*`` methods.

    The contract of neuro-api 4.0.0: subclasses implement
    :meth:`get_next_id`, the I/O pair (``write_to_websocket``,
    ``read_from_websocket``) and the four abstract handlers, which receive
    the frame's fields as arguments (``handle_actions_force(game_title,
    state, query, ephemeral_context, action_names, priority)`` ...).

    Frames are parsed by :meth:`handle_frame` (what :meth:`read_message`
    calls) with the production server's rules: what is wrong with a frame
    becomes a diagnostic passed to :meth:`report` (default: logged) instead
    of an exception, a frame that cannot be understood is dropped, and the
    connection goes on. Nothing here touches a socket.
    """

    __slots__ = ()

    game_title: str | None = None
    """The game's name once known (the handler layer keeps it)."""

    # --- provided by subclasses ------------------------------------------

    @abstractmethod
    def get_next_id(self) -> str:
        """Return a fresh id for an ``action`` sent to the game."""

    def report(self, diagnostic: Diagnostic) -> None:
        """Record a diagnostic about this game (default: log it; must not raise)."""
        info = diagnostic.severity is Severity.INFO
        LOGGER.log(logging.INFO if info else logging.WARNING, "%s", diagnostic)

    # --- receiving ---------------------------------------------------------

    def accept_message(self, message: GameMessage, frame: str) -> bool:
        """Decide whether a parsed message is dispatched (default: yes).

        Subclasses check session rules here (startup first, stable name).
        """
        return True

    def name_game(self, game_title: str) -> bool:
        """Take ``game_title`` as the game's name (its first frame's).

        Returns :meth:`title_learned`'s answer. The handler layer, which
        keeps :attr:`game_title`, records it here.
        """
        return self.title_learned(game_title)

    def title_learned(self, game_title: str) -> bool:
        """Called when the first frame names the game (default: True).

        False drops that frame: the connection is being refused (see
        :meth:`frame_refused`). Normally that first frame is ``startup``; a
        frame with a command the API does not define is asked about too.
        """
        return True

    async def frame_refused(self) -> None:
        """Called after a frame was dropped (default: nothing).

        The Trio layer closes a connection its server refused here.
        """

    async def read_message(self) -> None:
        """Read one frame with ``read_from_websocket`` and handle it.

        As :meth:`handle_frame`: a malformed frame is reported, not raised.
        A subclass that replaces ``read_raw_client_message`` is read through
        it, as upstream does.
        """
        if (
            type(self).read_raw_client_message
            is AbstractNeuroAPIClient.read_raw_client_message
        ):
            frame = await self.read_from_websocket()
            if isinstance(frame, (bytearray, memoryview)):
                frame = bytes(frame)
        else:
            command_type, game, data = await self.read_raw_client_message()
            fields: dict[str, object] = {"command": command_type, "game": game}
            if data is not None:
                fields["data"] = data
            frame = orjson.dumps(fields).decode()
        await self.handle_frame(frame)

    async def handle_frame(self, frame: str | bytes) -> None:
        """Parse one received frame and dispatch it.

        Binary frames are reported and decoded as UTF-8 to stay useful. Parse
        errors and harmless oddities become diagnostics; this never raises for
        anything a game can send.
        """
        text: str
        if isinstance(frame, bytes):
            try:
                text = frame.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.report(
                    diagnose(
                        "protocol.not-text",
                        game=self.game_title,
                        frame=frame,
                        detail=f"binary frame is not UTF-8 text: {exc}",
                    )
                )
                return
        else:
            text = frame
        try:
            message = command.parse_game_frame(text)
        except ProtocolError as exc:
            self._report_binary(frame, self.game_title)
            self.report(from_protocol_error(exc, game=self.game_title, frame=text))
            if exc.problem.kind is ProblemKind.UNKNOWN_COMMAND:
                await self._unknown_command(text)
            return
        # Reported after parsing, so even a first frame is filed under its
        # game; later ones under the game's own name, whatever the frame says
        # (a frame with a new name each time must not be a new game each time
        # for the log's rate limit).
        game = self.game_title or message.game
        if text is not frame:
            self._report_binary(frame, game)
        for note in message.notes:
            self.report(from_note(note, command=message.command, game=game, frame=text))
        if self.accept_message(message, text):
            await _DISPATCH[type(message)](self, message)
        else:
            await self.frame_refused()

    async def _unknown_command(self, text: str) -> None:
        obj = orjson.loads(text)  # it parsed up to its command
        game = obj.get("game")
        # A first frame that names the game: as for any first frame, the
        # game is known (and admitted, or refused) by that name from now on.
        if (
            self.game_title is None
            and isinstance(game, str)
            and not self.name_game(game)
        ):
            await self.frame_refused()  # a refused game gets nothing handled
            return
        data = obj.get("data")
        try:
            await self.handle_unknown_command(
                str(obj.get("command")), data if isinstance(data, dict) else None
            )
        except Exception:  # a subclass's hook: the connection goes on
            LOGGER.exception("handle_unknown_command failed")

    async def handle_unknown_command(
        self, command: str, data: dict[str, object] | None
    ) -> None:
        """A frame with a command the API does not define (default: nothing).

        It was already reported (``protocol.unknown-command``, with a hint
        for a near miss); override to act on commands of your own.
        """

    def _report_binary(self, frame: str | bytes, game: str | None) -> None:
        if isinstance(frame, bytes):
            self.report(
                diagnose(
                    "protocol.binary-frame", game=game, frame=frame, size=len(frame)
                )
            )

    async def handle_startup(self, game_title: str) -> None:
        """``startup`` (default: nothing; the handler layer clears and answers)."""

    async def handle_context(self, game_title: str, message: str, silent: bool) -> None:
        """``context`` (default: nothing)."""

    @abstractmethod
    async def handle_actions_register(
        self, game_title: str, actions: list[Action]
    ) -> None:
        """``actions/register``: the frame's valid actions (never empty)."""

    @abstractmethod
    async def handle_actions_unregister(
        self, game_title: str, action_names: list[str]
    ) -> None:
        """``actions/unregister``."""

    @abstractmethod
    async def handle_actions_force(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: list[str],
        priority: ForcePriority,
    ) -> None:
        """``actions/force``."""

    @abstractmethod
    async def handle_action_result(
        self, game_title: str, id_: str, success: bool, message: str | None
    ) -> None:
        """``action/result``."""

    async def handle_shutdown_ready(self, game_title: str) -> None:
        """``shutdown/ready``: reported as an info diagnostic by default."""
        self.report(diagnose("protocol.shutdown-ready", game=game_title))

    # Upstream's helpers, as static methods of the class.
    deserialize_actions = staticmethod(deserialize_actions)
    check_action_names_type = staticmethod(check_action_names_type)

    # --- sending (Neuro -> game) -----------------------------------------

    async def send_setup_acknowledgement_command(
        self, session_id: str, character_id: str, display_name: str
    ) -> None:
        """Send the ``startup`` acknowledgement."""
        await self.write_to_websocket(
            command.StartupAcknowledgement(
                session_id=session_id,
                character_id=character_id,
                display_name=display_name,
            ).to_frame()
        )

    async def send_action_command(self, name: str, data: str | None = None) -> str:
        """Send an ``action`` under a fresh :meth:`get_next_id`; return the id.

        ``data`` is the action's JSON text, or ``None`` for no data.
        """
        id_ = self.get_next_id()
        await self._send_action(id_, name, data)
        return id_

    async def _send_action(self, id_: str, name: str, data: str | None) -> None:
        await self.write_to_websocket(action_frame(id_, name, data))

    async def send_reregister_all_command(self) -> None:
        """Ask the game to register all its actions again."""
        await self.write_to_websocket(command.ReregisterAll().to_frame())

    async def send_graceful_shutdown_command(self, wants_shutdown: bool) -> None:
        """Ask the game to quit at the next safe point (False cancels)."""
        await self.write_to_websocket(
            command.GracefulShutdown(wants_shutdown=wants_shutdown).to_frame()
        )

    async def send_immediate_shutdown_command(self) -> None:
        """Tell the game it is about to be closed."""
        await self.write_to_websocket(command.ImmediateShutdown().to_frame())

    async def send_speech_finished(
        self, is_final: bool = True, cancelled: bool = False, reason: str | None = None
    ) -> None:
        """Tell the game Neuro finished (or was cut off) speaking."""
        await self.write_to_websocket(
            command.SpeechFinished(
                is_final=is_final, cancelled=cancelled, reason=reason
            ).to_frame()
        )
