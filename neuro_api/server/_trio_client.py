"""Layers 4 and 5: a game connection over trio-websocket, bound to its server."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from neuro_api._cache import SizedCache
from neuro_api._text import printable
from neuro_api._wsgroup import close
from neuro_api.command import Action, ForceActions, ForcePriority
from neuro_api.diagnostics import Diagnostic, diagnose
from neuro_api.server._budget import MemoryBudget
from neuro_api.server._config import ServerConfig
from neuro_api.server._handler import ActionNames, ActionOutcome, FrameTooLarge
from neuro_api.server._hooks import ContextMessage, Refusal
from neuro_api.server._ratelimit import LogLimiter, Summary
from neuro_api.server._reader_guard import ReaderGuard
from neuro_api.server._recording import AbstractRecordingNeuroServerClient
from neuro_api.server._signatures import POSITIONAL

if TYPE_CHECKING:
    from neuro_api.server._base import AbstractTrioNeuroServer

__all__ = ["BaseTrioNeuroServerClient", "TrioNeuroServerClient"]

LOGGER: Final = logging.getLogger("neuro_api.server")
_CLOSE_TIMEOUT: Final = 5.0
_SHORT_CLOSE_TIMEOUT: Final = 0.2
"""For a close whose reply nobody will read (the server stops, or the game
does not read at all)."""
_MESSAGE_TOO_BIG: Final = 1009
_POLICY_VIOLATION: Final = 1008
_GUARD_AFTER_SENDS: Final = 4
"""The reader's sends before its guard starts (see _send_from_reader)."""

# Games register the same few schemas on every connection, and each parsed
# copy costs about a kilobyte (a handful of dicts); the registries keep one
# copy of each (same JSON text, key order included, and equal, so nothing
# shown or diagnosed can differ). Bounded by size: small schemas only, 1 MiB
# of them in all, the least recently used forgotten first.
_SHARED_SCHEMA_BYTES: Final = 4096
_SHARED_SCHEMAS: SizedCache[dict[str, Any]] = SizedCache(1 << 20, _SHARED_SCHEMA_BYTES)


def _shared(schema: dict[str, Any]) -> dict[str, Any]:
    """The registries' copy of ``schema`` (or ``schema`` if it is not shared)."""
    try:
        text = orjson.dumps(schema)
    except TypeError:  # not JSON (a hand-made action in a test): keep it
        return schema
    if len(text) > _SHARED_SCHEMA_BYTES:
        return schema
    known = _SHARED_SCHEMAS.get(text)
    if known is None:
        # A copy of its own, so no caller holds (and could change) it.
        known = orjson.loads(text)
        if known != schema:  # NaN, tuples ...: not what JSON would give
            return schema
        _SHARED_SCHEMAS.put(text, known)
    # Equal JSON text is not always equal values (a tuple prints as a list).
    return known if known == schema else schema


def _share_schemas(actions: list[Action]) -> list[Action] | None:
    """``actions`` with the registries' schema copies; None if none changed."""
    shared: list[Action] = []
    changed = False
    for action in actions:
        schema = action.schema
        copy = schema if schema is None else _shared(schema)
        if copy is schema:
            shared.append(action)
        else:  # Action(...), not _replace(): three times faster
            shared.append(Action(action.name, action.description, copy))
            changed = True
    return shared if changed else None


class BaseTrioNeuroServerClient(AbstractRecordingNeuroServerClient):
    """Reads and writes one game's trio-websocket connection.

    :meth:`serve` owns the connection's nursery: forces and result timers run
    in it and end with it. A send that the game does not read within
    ``config.send_timeout`` closes the connection (a game that never reads
    cannot make the server buffer without bound).
    """

    def __init__(
        self, websocket: WebSocketConnection, config: ServerConfig | None = None
    ) -> None:
        super().__init__(config)
        self.websocket = websocket
        self.frames_in = 0
        self.frames_out = 0
        # While serve() runs: the task reading the connection, and the guard
        # of its sends (see write_to_websocket).
        self._reader: trio.lowlevel.Task | None = None
        self._guard: ReaderGuard | None = None

    async def write_to_websocket(self, data: str) -> None:
        """Send a text frame; a peer that stops reading is disconnected.

        The write is shielded from cancellation (a force replaced mid-write
        must not leave half a frame on the wire), so it ends within
        ``config.send_timeout`` whatever happens. Raises
        :class:`trio_websocket.ConnectionClosed` if the connection is closed
        (or closes because the peer did not read in time), and
        :class:`~neuro_api.server.FrameTooLarge` (nothing sent) for a frame
        over ``config.max_message_size``, the limit on frames from games.

        Most frames are sent by the reader task itself (the handlers it runs
        answer startups and forces at once). A connection's first few get a
        cancel scope each; from then on the reader runs shielded, and a
        :class:`~neuro_api.server._reader_guard.ReaderGuard` task times its
        sends and passes cancellation from outside on to it between sends,
        which costs a fraction of a cancel scope per send. Any other task
        gets a scope of its own. So code that runs in the reader must not
        wrap a send in a cancel scope it may cancel: only cancellation from
        outside the reader's scope is held back during the write.
        """
        frame = data
        limit = self.config.max_message_size
        # Characters are at most 4 bytes: most frames skip the encoding.
        if len(frame) * 4 > limit and len(frame.encode("utf-8", "replace")) > limit:
            raise FrameTooLarge(len(frame.encode("utf-8", "replace")), limit)
        if self._reader is not None and trio.lowlevel.current_task() is self._reader:
            await self._send_from_reader(frame)
        else:
            await self._send_in_own_scope(frame)
        self.frames_out += 1
        self.on_frame("out", frame)

    async def read_from_websocket(self) -> str | bytes:
        """Receive the next frame (what :meth:`serve` does in its loop).

        Raises :class:`trio_websocket.ConnectionClosed` once the connection
        is closed.
        """
        return await self.websocket.get_message()

    async def _send_in_own_scope(self, frame: str) -> None:
        with trio.move_on_after(self.config.send_timeout) as scope:
            scope.shield = True
            await self.websocket.send_message(frame)
        if scope.cancelled_caught:
            await self._close_not_reading()

    async def _send_from_reader(self, frame: str) -> None:
        guard = self._guard
        assert guard is not None
        if not guard.active:
            # A connection's first few sends get a scope each; a connection
            # that keeps sending is worth the guard's task from then on.
            guard.early_sends += 1
            if guard.early_sends < _GUARD_AFTER_SENDS:
                await self._send_in_own_scope(frame)
                return
            guard.activate(self._spawn())
        guard.sending()
        try:
            await self.websocket.send_message(frame)
        except trio.Cancelled:
            # The reader's scope is shielded: only its guard cancels it while
            # it sends, and only when the send took too long.
            if not guard.timed_out:
                raise
        finally:
            guard.sent()
        if guard.timed_out:
            await self._close_not_reading()

    async def _close_not_reading(self) -> None:
        LOGGER.warning(
            "%s does not read; closing its connection",
            printable(self.game_title or "game"),
        )
        # Its buffers are full: the close frame cannot even be written, and
        # a reply would not come; do not wait the usual close time for it.
        await self._close(_POLICY_VIOLATION, "not reading", _SHORT_CLOSE_TIMEOUT)
        raise ConnectionClosed(self.websocket.closed)

    def on_frame(self, direction: str, frame: str | bytes) -> None:
        """Called for each frame sent (``"out"``) or received (``"in"``)."""

    async def handle_actions_register(
        self, game_title: str, actions: list[Action]
    ) -> None:
        """Register as the layer below does, sharing equal schemas (memory)."""
        shared = _share_schemas(actions)
        await super().handle_actions_register(
            game_title, actions if shared is None else shared
        )

    def close_soon(self, code: int, reason: str) -> bool:
        """Close the connection with ``code`` and ``reason``, from any task.

        The close runs in the connection's own nursery, waiting briefly for
        the game's reply; the reader then sees the connection closed and
        the game's session ends as for any close. Returns False (nothing
        done) when the connection is not served or is ending already.
        """
        if not self.serving:
            return False
        assert self._nursery is not None
        self._nursery.start_soon(self._close, code, reason, _SHORT_CLOSE_TIMEOUT)
        return True

    async def _close(
        self, code: int, reason: str, reply_wait: float = _CLOSE_TIMEOUT
    ) -> None:
        with trio.move_on_after(reply_wait) as scope:
            scope.shield = True
            await close(self.websocket, code, reason)

    async def serve(self) -> None:
        """Read and handle frames until the connection ends; then clean up.

        Returns normally when the game disconnects (cleanly or not); a bug in
        a handler is logged and the connection closed, never propagated.
        """
        close_timeout = _CLOSE_TIMEOUT
        try:
            async with trio.open_nursery() as nursery:
                self.bind_nursery(nursery)
                guard = self._guard = ReaderGuard(self.config.send_timeout)
                try:
                    with guard.scope:
                        self._reader = trio.lowlevel.current_task()
                        await self._read_loop()
                finally:
                    self._reader = self._guard = None
                    guard.close()
                    self.end_session()
                    nursery.cancel_scope.cancel()
        except* trio.Cancelled:
            # The server is stopping: the game still gets a close frame, but
            # nobody reads its reply any more, so do not wait long for it.
            close_timeout = _SHORT_CLOSE_TIMEOUT
            raise
        except* ConnectionClosed:
            pass  # a send raced the game's disconnect; the reader saw it too
        except* Exception:
            LOGGER.exception(
                "connection of %s failed", printable(self.game_title or "game")
            )
        finally:
            self.bind_nursery(None)
            try:
                self.abandon_pending()
            finally:
                # Closed even if the hooks failed (a hand-made client whose
                # server is gone cannot reach it any more).
                await self._close(1000, "bye", close_timeout)

    async def _read_loop(self) -> None:
        while True:
            try:
                frame = await self.websocket.get_message()
            except ConnectionClosed as exc:
                if exc.reason is not None and exc.reason.code == _MESSAGE_TOO_BIG:
                    self.report(
                        diagnose(
                            "protocol.oversized-frame",
                            game=self.game_title,
                            limit=self.config.max_message_size,
                        )
                    )
                return
            self.frames_in += 1
            self.on_frame("in", frame)
            await self.handle_frame(frame)


class TrioNeuroServerClient(BaseTrioNeuroServerClient):
    """A game connection whose decisions are made by its server.

    Holds its server by a weak reference (:attr:`server` raises
    :class:`ValueError` once the server is gone), as upstream's does.
    """

    _refusal: Refusal | None = None
    """Why the server refused the game (a class default: see _gate)."""
    _reporting: ActionOutcome | None = None
    """The outcome whose result message is being added as context (a class
    default: set only while :meth:`on_action_outcome` runs)."""

    def __init__(
        self,
        websocket: WebSocketConnection,
        server: AbstractTrioNeuroServer,
        websocket_session_id: str | None = None,
    ) -> None:
        config = getattr(server, "config", None)
        # A stand-in server without our settings gets the defaults.
        super().__init__(
            websocket, config if isinstance(config, ServerConfig) else None
        )
        self._server_ref = weakref.ref(server)
        if websocket_session_id is not None:
            self.session_id = websocket_session_id

    def title_learned(self, game_title: str) -> bool:
        """Admit the game when its first frame names it; apply force gates.

        A game refused by its server's admission checks (see
        :meth:`~neuro_api.server.AbstractTrioNeuroServer.add_admission_check`)
        has that frame dropped and is closed with the refusal's code and
        reason (:meth:`frame_refused`); it gets nothing else, whatever it
        sends first. A title a force gate holds is held from its first
        frame on.
        """
        server = self._server_ref()
        if server is None:
            return True
        refusal = server.admit(self, game_title)
        if refusal is not None:
            self._refusal = refusal
            server.show_limited(
                (None, "refused games"),
                f"[{printable(game_title)}] refused: {printable(refusal.reason)} "
                f"(close code {refusal.code})",
            )
            return False
        if server.forces_held(game_title):
            self.hold_forces()
        return True

    async def frame_refused(self) -> None:
        """Close a refused game with its refusal's code and reason."""
        refusal = self._refusal
        if refusal is None:
            return
        # Not long: a refused game that does not answer must not hold the
        # reader (nor a stop of the server) for the usual close time.
        await self._close(refusal.code, refusal.reason, _SHORT_CLOSE_TIMEOUT)
        raise ConnectionClosed(self.websocket.closed)

    async def handle_startup(self, game_title: str) -> None:
        """Acknowledge as below; the first one tells the server it started."""
        first = not self.started
        await super().handle_startup(game_title)
        server = self._server_ref()
        if first and server is not None:
            server.game_started(self)

    @property
    def server(self) -> AbstractTrioNeuroServer:
        """The server this connection belongs to."""
        server = self._server_ref()
        if server is None:
            raise ValueError("Reference to server is dead.")
        return server

    @property
    def websocket_session_id(self) -> str:
        """The session id sent in the ``startup`` acknowledgement."""
        return self.session_id

    @websocket_session_id.setter
    def websocket_session_id(self, value: str) -> None:
        self.session_id = value

    def get_character_id(self) -> str:
        """The server's :attr:`~AbstractTrioNeuroServer.character_id`."""
        return self.server.character_id

    def _named(self, message: str) -> str:
        """``message`` after the game's title and connection, as upstream logs."""
        websocket = self.websocket
        remote = websocket.remote
        if not isinstance(remote, str):
            remote = f"{remote.address}:{remote.port}"
        return f"[{self.game_title} ({websocket.CONNECTION_ID} {remote})] {message}"

    def log_info(self, message: str) -> None:
        """Log through the server, naming the game and the connection."""
        self.server.log_info(self._named(message))

    def log_warning(self, message: str) -> None:
        """Log a warning through the server, naming the game and the connection."""
        self.server.log_warning(self._named(message))

    async def submit_call_async_soon(
        self, function: Callable[[], Awaitable[Any]]
    ) -> None:
        """Run ``function()`` in the connection's nursery (it ends with the game).

        A client that is not served (made by hand) uses the server's
        :attr:`~AbstractTrioNeuroServer.handler_nursery`, as upstream does.
        """
        if self._nursery is None:
            nursery = self.server.handler_nursery
            if nursery is None:
                raise RuntimeError("neither the client nor its server is serving")
            nursery.start_soon(function)
            return
        self._nursery.start_soon(function)

    def add_context(self, message: str, reply_if_not_busy: bool) -> None:
        """Forward to :meth:`AbstractTrioNeuroServer.add_context`.

        An exception in the engine is logged; the game keeps being served.
        """
        try:
            self.server.add_context(self.game_title or "", message, reply_if_not_busy)
        except Exception:
            LOGGER.exception(
                "engine failed to take context from %s",
                printable(self.game_title or "game"),
            )
        listeners = self.server.context_events
        if len(listeners):
            listeners.publish(
                ContextMessage(
                    self.session_id,
                    self.game_title or "",
                    message,
                    silent=not reply_if_not_busy,
                    result_of=self._reporting,
                )
            )

    def _actions_of(self, action_names: Iterable[str]) -> tuple[Action, ...]:
        """The registered actions of ``action_names``.

        A force's :class:`ActionNames` carries the actions as registered
        when the force began; other names are looked up now.
        """
        if type(action_names) is ActionNames and action_names.actions is not None:
            return action_names.actions
        actions = self.actions
        return tuple(
            action for action in map(actions.get, action_names) if action is not None
        )

    async def choose_force_action(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: frozenset[str],
        priority: ForcePriority = ForcePriority.LOW,
    ) -> tuple[str, str | None]:
        """Forward to :meth:`AbstractTrioNeuroServer.choose_force_action`.

        The server gets the registered actions of ``action_names``.
        """
        server = self.server
        title = self.game_title or ""
        actions = self._actions_of(action_names)
        style = server.choose_priority
        if style is POSITIONAL:
            return await server.choose_force_action(
                title, state, query, ephemeral_context, actions, priority
            )
        choose: Any = server.choose_force_action  # another form (see _signatures)
        answer: tuple[str, str | None]
        if style is None:
            answer = await choose(title, state, query, ephemeral_context, actions)
        else:
            answer = await choose(
                title, state, query, ephemeral_context, actions, priority=priority
            )
        return answer

    def choose_force_action_now(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: frozenset[str],
        priority: ForcePriority,
    ) -> tuple[str, str | None] | None:
        """Forward to :meth:`AbstractTrioNeuroServer.choose_force_action_now`."""
        server = self.server
        title = self.game_title or ""
        actions = self._actions_of(action_names)
        style = server.choose_now_priority
        if style is POSITIONAL:
            return server.choose_force_action_now(
                title, state, query, ephemeral_context, actions, priority
            )
        choose: Any = server.choose_force_action_now  # another form
        answer: tuple[str, str | None] | None
        if style is None:
            answer = choose(title, state, query, ephemeral_context, actions)
        else:
            answer = choose(
                title, state, query, ephemeral_context, actions, priority=priority
            )
        return answer

    def find_collisions(self, names: Sequence[str]) -> Mapping[str, str]:
        """Ask the server which names other games registered too."""
        return self.server.find_collisions(self, names)

    def on_registry_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        """Keep the server's index of action names current."""
        self.server.index_actions(self, added, removed)

    def on_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Keep the diagnostic on the server, per game."""
        self.server.record_diagnostic(diagnostic)

    def memory_budget(self) -> MemoryBudget:
        """The server's: one budget for all games, and a limit for each."""
        return self.server.memory

    def log_limiter(self) -> LogLimiter:
        """The server's: a game is limited as one over all its connections."""
        return self.server.log_limiter

    def show_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Let the server show it (the console prints it too)."""
        self.server.show_diagnostic(diagnostic)

    def show_summary(self, summary: Summary) -> None:
        """Let the server show it (the console prints it too)."""
        self.server.show_summary(summary)

    def show_summaries_later(self, limiter: LogLimiter) -> None:
        """The server's upkeep shows them (it outlives this connection)."""
        if not self.server.show_summaries_later():
            super().show_summaries_later(limiter)

    def on_frame(self, direction: str, frame: str | bytes) -> None:
        """Count the frame on the server and publish it to live listeners."""
        stats = self.server.stats
        if direction == "in":
            stats.frames_in += 1
        else:
            stats.frames_out += 1
        if self.server.events.active:
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            self.server.events.publish(
                {
                    "type": f"frame.{direction}",
                    "game": self.game_title,
                    "session": self.session_id,
                    "frame": text,
                }
            )

    def on_force_started(self, message: ForceActions) -> None:
        """Count forces on the server."""
        self.server.stats.forces += 1

    def on_action_sent(self, name: str) -> None:
        """Count actions on the server."""
        self.server.stats.actions_sent += 1

    def on_action_outcome(self, outcome: ActionOutcome) -> None:
        """Let the server see every outcome, then apply the default."""
        self.server.on_action_outcome(self.game_title or "", outcome)
        # The default adds the result's message as context: the context
        # listeners learn which outcome it reports (synchronous: no other
        # message can be added in between).
        self._reporting = outcome
        try:
            super().on_action_outcome(outcome)
        finally:
            self._reporting = None
