"""Public hooks into a game's life: admission, force gates, connection events.

What a capability (the client-status one, say) needs to refuse a game when
its ``startup`` arrives, to hold a game's forces and actions while it is
paused, and to learn how each connection began and ended, without touching
a connection's internals. The server owns one of each registry (see
:class:`~neuro_api.server.AbstractTrioNeuroServer`).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar, Final, Generic, TypeVar

if TYPE_CHECKING:
    from neuro_api.server._handler import ActionOutcome
    from neuro_api.server._trio_client import TrioNeuroServerClient

__all__ = [
    "AdmissionCheck",
    "ConnectionEvent",
    "ConnectionEventKind",
    "ConnectionEvents",
    "ContextEvents",
    "ContextListener",
    "ContextMessage",
    "ForceGate",
    "Refusal",
]

LOGGER: Final = logging.getLogger("neuro_api.server")
_MAX_REASON_BYTES: Final = 123
"""A close frame's reason fits in 125 bytes with its 2-byte code."""
_RESERVED_CODES: Final = frozenset({1004, 1005, 1006, 1015})
"""Close codes that may never be sent in a close frame (RFC 6455 7.4.1)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a game is not admitted: the close code and reason it gets.

    ``code`` defaults to 1008 (policy violation); 1000-1003, 1007-1014 and
    3000-4999 (application codes) may be used. ``reason`` is at most 123
    bytes of UTF-8 (what a close frame holds). Raises :class:`ValueError`
    otherwise.
    """

    reason: str
    code: int = 1008

    def __post_init__(self) -> None:
        if not (1000 <= self.code <= 1014 or 3000 <= self.code <= 4999) or (
            self.code in _RESERVED_CODES
        ):
            raise ValueError(f"close code {self.code} cannot be sent to a game")
        if len(self.reason.encode("utf-8")) > _MAX_REASON_BYTES:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")


AdmissionCheck = Callable[["TrioNeuroServerClient", str], Refusal | None]
"""Called with the connection and the title of its first frame (normally its
``startup``); returns a :class:`Refusal` to close it, or None to admit it.
It runs in the game's reader: keep it quick and do not block (look things
up in memory)."""


class ConnectionEventKind(enum.StrEnum):
    """What happened to a game connection."""

    CONNECTED = "connected"
    """The WebSocket handshake was accepted (no title yet)."""
    STARTED = "started"
    """Its first ``startup`` was admitted and acknowledged."""
    DISCONNECTED = "disconnected"
    """The connection ended and was cleaned up."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One event of a game connection's life (see :class:`ConnectionEvents`)."""

    kind: ConnectionEventKind
    session_id: str
    game_title: str | None
    """The title of its ``startup`` (None before one came)."""
    close_code: int | None = None
    """How it closed (disconnected only): the code of the first close frame
    either side sent, or 1006 when it was lost without one."""
    close_reason: str | None = None
    """The reason in that close frame (None without one)."""
    clean: bool | None = None
    """Disconnected only: True after a close handshake (by either side),
    False for a network error (reset, end of stream: close code 1006)."""

    @property
    def network_error(self) -> bool:
        """Whether it disconnected without a close handshake."""
        return self.kind is ConnectionEventKind.DISCONNECTED and self.clean is False


ConnectionListener = Callable[[ConnectionEvent], object]


@dataclasses.dataclass(frozen=True, slots=True)
class ContextMessage:
    """A context message a game sent (see :class:`ContextEvents`)."""

    session_id: str
    game_title: str
    message: str
    silent: bool
    """True for silent context (Neuro should not answer it)."""
    result_of: ActionOutcome | None = None
    """The outcome this message reports (``Result of action …``), or None
    for context the game sent itself. Who performed the action knows its
    result already (a phone call's tool output, say) and may skip it."""


ContextListener = Callable[[ContextMessage], object]
_E = TypeVar("_E")


@dataclasses.dataclass(eq=False, slots=True)
class _Listener(Generic[_E]):
    call: Callable[[_E], object]
    failed: bool = False


class _Listeners(Generic[_E]):
    """Listeners called in order with each event; none can stop the others.

    A listener is called synchronously, from the connection's own task, so
    it sees events in the order they happened; it must not block. One that
    raises is logged (its first failure as an error, later ones at debug
    level) and the others are still called.
    """

    what: ClassVar[str] = "event"

    def __init__(self) -> None:
        self._listeners: list[_Listener[_E]] = []

    def subscribe(self, listener: Callable[[_E], object]) -> Callable[[], None]:
        """Call ``listener`` with every event; returns what unsubscribes it."""
        entry = _Listener(listener)
        self._listeners.append(entry)

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)

        return unsubscribe

    def __len__(self) -> int:
        return len(self._listeners)

    def publish(self, event: _E) -> None:
        """Call every listener with ``event``; none can stop the others."""
        for entry in tuple(self._listeners):
            try:
                entry.call(event)
            except Exception:
                LOGGER.log(
                    logging.DEBUG if entry.failed else logging.ERROR,
                    "%s listener %r failed%s",
                    self.what,
                    entry.call,
                    " again" if entry.failed else "",
                    exc_info=True,
                )
                entry.failed = True


class ConnectionEvents(_Listeners[ConnectionEvent]):
    """Listeners of every game connection's events, called in order.

    A listener is called synchronously, from the connection's own task, so
    it sees events in the order they happened; it must not block. One that
    raises is logged (its first failure as an error, later ones at debug
    level) and the others are still called.
    """

    what = "connection event"


class ContextEvents(_Listeners[ContextMessage]):
    """Listeners of the context messages games send, called in order.

    Called after the engine took the message (its
    :meth:`~neuro_api.server.AbstractTrioNeuroServer.add_context`), from the
    game's task: a listener must not block (queue the message). Action
    results with a message, which the engine reads as context too, come as
    silent messages ``Result of action 'name': succeeded: ...`` with the
    outcome in :attr:`ContextMessage.result_of`, published before whoever
    awaits that action (``execute_action``) resumes.
    """

    what = "context"


class ForceGate:
    """Holds the forces and actions of the games it names, by title.

    Add it to a server with
    :meth:`~neuro_api.server.AbstractTrioNeuroServer.add_force_gate`; then
    :meth:`hold` a title and every connected game of that title (and any
    that starts with it later) has its forces and the actions sent to it
    held (:meth:`~neuro_api.server.AbstractHandlerNeuroServerClient.hold_forces`)
    until :meth:`release`. A game is held while any gate holds it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._held: set[str] = set()
        self._listeners: list[Callable[[str], None]] = []
        self._batch_listeners: list[Callable[[frozenset[str]], None]] = []

    def holds(self, game_title: str) -> bool:
        """Whether this gate holds ``game_title``."""
        return game_title in self._held

    @property
    def held(self) -> frozenset[str]:
        """Every title this gate holds."""
        return frozenset(self._held)

    def hold(self, game_title: str) -> None:
        """Hold the forces and actions of every game called ``game_title``."""
        self.set_held(self._held | {game_title})

    def release(self, game_title: str) -> None:
        """Stop holding ``game_title`` (others gates may still hold it)."""
        self.set_held(self._held - {game_title})

    def set_held(self, game_titles: Iterable[str]) -> None:
        """Hold exactly ``game_titles``: one change for many titles.

        The server looks at its games once for the whole change, not once
        per title (a list of thousands of titles loaded at once).
        """
        wanted = set(game_titles)
        changed = frozenset(wanted ^ self._held)
        if not changed:
            return
        self._held = wanted
        for batch_listener in tuple(self._batch_listeners):
            batch_listener(changed)
        for listener in tuple(self._listeners):
            for game_title in changed:
                listener(game_title)

    def watch(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(title)`` for each title changed."""
        self._listeners.append(listener)

    def watch_changes(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Call ``listener(titles)`` once per change (the server does)."""
        self._batch_listeners.append(listener)

    def __repr__(self) -> str:
        return f"<ForceGate {self.name!r} holding {len(self._held)}>"
