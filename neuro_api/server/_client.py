"""Layer 1: parse and dispatch one game connection's frames (no I/O)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from neuro_api import command
from neuro_api._messages import action_frame
from neuro_api.command import (
    ActionResult,
    Context,
    ForceActions,
    GameMessage,
    ProtocolError,
    RegisterActions,
    ShutdownReady,
    Startup,
    UnregisterActions,
)
from neuro_api.diagnostics import Diagnostic, diagnose, from_note, from_protocol_error

__all__ = ["AbstractNeuroServerClient"]

_Handler = Callable[[Any, Any], Awaitable[None]]


class AbstractNeuroServerClient(ABC):
    """Turns one game's frames into calls of ``handle_*`` methods.

    :meth:`handle_frame` parses a frame, reports what is wrong with it through
    :meth:`report` (a frame that cannot be parsed is dropped, nothing is
    raised), and dispatches the message through a ``{type: handler}`` table.
    Outgoing messages go through the one abstract writer,
    :meth:`send_text`. Nothing here touches a socket.
    """

    _DISPATCH: Mapping[type[GameMessage], _Handler] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._DISPATCH = {
            Startup: cls.handle_startup,
            Context: cls.handle_context,
            RegisterActions: cls.handle_actions_register,
            UnregisterActions: cls.handle_actions_unregister,
            ForceActions: cls.handle_actions_force,
            ActionResult: cls.handle_action_result,
            ShutdownReady: cls.handle_shutdown_ready,
        }

    # --- I/O and reporting, provided by subclasses -----------------------

    @abstractmethod
    async def send_text(self, frame: str) -> None:
        """Send one text frame to the game."""

    @abstractmethod
    def report(self, diagnostic: Diagnostic) -> None:
        """Record a diagnostic about this game (must not raise)."""

    @property
    @abstractmethod
    def game_title(self) -> str | None:
        """The game's name once known."""

    # --- receiving ---------------------------------------------------------

    def accept_message(self, message: GameMessage, frame: str) -> bool:
        """Decide whether a parsed message is dispatched (default: yes).

        Subclasses check session rules here (startup first, stable name).
        """
        return True

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
            await self._DISPATCH[type(message)](self, message)

    def _report_binary(self, frame: str | bytes, game: str | None) -> None:
        if isinstance(frame, bytes):
            self.report(
                diagnose(
                    "protocol.binary-frame", game=game, frame=frame, size=len(frame)
                )
            )

    @abstractmethod
    async def handle_startup(self, message: Startup) -> None:
        """``startup``: clear the game's actions and acknowledge."""

    @abstractmethod
    async def handle_context(self, message: Context) -> None:
        """``context``."""

    @abstractmethod
    async def handle_actions_register(self, message: RegisterActions) -> None:
        """``actions/register``."""

    @abstractmethod
    async def handle_actions_unregister(self, message: UnregisterActions) -> None:
        """``actions/unregister``."""

    @abstractmethod
    async def handle_actions_force(self, message: ForceActions) -> None:
        """``actions/force``."""

    @abstractmethod
    async def handle_action_result(self, message: ActionResult) -> None:
        """``action/result``."""

    async def handle_shutdown_ready(self, message: ShutdownReady) -> None:
        """``shutdown/ready``: reported as an info diagnostic by default."""
        self.report(diagnose("protocol.shutdown-ready", game=message.game))

    # --- sending (Neuro -> game) -----------------------------------------

    async def send_startup_acknowledgement(
        self, session_id: str, character_id: str, display_name: str
    ) -> None:
        """Send the ``startup`` acknowledgement."""
        await self.send_text(
            command.StartupAcknowledgement(
                session_id=session_id,
                character_id=character_id,
                display_name=display_name,
            ).to_frame()
        )

    async def send_action_command(self, id_: str, name: str, data: str | None) -> None:
        """Send an ``action`` frame (no bookkeeping; see the handler layer)."""
        await self.send_text(action_frame(id_, name, data))

    async def send_reregister_all(self) -> None:
        """Ask the game to register all its actions again."""
        await self.send_text(command.ReregisterAll().to_frame())

    async def send_graceful_shutdown(self, wants_shutdown: bool) -> None:
        """Ask the game to quit at the next safe point (False cancels)."""
        await self.send_text(
            command.GracefulShutdown(wants_shutdown=wants_shutdown).to_frame()
        )

    async def send_immediate_shutdown(self) -> None:
        """Tell the game it is about to be closed."""
        await self.send_text(command.ImmediateShutdown().to_frame())

    async def send_speech_finished(
        self, is_final: bool = True, cancelled: bool = False, reason: str | None = None
    ) -> None:
        """Tell the game Neuro finished (or was cut off) speaking."""
        await self.send_text(
            command.SpeechFinished(
                is_final=is_final, cancelled=cancelled, reason=reason
            ).to_frame()
        )
