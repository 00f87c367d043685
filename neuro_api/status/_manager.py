"""The client-status manager: files, Redis and enforcement, in one place.

Every way of changing a list (a hand edit, the HTTP API, the console,
Python, another instance through Redis) ends in :class:`StatusManager`,
which writes the file atomically (re-read first, changed by adding and
removing names, so a hand edit made meanwhile is kept), applies the list to
the games (blocked ones closed and refused, paused ones held) and shares it
through Redis when configured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import orjson
import redis
import trio

from neuro_api._atomic import write_atomic
from neuro_api._text import printable
from neuro_api.server import (
    AbstractTrioNeuroServer,
    ConnectionEvent,
    ConnectionEventKind,
    ForceGate,
    Refusal,
    TrioNeuroServerClient,
)
from neuro_api.status._files import (
    INPUT_FILES,
    MAX_LISTED,
    OUTPUT_FILES,
    ListFile,
    client_name_problem,
    os_reason,
)
from neuro_api.status._model import ClientStates, StatusLists
from neuro_api.status._redis import (
    TIMEOUT,
    ListChange,
    RedisStatus,
    SyncReply,
    SyncRequest,
)

__all__ = [
    "BLOCKED",
    "CLOSED_BY_REQUEST",
    "MAX_LISTED",
    "SYNCED_FILE",
    "ListKind",
    "StatusFileError",
    "StatusManager",
]

LOGGER: Final = logging.getLogger("neuro_api.status")
ListKind = Literal["paused", "blocked"]
BLOCKED: Final = Refusal("blocked", 1008)
"""How a blocked game is closed and refused (the issue's close code)."""
CLOSED_BY_REQUEST: Final = Refusal("closed by request", 1000)
"""How a game named in Redis' ``clients_to_close`` is closed."""
SYNCED_FILE: Final = ".redis_synced.json"
"""Beside the lists: what this server last shared through Redis (its own
bookkeeping; the seed's tools ignore it)."""
_REDIS_BACKOFF: Final = (1.0, 30.0)
_LISTEN_POLL: Final = 0.25
"""Seconds the subscriber waits before it looks whether it was cancelled."""
"""First and longest wait before trying Redis again after a failure."""
_KINDS: Final[tuple[ListKind, ...]] = ("paused", "blocked")
_T = TypeVar("_T")


class StatusFileError(Exception):
    """A list cannot be changed: its file is unusable, unwritable or full."""


@dataclasses.dataclass(slots=True)
class _RedisState:
    """What the manager knows of its Redis mirror."""

    store: RedisStatus
    synced: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    """The shared lists as of the last sync (what local changes are from)."""
    wake: trio.Event = dataclasses.field(default_factory=trio.Event)
    up: bool | None = None
    """None before the first attempt."""
    error: str | None = None
    saved: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    """What :attr:`synced` was when last saved to :data:`SYNCED_FILE`."""
    own_version: int = 0
    own_synced: int = -1
    closed: set[str] = dataclasses.field(default_factory=set)
    syncs: int = 0
    failures: int = 0


class StatusManager:
    """Paused, blocked, active, deactivated and lost clients (games, by title).

    Run it (:meth:`run`, a service reporting readiness once the files are
    loaded) and attach it to a server (:meth:`attach`) before games
    connect. Then change lists with :meth:`pause`, :meth:`resume`,
    :meth:`block` and :meth:`unblock`; :meth:`lists` and :meth:`report`
    say where things stand.

    ``directory`` holds the seed's files (created when missing); the input
    files are looked at every ``period`` seconds (a ``stat`` each when
    nothing changed). With ``redis_url`` the lists are shared with every
    instance using the same Redis (see :mod:`neuro_api.status._redis`);
    ``instance_id`` names this one there (default: random).
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        period: float = 0.5,
        max_known: int = 10_000,
        redis_url: str | None = None,
        redis_ttl: float = 10.0,
        instance_id: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.period = period
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.states = ClientStates(max_known=max_known)
        self.files = {
            kind: ListFile(self.directory / name, max_clients=MAX_LISTED)
            for kind, name in INPUT_FILES.items()
        }
        self.files.update(
            (kind, ListFile(self.directory / name))
            for kind, name in OUTPUT_FILES.items()
        )
        self.server: AbstractTrioNeuroServer | None = None
        self.gate: ForceGate | None = None
        self.problems: dict[str, str] = {}
        """What is wrong now, by where (a file's name, ``redis``)."""
        self.loaded = False
        self._lock = trio.Lock()
        self._io_limiter = trio.CapacityLimiter(1)
        self._wake = trio.Event()
        self._written: StatusLists | None = None
        self._dirty = True
        self._sessions: dict[str, str] = {}
        self._redis: _RedisState | None = None
        if redis_url is not None:
            self._redis = _RedisState(
                RedisStatus(redis_url, self.instance_id, ttl=redis_ttl)
            )
        self.writes = 0
        self.unlisted = 0
        """Games served but not listed: their title cannot be a client name."""

    # --- the server's hooks ------------------------------------------------

    def attach(
        self, server: AbstractTrioNeuroServer, gate: ForceGate | None = None
    ) -> None:
        """Enforce the lists on ``server``'s games (through its public hooks).

        Adds an admission check (blocked titles refused), a force gate
        (``gate``, or a new one named ``paused``) and a connection listener.
        The capability passes what its :class:`~neuro_api.capability.Setup`
        made; a library-run server just calls ``attach(server)``.
        """
        self.server = server
        if gate is None:
            server.add_admission_check(self.admit)
            gate = server.add_force_gate(ForceGate("paused"))
            server.connection_events.subscribe(self.on_connection_event)
        self.gate = gate
        gate.set_held(self.states.paused)

    def admit(self, client: TrioNeuroServerClient, game_title: str) -> Refusal | None:
        """The admission check: a blocked title is refused (1008 ``blocked``)."""
        return BLOCKED if game_title in self.states.blocked else None

    def on_connection_event(self, event: ConnectionEvent) -> None:
        """Track who is connected; a game that started is active."""
        if event.kind is ConnectionEventKind.STARTED and event.game_title is not None:
            title = event.game_title
            if client_name_problem(title) is not None:
                # Served, as the production server would, but not listed: no
                # list may name it (empty, too long, control characters).
                self.unlisted += 1
                return
            self._sessions[event.session_id] = title
            self.states.connected(title)
            self._changed()
            if title in self.states.blocked and self.server is not None:
                # Blocked after its admission, before it started: the block
                # closed what was active then, which did not include it.
                self.server.expel(title, BLOCKED)
        elif event.kind is ConnectionEventKind.DISCONNECTED:
            gone = self._sessions.pop(event.session_id, None)
            if gone is not None:
                self.states.disconnected(gone, clean=event.clean is not False)
                self._changed()

    def _changed(self) -> None:
        self._dirty = True
        if self._redis is not None:
            self._redis.own_version += 1

    # --- what an admin does ------------------------------------------------

    async def pause(self, client: str) -> None:
        """Pause ``client``: its forces and actions are held until resumed.

        Raises :class:`ValueError` for a name that cannot be a client's and
        :class:`StatusFileError` when ``pause_clients.json`` is unusable or
        cannot be written.
        """
        await self._change("paused", add=client)

    async def resume(self, client: str) -> None:
        """Resume ``client``: what was held is delivered, in order."""
        await self._change("paused", remove=client)

    async def block(self, client: str) -> None:
        """Block ``client``: its connections are closed (1008) and refused."""
        await self._change("blocked", add=client)

    async def unblock(self, client: str) -> None:
        """Unblock ``client``: it may connect again."""
        await self._change("blocked", remove=client)

    async def set_listed(self, kind: ListKind, client: str, listed: bool) -> None:
        """Put ``client`` in the ``kind`` list (``paused``, ``blocked``) or out.

        What :meth:`pause`, :meth:`resume`, :meth:`block` and
        :meth:`unblock` do, for callers that hold the list's name.
        """
        if kind not in _KINDS:
            raise ValueError(f"no list {kind!r}: paused or blocked")
        if listed:
            await self._change(kind, add=client)
        else:
            await self._change(kind, remove=client)

    async def _change(
        self, kind: ListKind, *, add: str | None = None, remove: str | None = None
    ) -> None:
        for name in (add, remove):
            problem = None if name is None else client_name_problem(name)
            if problem is not None:
                raise ValueError(problem)
        file = self.files[kind]
        async with self._lock:
            if add is not None and len(file.clients) >= MAX_LISTED:
                await self._io(file.read_if_changed)
                if add not in file.clients and len(file.clients) >= MAX_LISTED:
                    raise StatusFileError(
                        f"{file.path.name} holds {MAX_LISTED} clients already"
                    )
            adding = () if add is None else (add,)
            removing = () if remove is None else (remove,)
            try:
                await self._io(file.update, adding, removing)
            except OSError as exc:
                raise StatusFileError(
                    f"{file.path.name} cannot be written: {os_reason(exc)}"
                ) from None
            finally:
                self._file_read(kind)
            if file.error is not None:
                raise StatusFileError(
                    f"{file.path.name} cannot be changed until it is fixed: "
                    f"{file.error}"
                )
        self._wake_redis()

    # --- what is known -----------------------------------------------------

    def lists(self) -> StatusLists:
        """Every list now (the seed's formula for ``deactivated``)."""
        return self.states.lists()

    def health(self) -> dict[str, Any]:
        """The ``/health`` section (public: counts and states, no names)."""
        status = "healthy" if self.loaded and not self.problems else "degraded"
        section: dict[str, Any] = {
            "status": status,
            "problems": sorted(self.problems),
            "redis": self._redis_state(),
        }
        return section

    def _redis_state(self) -> str:
        mirror = self._redis
        if mirror is None:
            return "off"
        if mirror.up is None:
            return "connecting"
        return "up" if mirror.up else "down"

    def report(self) -> dict[str, Any]:
        """``GET /status``: every list, each client's states, files, Redis."""
        lists = self.lists()
        mirror = self._redis
        return {
            "lists": {
                name.name: list(getattr(lists, name.name))
                for name in dataclasses.fields(lists)
            },
            "clients": lists.states(),
            "files": {
                file.path.name: {"path": str(file.path), "error": file.error}
                for file in self.files.values()
            },
            "redis": {
                "state": self._redis_state(),
                "instance": self.instance_id,
                "error": None if mirror is None else mirror.error,
            },
            "problems": dict(sorted(self.problems.items())),
        }

    def stats(self) -> dict[str, Any]:
        """The ``/stats`` section: counts."""
        lists = self.lists()
        mirror = self._redis
        return {
            "known": len(lists.available),
            "active": len(lists.active),
            "paused": len(lists.paused),
            "blocked": len(lists.blocked),
            "connection_error": len(lists.connection_error),
            "file_writes": self.writes,
            "unlisted_games": self.unlisted,
            "redis_syncs": 0 if mirror is None else mirror.syncs,
            "redis_failures": 0 if mirror is None else mirror.failures,
        }

    # --- problems ----------------------------------------------------------

    def _problem(self, where: str, message: str | None) -> None:
        """Record (``message``) or clear (None) what is wrong at ``where``.

        A new problem is logged once, as a warning; its end once, as info.
        """
        before = self.problems.get(where)
        if message == before:
            return
        if message is None:
            del self.problems[where]
            LOGGER.info("status: %s is fine again", where)
            return
        self.problems[where] = message
        LOGGER.warning("status: %s: %s", where, printable(message))

    # --- the service ---------------------------------------------------------

    async def _io(self, function: Callable[..., _T], *args: Any) -> _T:
        return await trio.to_thread.run_sync(function, *args, limiter=self._io_limiter)

    def _load(self) -> None:
        for file in self.files.values():
            file.ensure()
            file.read_if_changed()

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Load the files, report ready, then keep files, games and Redis in step.

        Raises :class:`OSError` when the directory or a file cannot be
        created (nothing could be enforced).
        """
        async with self._lock:
            await self._io(self._load)
            for kind in _KINDS:
                self._file_read(kind)
            self.states.remember(self.files["active"].clients)
            self.states.remember(self.files["deactivated"].clients)
            self.states.remember(
                self.files["connection_error"].clients, network_errors=True
            )
            for name in OUTPUT_FILES:
                self._output_problem(name)
            if self._redis is not None:
                synced, problem = await self._io(self._load_synced)
                self._redis.synced = dict(synced)
                self._redis.saved = dict(synced)
                self._problem(SYNCED_FILE, problem)
        self.loaded = True
        await self.tick()
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                if self._redis is not None:
                    nursery.start_soon(self._redis_loop, self._redis)
                    nursery.start_soon(self._listen, self._redis)
                while True:
                    with trio.move_on_after(self.period):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    await self.tick()
        finally:
            self.loaded = False
            if self._redis is not None:
                await self._leave(self._redis)

    async def tick(self) -> None:
        """Look at the input files once; write the outputs if they changed.

        Connections that came and went since the last tick reach the files
        and Redis now: a storm of them costs one write per period.
        """
        async with self._lock:
            changed = await self._io(self._read_inputs)
            for kind in changed:
                self._file_read(kind)
            mirror = self._redis
            if mirror is not None and mirror.own_synced != mirror.own_version:
                mirror.wake.set()
            if not self._dirty:
                return
            lists = self.states.lists()
            if lists == self._written:
                self._dirty = False
                return
            try:
                await self._io(self._write_outputs, lists)
            except OSError as exc:
                self._problem(
                    "files", f"cannot write the output files: {os_reason(exc)}"
                )
                return  # still dirty: tried again next time
            finally:
                for name in OUTPUT_FILES:
                    self._output_problem(name)
            self._problem("files", None)
            self._written = lists
            self._dirty = False

    def _read_inputs(self) -> list[ListKind]:
        """Read the input files that changed (a worker thread's work).

        One deleted while running is created again, empty, as a missing
        one is at start (deleting ``pause_clients.json`` resumes everyone);
        if that fails, it stays a problem, tried again next time.
        """
        changed = []
        for kind in _KINDS:
            file = self.files[kind]
            if file.read_if_changed():
                changed.append(kind)
            if file.missing:
                with contextlib.suppress(OSError):
                    file.ensure()
                    file.read_if_changed()
        return changed

    def _write_outputs(self, lists: StatusLists) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)  # deleted meanwhile
        for kind in OUTPUT_FILES:
            if self.files[kind].write(getattr(lists, kind)):
                self.writes += 1

    def _output_problem(self, kind: str) -> None:
        file = self.files[kind]
        message = None
        if file.error is not None:
            message = f"{file.error} (it is not overwritten: fix or delete it)"
        self._problem(file.path.name, message)

    def _file_read(self, kind: ListKind) -> None:
        """Apply what the ``kind`` file says now (its last good list)."""
        file = self.files[kind]
        message = None
        if file.error is not None:
            message = f"{file.error} (the last good list is kept)"
        self._problem(file.path.name, message)
        self._apply(kind, file.clients)

    def _apply(self, kind: ListKind, clients: frozenset[str]) -> None:
        """Enforce ``clients`` as the ``kind`` list (a file's, or Redis')."""
        if kind == "paused":
            if clients != self.states.paused:
                self.states.set_paused(clients)
                if self.gate is not None:
                    self.gate.set_held(clients)
                self._changed()
                self._wake_redis()
        elif clients != self.states.blocked:
            newly = clients - self.states.blocked
            self.states.set_blocked(clients)
            self._changed()
            self._wake_redis()
            if self.server is not None:
                # Every connection named so, started or not: a game is
                # admitted on its first frame, before (or without) the
                # startup that makes it active here.
                named = {client.game_title for client in self.server.clients.values()}
                for title in newly & named:
                    self.server.expel(title, BLOCKED)

    # --- Redis -------------------------------------------------------------

    def _wake_redis(self) -> None:
        if self._redis is not None:
            self._redis.wake.set()

    def _sync_request(self, mirror: _RedisState, *, full: bool) -> SyncRequest:
        changes: dict[str, ListChange] = {}
        for kind in _KINDS:
            file = self.files[kind]
            local = file.clients
            synced = mirror.synced.get(kind)
            if file.error is not None:
                # Unusable now (a hand edit to fix): its last good list is no
                # change of ours, it only puts the field back if Redis lost it.
                if full or synced is None:
                    changes[kind] = ListChange(frozenset(), frozenset(), local)
            elif synced is None:  # the first sync: ours join the shared list
                changes[kind] = ListChange(local, frozenset(), local)
            elif local != synced or full:
                changes[kind] = ListChange(local - synced, synced - local, local)
        own = full or mirror.own_synced != mirror.own_version
        lists = self.states.lists() if own else None
        return SyncRequest(
            lists=changes,
            available=None if lists is None else frozenset(lists.available),
            active=frozenset() if lists is None else frozenset(lists.active),
            errors=frozenset() if lists is None else frozenset(lists.connection_error),
            closed=frozenset(mirror.closed),
        )

    async def _redis_loop(self, mirror: _RedisState) -> None:
        """Sync on every change and every third of the TTL; back off when down."""
        backoff = _REDIS_BACKOFF[0]
        renew = mirror.store.ttl / 3
        full = False
        while True:
            mirror.wake = trio.Event()
            version = mirror.own_version
            request = self._sync_request(mirror, full=full)
            try:
                reply = await trio.to_thread.run_sync(
                    mirror.store.sync, request, abandon_on_cancel=True
                )
            except (redis.RedisError, OSError) as exc:
                mirror.failures += 1
                if mirror.up is not False:
                    LOGGER.warning(
                        "status: Redis is unreachable (%s); the files go on, and "
                        "Redis is synced again when it is back",
                        printable(str(exc)),
                    )
                mirror.up = False
                mirror.error = f"cannot reach Redis: {exc}"
                self._problem("redis", mirror.error)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, _REDIS_BACKOFF[1])
                full = True  # it may have restarted empty
                continue
            backoff = _REDIS_BACKOFF[0]
            mirror.syncs += 1
            if mirror.up is False:
                LOGGER.info("status: Redis is back; synced")
            mirror.up, mirror.error = True, None
            mirror.closed -= request.closed
            if request.available is not None:
                mirror.own_synced = version
            self._problem("redis", "; ".join(reply.problems) or None)
            await self._take_shared(mirror, request, reply)
            # Once more with everything when Redis lost something of ours;
            # not again and again if that does not help (no hot loop).
            again = reply.need_full and not full
            full = reply.need_full
            if again:
                continue
            with trio.move_on_after(renew):
                await mirror.wake.wait()

    async def _take_shared(
        self, mirror: _RedisState, request: SyncRequest, reply: SyncReply
    ) -> None:
        for kind in _KINDS:
            shared = reply.shared.get(kind)
            if shared is None:
                continue  # the field is unusable: nothing of ours was applied
            change = request.lists.get(kind)
            before = mirror.synced.get(kind)
            sent = change.full if change is not None else before
            taken = False
            problem = _shared_list_problem(shared)
            if problem is None:
                taken, problem = await self._take(
                    kind, shared, sent if sent is not None else self.files[kind].clients
                )
            self._problem(f"redis {kind}", problem)
            if taken:
                mirror.synced[kind] = shared
            elif change is not None and (change.add or change.remove):
                # Not taken (yet: once the list or our file can be), but our
                # change is in: never sent again, where it would undo later
                # changes of others (each instance undoing the other's).
                mirror.synced[kind] = change.full
        if mirror.synced != mirror.saved:
            await self._save_synced(mirror)
        server = self.server
        for title in reply.to_close:
            if title in mirror.closed:
                continue
            if server is not None and server.expel(title, CLOSED_BY_REQUEST):
                mirror.closed.add(title)
        if mirror.closed:
            mirror.wake.set()

    async def _save_synced(self, mirror: _RedisState) -> None:
        """Remember what was last shared, across restarts (:data:`SYNCED_FILE`).

        So that a server that starts again sends only what changed here
        since, and does not bring back what others removed meanwhile. A
        failure to write it is a problem, not a crash (tried again later).
        """
        synced = dict(mirror.synced)
        data = orjson.dumps(
            {kind: sorted(clients) for kind, clients in sorted(synced.items())},
            option=orjson.OPT_INDENT_2,
        )
        try:
            await self._io(write_atomic, self.directory / SYNCED_FILE, data)
        except OSError as exc:
            self._problem(SYNCED_FILE, f"cannot be written: {os_reason(exc)}")
            return
        self._problem(SYNCED_FILE, None)
        mirror.saved = synced

    def _load_synced(self) -> tuple[dict[str, frozenset[str]], str | None]:
        """The last shared lists saved by :meth:`_save_synced` (worker thread).

        Empty when there are none (the first sync is then a union); with a
        problem to show when they cannot be read (they are then ignored:
        rewritten at the next sync).
        """
        path = self.directory / SYNCED_FILE
        try:
            document = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return {}, None
        except orjson.JSONDecodeError as exc:
            return {}, f"ignored (not JSON: {exc})"
        except OSError as exc:
            return {}, f"ignored: {os_reason(exc)}"
        found: dict[str, frozenset[str]] = {}
        if isinstance(document, dict):
            for kind in _KINDS:
                names = document.get(kind)
                if isinstance(names, list) and _shared_list_problem(names) is None:
                    found[kind] = frozenset(names)
        return found, None

    async def _take(
        self, kind: ListKind, shared: frozenset[str], sent: frozenset[str]
    ) -> tuple[bool, str | None]:
        """Make the ``kind`` file hold ``shared`` (Redis' list; we sent ``sent``).

        The difference is applied to what the file says now, so changes
        made here meanwhile are kept. Returns whether the file took it, and
        why it could not be written (None: it could, or it is unusable and
        says so itself).
        """
        if shared == sent:
            return True, None
        file = self.files[kind]
        async with self._lock:
            try:
                await self._io(file.update, shared - sent, sent - shared)
            except OSError as exc:
                return False, (
                    f"not taken: {file.path.name} cannot be written: {os_reason(exc)}"
                )
            finally:
                self._file_read(kind)
        if file.error is not None:
            # The file is a hand edit to fix: what was shared is enforced
            # from memory meanwhile (a block made elsewhere applies here).
            self._apply(kind, shared)
            return False, None
        return True, None

    async def _listen(self, mirror: _RedisState) -> None:
        """Wake the sync when another instance changed something.

        The worker thread is never abandoned: it ends within a poll (0.25 s)
        of a cancellation, so the subscriber's connection is closed by
        :meth:`_leave` after it, never under it (redis-py would reconnect).
        """
        limiter = trio.CapacityLimiter(1)
        backoff = _REDIS_BACKOFF[0]
        while True:
            try:
                sender = await trio.to_thread.run_sync(
                    _wait_for_change, mirror.store, limiter=limiter
                )
            except (redis.RedisError, OSError):
                # The sync loop reports Redis down; just try again later.
                await trio.sleep(backoff)
                backoff = min(backoff * 2, _REDIS_BACKOFF[1])
                continue
            backoff = _REDIS_BACKOFF[0]
            if sender is not None:
                mirror.wake.set()

    async def _leave(self, mirror: _RedisState) -> None:
        """Take this instance's entries out of Redis at once; close (bounded).

        Runs when the service stops, cancelled or not: shielded, for at
        most :data:`~neuro_api.status._redis.TIMEOUT` seconds per step.
        """
        with trio.CancelScope(shield=True):
            with (
                trio.move_on_after(TIMEOUT),
                contextlib.suppress(redis.RedisError, OSError),
            ):  # if this fails, its entries expire
                await trio.to_thread.run_sync(
                    mirror.store.sync, SyncRequest(leave=True), abandon_on_cancel=True
                )
            with trio.move_on_after(TIMEOUT):
                await trio.to_thread.run_sync(
                    mirror.store.close, abandon_on_cancel=True
                )


def _wait_for_change(store: RedisStatus) -> str:
    """Wait for another instance's change (in a worker thread of Trio's).

    Returns its id; raises :class:`trio.Cancelled` within a poll of the
    calling task's cancellation, or what Redis raised.
    """
    while True:
        trio.from_thread.check_cancelled()
        sender = store.wait_for_change(_LISTEN_POLL)
        if sender is not None:
            return sender


def _shared_list_problem(clients: Iterable[str]) -> str | None:
    names = list(clients)
    if len(names) > MAX_LISTED:
        return f"{len(names)} clients listed: at most {MAX_LISTED} (not taken)"
    for name in names:
        problem = client_name_problem(name)
        if problem is not None:
            return f"{problem} (the list is not taken)"
    return None
