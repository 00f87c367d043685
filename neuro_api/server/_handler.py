"""Layer 2: ids, pending results, the force state machine, context hand-off.

Timers use Trio (so tests run them on the autojump clock), but nothing here
touches a socket: outgoing frames go through :meth:`write_to_websocket`, and tasks are
started in the nursery the I/O layer binds with :meth:`bind_nursery`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import functools
import itertools
import logging
import math
import sys
import traceback
import uuid
from abc import abstractmethod
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed

from neuro_api._fastparse import _build_force as build_force
from neuro_api._text import printable
from neuro_api.command import (
    Action,
    ActionMessage,
    ForceActions,
    ForcePriority,
    GameMessage,
    NeuroMessage,
    Startup,
)
from neuro_api.diagnostics import Diagnostic, Severity, diagnose
from neuro_api.server._budget import MemoryBudget
from neuro_api.server._client import AbstractNeuroServerClient
from neuro_api.server._config import ForcePolicy, ServerConfig
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
from neuro_api.server._turns import HeldTurns, Turn

__all__ = [
    "AbstractHandlerNeuroServerClient",
    "ActionOutcome",
    "FrameTooLarge",
    "OutcomeStatus",
    "UnanswerableForce",
]

LOGGER: Final = logging.getLogger("neuro_api.server")
LOG_LEVELS: Final = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
}
_OLDEST: Final = "the oldest held message"
_UNKNOWN_WARNINGS: Final = 5
"""Unknown result ids logged with log_warning per connection."""
_SHOWN_CHARS: Final = 200
_REMEMBERED_IDS: Final = 256
"""Answered and timed-out ids remembered to tell stale/late from unknown."""


class OutcomeStatus(enum.StrEnum):
    """How an action sent to a game ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"


@dataclasses.dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The end of one ``action``: the game's result, a timeout, or a drop."""

    id: str
    action: str
    status: OutcomeStatus
    message: str | None = None

    @property
    def success(self) -> bool:
        """True only for a successful result."""
        return self.status is OutcomeStatus.SUCCESS


class TooManyHeldActions(RuntimeError):
    """A held game has ``config.max_pending_actions`` actions waiting already.

    Nothing was sent; the action was not kept (see
    :meth:`~AbstractHandlerNeuroServerClient.hold_forces`).
    """


class _HeldActionDropped(RuntimeError):
    """An action held for a game whose connection ended before it was sent."""


class FrameTooLarge(Exception):
    """A frame to a game would be larger than ``config.max_message_size``.

    The server holds what it sends to the limit it enforces on what it
    receives; nothing of the frame was sent.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the frame would be {size} bytes, over the {limit} byte limit "
            "(max_message_size)"
        )
        self.size = size
        self.limit = limit


class UnanswerableForce(Exception):
    """Raised by an engine's choice: it cannot answer this force properly.

    The server reports it as a ``force.unanswerable`` diagnostic with
    ``reason``. With a ``fallback`` ``(name, json_data_or_None)``, that is
    sent instead (the game answers it, most likely with a failure, and the
    usual retry rules apply), so the game is not left waiting; without one,
    the force is dropped.
    """

    def __init__(
        self, reason: str, *, fallback: tuple[str, str | None] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fallback = fallback


# Enum members as module constants: the hot paths compare with ``is`` and
# skip the class attribute lookup.
_SUCCESS: Final = OutcomeStatus.SUCCESS
_FAILURE: Final = OutcomeStatus.FAILURE
_DISCONNECTED: Final = OutcomeStatus.DISCONNECTED


class _Pending:
    __slots__ = (
        "action",
        "deadline",
        "done",
        "force",
        "id",
        "outcome",
        "timeout",
    )

    def __init__(
        self,
        id_: str,
        action: str,
        timeout: float,
        force: _Force | None,
    ) -> None:
        self.id = id_
        self.action = action
        self.timeout = timeout
        self.deadline = trio.current_time() + timeout
        self.force = force
        # Made by the first waiter only: nobody waits for a force's action.
        self.done: trio.Event | None = None
        self.outcome: ActionOutcome | None = None

    def finish(self, status: OutcomeStatus, message: str | None = None) -> None:
        if self.outcome is None:
            self.outcome = ActionOutcome(self.id, self.action, status, message)
            if self.done is not None:
                self.done.set()

    async def wait(self, time_out: Callable[[_Pending], None]) -> ActionOutcome:
        """The outcome, at the latest at the deadline (``time_out`` settles it).

        The connection's timer times out actions nobody waits for; a waiter
        keeps its own deadline, so a client without a timer (not served,
        only called) still gets an outcome.
        """
        if self.outcome is None:
            if self.done is None:
                self.done = trio.Event()
            with trio.move_on_at(self.deadline):
                await self.done.wait()
            if self.outcome is None:
                time_out(self)
        else:
            await trio.lowlevel.checkpoint()
        assert self.outcome is not None
        return self.outcome


@dataclasses.dataclass(slots=True, eq=False)
class _Force:
    message: ForceActions
    names: ActionNames
    """The forced actions that were registered when the force began."""
    scope: trio.CancelScope | None = None
    """Cancels the engine's choice when the force ends early (only engines
    that answer in a task have one)."""
    attempts: int = 0
    held: ActionNames | None = None
    """The names to offer once the game is released (its forces are held)."""
    answer: tuple[str, str | None] | None = None
    """The engine's answer (checked), kept while the game is held."""


class ActionNames(frozenset[str]):
    """The action names a force offers, in the force's order.

    A :class:`frozenset`, as neuro-api 4.0.0's ``choose_force_action``
    receives, whose iteration follows the order the game listed them in
    (a plain frozenset's order changes from run to run, which would make a
    seeded engine's choices differ).
    """

    __slots__ = ("_order", "actions")

    _order: tuple[str, ...]
    actions: tuple[Action, ...] | None
    """The registered actions of the names, in the same order, when the
    force's client keeps a registry (``None`` otherwise)."""

    def __new__(cls, names: Iterable[str]) -> ActionNames:
        """Names in the order given, without repeats."""
        order = tuple(dict.fromkeys(names))
        self = super().__new__(cls, order)
        self._order = order
        self.actions = None
        return self

    @classmethod
    def of_actions(cls, actions: dict[str, Action]) -> ActionNames:
        """The names of registered ``actions`` (by name), with the actions."""
        order = tuple(actions)
        self = super().__new__(cls, order)
        self._order = order
        self.actions = tuple(actions.values())
        return self

    def __iter__(self) -> Iterator[str]:
        """The names in the force's order."""
        return iter(self._order)

    def __repr__(self) -> str:
        """``ActionNames(['a', 'b'])``."""
        return f"{type(self).__name__}({list(self._order)!r})"


class _Recent:
    """Recently settled ids with their result timeout.

    Remembers at least the last ``_REMEMBERED_IDS`` ids, and fewer than
    twice as many: two generations of plain dicts, the older one dropped
    whole when the newer fills, which costs less per id than forgetting the
    oldest one at a time.
    """

    __slots__ = ("_new", "_old")

    def __init__(self) -> None:
        self._new: dict[str, float] = {}
        self._old: dict[str, float] = {}

    def add(self, id_: str, timeout: float) -> None:
        new = self._new
        new[id_] = timeout
        if len(new) >= _REMEMBERED_IDS:
            self._old = new
            self._new = {}

    def get(self, id_: str) -> float | None:
        timeout = self._new.get(id_)
        return self._old.get(id_) if timeout is None else timeout

    def __contains__(self, id_: object) -> bool:
        return id_ in self._new or id_ in self._old

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


def split_actions(
    names: Iterable[str], lookup: Callable[[str], Action | None]
) -> tuple[dict[str, Action], list[str]]:
    """``names`` as ``({name: action}, unknown names)``, looked up by ``lookup``.

    Known actions keep the order of ``names``, without repeats.
    """
    known: dict[str, Action] = {}
    unknown: list[str] = []
    for name in names:
        action = lookup(name)
        if action is None:
            unknown.append(name)
        else:
            known[name] = action
    return known, unknown


def _describe_exception(exc: BaseException) -> str:
    """``repr(exc)`` and where it was raised (file:line), in one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{exc!r}{where}"


def _check_answer(answer: object) -> tuple[str, str | None]:
    """Return an engine's ``(name, data)`` or raise :class:`TypeError`.

    Engines are user code; a wrongly typed answer must not reach the wire.
    """
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise TypeError(f"expected (name, data), got {answer!r}")
    name, data = answer
    if not isinstance(name, str):
        raise TypeError(f"action name must be a string, got {name!r}")
    if data is not None and not isinstance(data, str):
        raise TypeError(f"action data must be a JSON string or None, got {data!r}")
    return name, data


class AbstractHandlerNeuroServerClient(AbstractNeuroServerClient):
    """Session rules, results and forces for one game connection.

    The contract of neuro-api 4.0.0: subclasses provide the registry
    (:meth:`register_action`, :meth:`unregister_action`,
    :meth:`clear_registered_actions`) and the decisions (:meth:`add_context`,
    :meth:`choose_force_action`); :meth:`submit_call_async_soon` runs work in
    the background (default: the connection's nursery). A subclass that also
    answers :meth:`get_action` has forces checked against its registry.

    Forces run on one state machine with the production server's rules
    (retries within ``config.max_retries``, one force at a time, result
    timeouts, context held while a result is pending). An engine that can
    answer at once (:meth:`choose_force_action_now`) is served from the
    connection's reader with no task per force; otherwise
    :meth:`choose_force_action` is called in the background. A subclass that
    overrides :meth:`perform_actions_force` has each force handed to it
    instead, as upstream does. All bookkeeping a connection owns lives on the
    instance and dies with it.
    """

    # Class-level defaults, set on the instance only when used: a game
    # connection's instance dict stays small (see tests/test_server_limits).
    _limiter: LogLimiter | None = None
    _budget: MemoryBudget | None = None
    _timed_out: _Recent | None = None
    _spam_reported_at = -1e9
    _unknown_warned = 0

    _resuming = False
    """A task waits to resume the active force after the held actions (a
    class default, like _gate)."""
    _gate: HeldTurns | None = None
    """While the game's forces are held (and until the actions held meanwhile
    are sent): see hold_forces. A class default, so that a game never held
    adds nothing to its instance dict (see test_server_limits)."""

    # Decided once per class from what it overrides (see __init_subclass__).
    _choose_style: PriorityStyle = POSITIONAL
    _checks_names: bool = False
    _own_perform: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        base = AbstractHandlerNeuroServerClient
        # 4.0.0's documented clients take (state, query, ephemeral_context,
        # action_names); ours add priority.
        cls._choose_style = priority_style(cls.choose_force_action, 5)
        cls._checks_names = cls.get_action is not base.get_action
        cls._own_perform = cls.perform_actions_force is not base.perform_actions_force

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.session_id = uuid.uuid4().hex
        self.game_title: str | None = None
        self._started = False
        self._warned_before_startup = False
        self._ids = itertools.count(1)
        hex_ = self.session_id
        # Ids are UUIDs (as upstream's): this session's, counting up.
        self._id_prefix = f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-"
        self._pending: dict[str, _Pending] = {}
        self._answered = _Recent()
        self._force: _Force | None = None
        self._queued: collections.deque[ForceActions] = collections.deque(
            maxlen=self.config.max_queued_forces
        )
        self._held: collections.deque[tuple[str, bool]] = collections.deque()
        self._held_chars = 0
        # Only the threshold's worth of timestamps matters; a flood within
        # one window must not grow this.
        self._context_times: collections.deque[float] = collections.deque(
            maxlen=self.config.context_spam_count + 1
        )
        self.diagnostics: collections.deque[Diagnostic] = collections.deque(
            maxlen=self.config.diagnostics_kept
        )
        self._nursery: trio.Nursery | None = None
        self._closing = False
        # One timer per connection times out pending actions: it sleeps until
        # _timer_target, which is never later than any pending deadline.
        self._timer_target = math.inf
        self._timer_wake: trio.Event | None = None
        self._timer_running = False

    # --- provided by subclasses (upstream's contract) ----------------------

    @abstractmethod
    def clear_registered_actions(self) -> None:
        """Forget every registered action (a ``startup`` does this)."""

    @abstractmethod
    def register_action(self, action: Action) -> None:
        """Register one action, replacing one of the same name."""

    @abstractmethod
    def unregister_action(self, action_name: str) -> None:
        """Forget one action (an unknown name is ignored)."""

    @abstractmethod
    def add_context(self, message: str, reply_if_not_busy: bool) -> None:
        """Hand context to the engine (called in order, never while held)."""

    @abstractmethod
    async def choose_force_action(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: frozenset[str],
        priority: ForcePriority = ForcePriority.LOW,
    ) -> tuple[str, str | None]:
        """Ask the engine which action to perform: ``(name, json_or_None)``.

        ``action_names`` is an :class:`ActionNames` (a frozenset that
        iterates in the force's order). A subclass may leave ``priority``
        out, as neuro-api 4.0.0's documented clients do: it is then not
        passed (decided once per class from the signature).
        """

    def choose_force_action_now(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: frozenset[str],
        priority: ForcePriority,
    ) -> tuple[str, str | None] | None:
        """Answer a force at once if the engine can, else ``None`` (default).

        An answer here is sent straight from the connection's reader, with
        no task per force; engines that need to wait (a person, a model)
        return ``None`` and are asked :meth:`choose_force_action` in the
        background.
        """
        return None

    async def submit_call_async_soon(
        self, function: Callable[[], Awaitable[Any]]
    ) -> None:
        """Run ``function()`` in the background (default: the connection's nursery).

        Raises :class:`RuntimeError` if the connection is not served.
        """
        self._spawn().start_soon(function)

    def get_action(self, name: str) -> Action | None:
        """The registered action ``name``, if any (this layer keeps none).

        A subclass that answers it has forces checked against its registry
        (unknown names reported and left out); otherwise the names are
        passed on as the game sent them.
        """
        return None

    def has_action(self, action_name: str) -> bool:
        """Whether ``action_name`` is registered."""
        return self.get_action(action_name) is not None

    def registered_names(self) -> Sequence[str]:
        """Names of every registered action, in registration order."""
        return ()

    def get_action_names(self) -> frozenset[str]:
        """Names of every registered action."""
        return frozenset(self.registered_names())

    def lookup_actions(
        self, names: Iterable[str]
    ) -> tuple[dict[str, Action], list[str]]:
        """Split ``names`` into the registered actions and the unknown names.

        The actions come by name, in the order of ``names`` and without
        repeats. The default asks :meth:`get_action` for each; a registry
        that can look names up faster overrides it.
        """
        return split_actions(names, self.get_action)

    def get_websocket_session_id(self) -> str:
        """The session id the ``startup`` acknowledgement carries."""
        return self.session_id

    def get_character_id(self) -> str:
        """The character id the acknowledgement carries (``config.character_id``)."""
        return self.config.character_id

    def get_display_name(self) -> str:
        """The character's name for the acknowledgement.

        ``config.character_name`` for the configured character; for another
        id (a subclass's :meth:`get_character_id`), the id with ``-`` and
        ``_`` as spaces, in title case, as upstream derives it.
        """
        character_id = self.get_character_id()
        if character_id == self.config.character_id:
            return self.config.character_name
        return character_id.replace("-", " ").replace("_", " ").title()

    def log_info(self, message: str) -> None:
        """Log about this connection (escaped: games choose the text)."""
        LOGGER.info("%s", printable(message))

    def log_warning(self, message: str) -> None:
        """Log a warning about this connection (escaped: games choose the text)."""
        LOGGER.warning("%s", printable(message))

    def on_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Called for every diagnostic after it is stored (default: nothing)."""

    def on_force_started(self, message: ForceActions) -> None:
        """Called when a force starts being answered (default: nothing)."""

    def on_action_sent(self, name: str) -> None:
        """Called when an ``action`` is about to be sent (default: nothing)."""

    def on_action_outcome(self, outcome: ActionOutcome) -> None:
        """Called when an action ends.

        The default hands a result's message to the engine as context, as
        production Neuro reads it (that is how a failure message reaches the
        engine before a retry).
        """
        status = outcome.status
        if outcome.message and (status is _SUCCESS or status is _FAILURE):
            verdict = "succeeded" if status is _SUCCESS else "failed"
            self.add_context(
                f"Result of action {outcome.action!r}: {verdict}: {outcome.message}",
                False,
            )

    # --- state the outside may look at -----------------------------------

    @property
    def started(self) -> bool:
        """Whether the game sent ``startup`` on this connection."""
        return self._started

    @property
    def active_force(self) -> ForceActions | None:
        """The force being answered, if any."""
        return self._force.message if self._force else None

    @property
    def pending_ids(self) -> tuple[str, ...]:
        """Ids of actions sent and not yet answered."""
        return tuple(self._pending)

    def pending_results(self) -> list[tuple[str, str, float]]:
        """``(id, action, deadline)`` of each action waiting for its result.

        ``deadline`` is on Trio's clock (:func:`trio.current_time`): the
        result timer gives the action up then.
        """
        return [(p.id, p.action, p.deadline) for p in self._pending.values()]

    @property
    def force_retries_left(self) -> int | None:
        """Retries the active force still has after a failure (None: no force)."""
        force = self._force
        if force is None:
            return None
        return max(0, self.config.max_retries - force.attempts)

    # --- holding a game (force gates) ----------------------------------------

    @property
    def forces_held(self) -> bool:
        """Whether the game's forces and actions are held (:meth:`hold_forces`)."""
        return self._gate is not None and self._gate.held

    def hold_forces(self) -> None:
        """Hold the game's forces and the actions sent to it until released.

        A force (or its retry) that begins meanwhile is kept, without asking
        the engine; the force rules still apply (a new force replaces it, or
        queues behind it). Actions sent meanwhile (:meth:`execute_action`,
        :meth:`send_action_command`, an injected ``action``) wait, without
        their result timer running. Context and everything else go on. At
        most ``config.max_pending_actions`` actions wait: one more raises
        :class:`TooManyHeldActions` (nothing kept). The server's force gates
        call this (see
        :meth:`~neuro_api.server.AbstractTrioNeuroServer.add_force_gate`).
        """
        if self._closing:
            return
        if self._gate is None:
            self._gate = HeldTurns()
        else:
            self._gate.held = True

    def release_forces(self) -> None:
        """Let held actions go, in the order they were made, then the force.

        The force held meanwhile (if still active) then goes on: the answer
        the engine gave while the game was held is sent (or, if its action
        was unregistered meanwhile, the engine is asked again), or the
        engine is asked, with the force's actions still registered. Does
        nothing if not held.
        """
        gate = self._gate
        if gate is None or not gate.held:
            return
        gate.release()
        if gate.idle:
            self._gate = None
        force = self._force
        if force is not None and (force.held is not None or force.answer is not None):
            self._resume_soon()

    def _resume_soon(self) -> None:
        """Have the active force go on once the actions held before it went.

        One task per connection at most, whatever the number of forces
        parked meanwhile (a new one replaces the old): it resumes the force
        active when its turn comes.
        """
        if self._resuming or self._nursery is None:
            return
        self._resuming = True
        self._spawn().start_soon(self._resume)

    async def _resume(self) -> None:
        try:
            gate = self._gate
            if gate is not None:
                if gate.held:
                    return  # held again: the next release resumes it
                async with gate.turn():  # after the actions held before it
                    pass
                if self.forces_held:
                    return  # held again meanwhile
                self._release_gate(gate)
        finally:
            self._resuming = False
        force = self._force
        if force is None:
            return
        try:
            await self._resume_force(force)
        except Exception as exc:  # the game left under the send, or a bug
            self._send_failed(force, exc)

    async def _resume_force(self, force: _Force) -> None:
        answer, force.answer = force.answer, None
        names, force.held = force.held, None
        if answer is not None:
            if not self._checks_names or self.get_action(answer[0]) is not None:
                await self._act(force, answer, in_turn=True)
                return
            names = force.names  # its action left while held: ask again
        if names is None:
            return
        if self._checks_names:
            names = ActionNames.of_actions(
                {n: a for n in names if (a := self.get_action(n)) is not None}
            )
            if not names:
                self._diag("force.cancelled-by-unregister")
                self._end_force(force)
                return
        await self._choose(force, names, in_turn=True)

    def _check_room(self, gate: HeldTurns) -> None:
        """Raise :class:`TooManyHeldActions` if no more actions may wait."""
        limit = self.config.max_pending_actions
        if gate.held and len(gate) >= limit:
            raise TooManyHeldActions(
                f"{len(gate)} actions wait already while "
                f"{printable(self.game_title or 'the game')!r} is held "
                f"(max_pending_actions {limit}); this one was not kept"
            )

    @contextlib.asynccontextmanager
    async def _in_turn(self, reserved: Turn | None = None) -> AsyncIterator[None]:
        """Send an action now, or, while the game is held, in its turn.

        ``reserved``: the place :meth:`inject_soon` took in line already.
        """
        gate = self._gate
        if gate is None:
            yield
            return
        if reserved is None:
            self._check_room(gate)
        try:
            async with gate.turn(reserved):
                if self._closing:
                    raise _HeldActionDropped(
                        "client is not serving (its connection is ending)"
                    )
                yield
        finally:
            self._release_gate(gate)

    def _release_gate(self, gate: HeldTurns | None) -> None:
        if gate is not None and gate.idle and self._gate is gate:
            self._gate = None

    def bind_nursery(self, nursery: trio.Nursery | None) -> None:
        """Give the client the nursery its timer and forces run in.

        The connection's result timer starts there with the first action
        sent (an idle game costs no task).
        """
        self._nursery = nursery
        self._timer_running = False

    @property
    def serving(self) -> bool:
        """Whether the connection is served and not ending.

        Only then can actions be sent in the background
        (:meth:`start_action`); a client that is closing stays briefly
        known to its server while its close handshake finishes.
        """
        return self._nursery is not None and not self._closing

    def _spawn(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("client is not serving (no nursery bound)")
        return self._nursery

    # --- diagnostics -------------------------------------------------------

    def report(self, diagnostic: Diagnostic) -> None:
        """Store, show and forward a diagnostic; never raises.

        Every diagnostic is stored and passed to :meth:`on_diagnostic`;
        showing it (:meth:`show_diagnostic`: the log, the console) is rate
        limited per game and id by :meth:`log_limiter`, with a summary line
        (:meth:`show_summary`) for what was held back.
        """
        if diagnostic.game is None and self.game_title is not None:
            diagnostic = dataclasses.replace(diagnostic, game=self.game_title)
        self.diagnostics.append(diagnostic)
        try:
            self._show_limited(diagnostic)
        except Exception:
            LOGGER.exception("showing a diagnostic failed")
        try:
            self.on_diagnostic(diagnostic)
        except Exception:
            LOGGER.exception("on_diagnostic hook failed")

    def log_limiter(self) -> LogLimiter:
        """The rate limit of shown diagnostics (default: one per connection).

        A client bound to a server shares the server's, so a game opening
        many connections is limited as one.
        """
        if self._limiter is None:
            self._limiter = LogLimiter(self.config.log_burst, self.config.log_window)
        return self._limiter

    def memory_budget(self) -> MemoryBudget:
        """What this game may make the server keep (default: per connection).

        A client bound to a server uses the server's, which also bounds all
        games together.
        """
        if self._budget is None:
            self._budget = MemoryBudget(
                self.config.memory_budget, self.config.max_game_memory
            )
        return self._budget

    def show_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Show a diagnostic that passed the rate limit (default: log it)."""
        LOGGER.log(LOG_LEVELS[diagnostic.severity], "%s", diagnostic)

    def show_summary(self, summary: Summary) -> None:
        """Say how many diagnostics the rate limit held back (default: log)."""
        LOGGER.warning("%s", summary_text(summary))

    def _show_limited(self, diagnostic: Diagnostic) -> None:
        limiter = self.log_limiter()
        key = (diagnostic.game, diagnostic.id)
        shown, due = limiter.allow_diagnostic(key, current_time())
        for summary in due:
            self.show_summary(summary)
        if shown:
            self.show_diagnostic(diagnostic)
        # A summary that all games had no line left for is held there.
        if not limiter.flushing and (not shown or limiter.holding(ALL_GAMES)):
            self.show_summaries_later(limiter)

    def show_summaries_later(self, limiter: LogLimiter) -> None:
        """Have what ``limiter`` holds back shown once its window is over.

        Called when a line is held back and no task flushes ``limiter`` yet,
        so the summary comes even if the games go quiet. Default: a task in
        this connection's nursery (if this connection ends first, the next
        line held back starts another; unserved, the next line shows it).
        A client bound to a server lets the server's upkeep do it.
        """
        if self._nursery is not None:
            self._nursery.start_soon(show_when_due, limiter, self.show_summary)
            # Only now: if start_soon raised, no task would ever clear it.
            limiter.flushing = True

    def flush_summaries(self) -> None:
        """Show what the rate limit holds back for this game (it left)."""
        game = self.game_title

        def mine(key: Key) -> bool:
            # Events of no one game (connections) have None there.
            return game is not None and key[0] == game

        limiter = self.log_limiter()
        try:
            for summary in limiter.flush(current_time(), final=mine):
                self.show_summary(summary)
            # Those all games had no line left for are held there.
            if not limiter.flushing and limiter.holding(ALL_GAMES):
                self.show_summaries_later(limiter)
        except Exception:
            LOGGER.exception("showing a summary failed")

    def _diag(self, id_: str, **params: Any) -> None:
        self.report(diagnose(id_, game=self.game_title, **params))

    # --- session rules ---------------------------------------------------

    def accept_message(self, message: GameMessage, frame: str) -> bool:
        """Enforce the session rules before dispatch.

        A changed game name is an error and the frame is dropped; anything
        before ``startup`` is reported once and still handled. A client that
        is not served (no timer task) times out what is due here.
        """
        if self._nursery is None and self._pending:
            self._expire(trio.current_time())
        game = self.game_title
        if game is None:
            if not self.name_game(message.game):
                return False
        elif message.game != game:
            self.report(
                diagnose(
                    "protocol.game-renamed",
                    game=game,
                    frame=frame,
                    old=game,
                    new=message.game,
                )
            )
            return False
        if (
            not self._started
            and not isinstance(message, Startup)
            and not self._warned_before_startup
        ):
            self._warned_before_startup = True
            self.report(
                diagnose(
                    "protocol.before-startup",
                    game=self.game_title,
                    frame=frame,
                    command=message.command,
                )
            )
        return True

    def name_game(self, game_title: str) -> bool:
        """Record the game's name from its first frame; admit it (or not)."""
        self.game_title = game_title
        return self.title_learned(game_title)

    def check_game_title(self, game_title: str) -> None:
        """Warn (:meth:`log_warning`) if ``game_title`` is not this game's.

        Frames read from the connection are checked before dispatch
        (:meth:`accept_message`: a renamed game's frame is dropped with a
        diagnostic), so this only speaks when a handler is called directly
        with another name, in upstream's words.
        """
        if self.game_title == game_title:
            return
        if self.game_title is None:
            self.log_warning(
                "A non-setup action fired before setup action, game title not set."
            )
        self.log_warning(
            f"Attempted to change game title from {self.game_title!r} to "
            f"{game_title!r}, not allowed"
        )

    async def handle_startup(self, game_title: str) -> None:
        """Clear the game's actions (cancelling a force) and acknowledge."""
        if self.game_title is None:
            self.game_title = game_title
        self.check_game_title(game_title)
        if self._started:
            self._diag("protocol.repeated-startup")
        self._started = True
        self.clear_registered_actions()
        self._cancel_force()
        self._queued.clear()
        await self.send_setup_acknowledgement_command(
            self.get_websocket_session_id(),
            self.get_character_id(),
            self.get_display_name(),
        )

    # --- context -----------------------------------------------------------

    async def handle_context(self, game_title: str, message: str, silent: bool) -> None:
        """Deliver context, or hold it while a result is pending."""
        self.check_game_title(game_title)
        self._check_spam()
        if not message.strip():
            self._diag("context.empty")
        if self._pending:
            self._diag("context.held")
            self._hold(message, silent)
            return
        self.add_context(message, not silent)

    def _check_spam(self) -> None:
        now = trio.current_time()
        window = self.config.context_spam_window
        times = self._context_times
        times.append(now)
        while times and times[0] <= now - window:
            times.popleft()
        if (
            len(times) > self.config.context_spam_count
            and now - self._spam_reported_at >= window
        ):
            self._spam_reported_at = now
            self._diag("behaviour.context-spam", count=len(times), window=window)

    def _hold(self, message: str, silent: bool) -> None:
        """Keep ``message`` for later, within the count, size and memory limits."""
        budget = self.memory_budget()
        size = sys.getsizeof(message)
        if budget.refusal(self, size - self._held_bytes()) is not None:
            # Even with every older message dropped it would not fit.
            why = budget.refusal(self, size)
            self._diag("context.dropped", limit=why, which="this message")
            return
        while (why := budget.reserve(self, size)) is not None:
            self._drop_oldest_held()
            self._diag("context.dropped", limit=why, which=_OLDEST)
        self._held.append((message, silent))
        self._held_chars += len(message)
        config = self.config
        while len(self._held) > 1 and (
            len(self._held) > config.max_held_context
            or self._held_chars > config.max_held_context_chars
        ):
            self._drop_oldest_held()
            limit = (
                f"{config.max_held_context} messages"
                if len(self._held) >= config.max_held_context
                else f"{config.max_held_context_chars} characters"
            )
            self._diag("context.dropped", limit=limit, which=_OLDEST)

    def _drop_oldest_held(self) -> tuple[str, bool]:
        held = self._held.popleft()
        self._held_chars -= len(held[0])
        self.memory_budget().release(self, sys.getsizeof(held[0]))
        return held

    def _held_bytes(self) -> int:
        return sum(sys.getsizeof(message) for message, _ in self._held)

    def _flush_held(self) -> None:
        while self._held and not self._pending:
            message, silent = self._drop_oldest_held()
            self.add_context(message, not silent)

    # --- registry ------------------------------------------------------------

    async def handle_actions_register(
        self, game_title: str, actions: list[Action]
    ) -> None:
        """Register each action with :meth:`register_action`."""
        self.check_game_title(game_title)
        for action in actions:
            self.register_action(action)

    async def handle_actions_unregister(
        self, game_title: str, action_names: list[str]
    ) -> None:
        """Unregister each name with :meth:`unregister_action`."""
        self.check_game_title(game_title)
        for name in action_names:
            self.unregister_action(name)
        self.forget_actions(action_names)

    # --- actions and results ----------------------------------------------

    def get_next_id(self) -> str:
        """A fresh action id: a UUID, unique on this connection."""
        return f"{self._id_prefix}{next(self._ids):012x}"

    async def send_action_command(self, name: str, data: str | None = None) -> str:
        """Send ``action`` and return its id; its outcome reaches the hooks.

        The id is tracked before the frame leaves, so the game's result is
        matched (:meth:`submit_action` waits for it), and times out after
        ``config.result_timeout``. Raises :class:`FrameTooLarge` (nothing
        sent) and :class:`RuntimeError` if the connection is ending.
        """
        async with self._in_turn():
            pending = self._register_pending(name, None, force=None)
            try:
                await self._send_action(pending.id, name, data)
            except FrameTooLarge:
                self._pending.pop(pending.id, None)  # never sent: nothing to settle
                raise
        return pending.id

    async def submit_action(
        self, name: str, data: str | None = None
    ) -> tuple[bool, str | None]:
        """Send ``action`` and wait for its result: ``(success, message)``.

        A timeout (``config.result_timeout``) or the connection ending
        counts as ``(False, None)``; :meth:`execute_action` tells them apart.
        """
        if self._tracks_sends():
            outcome = await self.execute_action(name, data)
        else:
            # A replaced send_action_command: track the id it returns (a
            # result handled before it returned would be missed, as upstream).
            id_ = await self.send_action_command(name, data)
            pending = self._pending.get(id_)
            if pending is None:
                pending = self._register_pending(name, None, force=None, id_=id_)
            outcome = await pending.wait(self._time_out)
        return outcome.success, outcome.message

    def _tracks_sends(self) -> bool:
        """Whether ``send_action_command`` is this class's own (not replaced)."""
        return (
            type(self).send_action_command
            is AbstractHandlerNeuroServerClient.send_action_command
            and "send_action_command" not in self.__dict__
        )

    async def execute_action(
        self, name: str, data: str | None, *, result_timeout: float | None = None
    ) -> ActionOutcome:
        """Send ``action`` and wait for its outcome.

        Returns on the game's result, after ``result_timeout`` (default: the
        configured result timeout; the action then counts as failed and a late
        result is discarded), or when the connection ends (an action held
        by :meth:`hold_forces` until then was never sent: ``disconnected``).
        Cancelling the caller does not forget the action: the connection's
        timer still settles it. Raises :class:`FrameTooLarge` and
        :class:`TooManyHeldActions` (nothing sent).
        """
        try:
            async with self._in_turn():
                pending = self._register_pending(name, result_timeout, force=None)
                try:
                    await self._send_action(pending.id, name, data)
                except FrameTooLarge:
                    self._pending.pop(pending.id, None)  # never sent: no outcome
                    raise
        except _HeldActionDropped:
            # Held (hold_forces) until the connection ended: never sent.
            outcome = ActionOutcome(self.get_next_id(), name, _DISCONNECTED)
            try:
                self.on_action_outcome(outcome)
            except Exception:
                LOGGER.exception("on_action_outcome hook failed")
            return outcome
        return await pending.wait(self._time_out)

    def start_action(self, name: str, data: str | None) -> None:
        """Send ``action`` without waiting: its outcome reaches the hooks.

        The action lives in the connection's nursery and ends with it. Raises
        :class:`RuntimeError` if the connection is not being served. A frame
        too large to send is logged, not sent.
        """
        if self._closing:
            raise RuntimeError("client is not serving (its connection is ending)")
        self._spawn().start_soon(self._execute_in_background, name, data)

    def inject_soon(self, message: NeuroMessage) -> None:
        """:meth:`inject` ``message`` in the connection's nursery, not waiting.

        For a held game an ``action`` takes its place in line at once (sent
        once released, see :meth:`hold_forces`), so what would refuse it is
        raised here: :class:`ValueError` for an id already pending or in
        line, :class:`TooManyHeldActions` for a full line. Raises
        :class:`RuntimeError` if the connection is not being served. What
        happens later (the connection ending, a frame too large) is logged
        at debug level.
        """
        if self._closing:
            raise RuntimeError("client is not serving (its connection is ending)")
        gate = self._gate
        reserved = None
        if isinstance(message, ActionMessage) and gate is not None:
            if message.id in self._pending or gate.has(message.id):
                raise ValueError(f"action id {message.id!r} is already pending")
            self._check_room(gate)
            reserved = gate.reserve(message.id)
        try:
            self._spawn().start_soon(self._inject_in_background, message, reserved)
        except BaseException:
            if reserved is not None and gate is not None:
                gate.give_up(reserved)
            raise

    async def _inject_in_background(
        self, message: NeuroMessage, reserved: Turn | None
    ) -> None:
        gate = self._gate
        try:
            if reserved is not None and isinstance(message, ActionMessage):
                await self._inject_action(message, reserved)
            else:
                await self.inject(message)
        except (ValueError, FrameTooLarge, RuntimeError, ConnectionClosed) as exc:
            LOGGER.debug("message %s not sent: %s", message.command, exc)
        finally:
            if reserved is not None and gate is not None:
                gate.give_up(reserved)  # taken or not, it leaves the line
                self._release_gate(gate)

    async def _execute_in_background(self, name: str, data: str | None) -> None:
        try:
            await self.execute_action(name, data)
        except FrameTooLarge as exc:
            LOGGER.warning("action %s not sent: %s", printable(repr(name)), exc)
        except (TooManyHeldActions, ConnectionClosed) as exc:
            LOGGER.debug("action %s not sent: %s", printable(repr(name)), exc)

    async def inject(self, message: NeuroMessage) -> None:
        """Send a Neuro message as is (what Randy's ``POST /`` does).

        An injected ``action`` is tracked like any other, under its own id,
        so its result is matched instead of reported as unknown. Raises
        :class:`ValueError` if that id is already pending.
        """
        if not isinstance(message, ActionMessage):
            await self.write_to_websocket(message.to_frame())
            return
        await self._inject_action(message, None)

    async def _inject_action(
        self, message: ActionMessage, reserved: Turn | None
    ) -> None:
        async with self._in_turn(reserved):
            if message.id in self._pending:
                raise ValueError(f"action id {message.id!r} is already pending")
            self._register_pending(message.name, None, force=None, id_=message.id)
            try:
                await self.write_to_websocket(message.to_frame())
            except FrameTooLarge:
                self._pending.pop(message.id, None)
                raise

    def _register_pending(
        self,
        name: str,
        timeout: float | None,
        *,
        force: _Force | None,
        id_: str | None = None,
    ) -> _Pending:
        if self._closing:
            raise RuntimeError("client is not serving (its connection is ending)")
        nursery = self._nursery
        if nursery is None:
            # Not served (a client driven by hand): no timer task, so what
            # is due times out now, and waiters keep their own deadline.
            self._expire(trio.current_time())
        elif not self._timer_running:
            nursery.start_soon(self._keep_deadlines)
            self._timer_running = True
        if len(self._pending) >= self.config.max_pending_actions:
            # A game that does not answer (or is flooded with forces by
            # itself) must not make this grow: the oldest is given up.
            self._time_out(next(iter(self._pending.values())), given_up=True)
        timeout = self.config.result_timeout if timeout is None else timeout
        pending = _Pending(id_ or self.get_next_id(), name, timeout, force)
        self._pending[pending.id] = pending
        if pending.deadline < self._timer_target:
            self._timer_target = pending.deadline
            if self._timer_wake is not None:
                self._timer_wake.set()
        self.on_action_sent(pending.action)
        return pending

    async def _keep_deadlines(self) -> None:
        """Time out pending actions; one task per connection, not per action.

        With equal timeouts every new deadline is later than the target it
        sleeps to, so it wakes about once per timeout, not per action.
        """
        while True:
            wake = self._timer_wake = trio.Event()
            with trio.move_on_at(self._timer_target):
                await wake.wait()
            now = trio.current_time()
            self._expire(now)
            self._timer_target = min(
                (p.deadline for p in self._pending.values()),
                default=now + self.config.result_timeout,
            )

    def _expire(self, now: float) -> None:
        """Time out every pending action whose deadline is past."""
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            self._time_out(pending)

    def _time_out(self, pending: _Pending, *, given_up: bool = False) -> None:
        if self._pending.pop(pending.id, None) is None:
            return
        if self._timed_out is None:
            self._timed_out = _Recent()
        # A result coming after all is reported as late (a given-up one's
        # timeout is stored negative, to say so).
        self._timed_out.add(
            pending.id, -pending.timeout if given_up else pending.timeout
        )
        if given_up:
            self._diag(
                "result.given-up",
                count=len(self._pending) + 1,
                action=pending.action,
                id=pending.id,
            )
        else:
            self._diag(
                "result.timeout",
                action=pending.action,
                id=pending.id,
                timeout=pending.timeout,
            )
        pending.finish(OutcomeStatus.TIMEOUT)
        self._settled(pending)
        if pending.force is not None:
            self._end_force(pending.force)  # a timeout is not retried

    def _settled(self, pending: _Pending) -> None:
        assert pending.outcome is not None
        try:
            self.on_action_outcome(pending.outcome)
        except Exception:
            LOGGER.exception("on_action_outcome hook failed")
        self._flush_held()

    async def handle_action_result(
        self, game_title: str, id_: str, success: bool, message: str | None
    ) -> None:
        """Settle the pending action, or report why the result is discarded."""
        self.check_game_title(game_title)
        pending = self._pending.pop(id_, None)
        if pending is None:
            timed_out = self._timed_out
            timeout = None if timed_out is None else timed_out.get(id_)
            if timeout is not None and timeout < 0:
                self._diag("result.after-given-up", id=id_)
            elif timeout is not None:
                self._diag("result.late", id=id_, timeout=timeout)
            elif id_ in self._answered:
                self._diag("result.stale-id", id=id_)
            else:
                self._diag("result.unknown-id", id=id_)
                if self._unknown_warned < _UNKNOWN_WARNINGS:
                    # Upstream's words, a few per connection (the diagnostic
                    # above is rate limited for the rest).
                    self._unknown_warned += 1
                    shown = None if message is None else message[:_SHOWN_CHARS]
                    self.log_warning(
                        f"Got action result for unknown action id "
                        f"{id_[:_SHOWN_CHARS]!r} ({success = } message = {shown!r})"
                    )
            return
        self._answered.add(id_, pending.timeout)
        if success and not message:
            self._diag("result.success-without-message", action=pending.action)
        elif not success and not message:
            self._diag("result.failure-without-message", action=pending.action)
        # An action unregistered before its result is what the official SDK
        # recommends (unregister, then answer): nothing to report.
        status = _SUCCESS if success else _FAILURE
        pending.finish(status, message)
        self._settled(pending)
        if pending.force is not None and pending.force is self._force:
            await self._continue_force(pending.force, status, pending.action)

    def end_session(self) -> None:
        """The connection is ending: end the force, start nothing new.

        Actions held for the game (:meth:`hold_forces`) are refused.
        """
        self._closing = True
        self._queued.clear()
        self._cancel_force()
        if self._gate is not None:
            self._gate.abandon()

    def abandon_pending(self) -> None:
        """Settle every pending action as disconnected (the connection ended).

        Hooks see each outcome, and context held for those results is
        delivered: context survives disconnects.
        """
        self.end_session()
        abandoned = list(self._pending.values())
        self._pending.clear()
        for pending in abandoned:
            pending.finish(OutcomeStatus.DISCONNECTED)
            self._settled(pending)
        self._flush_held()
        self.flush_summaries()

    # --- forces --------------------------------------------------------------

    async def handle_actions_force(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: list[str],
        priority: ForcePriority = ForcePriority.LOW,
    ) -> None:
        """Check a force and run it (or queue it, by policy)."""
        self.check_game_title(game_title)
        if not action_names:
            self._diag("force.empty")
            return
        if self._checks_names:
            found, unknown = self.lookup_actions(action_names)
            if not found:
                if not self.registered_names():
                    self._diag("force.before-registration")
                else:
                    self._diag("force.none-registered", names=", ".join(unknown))
                return
            if unknown:
                self._diag("force.some-unregistered", names=", ".join(unknown))
            names = ActionNames.of_actions(found)
        else:
            names = ActionNames(action_names)
        message = build_force(
            game_title, state, query, ephemeral_context, priority, tuple(action_names)
        )
        if self._pending:
            waiting = next((p for p in self._pending.values() if p.force is None), None)
            if waiting is not None:
                self._diag("force.while-result-pending", action=waiting.action)
        if self._force is None and self._queued and self._nursery is None:
            # Not served: no task could start the queued forces when the
            # last one ended, so they start now, in order, before this one.
            self._queue(message)
            begun = self._next_queued(here=True)
            if begun is not None:
                await self._choose(begun)
            return
        if self._force is not None:
            if self.config.force_policy is ForcePolicy.QUEUE:
                self._diag("force.while-active", outcome="queued until it ends")
                self._queue(message)
                return
            self._diag("force.while-active", outcome="the old force was replaced")
            self._cancel_force()
        force = self._begin_force(message, names)
        await self._choose(force)

    async def perform_actions_force(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        action_names: list[str],
        priority: ForcePriority = ForcePriority.LOW,
    ) -> None:
        """Run a force to its end from your own code, waiting for it.

        Asks :meth:`choose_force_action`, sends the answer with
        :meth:`submit_action`, and on a failure asks again, with the same
        retry rules as a game's force (``config.max_retries``; actions no
        longer registered are not offered again). It is not the game's
        active force: the state machine runs those. A subclass that
        overrides this method gets every force of the game here instead.
        """
        names = ActionNames(action_names)
        attempts = 0
        while True:
            answer = _check_answer(
                await self._ask(state, query, ephemeral_context, names, priority)
            )
            success, _message = await self.submit_action(*answer)
            if success:
                return
            attempts += 1
            remaining = self._retry_names(names, attempts, answer[0])
            if remaining is None:
                return
            names = remaining

    async def _ask(
        self,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        names: ActionNames,
        priority: ForcePriority,
    ) -> object:
        """:meth:`choose_force_action`, given ``priority`` as the class takes it."""
        style = self._choose_style
        if style is POSITIONAL:
            return await self.choose_force_action(
                state, query, ephemeral_context, names, priority
            )
        choose: Any = self.choose_force_action  # another form (see _signatures)
        if style is None:
            return await choose(state, query, ephemeral_context, names)
        return await choose(state, query, ephemeral_context, names, priority=priority)

    def _retry_names(
        self, names: ActionNames, attempts: int, action: str
    ) -> ActionNames | None:
        """After a failure: the names to offer again, or None when it ends.

        The retry rules of every force: at most ``config.max_retries``,
        only actions still registered (when this client keeps a registry).
        """
        limit = self.config.max_retries
        if attempts > limit:
            self._diag("force.retries-exhausted", attempts=attempts)
            return None
        if self._checks_names:
            remaining = ActionNames.of_actions(
                {n: a for n in names if (a := self.get_action(n)) is not None}
            )
            if not remaining:
                # Unregistered before its result: nothing left to retry.
                self._diag("force.cancelled-by-unregister")
                return None
        else:
            remaining = names
        self._diag("force.retry", action=action, attempt=attempts, limit=limit)
        return remaining

    def _queue(self, message: ForceActions) -> None:
        if len(self._queued) == self._queued.maxlen:
            self._diag("force.queue-full", limit=self._queued.maxlen)
        self._queued.append(message)

    def _begin_force(self, message: ForceActions, names: ActionNames) -> _Force:
        force = _Force(message, names)
        self._force = force
        self.on_force_started(message)
        return force

    def _cancel_force(self) -> None:
        force, self._force = self._force, None
        if force is not None and force.scope is not None:
            force.scope.cancel()

    def _end_force(self, force: _Force) -> None:
        """The force is over (answered, failed for good, or gone)."""
        if self._force is force:
            self._cancel_force()
            self._next_queued()

    def _next_queued(self, *, here: bool = False) -> _Force | None:
        """Begin the oldest queued force that still has actions; return it.

        Its choice starts in the connection's nursery, or, with ``here``,
        is left to the caller. Not served and not ``here``, nothing starts:
        the next force frame starts the queued ones (handle_actions_force).
        """
        if self._nursery is None and not here:
            return None
        while self._queued and not self._closing:
            message = self._queued.popleft()
            if self._checks_names:
                names = ActionNames.of_actions(
                    self.lookup_actions(message.action_names)[0]
                )
            else:
                names = ActionNames(message.action_names)
            if names:
                force = self._begin_force(message, names)
                if not here:
                    self._spawn().start_soon(self._choose, force)
                return force
            self._diag("force.queued-dropped", names=", ".join(message.action_names))
        return None

    async def _choose(
        self, force: _Force, names: ActionNames | None = None, *, in_turn: bool = False
    ) -> None:
        """Get the force's next action from the engine and send it.

        ``names`` are those offered (default: the force's own; a retry
        offers those still registered). An engine that answers at once is
        served right here, in the reader; otherwise its choice runs in the
        background (:meth:`submit_call_async_soon`), cancelled by the
        force's end.
        """
        message = force.message
        if names is None:
            names = force.names
        gate = self._gate
        if gate is not None and not in_turn:
            # Held (or its held actions are still going out): this force's
            # turn comes after them.
            force.held = names
            if not gate.held:
                self._resume_soon()
            return
        if self._own_perform:
            await self._background(force, self._perform_own)
            return
        try:
            answer = self.choose_force_action_now(
                message.state,
                message.query,
                message.ephemeral_context,
                names,
                message.priority,
            )
        except UnanswerableForce as exc:
            await self._unanswerable(force, exc)
            return
        except Exception as exc:
            self._engine_failed(force, exc)
            return
        if answer is None:
            await self._background(
                force, functools.partial(self._choose_later, names=names)
            )
        else:
            await self._act(force, answer, in_turn=in_turn)

    async def _background(
        self,
        force: _Force,
        work: Callable[[_Force], Awaitable[None]],
    ) -> None:
        """Run ``work(force)`` through :meth:`submit_call_async_soon`.

        In a task, the work runs in a fresh cancel scope (retries choose
        again) made before it starts, so the force's end cancels it; a
        force that ended before the work starts skips it. Run in place (a
        subclass's ``submit_call_async_soon`` awaiting it in the reader), it
        gets no cancel scope: the reader's sends must not be cut halfway,
        and an answer for a force that ended is dropped anyway. Nothing
        escapes the work into the nursery that runs it (a hand-made
        client's may be the server's): a failure ends the force.
        """
        scope = force.scope = trio.CancelScope()
        caller = trio.lowlevel.current_task()

        async def guarded() -> None:
            if self._force is not force:
                return  # ended before it started
            try:
                if trio.lowlevel.current_task() is caller:
                    # Run in place (a subclass's submit_call_async_soon
                    # awaits it): no cancel scope around the connection's
                    # own sends; a force that ends meanwhile is ignored
                    # (its answer is dropped by _act).
                    await work(force)
                else:
                    with scope:
                        await work(force)
            except Exception as exc:
                self._send_failed(force, exc)

        try:
            await self.submit_call_async_soon(guarded)
        except RuntimeError as exc:  # nothing runs background work
            self._engine_failed(force, exc)

    def _send_failed(self, force: _Force, exc: Exception) -> None:
        # The connection closed under the send, or a subclass's code broke.
        LOGGER.debug("force of %s ended by %r", self.game_title, exc, exc_info=exc)
        if self._force is force:
            self._end_force(force)

    async def _choose_later(self, force: _Force, *, names: ActionNames) -> None:
        message = force.message
        try:
            answer = await self._ask(
                message.state,
                message.query,
                message.ephemeral_context,
                names,
                message.priority,
            )
        except UnanswerableForce as exc:
            await self._unanswerable(force, exc)
            return
        except Exception as exc:
            self._engine_failed(force, exc)
            return
        await self._act(force, answer)

    async def _perform_own(self, force: _Force) -> None:
        """A subclass's :meth:`perform_actions_force` as the force's choice."""
        message = force.message
        try:
            await self.perform_actions_force(
                message.state,
                message.query,
                message.ephemeral_context,
                list(force.names),
                message.priority,
            )
        except UnanswerableForce as exc:
            if self._force is force:
                self._diag(
                    "force.unanswerable",
                    reason=exc.reason,
                    outcome="the force ended (perform_actions_force gave up)",
                )
        except Exception as exc:
            self._engine_failed(force, exc)
            return
        self._end_force(force)

    async def _act(
        self, force: _Force, answer: object, *, in_turn: bool = False
    ) -> None:
        if self._force is not force:
            return  # replaced or cancelled while the engine thought
        try:
            name, data = _check_answer(answer)
        except TypeError as exc:
            self._engine_failed(force, exc)
            return
        gate = self._gate
        if gate is not None and not in_turn:
            # The game was held while the engine thought: keep the answer.
            force.answer = (name, data)
            if not gate.held:
                self._resume_soon()
            return
        pending = self._register_pending(name, None, force=force)
        try:
            await self._send_action(pending.id, name, data)
        except FrameTooLarge as exc:
            self._pending.pop(pending.id, None)
            self._diag(
                "force.unanswerable",
                reason=f"its answer {name!r} was too large: {exc}",
                outcome="the force was dropped (the game gets no action)",
            )
            self._end_force(force)

    async def _unanswerable(self, force: _Force, exc: UnanswerableForce) -> None:
        if self._force is not force:
            return  # replaced or cancelled meanwhile: nothing to report
        fallback = exc.fallback
        if fallback is None:
            outcome = "the force was dropped (the game gets no action)"
        else:
            name, data = fallback
            shown = "no data" if data is None else f"data {data[:100]}"
            outcome = f"sent {name!r} with {shown} instead"
        self._diag("force.unanswerable", reason=exc.reason, outcome=outcome)
        if fallback is None:
            self._end_force(force)
        else:
            await self._act(force, fallback)

    def _engine_failed(self, force: _Force, exc: Exception) -> None:
        if self._force is not force:
            return  # replaced or cancelled while the engine thought
        # The diagnostic says what and where; the traceback is for debugging.
        LOGGER.debug(
            "engine failed to answer a force of %s", self.game_title, exc_info=exc
        )
        self._diag("force.engine-error", detail=_describe_exception(exc))
        self._end_force(force)

    async def _continue_force(
        self, force: _Force, status: OutcomeStatus, action: str
    ) -> None:
        """After a result: the force ends, or is retried after a failure."""
        if status is not _FAILURE:
            self._end_force(force)
            return
        force.attempts += 1
        remaining = self._retry_names(force.names, force.attempts, action)
        if remaining is None:
            self._end_force(force)
            return
        await self._choose(force, remaining)

    def forget_actions(self, names: Iterable[str]) -> None:
        """Cancel the active force if none of its actions remain registered.

        Unless one of its actions was sent and waits for its result: games
        unregister an action before answering it (the official SDK says
        to), so the force goes on to that result. A success ends it; a
        failure would retry it, and with nothing left to retry the force
        ends then (``force.cancelled-by-unregister``).
        """
        force = self._force
        if force is None or not self._checks_names or not force.names & set(names):
            return
        if any(pending.force is force for pending in self._pending.values()):
            return
        if not any(self.get_action(n) for n in force.names):
            self._diag("force.cancelled-by-unregister")
            self._end_force(force)
