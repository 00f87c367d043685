"""The game side over trio-websocket: one connection, or a reconnecting client.

* :class:`TrioNeuroAPI` runs :class:`~neuro_api.api.AbstractNeuroAPI` on one
  :class:`trio_websocket.WebSocketConnection` that the caller opened
  (:meth:`TrioNeuroAPI.serve`).
* :class:`NeuroGameClient` opens the connection itself and keeps it up:
  :meth:`NeuroGameClient.run` reconnects with exponential backoff and
  restores the game's actions after every reconnect.

A typical game::

    client = NeuroGameClient("Tic Tac Toe")
    client.add_action(PLAY, handle_play)
    await client.register_actions([PLAY])  # sent when connected
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run, "ws://127.0.0.1:8000")
        ...  # play; client.send_force_action(...), client.send_context(...)
        client.stop()

:class:`TrioNeuroAPIComponent` is the upstream package's game client built
on libcomponent (optional: ``pip install "trio-neuro-api[component]"``),
imported on first use of the name.

Sends while disconnected raise :class:`~neuro_api.api.NotConnected` (except
registration, which is state and is replayed on connect): a result or a
force belongs to one connection and would be wrong on the next one. Use
:meth:`TrioNeuroAPI.wait_connected` to wait for a connection.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from neuro_api._shared import StatusCallback, exponential_delay, raise_one
from neuro_api._shared import leaves as _leaves
from neuro_api.api import AbstractNeuroAPI, NeuroAction, NotConnected

if TYPE_CHECKING:
    pass

# TrioNeuroAPIComponent is importable by name but not listed: it needs the
# optional libcomponent, and a star import must work without it.
__all__ = ["Backoff", "NeuroGameClient", "TrioNeuroAPI"]

LOGGER: Final = logging.getLogger(__name__)

# Everything that means "this connection (attempt) is over; try again".
# HandshakeError covers ConnectionRejected, ConnectionTimeout,
# DisconnectionTimeout and the OSErrors of connecting (refused, unreachable).
_CONNECTION_ERRORS: Final = (
    HandshakeError,
    ConnectionClosed,
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnection attempts: exponential, capped, jittered.

    Attempt ``n`` (counted from 0, reset after each successful connection)
    waits ``min(initial * factor**n, maximum)`` seconds, times a random
    factor in ``(1 - jitter, 1]``, so many games restarting at once do not
    reconnect in lockstep, and no delay exceeds ``maximum``. ``jitter=0``
    gives exact delays.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("Backoff needs 0 < initial <= maximum")
        if self.factor < 1:
            raise ValueError("Backoff factor must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("Backoff jitter must be in [0, 1)")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay in seconds before retry number ``attempt``."""
        return exponential_delay(
            attempt,
            initial=self.initial,
            maximum=self.maximum,
            factor=self.factor,
            jitter=self.jitter,
            rand=(rng or random).random() if self.jitter else 0.0,
        )


class TrioNeuroAPI(AbstractNeuroAPI):
    """:class:`~neuro_api.api.AbstractNeuroAPI` on a trio-websocket connection.

    ``connection`` may be given here (then the caller sends ``startup``
    itself, as in the upstream SDK) or later to :meth:`serve`, which does
    the whole session. Sends are serialized by a lock, so frames from
    concurrent tasks never interleave and nothing overtakes ``startup``.
    ``startup_timeout`` bounds sending the startup frames in :meth:`serve`.

    Under :meth:`serve`, actions are performed one at a time, in arrival
    order, by a task of the connection, so a slow handler never stops the
    reader (a drop is noticed, shutdown messages are handled). Up to
    ``max_queued_actions`` actions wait their turn; one more is failed at
    once with a "busy" message. ``action_timeout`` bounds each handler (see
    :class:`~neuro_api.api.AbstractNeuroAPI`).
    """

    def __init__(
        self,
        game_title: str,
        connection: WebSocketConnection | None = None,
        *,
        startup_timeout: float = 10.0,
        action_timeout: float | None = 15.0,
        max_queued_actions: int = 16,
    ) -> None:
        super().__init__(game_title, action_timeout=action_timeout)
        if max_queued_actions < 1:
            raise ValueError(
                f"max_queued_actions: must be >= 1, got {max_queued_actions!r}"
            )
        self.startup_timeout = startup_timeout
        self.max_queued_actions = max_queued_actions
        self._actions: trio.MemorySendChannel[NeuroAction] | None = None
        self._connection: WebSocketConnection | None = None
        self._connected_event = trio.Event()
        self._send_lock = trio.Lock()
        if connection is not None:
            self.connect(connection)

    @property
    def connection(self) -> WebSocketConnection:
        """The bound connection; raises :class:`NotConnected` if there is none."""
        if self._connection is None:
            raise NotConnected(f"{self.game_title!r} is not connected to Neuro")
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether a connection is bound (and, under :meth:`serve`, started)."""
        return self._connection is not None

    @property
    def not_connected(self) -> bool:
        """``not connected`` (upstream's name)."""
        return self._connection is None

    def connect(self, websocket: WebSocketConnection | None) -> None:
        """Bind ``websocket`` for sending (``None`` unbinds). Sends nothing."""
        self._connection = websocket
        if websocket is not None:
            self._connected_event.set()
        elif self._connected_event.is_set():
            # trio.Event cannot be cleared: waiters get a fresh one.
            self._connected_event = trio.Event()

    async def wait_connected(self) -> None:
        """Return once a connection is bound (at once if one is).

        Under :meth:`serve` that is after ``startup`` and the registry were
        sent, so the caller may send right away (it can still lose the race
        with a disconnect: sends may raise :class:`NotConnected`).
        """
        if self.connected:
            await trio.lowlevel.checkpoint()
            return
        while not self.connected:
            await self._connected_event.wait()

    async def write_to_websocket(self, frame: str) -> None:
        """Send one text frame.

        Raises :class:`NotConnected` when no connection is bound or when it
        closes during the send (the :class:`~trio_websocket.ConnectionClosed`
        is the ``__cause__``).
        """
        async with self._send_lock:
            websocket = self.connection
            try:
                await websocket.send_message(frame)
            except ConnectionClosed as exc:
                raise NotConnected(f"connection closed: {exc.reason}") from exc

    async def read_from_websocket(self) -> str | bytes:
        """Return the next frame from the bound connection.

        Raises :class:`NotConnected` if none is bound and
        :class:`~trio_websocket.ConnectionClosed` when it closes.
        """
        return await self.connection.get_message()

    async def serve(
        self,
        websocket: WebSocketConnection,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one session on an open connection, until it closes.

        Sends ``startup`` and then the whole registry, binds the connection
        (so other tasks' sends go through) and calls ``task_status.started()``
        with no value; then reads frames and hands each to
        :meth:`~neuro_api.api.AbstractNeuroAPI.read_message` (hooks run in this
        task, one frame at a time, except actions: see the class).

        Returns normally when the connection closes, from either side. It
        does not close ``websocket``: whoever opened it does. On cancellation
        (and on any exit) the connection is unbound first. Raises
        :class:`trio.TooSlowError` if the startup frames cannot be sent within
        ``startup_timeout``, :class:`~trio_websocket.ConnectionClosed` if the
        connection closes before they are, and :class:`RuntimeError` if
        another connection is bound.
        """
        if self._connection is not None:
            raise RuntimeError(f"{self.game_title!r} already has a connection")
        try:
            with trio.fail_after(self.startup_timeout):
                async with self._send_lock:
                    for startup_frame in self._startup_frames():
                        await websocket.send_message(startup_frame)
                    self.connect(websocket)
            task_status.started()
            async with trio.open_nursery() as nursery:
                send, receive = trio.open_memory_channel[NeuroAction](
                    self.max_queued_actions
                )
                self._actions = send
                nursery.start_soon(self._perform_actions, receive)
                try:
                    await self._read_frames(websocket)
                finally:
                    # The connection is over: a running handler is cancelled
                    # (its result could not be sent) and queued actions go.
                    self._actions = None
                    nursery.cancel_scope.cancel()
        finally:
            self._unbind_connection(websocket)

    async def _read_frames(self, websocket: WebSocketConnection) -> None:
        while True:
            try:
                frame = await websocket.get_message()
            except ConnectionClosed as exc:
                LOGGER.info("connection closed: %s", exc.reason)
                return
            await self.read_message(frame)

    async def handle_action(self, action: NeuroAction) -> None:
        """Queue the action for the connection's action task (see the class).

        Outside :meth:`serve` (frames fed to :meth:`read_message` by hand)
        the action is performed at once, as in
        :meth:`~neuro_api.api.AbstractNeuroAPI.handle_action`.
        """
        queue = self._actions
        if queue is None:
            await super().handle_action(action)
            return
        try:
            queue.send_nowait(action)
        except trio.WouldBlock:
            LOGGER.warning(
                "%d actions already wait; failing action %r (%s)",
                self.max_queued_actions,
                action.id_,
                action.name,
            )
            await self.send_action_result(
                action.id_,
                False,
                f"The game is busy with {self.max_queued_actions} other actions; "
                "try again in a moment.",
            )

    async def _perform_actions(
        self, receive: trio.MemoryReceiveChannel[NeuroAction]
    ) -> None:
        async for action in receive:
            # AbstractNeuroAPI.handle_action sends exactly one result and
            # lets no Exception out, so one action cannot end the others.
            await AbstractNeuroAPI.handle_action(self, action)

    def _unbind_connection(self, websocket: WebSocketConnection) -> None:
        if self._connection is websocket:
            self.connect(None)


class NeuroGameClient(TrioNeuroAPI):
    """A game's connection to Neuro that reconnects by itself.

    ``backoff`` spaces the reconnection attempts (``rng`` draws its jitter;
    pass a seeded :class:`random.Random` for reproducible delays).
    ``connect_timeout`` bounds opening a connection (TCP, TLS and the
    WebSocket handshake together), ``close_timeout`` the closing handshake,
    ``startup_timeout`` sending the startup frames; a timeout counts as a
    failed attempt. ``action_timeout`` and ``max_queued_actions`` are those
    of :class:`TrioNeuroAPI`.
    """

    def __init__(
        self,
        game_title: str,
        *,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        startup_timeout: float = 10.0,
        action_timeout: float | None = 15.0,
        max_queued_actions: int = 16,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            game_title,
            startup_timeout=startup_timeout,
            action_timeout=action_timeout,
            max_queued_actions=max_queued_actions,
        )
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self._rng = rng
        self._running = False
        self._stopping = False
        self._attempt = 0
        # The cancel scope of what run() does right now (connecting, serving,
        # waiting to retry); stop() cancels it. Closing is never in it.
        self._phase = trio.CancelScope()

    async def run(
        self, url: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect to ``url`` and stay connected until stopped or cancelled.

        Each connection sends ``startup`` and registers the whole registry
        (see :meth:`TrioNeuroAPI.serve`), then handles Neuro's frames. When a
        connection fails or drops (refused, rejected, timed out, closed by
        either side) the failure is logged and, after a :class:`Backoff`
        delay, the client connects again, forever.

        ``task_status.started()`` is called once, with no value, when the
        first connection is ready: by then :attr:`connected` is true and
        the registry has been sent. It is never called if no connection
        succeeds; bound the wait with :func:`trio.fail_after` if needed.

        :meth:`stop` makes ``run`` close the connection (close code 1000) and
        return. Cancellation does the same graceful close, bounded by
        ``close_timeout``, and then raises :class:`trio.Cancelled`; a running
        action handler is cancelled (its result is not sent). Connection
        errors never escape; anything else (a bug) is raised as itself, not
        wrapped in an :class:`ExceptionGroup`. Raises :class:`ValueError` at
        once for a URL that is not ``ws://`` or ``wss://``, and
        :class:`RuntimeError` if ``run`` is already running.
        """
        _parse_url(url)
        if self._running:
            raise RuntimeError("NeuroGameClient.run() is already running")
        self._running = True
        self._stopping = False
        # The connection work is shielded so that, when run() is cancelled,
        # the WebSocket reader task is still alive to complete the closing
        # handshake; a watcher task turns the cancellation into stop() and
        # bounds the close with a deadline.
        work = trio.CancelScope(shield=True)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stop_when_cancelled, work)
                with work:
                    await self._connect_loop(url, task_status)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_one(group)
        finally:
            self._running = False

    def stop(self) -> None:
        """Ask :meth:`run` to close the connection and return; returns at once.

        Whatever ``run`` is doing (connecting, serving, waiting to retry) is
        cancelled, except closing an open connection, which completes
        normally. No effect if ``run`` is not running.
        """
        if not self._running:
            return
        self._stopping = True
        self._phase.cancel()

    async def _stop_when_cancelled(self, work: trio.CancelScope) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.stop()
            work.deadline = min(work.deadline, trio.current_time() + self.close_timeout)

    def _should_stop(self) -> bool:
        # A method, not the attribute: mypy would keep a narrowed value of
        # self._stopping across the awaits that change it.
        return self._stopping

    def _new_phase(self) -> trio.CancelScope:
        self._phase = trio.CancelScope()
        if self._stopping:
            self._phase.cancel()
        return self._phase

    @asynccontextmanager
    async def _open_connection(
        self, url: str, nursery: trio.Nursery
    ) -> AsyncIterator[WebSocketConnection]:
        """Open one connection whose reader task runs in ``nursery``.

        On exit the connection is closed politely (bounded by
        ``close_timeout``) and its stream in any case. Tests override this
        seam to script failures in virtual time.
        """
        # Not trio_websocket.open_websocket_url: in trio-websocket 0.12 its
        # connect_timeout cannot interrupt a server that accepts TCP but never
        # answers the handshake (the reader task keeps its nursery open), and
        # a client's socket is left open when the server closes first. Here
        # the stream is ours to close.
        target = _parse_url(url)
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        try:
            try:
                with trio.fail_after(self.connect_timeout):
                    if target.ssl_context is None:
                        stream = await trio.open_tcp_stream(target.host, target.port)
                    else:
                        stream = await trio.open_ssl_over_tcp_stream(
                            target.host,
                            target.port,
                            ssl_context=target.ssl_context,
                            https_compatible=True,
                        )
                    websocket = await wrap_client_stream(
                        nursery, stream, target.host_header, target.resource
                    )
            except trio.TooSlowError:
                raise ConnectionTimeout(
                    f"no connection within {self.connect_timeout} s"
                ) from None
            try:
                yield websocket
            finally:
                with trio.move_on_after(self.close_timeout):
                    await websocket.aclose()
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream)

    async def _connect_loop(self, url: str, task_status: trio.TaskStatus[None]) -> None:
        reported = False

        def ready() -> None:
            nonlocal reported
            self._attempt = 0
            LOGGER.info("connected to %s as %r", url, self.game_title)
            if not reported:
                reported = True
                task_status.started()

        self._attempt = 0
        while True:
            problem = "cancelled"
            with self._new_phase():
                problem = await self._connect_once(
                    url, StatusCallback(lambda _: ready())
                )
            if self._should_stop():
                break
            delay = self.backoff.delay(self._attempt, self._rng)
            self._attempt += 1
            LOGGER.warning(
                "%s: %s; reconnecting in %.2f s (attempt %d)",
                url,
                problem,
                delay,
                self._attempt,
            )
            with self._new_phase():
                await trio.sleep(delay)
            if self._should_stop():
                break
        LOGGER.info("disconnected from %s", url)

    async def _connect_once(self, url: str, on_ready: StatusCallback[None]) -> str:
        """Connect and serve until the connection ends; return why it did."""
        try:
            async with trio.open_nursery() as nursery:  # the reader task's
                try:
                    async with self._open_connection(url, nursery) as websocket:
                        # Stopping cancels only the session: leaving the
                        # ``async with`` then closes the connection politely.
                        with self._new_phase():
                            await self.serve(websocket, task_status=on_ready)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # trio-websocket raises ConnectionRejected from its reader task,
            # so connection errors arrive in a group; anything else (a bug,
            # Cancelled) goes on as it came.
            errors, rest = group.split(_CONNECTION_ERRORS)
            if rest is not None or errors is None:
                raise
            return _describe(next(_leaves(errors)))
        return "connection closed"


class _Target(NamedTuple):
    host: str
    port: int
    host_header: str
    resource: str
    ssl_context: ssl.SSLContext | None


def _parse_url(url: str) -> _Target:
    """Split a ``ws://`` or ``wss://`` URL; ValueError for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {url!r} (expected ws:// or wss://)")
    try:
        explicit_port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a WebSocket URL: {url!r} ({exc})") from None
    secure = parts.scheme == "wss"
    port = explicit_port or (443 if secure else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += f"?{parts.query}"
    return _Target(
        host=parts.hostname,
        port=port,
        host_header=parts.netloc.rpartition("@")[2],
        resource=resource,
        ssl_context=ssl.create_default_context() if secure else None,
    )


def _describe(exc: BaseException) -> str:
    """One line for the log: the error and, in brackets, its root cause."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause = exc.__cause__
    if cause is not None:
        # trio.open_tcp_stream's cause is a group of per-address errors.
        text += f" ({_describe(next(_leaves(cause)))})"
    return text


def __getattr__(name: str) -> Any:
    # TrioNeuroAPIComponent needs the optional libcomponent: import it only
    # when asked for, so everything else here works without it.
    if name == "TrioNeuroAPIComponent":
        from neuro_api._trio_component import (  # noqa: PLC0415 (optional dep)
            TrioNeuroAPIComponent,
        )

        return TrioNeuroAPIComponent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
