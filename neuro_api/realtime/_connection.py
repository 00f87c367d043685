"""One WebSocket to the Realtime API, read by its own task, leased to one user.

A :class:`Link` is the socket: its reader task reads every event the API
sends, keeps the state the pool needs to hand the connection to someone
else later (the session, responses in progress, conversation items, audio
sent), counts errors and rate limits, and passes each event on to whoever
holds the link (a lease, or the pool while it resets it). Events that
arrive while nobody holds it are dropped (and counted). Its keep-alive
task pings every ``ping_interval``; no pong within ``ping_timeout`` makes
the link unhealthy, which ends its current holder's stream of events with
:class:`~neuro_api.realtime.ConnectionLost`.

Each holder gets a :class:`RealtimeConnection` of its own, a handle that
works only while its lease lasts: a task of a former holder that kept its
handle can neither read the next holder's events nor send on its lease,
and giving a handle back twice cannot give back someone else's lease.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import secrets
import types
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from neuro_api._redact import redact
from neuro_api._text import printable
from neuro_api.realtime._errors import ConnectionLost, RealtimeAPIError

__all__ = ["RESET_PREFIX", "Link", "PoolCounters", "RealtimeConnection"]

LOGGER: Final = logging.getLogger("neuro_api.realtime")

Event = dict[str, Any]

RESET_PREFIX: Final = "neuro_api_reset_"
"""Event ids of what the pool sends to reset a connection: the API's late
answers to them (an error about a cancel that came too late) are never
passed to the next lease."""

# Sending these changes what a later user of the connection would find;
# the pool undoes it between leases (see Link.dirty).
_SESSION_EVENTS: Final = frozenset({"session.update"})
_AUDIO_EVENTS: Final = frozenset({"input_audio_buffer.append"})
_ADDED: Final = frozenset({"conversation.item.added", "conversation.item.created"})
"""GA and beta names of an item joining the default conversation."""
_FOR_GOOD: Final = frozenset({"tracing"})
"""Session fields the API lets no one change back ("once tracing is enabled
for a session, the configuration cannot be modified")."""
_GIVEN_IDS: Final = 1024
"""Event ids chosen by holders that are remembered (to know whose they were)."""


class PoolCounters:
    """What every connection of a pool adds to the pool's ``/stats``."""

    __slots__ = (
        "api_errors",
        "dropped_events",
        "last_api_error",
        "malformed_events",
        "rate_limited",
        "rate_limits",
    )

    def __init__(self) -> None:
        self.api_errors = 0
        """``error`` events received."""
        self.last_api_error: dict[str, str | None] | None = None
        self.rate_limited = 0
        """``rate_limits.updated`` events with a limit used up."""
        self.rate_limits: list[dict[str, Any]] = []
        """The last rate limits the API reported."""
        self.dropped_events = 0
        """Events that arrived while nobody held their connection."""
        self.malformed_events = 0
        """Messages that were not a JSON object with a ``type``."""


def _parse(message: str | bytes) -> Event | None:
    try:
        event = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event


def _item_id(event: Event) -> str | None:
    item = event.get("item")
    if isinstance(item, dict):
        value = item.get("id")
        return value if isinstance(value, str) else None
    value = event.get("item_id")
    return value if isinstance(value, str) else None


def _response_id(event: Event) -> str | None:
    response = event.get("response")
    if isinstance(response, dict):
        value = response.get("id")
        return value if isinstance(value, str) else None
    return None


class RealtimeConnection:
    """A leased connection of a :class:`~neuro_api.realtime.RealtimePool`.

    While you hold it (``async with pool.connection_context() as conn``),
    it is yours alone: :meth:`send` events and :meth:`receive` the API's.
    Each lease gets a handle of its own: once the lease ended, this one's
    :meth:`send` and :meth:`receive` raise
    :class:`~neuro_api.realtime.ConnectionLost` (the connection may serve
    someone else by then). Do not read :attr:`websocket` yourself (the
    connection's reader task does; your events come through
    :meth:`receive`); sending on it directly skips what the pool tracks to
    reset the session for the next user.
    """

    __slots__ = ("_link", "_receiver", "for_lease", "number")

    def __init__(
        self,
        link: Link,
        receiver: trio.MemoryReceiveChannel[tuple[Event, int]],
        number: int,
        *,
        for_lease: bool,
    ) -> None:
        self._link = link
        self._receiver = receiver
        self.number = number
        """Which holder of the connection this is (1 for the first)."""
        self.for_lease = for_lease
        """Whether a lease holds it (else the pool, resetting the connection)."""

    def __repr__(self) -> str:
        return f"<RealtimeConnection {self._link.id} holder {self.number}>"

    @property
    def link(self) -> Link:
        """The pool's side of the connection (for the pool)."""
        return self._link

    @property
    def id(self) -> str:
        """The connection's id (the same for every lease of one connection)."""
        return self._link.id

    @property
    def websocket(self) -> WebSocketConnection:
        """The underlying trio-websocket connection (see the class docs)."""
        return self._link.websocket

    @property
    def session(self) -> Mapping[str, Any]:
        """The session as the API last described it (read-only)."""
        return types.MappingProxyType(self._link.session)

    @property
    def healthy(self) -> bool:
        """Whether the connection is open and answers pings."""
        return self._link.healthy

    @property
    def problem(self) -> str | None:
        """Why the connection is unhealthy (None while healthy)."""
        return self._link.problem

    @property
    def current(self) -> bool:
        """Whether this handle's lease still holds the connection."""
        return self._link.holder is self

    @property
    def open_responses(self) -> Mapping[str, None]:
        """Responses created and not done yet (by id; read-only)."""
        return types.MappingProxyType(self._link.open_responses)

    @property
    def items(self) -> Mapping[str, None]:
        """Items of the default conversation (by id; read-only)."""
        return types.MappingProxyType(self._link.items)

    @property
    def dirty(self) -> bool:
        """Whether the next user would find something of the last one.

        Session changes, audio sent, items of the default conversation or
        a response still in progress. Responses made out of band
        (``conversation: "none"``) leave nothing behind.
        """
        return self._link.dirty

    def lost(self, reason: str) -> None:
        """Mark the connection unhealthy (while holding it): it is not reused."""
        if self.current:
            self._link.lost(reason)

    async def send(self, event: Mapping[str, Any]) -> None:
        """Send one client event (a JSON object with a ``type``).

        An event without an ``event_id`` is sent with one, so that the
        API's errors about it reach this holder only. Raises
        :class:`~neuro_api.realtime.ConnectionLost` if the connection ended
        or this lease did, and :class:`TypeError` for an event orjson
        cannot encode.
        """
        if not self.current:
            raise ConnectionLost(self._why())
        await self._link.send(event, self)

    async def receive(self) -> Event:
        """The next event from the API (a dict with a ``type``).

        ``error`` events are returned like any other (see
        :meth:`receive_ok`). Raises :class:`~neuro_api.realtime.ConnectionLost`
        once the connection ended or stopped answering pings, or this lease
        ended.
        """
        try:
            event, size = await self._receiver.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionLost(self._why()) from None
        self._link.taken(self, size)
        return event

    async def receive_ok(self) -> Event:
        """:meth:`receive`, but an ``error`` event raises.

        Raises :class:`~neuro_api.realtime.RealtimeAPIError` for it.
        """
        event = await self.receive()
        if event["type"] == "error":
            error = event.get("error")
            raise RealtimeAPIError(error if isinstance(error, dict) else {})
        return event

    async def events(self) -> AsyncIterator[Event]:
        """Every event, as :meth:`receive` returns them, until the connection ends."""
        while True:
            try:
                event = await self.receive()
            except ConnectionLost:
                return
            yield event

    def close(self) -> None:
        """End this handle's stream of events (the lease ended)."""
        self._receiver.close()

    def _why(self) -> str:
        link = self._link
        if not link.healthy:
            return link.problem or "the connection ended"
        if not self.current:
            return "this lease ended (the connection went back to the pool)"
        return "the connection ended"


class Link:
    """One WebSocket of a pool: its state, its reader and its keep-alive.

    The pool's side of a connection; each holder uses a
    :class:`RealtimeConnection` of its own (see :meth:`attach`).
    """

    def __init__(
        self,
        websocket: WebSocketConnection,
        *,
        counters: PoolCounters,
        queue_size: int,
        max_items: int,
        buffer: int = 16 << 20,
        secret: str = "",
    ) -> None:
        self.id = "rt_" + secrets.token_hex(4)
        self.websocket = websocket
        now = trio.current_time()
        self.created_at = now
        self.last_used = now
        self.session_count = 0
        """Leases it served (it is closed after the pool's maximum)."""
        self.healthy = True
        self.problem: str | None = None
        """Why it is unhealthy (None while healthy)."""
        self.leased = False
        self.holder: RealtimeConnection | None = None
        """Whose it is now: a lease's, the reset's, or nobody's (None)."""
        self._holders = 0  # holders so far: the current one's number
        self._given: dict[str, int] = {}  # event ids holders chose -> holder
        self.session: dict[str, Any] = {}
        """The session as the API last described it."""
        self.initial_session: dict[str, Any] | None = None
        """The session of ``session.created``: what a reset goes back to."""
        self.open_responses: dict[str, None] = {}
        """Responses created and not done yet (by id)."""
        self.cancelled: dict[str, None] = {}
        """Open responses whose cancel was sent already (by id)."""
        self.requested: dict[str, None] = {}
        """``response.create`` events sent and not answered yet (by event id)."""
        self.updating: dict[str, None] = {}
        """``session.update`` events sent and not answered yet (by event id)."""
        self.clearing: dict[str, None] = {}
        """``input_audio_buffer.clear`` events sent and not answered yet."""
        self._ids = itertools.count(1)
        self.items: dict[str, None] = {}
        """Items of the default conversation (by id), for the reset."""
        self.items_overflow = False
        """More items (or responses) than the pool tracks: it cannot be
        reset, only closed."""
        self.session_changed = False
        # The session's fields that session.update events changed; and why
        # what a lease changed cannot be undone (it is closed instead).
        self.session_keys: dict[str, None] = {}
        self.cannot_reset: str | None = None
        self.audio_sent = False
        self._counters = counters
        self._queue_size = queue_size
        self._max_items = max_items
        self._secrets = [secret]  # the key: never repeated from the API
        self._consumer: trio.MemorySendChannel[tuple[Event, int]] | None = None
        # Bytes of events in the holder's stream, up to _buffer.
        self._buffer = buffer
        self._buffered = 0
        self._room = trio.lowlevel.ParkingLot()
        self._sending = trio.Lock()
        self._stalled = False  # the reader waits for the holder to read
        self._created = trio.Event()
        self._ended = trio.Event()

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else f"unhealthy: {self.problem}"
        return f"<Link {self.id} {state}>"

    async def send(self, event: Mapping[str, Any], holder: RealtimeConnection) -> None:
        """Send one client event of ``holder``'s.

        Keeps what a reset needs; see :meth:`RealtimeConnection.send`.
        """
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            # The reader knows whose errors about it are by its prefix.
            event_id = f"{self.id}_{holder.number}_{next(self._ids)}"
            event = {**event, "event_id": event_id}
        text = orjson.dumps(event).decode()
        # Waiting for a turn is the last point where a cancel leaves the
        # stream whole (the lock keeps our own senders out of the next).
        async with self._sending:
            if holder is not self.holder:
                raise ConnectionLost(holder._why())
            if not self.healthy:
                raise ConnectionLost(self.problem or "the connection ended")
            self._track(event, event_id, holder.number)
            try:
                await self.websocket.send_message(text)
            except ConnectionClosed as exc:
                self.lost(_closed_reason(exc))
                raise ConnectionLost(self.problem or "the connection ended") from None
            except trio.Cancelled:
                # Part of the frame may be out: what is sent next would be
                # read as its rest. The connection cannot serve again.
                self.lost("a send was cancelled midway")
                raise

    def _track(self, event: Mapping[str, Any], event_id: str, holder: int) -> None:
        """Note what sending ``event`` changes (what a reset undoes)."""
        if not event_id.startswith((RESET_PREFIX, self.id + "_")):
            self._given.pop(event_id, None)
            self._given[event_id] = holder
            if len(self._given) > _GIVEN_IDS:
                del self._given[next(iter(self._given))]
        kind = event.get("type")
        if kind in _SESSION_EVENTS:
            self.session_changed = True
            self.updating[event_id] = None
            self._track_session(event.get("session"))
        elif kind in _AUDIO_EVENTS:
            self.audio_sent = True
        elif kind == "input_audio_buffer.clear":
            self.clearing[event_id] = None
        elif kind == "response.cancel":
            response_id = event.get("response_id")
            if isinstance(response_id, str):
                self.cancelled[response_id] = None
        elif kind == "response.create":
            # Until the API answers it, a response may be on its way: the
            # next holder must not find it running (see requested).
            self.requested[event_id] = None

    def _track_session(self, session: object) -> None:
        """Note the fields a ``session.update`` changes (for the reset)."""
        if not isinstance(session, dict):
            return
        initial = self.initial_session or {}
        for key, value in session.items():
            if key == "type":
                continue
            if key in _FOR_GOOD and value is not None:
                self.cannot_reset = f"its session's {key!r} cannot be undone"
            elif key not in initial:
                name = printable(str(key)[:60])
                self.cannot_reset = f"its session's {name!r} cannot be put back"
            else:
                self.session_keys[key] = None

    @property
    def awaiting(self) -> bool:
        """Whether answers to what was sent are still due.

        They would reach the next holder; a response asked for would even
        run under it.
        """
        return bool(self.requested or self.updating or self.clearing)

    @property
    def dirty(self) -> bool:
        """Whether the next user would find something of the last one."""
        return bool(
            self.session_changed
            or self.audio_sent
            or self.awaiting
            or self.items
            or self.items_overflow
            or self.open_responses
        )

    # --- what the pool does -------------------------------------------------

    def age(self, now: float) -> float:
        """Seconds since it was opened."""
        return now - self.created_at

    def idle(self, now: float) -> float:
        """Seconds since it was last returned (or opened)."""
        return now - self.last_used

    def attach(self, *, lease: bool = True) -> RealtimeConnection:
        """A new holder's handle (a lease, or the reset); the last one's ends."""
        self.detach()
        self._holders += 1
        send, receive = trio.open_memory_channel[tuple[Event, int]](self._queue_size)
        self._consumer = send
        self.holder = RealtimeConnection(self, receive, self._holders, for_lease=lease)
        if not self.healthy:
            send.close()
        return self.holder

    def detach(self) -> None:
        """End the current holder's stream; later events are dropped."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self.holder is not None:
            self.holder.close()
            self.holder = None
        self._buffered = 0
        self._room.unpark_all()

    def taken(self, holder: RealtimeConnection, size: int) -> None:
        """``holder`` took an event of ``size`` bytes from its stream."""
        if holder is self.holder:
            self._buffered -= size
            self._room.unpark_all()

    def lost(self, reason: str) -> None:
        """Mark it unhealthy for ``reason`` and end its holder's stream."""
        if self.healthy:
            self.healthy = False
            self.problem = redact(reason, self._secrets)
        if self._consumer is not None:
            self._consumer.close()
        self._created.set()  # a handshake waiting for session.created ends
        self._ended.set()

    @property
    def ended(self) -> trio.Event:
        """Set once it was marked unhealthy or closed."""
        return self._ended

    async def wait_created(self) -> None:
        """Until ``session.created`` came (or the connection ended first)."""
        await self._created.wait()

    async def read(self) -> None:
        """The reader task: every event, until the connection ends."""
        try:
            while True:
                message = await self.websocket.get_message()
                event = _parse(message)
                if event is None:
                    self._counters.malformed_events += 1
                    continue
                if event["type"] == "error":
                    self._redact_error(event)
                self._note(event)
                await self._pass_on(event, len(message))
        except ConnectionClosed as exc:
            self.lost(_closed_reason(exc))

    async def _pass_on(self, event: Event, size: int) -> None:
        """Give ``event`` to its holder, waiting while it holds too much."""
        while True:
            consumer, holder = self._consumer, self.holder
            if consumer is None or holder is None or self._stale(event, holder):
                if event["type"] not in _QUIET:
                    self._counters.dropped_events += 1
                return
            if not self._buffered or self._buffered + size <= self._buffer:
                break
            self._stalled = True
            try:
                await self._room.park()  # until it reads, or leaves
            finally:
                self._stalled = False
        self._buffered += size
        # While the holder does not read, neither do we, nor trio-websocket
        # (pongs wait too); its holder may have left meanwhile.
        self._stalled = True
        try:
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError
            ):
                await consumer.send((event, size))
        finally:
            self._stalled = False

    async def keep_alive(self, interval: float, ping_timeout: float) -> None:
        """Ping every ``interval``; no pong within ``ping_timeout``: unhealthy."""
        while self.healthy:
            await trio.sleep(interval)
            with trio.move_on_after(ping_timeout) as scope:
                try:
                    await self.websocket.ping()
                except ConnectionClosed as exc:
                    self.lost(_closed_reason(exc))
                    return
            if scope.cancelled_caught:
                if self._stalled:  # the pong waits behind unread events
                    self.lost(
                        f"its user did not read its events for {ping_timeout:g} s"
                    )
                else:
                    self.lost(f"no pong within {ping_timeout:g} s")
                return

    def _note(self, event: Event) -> None:
        """Keep what a reset needs, and the pool's counters."""
        kind = event["type"]
        if kind in ("session.created", "session.updated"):
            session = event.get("session")
            if isinstance(session, dict):
                self.session = session
                if kind == "session.created" and self.initial_session is None:
                    # A copy: what the reset puts back is the API's word.
                    self.initial_session = copy.deepcopy(session)
            if kind == "session.created":
                self._created.set()
            elif self.updating:  # answers come in order: the oldest's
                del self.updating[next(iter(self.updating))]
        elif kind == "input_audio_buffer.cleared":
            if self.clearing:
                del self.clearing[next(iter(self.clearing))]
        elif kind == "response.created":
            if (rid := _response_id(event)) is not None:
                if len(self.open_responses) < self._max_items:
                    self.open_responses[rid] = None
                else:
                    self.items_overflow = True
            # One response at a time: this answers the oldest request.
            if self.requested:
                del self.requested[next(iter(self.requested))]
        elif kind == "response.done":
            if (rid := _response_id(event)) is not None:
                self.open_responses.pop(rid, None)
                self.cancelled.pop(rid, None)
        elif kind in _ADDED:
            if (iid := _item_id(event)) is not None:
                if len(self.items) < self._max_items:
                    self.items[iid] = None
                else:
                    self.items_overflow = True
        elif kind == "conversation.item.deleted":
            if (iid := _item_id(event)) is not None:
                self.items.pop(iid, None)
        elif kind == "error":
            self._note_error(event.get("error"))
        elif kind == "rate_limits.updated":
            self._note_rate_limits(event.get("rate_limits"))

    def _note_error(self, error: object) -> None:
        counters = self._counters
        counters.api_errors += 1
        error = error if isinstance(error, dict) else {}
        about = error.get("event_id")
        if isinstance(about, str):
            # Refused: no answer will come.
            self.requested.pop(about, None)
            self.updating.pop(about, None)
            self.clearing.pop(about, None)
        problem = RealtimeAPIError(error)
        counters.last_api_error = {
            "code": problem.code,
            "type": problem.type,
            "message": problem.message,
        }
        LOGGER.debug("%s: API error %s", self.id, printable(str(problem)))
        if self.initial_session is None:  # the API refused the session
            self.lost(f"the API answered with an error: {problem}")

    def _note_rate_limits(self, limits: object) -> None:
        if not isinstance(limits, list):
            return
        kept = [limit for limit in limits[:8] if isinstance(limit, dict)]
        self._counters.rate_limits = [
            {
                key: value[:100] if isinstance(value, str) else value
                for key in ("name", "limit", "remaining", "reset_seconds")
                if isinstance(value := limit.get(key), (str, int, float))
            }
            for limit in kept
        ]
        if any(limit.get("remaining") == 0 for limit in kept):
            self._counters.rate_limited += 1

    def _redact_error(self, event: Event) -> None:
        """The key out of an ``error`` event (the API may quote what it got)."""
        error = event.get("error")
        if isinstance(error, dict):
            for key, value in error.items():
                if isinstance(value, str):
                    error[key] = redact(value, self._secrets)

    def _stale(self, event: Event, holder: RealtimeConnection) -> bool:
        """Whether ``event`` is an error about what an earlier holder sent.

        A late answer to the last lease, or to the reset before this lease,
        is not this lease's business.
        """
        if event["type"] != "error" or not holder.for_lease:
            return False  # the reset needs every answer to the last lease
        error = event.get("error")
        about = error.get("event_id") if isinstance(error, dict) else None
        if not isinstance(about, str):
            return False
        if about.startswith(RESET_PREFIX):
            return True
        ours = self.id + "_"
        if about.startswith(ours):
            return about[len(ours) :].partition("_")[0] != str(holder.number)
        sender = self._given.get(about)
        return sender is not None and sender != holder.number


_QUIET: Final = frozenset({"rate_limits.updated", "session.created"})
"""Events nobody waits for outside a lease (not counted as dropped)."""


def _closed_reason(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "the connection ended"
    text = f"closed with {reason.code}"
    if reason.reason:
        text += f" ({printable(reason.reason[:200])})"
    return text
