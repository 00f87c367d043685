"""The composition root: a Neuro server that owns its nursery."""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import ssl
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest

from neuro_api._fds import connection_budget
from neuro_api._origins import origin_allowed
from neuro_api._shared import host_port
from neuro_api._text import printable
from neuro_api._wsgroup import GOING_AWAY, ConnectionGroup, close, how_it_closed
from neuro_api._wsserve import Listening
from neuro_api.command import Action, ForcePriority
from neuro_api.diagnostics import Diagnostic
from neuro_api.schema import ValidationResult
from neuro_api.server._budget import MemoryBudget
from neuro_api.server._checks import validate_data
from neuro_api.server._config import ServerConfig
from neuro_api.server._events import EventBus, ServerStats
from neuro_api.server._generation import DataGenerator
from neuro_api.server._handler import LOG_LEVELS, ActionOutcome
from neuro_api.server._hooks import (
    AdmissionCheck,
    ConnectionEvent,
    ConnectionEventKind,
    ConnectionEvents,
    ContextEvents,
    ForceGate,
    Refusal,
)
from neuro_api.server._memory import keep_memory_low
from neuro_api.server._ratelimit import (
    ALL_GAMES,
    Key,
    LogLimiter,
    Summary,
    current_time,
    show_when_due,
    summary_text,
)
from neuro_api.server._signatures import POSITIONAL, PriorityStyle, priority_style
from neuro_api.server._trio_client import TrioNeuroServerClient

__all__ = ["AbstractTrioNeuroServer", "ServerInfo"]

LOGGER: Final = logging.getLogger("neuro_api.server")
_HANDSHAKE_TIMEOUT: Final = 10.0
_CLOSE_GRACE: Final = 2.0
_MAX_GAMES_REMEMBERED: Final = 256


@dataclasses.dataclass(frozen=True, slots=True)
class ServerInfo:
    """What :meth:`AbstractTrioNeuroServer.run` reports once listening.

    Not :class:`neuro_api.manager.ServerInfo`, which describes a server the
    ServerManager runs (name, kind, tunnel); this is the one server
    :meth:`~AbstractTrioNeuroServer.run` serves on its own.
    """

    host: str
    port: int
    secure: bool

    @property
    def url(self) -> str:
        """The URL games connect to (``ws://`` or ``wss://``)."""
        return f"{'wss' if self.secure else 'ws'}://{host_port(self.host, self.port)}"


class AbstractTrioNeuroServer(ABC):
    """A Neuro server: subclass it and implement the two decisions.

    :meth:`add_context` receives what games tell Neuro, and
    :meth:`choose_force_action` picks the action to perform when a game forces
    one. Everything else (the WebSocket server, session rules, results,
    retries, timeouts, diagnostics) is done here. Each game connection runs
    in a nursery of its own: nothing a game sends, and no way it disconnects,
    can stop the server or reach another game. An exception in either
    decision is reported as a ``force.engine-error`` diagnostic (or logged,
    for ``add_context``) and the game keeps being served.
    """

    client_class: type[TrioNeuroServerClient] = TrioNeuroServerClient
    """The per-connection class; override to customise a layer."""

    # How this class's engine hooks take ``priority`` (see _signatures):
    # set for each subclass when it is made.
    choose_priority: ClassVar[PriorityStyle] = POSITIONAL
    choose_now_priority: ClassVar[PriorityStyle] = POSITIONAL

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        before = 6  # self, game_title, state, query, ephemeral_context, actions
        cls.choose_priority = priority_style(cls.choose_force_action, before)
        cls.choose_now_priority = priority_style(cls.choose_force_action_now, before)

    def __init__(
        self,
        config: ServerConfig | str | None = None,
        *,
        character_id: str | None = None,
    ) -> None:
        if isinstance(config, str):  # upstream's MyServer("neuro")
            if character_id is not None:
                raise TypeError("character_id given twice")
            config, character_id = None, config
        self.config_given = config is not None
        """Whether a :class:`ServerConfig` was given; if not, a process may
        give it the one of its settings (:meth:`configure`)."""
        self._character_given = character_id
        config = config or ServerConfig()
        if character_id is not None:
            config = dataclasses.replace(config, character_id=character_id)
        self.config = config
        self.clients: dict[str, TrioNeuroServerClient] = {}
        """Connected games by session id."""
        self.diagnostics: collections.OrderedDict[
            str, collections.deque[Diagnostic]
        ] = collections.OrderedDict()
        """Recent diagnostics per game title; they outlive connections."""
        self._stop_requested = trio.Event()
        # Registered action name -> clients that registered it (insertion
        # ordered, so collisions name the earliest other game).
        self._owners: dict[str, dict[TrioNeuroServerClient, None]] = {}
        self.stats = ServerStats()
        self.events = EventBus()
        """Frames and diagnostics, live (see :class:`EventBus`)."""
        self.log_limiter = LogLimiter(self.config.log_burst, self.config.log_window)
        """Rate limit of the lines games cause (shared by their connections)."""
        self._upkeep: trio.Nursery | None = None
        self.handler_nursery: trio.Nursery | None = None
        """The nursery of :meth:`run` while it serves (upstream's name): a
        client that is not served itself runs background work there."""
        self.memory = MemoryBudget(
            self.config.memory_budget, self.config.max_game_memory
        )
        """What games make the server keep (actions, held context), each
        and all together."""
        self.generator = self.new_generator()
        """Valid random data for an action's schema, bounded (what the
        control plane sends when asked to act without data)."""
        self.connection_events = ConnectionEvents()
        self.context_events = ContextEvents()
        """Listeners of the games' context messages (a capability's hook)."""
        """Every game connection's events (connected, started with its
        title, disconnected with how): subscribe to hear them."""
        self._admission: list[AdmissionCheck] = []
        self._gates: list[ForceGate] = []

    def configure(self, config: ServerConfig) -> None:
        """Use ``config`` from now on.

        What a process does for an engine made without one, so the
        process's settings (``--result-timeout``...) apply to it. A
        character id given to the constructor is kept.

        Before serving only: raises :class:`RuntimeError` once games are
        connected or :meth:`run` serves.
        """
        if self.clients or self.handler_nursery is not None:
            raise RuntimeError("configure() is only possible before serving")
        if self._character_given is not None:
            config = dataclasses.replace(config, character_id=self._character_given)
        self.config = config
        self.config_given = True
        self.log_limiter = LogLimiter(config.log_burst, config.log_window)
        self.memory = MemoryBudget(config.memory_budget, config.max_game_memory)
        self.generator = self.new_generator()

    def new_generator(self) -> DataGenerator:
        """The :attr:`generator` for :attr:`config` (made again by :meth:`configure`).

        An engine with a random source of its own (the random engine's
        seed) overrides this to pass it on.
        """
        return DataGenerator(
            max_size=self.config.max_generated_size,
            timeout=self.config.generate_timeout,
        )

    @property
    def character_id(self) -> str:
        """The character games are connected to (``config.character_id``)."""
        return self.config.character_id

    # --- logging, by upstream's names --------------------------------------

    def log_info(self, message: str) -> None:
        """Log ``message`` at INFO on ``neuro_api.server`` (escaped, one line)."""
        LOGGER.info("%s", printable(message))

    def log_warning(self, message: str) -> None:
        """Log ``message`` at WARNING on ``neuro_api.server``."""
        LOGGER.warning("%s", printable(message))

    def log_critical(self, message: str) -> None:
        """Log ``message`` at CRITICAL on ``neuro_api.server``."""
        LOGGER.critical("%s", printable(message))

    # --- the two decisions ---------------------------------------------

    @abstractmethod
    def add_context(
        self, game_title: str, message: str, reply_if_not_busy: bool
    ) -> None:
        """Take a context message from a game.

        ``reply_if_not_busy`` is ``True`` for non-silent context (Neuro may
        answer it). Results of actions arrive here too, as production Neuro
        reads them. Called in the order the game sent them; context held
        while a result was pending arrives after that result.
        """

    @abstractmethod
    async def choose_force_action(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None]:
        """Pick one of ``actions`` for a force: ``(name, json_data_or_None)``.

        ``json_data`` is a JSON *string* matching the action's schema (it is
        sent to the game as is, so it may be invalid on purpose). An
        override may leave ``priority`` out (the five-argument form of the
        reference page and of neuro-api 4.0.0): it is then called without
        it.
        ``ephemeral_context=True`` means state and query must be forgotten
        after this force. Called again, after the failure message arrived
        through :meth:`add_context`, when the game answers ``success: false``
        (up to ``config.max_retries`` times). Cancelled when the force is
        replaced or its actions are unregistered.
        """

    def choose_force_action_now(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None] | None:
        """Answer a force at once, or return ``None`` (the default).

        ``None`` means: ask :meth:`choose_force_action` instead. Engines
        that decide without waiting (the random engine) override this: the
        answer is sent straight from the game's reader, with no task per
        force, which roughly halves the server's work per force.
        """
        return None

    # --- hooks -----------------------------------------------------------

    def on_action_outcome(self, game_title: str, outcome: ActionOutcome) -> None:
        """Called when an action sent to a game ends (default: nothing)."""

    def on_client_connected(self, client: TrioNeuroServerClient) -> None:
        """Called when a game connects (default: show it, rate limited)."""
        self.show_limited(
            (None, "connections"), f"game connected (session {client.session_id})"
        )

    def on_client_disconnected(self, client: TrioNeuroServerClient) -> None:
        """Called when a game's connection ended and was cleaned up.

        Default: show it, rate limited.
        """
        title = printable(client.game_title or "(no startup)")
        self.show_limited(
            (None, "disconnections"),
            f"[{title}] disconnected (session {client.session_id})",
        )

    # --- capabilities' hooks ------------------------------------------------

    def add_admission_check(self, check: AdmissionCheck) -> None:
        """Call ``check(client, game_title)`` when a game's first frame names it.

        That first frame is normally its ``startup``; whatever it is, a game
        is checked before anything it sends is handled. A :class:`Refusal`
        closes the connection with its code and reason (that frame is
        dropped, the game gets no acknowledgement); None admits it. Checks
        run in the order they were added, the first refusal wins. A check
        that raises, or returns anything else, refuses the game (1011), and
        the error is logged.
        """
        self._admission.append(check)

    def admit(self, client: TrioNeuroServerClient, game_title: str) -> Refusal | None:
        """Run the admission checks for ``client``'s first ``startup``."""
        for check in self._admission:
            try:
                # object: a check may break its type (an async def returns
                # a coroutine).
                refusal: object = check(client, game_title)
            except Exception:
                LOGGER.exception("admission check %r failed", check)
                return Refusal("server error while admitting the game", 1011)
            if refusal is None:
                continue
            if not isinstance(refusal, Refusal):
                LOGGER.error(
                    "admission check %r returned %r, not a Refusal or None",
                    check,
                    refusal,
                )
                return Refusal("server error while admitting the game", 1011)
            return refusal
        return None

    def expel(self, game_title: str, refusal: Refusal) -> int:
        """Close every connection of ``game_title`` with ``refusal``'s code.

        For a game blocked while it is connected (an admission check refuses
        it when it comes back). Each close runs in its connection's own
        task (see :meth:`TrioNeuroServerClient.close_soon`); returns how
        many connections are being closed.
        """
        closing = 0
        for client in list(self.clients.values()):
            if client.game_title == game_title and client.close_soon(
                refusal.code, refusal.reason
            ):
                closing += 1
        if closing:
            self.show_limited(
                (None, "expelled games"),
                f"[{printable(game_title)}] closed: {printable(refusal.reason)} "
                f"(close code {refusal.code})",
            )
        return closing

    def add_force_gate(self, gate: ForceGate) -> ForceGate:
        """Let ``gate`` hold games' forces and actions by title; returns it."""
        self._gates.append(gate)
        gate.watch_changes(self._apply_gates)
        return gate

    def forces_held(self, game_title: str | None) -> bool:
        """Whether any force gate holds ``game_title``."""
        return game_title is not None and any(g.holds(game_title) for g in self._gates)

    def gates_holding(self, game_title: str | None) -> list[str]:
        """The names of the force gates that hold ``game_title`` now."""
        if game_title is None:
            return []
        return [gate.name for gate in self._gates if gate.holds(game_title)]

    def _apply_gates(self, game_titles: frozenset[str]) -> None:
        for client in list(self.clients.values()):
            if client.game_title in game_titles:
                if self.forces_held(client.game_title):
                    client.hold_forces()
                else:
                    client.release_forces()

    def game_started(self, client: TrioNeuroServerClient) -> None:
        """A game's first ``startup`` was acknowledged: tell the listeners."""
        self.connection_events.publish(
            ConnectionEvent(
                ConnectionEventKind.STARTED, client.session_id, client.game_title
            )
        )

    # --- what the operator sees (log, console) -----------------------------

    def show_limited(self, key: Key, text: str) -> None:
        """:meth:`show_event` ``text`` unless lines of ``key`` are rate limited.

        ``key`` is ``(game, what)``; held-back lines are counted and summed
        up by :meth:`show_summary` (``"... 4,213 more connections in the
        last 10 s"``). For events a client can cause at will.
        """
        limiter = self.log_limiter
        shown, due = limiter.allow(key, current_time())
        for summary in due:
            self.show_summary(summary)
        if shown:
            self.show_event(text)
        # A game's summary that all games had no line left for is held there.
        if not limiter.flushing and (not shown or limiter.holding(ALL_GAMES)):
            self.show_summaries_later()

    def show_summaries_later(self) -> bool:
        """Have what :attr:`log_limiter` holds back shown once due.

        Done by a task of :meth:`upkeep`, so summaries come even after the
        games that caused them left. Returns ``False`` when the upkeep is
        not running (the next line shown brings the summaries then).
        """
        if self._upkeep is None:
            return False
        limiter = self.log_limiter
        if not limiter.flushing:
            self._upkeep.start_soon(show_when_due, limiter, self.show_summary)
            # Only now: if start_soon raised, no task would ever clear it.
            limiter.flushing = True
        return True

    async def upkeep(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run for ever: the server's own work beside the games.

        Gives memory back after waves of disconnections
        (:func:`~neuro_api.server._memory.keep_memory_low`) and shows the log
        summaries the rate limit held back once their window is over.
        :meth:`run` runs it; whoever serves :meth:`handle_websocket_request`
        instead should run it too (NeuroProcess does). Reports readiness through
        ``task_status``.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_memory_low, self)
            self._upkeep = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._upkeep = None

    def show_event(self, text: str) -> None:
        """Show one line about the server's games (default: log at info)."""
        LOGGER.info("%s", text)

    def show_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Show a diagnostic that passed the rate limit (default: log it).

        Every diagnostic reaches :meth:`record_diagnostic`; only those the
        rate limit lets through (``config.log_burst`` per game and id per
        ``config.log_window``) reach this.
        """
        LOGGER.log(LOG_LEVELS[diagnostic.severity], "%s", diagnostic)

    def show_summary(self, summary: Summary) -> None:
        """Say what the rate limit held back (default: log a warning)."""
        LOGGER.warning("%s", summary_text(summary))

    def record_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Keep a diagnostic for later display (bounded per game)."""
        self.stats.diagnostics[diagnostic.id] += 1
        self.stats.severities[diagnostic.severity.value] += 1
        if self.events.active:
            self.events.publish({"type": "diagnostic", **diagnostic.to_json()})
        game = diagnostic.game or "?"
        kept = self.diagnostics.get(game)
        if kept is None:
            kept = collections.deque(maxlen=self.config.diagnostics_kept)
            self.diagnostics[game] = kept
            if len(self.diagnostics) > _MAX_GAMES_REMEMBERED:
                self._forget_a_gone_game()
        kept.append(diagnostic)

    def _forget_a_gone_game(self) -> None:
        """Forget the diagnostics of the game seen longest ago and gone since.

        A connection naming itself anew all the time must not push the
        games still connected out.
        """
        connected = {client.game_title for client in self.clients.values()}
        for title in self.diagnostics:
            if title not in connected:
                del self.diagnostics[title]
                return
        self.diagnostics.popitem(last=False)  # all connected: the oldest

    # --- data ------------------------------------------------------------

    async def validate_data(
        self, schema: Mapping[str, Any] | None, data: str | None
    ) -> ValidationResult:
        """Check ``data`` (JSON text) against an action's ``schema``.

        :func:`~neuro_api.schema.validate_action_data`, in a worker thread
        when the schema and data are large, so a megabyte of either does not
        hold the event loop. Raises :class:`~neuro_api.schema.SchemaError`
        for an invalid schema.
        """
        return await validate_data(schema, data)

    # --- lookups ---------------------------------------------------------

    def games(self) -> list[TrioNeuroServerClient]:
        """Connected clients that are being served, oldest first.

        A client whose connection is ending is left out, so an engine never
        picks a game it can no longer send to.
        """
        return [client for client in self.clients.values() if client.serving]

    def get_client(self, game_or_session: str) -> TrioNeuroServerClient | None:
        """Find a connected client by session id or game title."""
        client = self.clients.get(game_or_session)
        if client is not None:
            return client
        for candidate in self.clients.values():
            if candidate.game_title == game_or_session:
                return candidate
        return None

    def find_collisions(
        self, client: TrioNeuroServerClient, names: Sequence[str]
    ) -> Mapping[str, str]:
        """Map each name another connected game registered to that game.

        Looks names up in an index kept by :meth:`index_actions`, so the
        cost does not grow with the number of connected games.
        """
        found: dict[str, str] = {}
        for name in names:
            for other in self._owners.get(name, ()):
                if other is not client and other.game_title != client.game_title:
                    found[name] = other.game_title or other.session_id
                    break
        return found

    def index_actions(
        self,
        client: TrioNeuroServerClient,
        added: Iterable[str],
        removed: Iterable[str],
    ) -> None:
        """Keep the name -> clients index of registered actions current."""
        for name in added:
            self._owners.setdefault(name, {})[client] = None
        for name in removed:
            owners = self._owners.get(name)
            if owners is not None:
                owners.pop(client, None)
                if not owners:
                    del self._owners[name]

    # --- serving ---------------------------------------------------------

    async def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        ssl_context: ssl.SSLContext | None = None,
        *,
        task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve games until cancelled or :meth:`request_stop`.

        Reports a :class:`ServerInfo` with the bound port through
        ``task_status`` once listening (``port=0`` picks a free one). After
        :meth:`request_stop` every game is closed with 1001 and it returns;
        on cancellation every connection is closed and its tasks end. Raises
        :class:`OSError` if the address cannot be bound.
        """
        group = ConnectionGroup("games", self.handle_websocket_request)
        async with trio.open_nursery() as nursery:
            self.handler_nursery = nursery
            listener = await nursery.start(
                functools.partial(
                    group.serve, host, port, ssl_context, **self.serve_options()
                )
            )
            assert isinstance(listener, Listening)
            info = ServerInfo(host, listener.port, ssl_context is not None)
            LOGGER.info("listening on %s", info.url)
            nursery.start_soon(self.background)
            await nursery.start(self.upkeep)
            task_status.started(info)
            try:
                await self._stop_requested.wait()
                group.stop_listening()
                with trio.move_on_after(_CLOSE_GRACE):
                    await group.close_all()
            finally:
                self.handler_nursery = None
            nursery.cancel_scope.cancel()

    def request_stop(self) -> None:
        """Ask for a graceful stop (the console's ``quit`` does).

        :meth:`run` then closes every game and returns; a process that runs
        the server otherwise (under a supervisor) waits for
        :meth:`wait_stop_requested` and shuts down.
        """
        self._stop_requested.set()

    async def wait_stop_requested(self) -> None:
        """Return once :meth:`request_stop` was called."""
        await self._stop_requested.wait()

    async def close_games(self, grace: float = _CLOSE_GRACE) -> None:
        """Close every game connection with 1001 (going away) while serving.

        Do this before cancelling the server: a connection closed by
        cancellation cannot read the game's close reply. Games that do not
        answer within ``grace`` seconds are left to cancellation.
        """
        with trio.move_on_after(grace):
            async with trio.open_nursery() as nursery:
                for client in self.games():
                    nursery.start_soon(
                        close, client.websocket, GOING_AWAY, "server shutting down"
                    )

    async def background(self) -> None:
        """Run alongside the server once it listens (default: nothing).

        Engines that act on their own (unforced actions, a console) override
        this; it is cancelled with the server. An exception here stops the
        server, like any bug in the composition root.
        """

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for the games' WebSocket server.

        One frame queued per connection (backpressure instead of buffering),
        the configured frame size limit, bounded handshakes, and the
        connection cap: ``config.max_connections``, kept below what the open
        file limit leaves (see :mod:`neuro_api._fds`). Connections refused
        for it are shown, rate limited.
        """
        budget = connection_budget()
        cap = self.config.max_connections
        if budget is not None and budget < cap:
            LOGGER.warning(
                "at most %d game connections (max_connections %d is more than "
                "the open file limit leaves)",
                budget,
                cap,
            )
            cap = budget
        return {
            "message_queue_size": 1,
            "max_message_size": self.config.max_message_size,
            "connect_timeout": _HANDSHAKE_TIMEOUT,
            "disconnect_timeout": _HANDSHAKE_TIMEOUT,
            "max_connections": cap,
            "on_refused": functools.partial(self._refused, cap),
        }

    def _refused(self, cap: int) -> None:
        self.show_limited(
            (None, "refused connections"),
            f"a game connection was refused: {cap} are open (max_connections)",
        )

    async def _origin_allowed(self, request: WebSocketRequest) -> bool:
        """Refuse (403) a web page the user visits, unless it is allowed."""
        origin = next((v for k, v in request.headers if k.lower() == b"origin"), None)
        if origin is None:
            return True
        text = origin.decode("latin-1")
        if origin_allowed(text, self.config.allowed_origins):
            return True
        self.show_limited(
            (None, "refused web pages"),
            f"refused a game connection from the web page at {printable(text)!r}"
            " (allow it with --allowed-origins)",
        )
        body = (
            f"neuro_api: connections from the web page at {text!r} are refused; "
            "allow it with --allowed-origins (NEURO_API_ALLOWED_ORIGINS)"
        )
        await request.reject(403, body=body.encode("utf-8", "replace"))
        return False

    async def handle_websocket_request(self, request: WebSocketRequest) -> None:
        """Serve one game connection until it ends; never raises.

        Checks the page's ``Origin``, accepts the handshake and hands the
        connection to :meth:`handle_client_connection`. This is the handler
        to give ``serve_websocket`` (with :meth:`serve_options`) when the
        server is run by something else, such as the ServerManager.
        """
        # The connection boundary: an exception escaping here would stop
        # trio-websocket's whole server, so nothing Exception-shaped does.
        try:
            if not await self._origin_allowed(request):
                return
            websocket = await request.accept()
        except Exception:
            LOGGER.debug("handshake failed", exc_info=True)
            return
        await self.handle_client_connection(websocket)

    async def handle_client_connection(self, websocket: WebSocketConnection) -> None:
        """Serve an accepted game connection until it ends; never raises.

        Makes its :attr:`client_class` instance, keeps it in :attr:`clients`
        while it is served, and forgets everything about it afterwards.
        """
        client = self.client_class(websocket, self)
        self.clients[client.session_id] = client
        self.stats.connections_total += 1
        # Before any hook that may fail: every disconnected event has its
        # connected one.
        self.connection_events.publish(
            ConnectionEvent(ConnectionEventKind.CONNECTED, client.session_id, None)
        )
        try:
            self.on_client_connected(client)
            await client.serve()
        except Exception:
            LOGGER.exception("connection handler failed")
        finally:
            self.clients.pop(client.session_id, None)
            self.stats.disconnections += 1
            self.memory.release_all(client)
            self.index_actions(client, (), list(client.actions))
            try:
                self.on_client_disconnected(client)
            except Exception:
                LOGGER.exception("on_client_disconnected hook failed")
            self.connection_events.publish(_disconnected(client))


def _disconnected(client: TrioNeuroServerClient) -> ConnectionEvent:
    code, reason, clean = how_it_closed(client.websocket)
    return ConnectionEvent(
        ConnectionEventKind.DISCONNECTED,
        client.session_id,
        client.game_title,
        close_code=code,
        close_reason=reason,
        clean=clean,
    )
