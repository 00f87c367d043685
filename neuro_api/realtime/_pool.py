"""The Realtime connection pool (the seed's "WebSocket Manager"), with exclusive leases.

A Realtime WebSocket is one conversation with session state, so a
connection serves one user at a time: :meth:`RealtimePool.connection_context`
leases it; connections are reused one lease after another (up to
``max_sessions_per_connection`` leases each), and what a lease changed
(the session, audio, conversation items, a response still running) is
undone before anyone else gets the connection. When every connection is
leased and the pool is full, callers wait their turn (first come, first
served, up to ``lease_timeout``): a connection in use is never taken from
its user, shared, or closed by the pool.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator
from typing import Any, Final

import trio

from neuro_api._redact import redact
from neuro_api._shared import exponential_delay
from neuro_api.realtime._config import PoolConfig
from neuro_api.realtime._connection import (
    Link,
    PoolCounters,
    RealtimeConnection,
)
from neuro_api.realtime._errors import (
    ConnectionLost,
    LeaseTimeout,
    RealtimeAPIError,
    RealtimeUnavailable,
)
from neuro_api.realtime._handshake import (
    OpenFailed,
    describe,
    failure_kind,
    handshake,
    is_failure,
    open_stream,
)
from neuro_api.realtime._reset import undo

__all__ = ["RealtimePool"]

LOGGER: Final = logging.getLogger("neuro_api.realtime")
_BACKOFF_START: Final = 1.0


class RealtimePool:
    """A supervised pool of connections to the OpenAI Realtime API.

    Run :meth:`run` as a service (it reports itself once ready); then lease
    connections with ``async with pool.connection_context() as conn:``.
    Connections are opened on demand, up to ``max_connections``, and kept
    for the next lease while healthy. Every ``health_check_interval`` the
    pool closes idle connections that are older than ``max_connection_age``
    or idle longer than ``max_idle_time``; a connection that drops or stops
    answering pings is closed and replaced (its user's :meth:`receive
    <RealtimeConnection.receive>` raises :class:`ConnectionLost` at once).
    When the API refuses connections (a bad key: HTTP 401), the pool says so
    in :meth:`health` and tries again with backoff (1 s doubling up to
    ``backoff_max``), failing at once meanwhile the leases that need a new
    connection. Leaving :meth:`run` closes every connection, each within
    ``close_timeout``.
    """

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.counters = PoolCounters()
        self._all: dict[str, Link] = {}
        self._idle: list[Link] = []  # most recently used last
        self._leased: set[Link] = set()
        self._resetting: set[Link] = set()
        self._opening = 0
        self._awaiting_reset = 0
        self._line: dict[object, None] = {}  # callers in acquire, in order
        self._live = 0  # connection tasks running (opening, open or closing)
        # What the pool's shutdown cancels: callers waiting (in their own
        # tasks) and handshakes (in their callers' tasks until open).
        self._stoppable: set[trio.CancelScope] = set()
        self._slots = trio.Semaphore(config.max_connections)
        self._changed = trio.lowlevel.ParkingLot()
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._rng = random.Random()
        # Counters beyond the seed's.
        self.sessions_handled = 0
        self.waiting = 0
        self.lease_timeouts = 0
        self.connects = 0
        self.connect_failures = 0
        self.retired = 0
        self.resets = 0
        # Why new connections fail (None: they do not), and when to try again.
        self.problem: str | None = None
        self._problem_kind: str | None = None  # the problem, without details
        self._failures = 0
        self._retry_at = -math.inf

    # --- the service --------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[RealtimePool]) -> None:
        """Serve leases until cancelled; then close every connection gracefully.

        Reports the pool itself once ready (no connection is opened before
        the first lease). Once cancelled, every connection gets a closing
        handshake, within ``close_timeout`` in all; handshakes under way
        are abandoned (their callers get :class:`RealtimeUnavailable`).
        """
        if self._nursery is not None:
            raise RuntimeError("this pool is already running")
        self._closing = False
        stop = trio.Event()
        try:
            async with trio.open_nursery() as outer:
                await outer.start(self._serve, stop)
                task_status.started(self)
                try:
                    await trio.sleep_forever()
                finally:
                    stop.set()
        finally:
            self._nursery = None
            self._closing = True

    async def _serve(self, stop: trio.Event, *, task_status: trio.TaskStatus) -> None:
        # Shielded: the connections' readers must keep running while their
        # closing handshakes are made, after the pool was cancelled.
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._monitor)
                task_status.started()
                await stop.wait()
                self._closing = True
                for waiting in self._stoppable:
                    waiting.cancel()
                for conn in list(self._all.values()):
                    conn.lost("the pool is closing")
                self._changed.unpark_all()
                with trio.move_on_after(self.config.close_timeout):
                    while self._live:  # each closes within close_timeout
                        await self._changed.park()
                nursery.cancel_scope.cancel()

    # --- leases -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection_context(self) -> AsyncIterator[RealtimeConnection]:
        """Lease a connection for the block (the seed's name).

        Waits up to ``lease_timeout`` for one (wrap it in
        :func:`trio.move_on_after` to wait less). Raises
        :class:`LeaseTimeout` when no connection was ready that long,
        :class:`RealtimeUnavailable` when none can be opened (the reason
        says why). The connection is returned when the block ends, however
        it ends; this ``conn`` serves this block only.
        """
        conn = await self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    async def acquire(self) -> RealtimeConnection:
        """Lease a connection; pair it with :meth:`release`.

        :meth:`connection_context` does both (and says what is raised).
        The handle returned works until it is released.
        """
        if self._nursery is None or self._closing:
            raise RealtimeUnavailable("the Realtime pool is not running")
        timeout = self.config.lease_timeout
        self.waiting += 1
        # Callers get slots in the order they came (a FIFO semaphore), and
        # idle connections in the same order (see _find).
        ticket = object()
        self._line[ticket] = None
        stopped = trio.CancelScope()
        self._stoppable.add(stopped)
        try:
            with trio.move_on_after(timeout) as scope, stopped:
                await self._slots.acquire()
                try:
                    link = await self._find(ticket)
                except BaseException:
                    self._slots.release()
                    raise
        finally:
            self._stoppable.discard(stopped)
            self.waiting -= 1
            self._leave_line(ticket)
        if stopped.cancelled_caught:
            raise RealtimeUnavailable("the Realtime pool is closing")
        if scope.cancelled_caught:
            self.lease_timeouts += 1
            if len(self._leased) < self.config.max_connections:
                # The time went on opening (or resetting) a connection.
                raise LeaseTimeout(
                    f"no Realtime connection was ready within {timeout:g} s "
                    f"({len(self._leased)} leased, the others being opened or reset)"
                )
            raise LeaseTimeout(
                f"every Realtime connection stayed leased for {timeout:g} s "
                f"(max_connections {self.config.max_connections})"
            )
        link.leased = True
        link.session_count += 1
        link.last_used = trio.current_time()
        self._leased.add(link)
        self.sessions_handled += 1
        return link.attach()

    async def _find(self, ticket: object) -> Link:
        """An idle connection, or a new one (the caller holds a slot).

        Idle connections go to callers in the order they came (``ticket``
        is the caller's place in :attr:`_line`): Trio runs the tasks a
        change wakes in no fixed order, so only the first in line takes one.
        """
        while True:
            if self._closing:
                raise RealtimeUnavailable("the Realtime pool is closing")
            if next(iter(self._line)) is ticket:
                conn = self._take_idle()
                if conn is not None:
                    return conn
            elif self._idle:
                await self._changed.park()  # for those before us to take
                continue
            if self._awaiting_reset < len(self._resetting):
                # A reset takes a round trip; a new connection, a handshake.
                self._awaiting_reset += 1
                try:
                    await self._changed.park()
                finally:
                    self._awaiting_reset -= 1
                continue
            if self.total < self.config.max_connections:
                self._leave_line(ticket)  # the next in line takes what is idle
                return await self._open()
            # Others are being opened or reset: one frees up soon.
            await self._changed.park()

    def _leave_line(self, ticket: object) -> None:
        if self._line.pop(ticket, False) is None:
            self._changed.unpark_all()  # the next in line may take one

    def _take_idle(self) -> Link | None:
        now = trio.current_time()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: others may expire
            reason = self._unusable(conn, now)
            if reason is not None:
                self._retire(conn, reason)
            elif conn.dirty:  # the API added to it meanwhile
                self._start_reset(conn)
            else:
                return conn
        return None

    def release(self, conn: RealtimeConnection) -> None:
        """Give a leased connection back (a second call does nothing).

        Never waits: a connection left in a state the next user must not
        see is reset in the background first; one that cannot serve again
        is closed in the background. ``conn`` stops working at once.
        """
        link = conn.link
        if not conn.for_lease or not conn.current or link not in self._leased:
            return  # given back already (it may serve someone else now)
        link.leased = False
        link.detach()
        self._leased.discard(link)
        self._slots.release()
        now = trio.current_time()
        link.last_used = now
        reason = self._unusable(link, now)
        if (
            reason is None
            and link.session_count >= self.config.max_sessions_per_connection
        ):
            reason = f"it served {link.session_count} leases"
        if reason is None and link.cannot_reset:
            reason = link.cannot_reset
        if reason is not None or self._nursery is None:
            self._retire(link, reason or "the pool stopped")
        elif link.dirty:
            self._start_reset(link)
        else:
            self._idle.append(link)
        self._changed.unpark_all()

    def _unusable(self, conn: Link, now: float) -> str | None:
        if self._closing:
            return "the pool is closing"
        if not conn.healthy:
            return conn.problem or "unhealthy"
        if conn.age(now) >= self.config.max_connection_age:
            return f"older than {self.config.max_connection_age:g} s"
        if conn.items_overflow:
            return "too many conversation items or responses to reset"
        return None

    def _start_reset(self, conn: Link) -> None:
        assert self._nursery is not None
        self._resetting.add(conn)
        self._nursery.start_soon(self._reset, conn)

    def _retire(self, conn: Link, reason: str) -> None:
        """Close ``conn``: it leaves the pool now, and closes within close_timeout."""
        if conn.id in self._all:
            self.retired += 1
            LOGGER.debug("closing Realtime connection %s: %s", conn.id, reason)
        conn.lost(reason)
        self._forget(conn)

    @property
    def total(self) -> int:
        """Connections open or being opened."""
        return len(self._all) + self._opening

    # --- opening and closing -------------------------------------------------

    async def _open(self) -> Link:
        now = trio.current_time()
        if now < self._retry_at:
            raise RealtimeUnavailable(
                f"{self.problem}; next attempt in {self._retry_at - now:.0f} s"
            )
        assert self._nursery is not None
        self._opening += 1
        try:
            conn: Link = await self._nursery.start(self._connection)
        except OpenFailed as exc:
            self._failed(exc.reason, exc.kind)
            raise RealtimeUnavailable(self.problem or exc.reason) from None
        finally:
            self._opening -= 1
            self._changed.unpark_all()
        self._recovered()
        return conn

    async def _connection(self, *, task_status: trio.TaskStatus[Link]) -> None:
        """One connection's life: open it, read it, keep it alive, close it.

        The TCP (or TLS) stream is opened here and always closed here:
        trio-websocket's own connect leaves the socket open when the
        handshake is refused, and when the server closed first.
        """
        config = self.config
        opened = False
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        # Until it is open, the handshake runs in its caller's task, out of
        # reach of the pool's nursery: the pool's shutdown cancels it here.
        opening = trio.CancelScope()
        self._stoppable.add(opening)
        if self._closing:
            opening.cancel()
        # One deadline for the whole handshake, up to session.created.
        deadline = trio.current_time() + config.connect_timeout
        self._live += 1
        try:
            with opening:
                with trio.fail_at(deadline):
                    stream = await open_stream(config)
                async with trio.open_nursery() as nursery:
                    conn = await handshake(
                        nursery, stream, deadline, config, self.counters
                    )
                    websocket = conn.websocket
                    nursery.start_soon(
                        conn.keep_alive, config.ping_interval, config.ping_timeout
                    )
                    self._stoppable.discard(opening)
                    self._all[conn.id] = conn
                    self.connects += 1
                    opened = True
                    LOGGER.debug("opened Realtime connection %s", conn.id)
                    task_status.started(conn)
                    try:
                        await conn.ended.wait()
                    finally:
                        self._forget(conn)
                        with trio.CancelScope(shield=True) as scope:
                            scope.deadline = trio.current_time() + config.close_timeout
                            await websocket.aclose()
                        nursery.cancel_scope.cancel()
            if not opened:  # the pool closed during the handshake
                raise RealtimeUnavailable("the Realtime pool is closing")
        except BaseException as exc:
            if opened or not is_failure(exc):
                raise  # cancelled, or a bug: not a reason to give a lessee
            raise OpenFailed(describe(exc, config), failure_kind(exc)) from None
        finally:
            self._stoppable.discard(opening)
            try:
                if stream is not None:
                    await trio.aclose_forcefully(stream)
            finally:
                self._live -= 1
                self._changed.unpark_all()

    def _forget(self, conn: Link) -> None:
        if self._all.pop(conn.id, None) is None:
            return
        if conn in self._idle:
            self._idle.remove(conn)
        self._resetting.discard(conn)
        conn.lost(conn.problem or "closed")
        self._changed.unpark_all()

    def _failed(self, reason: str, kind: str) -> None:
        # What the API sent back is quoted: it must not carry the key on.
        reason = redact(reason, [self.config.api_key])
        self.connect_failures += 1
        delay = exponential_delay(
            self._failures,
            initial=_BACKOFF_START,
            maximum=self.config.backoff_max,
            jitter=0.2,
            rand=self._rng.random(),
        )
        self._failures += 1
        self._retry_at = trio.current_time() + delay
        if kind != self._problem_kind:
            # Once per kind of failure, not once per attempt (details such
            # as a request id change every time; /health shows the last).
            LOGGER.warning(
                "cannot open a Realtime connection: %s (trying again with "
                "backoff, up to every %g s)",
                reason,
                self.config.backoff_max,
            )
        self.problem = reason
        self._problem_kind = kind

    def _recovered(self) -> None:
        if self.problem is not None:
            LOGGER.warning("Realtime connections work again")
        self.problem = None
        self._problem_kind = None
        self._failures = 0
        self._retry_at = -math.inf

    # --- reset between leases --------------------------------------------------

    async def _reset(self, conn: Link) -> None:
        holder = conn.attach(lease=False)
        why = f"no reset within {self.config.reset_timeout:g} s"
        done = False
        with trio.move_on_after(self.config.reset_timeout):
            try:
                await undo(conn, holder)
                done = True
            except (ConnectionLost, RealtimeAPIError) as exc:
                why = str(exc)
        conn.detach()
        self._resetting.discard(conn)
        if done and conn.healthy and not self._closing and conn.id in self._all:
            self.resets += 1
            conn.session_changed = conn.audio_sent = False
            conn.session_keys.clear()
            conn.last_used = trio.current_time()
            self._idle.append(conn)
            self._changed.unpark_all()
        else:
            self._retire(conn, f"could not be reset: {why}")

    # --- the health monitor -----------------------------------------------------

    async def _monitor(self) -> None:
        interval = self.config.health_check_interval
        next_check = trio.current_time() + interval
        while True:
            wake = next_check
            if self._should_probe():
                wake = min(wake, self._retry_at)
            await trio.sleep_until(wake)
            now = trio.current_time()
            if now >= next_check:
                self.sweep()
                next_check = now + interval
            if self._should_probe() and now >= self._retry_at:
                await self._probe()

    def _should_probe(self) -> bool:
        """After a failure, with room for a connection.

        Idle connections or not: until a new one opens, ``/health`` says
        the API refuses them, which would stay true long after a hiccup.
        """
        return self.problem is not None and self.total < self.config.max_connections

    async def _probe(self) -> None:
        """Try to open a connection after a failure (kept for the next lease)."""
        try:
            conn = await self._open()
        except RealtimeUnavailable:
            return
        conn.last_used = trio.current_time()
        self._idle.insert(0, conn)
        self._changed.unpark_all()

    def sweep(self) -> int:
        """Close idle connections that are unhealthy, too old or idle too long.

        What the monitor does every ``health_check_interval``; leased
        connections are never touched. Returns how many were closed.
        """
        now = trio.current_time()
        config = self.config
        closed = 0
        for conn in list(self._idle):
            reason = self._unusable(conn, now)
            if reason is None and conn.idle(now) >= config.max_idle_time:
                reason = f"idle for {config.max_idle_time:g} s"
            if reason is not None:
                self._retire(conn, reason)
                closed += 1
        return closed

    # --- reports ------------------------------------------------------------------

    def connections(self) -> list[dict[str, Any]]:
        """Each connection: id, state, age, idle time, leases served, health."""
        now = trio.current_time()
        rows = []
        for conn in self._all.values():
            if conn.leased:
                state = "leased"
            elif conn in self._resetting:
                state = "resetting"
            else:
                state = "idle"
            rows.append(
                {
                    "id": conn.id,
                    "state": state,
                    "age": round(conn.age(now), 1),
                    "idle": 0.0 if conn.leased else round(conn.idle(now), 1),
                    "sessions": conn.session_count,
                    "healthy": conn.healthy,
                    "problem": conn.problem,
                }
            )
        return rows

    def stats(self) -> dict[str, Any]:
        """The seed's ``/stats`` fields, then ours.

        ``total_sessions_handled`` counts every lease since the start
        (the seed's sums the current connections' only).
        """
        counters = self.counters
        return {
            "total_connections": len(self._all),
            "healthy_connections": self.healthy_connections,
            "active_sessions": len(self._leased),
            "total_sessions_handled": self.sessions_handled,
            "max_connections": self.config.max_connections,
            "idle_connections": len(self._idle),
            "resetting_connections": len(self._resetting),
            "waiting": self.waiting,
            "lease_timeouts": self.lease_timeouts,
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "closed_connections": self.retired,
            "resets": self.resets,
            "api_errors": counters.api_errors,
            "last_api_error": counters.last_api_error,
            "rate_limited": counters.rate_limited,
            "rate_limits": counters.rate_limits,
            "dropped_events": counters.dropped_events,
            "malformed_events": counters.malformed_events,
            "problem": self.problem,
        }

    @property
    def healthy_connections(self) -> int:
        """Open connections that answer (leased or not)."""
        return sum(conn.healthy for conn in self._all.values())

    def health(self) -> dict[str, Any]:
        """The seed's ``/health``: degraded when no connection can be had.

        The seed's rule (a healthy connection, or room for a new one), and
        ours: degraded too while the API refuses new connections
        (``problem`` says why).
        """
        total = len(self._all)
        healthy = self.healthy_connections
        maximum = self.config.max_connections
        ok = (healthy > 0 or total < maximum) and self.problem is None
        report: dict[str, Any] = {
            "status": "healthy" if ok else "degraded",
            "websocket_manager": {
                "healthy_connections": healthy,
                "total_connections": total,
                "max_connections": maximum,
            },
            "message": "Service is operational"
            if ok
            else "WebSocket connection issues detected",
        }
        if self.problem is not None:
            report["problem"] = self.problem
        return report
