"""The call sync: every interval, Twilio's word on each accepted call.

:class:`CallSync` looks up the room of every ``accepted`` video call (many
at a time, each lookup bounded), applies :func:`~neuro_api.calls._decide.decide`
and writes back what changed, compare-and-set (a hang-up meanwhile wins).
Then, given a :class:`PhoneCalls`, it looks up the Call of ``accepted``
phone calls older than a minimum age (at most so many per sync: the calls
looked up longest ago first, the rest at the next sync) and ends those
Twilio says are over (:func:`~neuro_api.calls._phone_rules.decide_phone`):
their bridge died with its process, or could not write the registry.
It runs under the store's lock, so with a shared (Redis) registry only one
server syncs at a time. Rooms are looked up through :class:`Rooms`, an
async interface: :class:`ThreadedRooms` puts the blocking Twilio client in
worker threads; tests use a fake.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

import trio

from neuro_api._shared import first_leaf
from neuro_api.calls._decide import RoomLook, SyncRules, decide
from neuro_api.calls._model import Call, CallStatus
from neuro_api.calls._phone_rules import CallLook, decide_phone
from neuro_api.calls._store import MAX_CALLS, CallStore

__all__ = [
    "JOB_ID",
    "JOB_NAME",
    "AsyncStore",
    "CallSync",
    "LockLost",
    "PhoneCalls",
    "Rooms",
    "SyncResult",
    "ThreadedRooms",
]

LOGGER: Final = logging.getLogger("neuro_api.calls")
JOB_ID: Final = "sync_calls_twilio"
"""The seed's job id and name (``GET /api/admin/background-service``)."""
JOB_NAME: Final = "Sync Calls with Twilio"
_LOCK: Final = "sync"
PHONE_MIN_AGE: Final = 60.0
"""Seconds a phone call is left to its bridge before the sync asks Twilio."""
PHONE_LOOKUPS: Final = 100
"""Phone calls looked up at Twilio per sync at most."""
_T = TypeVar("_T")


class LockLost(Exception):
    """The sync's lock was taken from it (expired, or the store forgot it)."""


class Rooms(Protocol):
    """Twilio's answer about a room, asynchronously (never raises for Twilio)."""

    async def look(self, room: str) -> RoomLook:
        """What Twilio says of ``room`` now."""


class PhoneCalls(Protocol):
    """Twilio's answer about a Call, asynchronously (never raises for Twilio)."""

    async def look(self, call_sid: str) -> CallLook:
        """What Twilio says of the call ``call_sid`` now."""


class BlockingRooms(Protocol):
    """The blocking client :class:`ThreadedRooms` wraps (``TwilioRooms``)."""

    def look(self, room: str) -> RoomLook:
        """What Twilio says of ``room`` (blocking)."""


class ThreadedRooms:
    """A blocking rooms client in worker threads: bounded in number and time.

    At most ``limiter`` lookups at once; one that takes longer than
    ``timeout`` seconds is an error for that call (its thread is left to
    finish on its own: the client's own timeout ends it).
    """

    def __init__(
        self,
        rooms: BlockingRooms,
        limiter: trio.CapacityLimiter,
        timeout: float = 15.0,
    ) -> None:
        self.rooms = rooms
        self.limiter = limiter
        self.timeout = timeout

    async def look(self, room: str) -> RoomLook:
        """Look ``room`` up in a worker thread; an error after the timeout."""
        with trio.move_on_after(self.timeout):
            return await trio.to_thread.run_sync(
                self.rooms.look, room, limiter=self.limiter, abandon_on_cancel=True
            )
        return RoomLook("error", error=f"timed out after {self.timeout:g} s")


class AsyncStore:
    """A :class:`CallStore` called from Trio: one worker thread at a time."""

    def __init__(self, store: CallStore) -> None:
        self.store = store
        self._limiter = trio.CapacityLimiter(1)

    async def call(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(*args)`` (a method of the store) in the worker."""
        return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)

    async def accepted(self, limit: int) -> list[Call]:
        """The accepted video calls (phone calls have no room: see below)."""
        return await self.call(self.store.calls, "accepted", limit, "video")

    async def accepted_phone(self, limit: int) -> list[Call]:
        """The accepted phone calls, newest first."""
        return await self.call(self.store.calls, "accepted", limit, "phone")

    async def replace(self, call: Call, expected: CallStatus) -> bool:
        """Compare-and-set (see :meth:`CallStore.replace`)."""
        return await self.call(self.store.replace, call, expected)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncResult:
    """One sync: how many calls were looked at, ended, left alone."""

    started_at: dt.datetime
    finished_at: dt.datetime
    synced: int
    ended: int
    skipped: int
    """Left alone: Twilio could not be asked about them."""
    errors: tuple[str, ...]
    """Twilio's trouble, one line per kind (counted)."""
    ran: bool = True
    """False: another server was syncing (nothing was done here)."""
    phone_synced: int = 0
    """Phone calls looked up at Twilio (counted in ``synced`` too)."""
    phone_ended: int = 0
    """Phone calls ended because Twilio's were over (in ``ended`` too)."""
    phone_deferred: int = 0
    """Phone calls old enough but left for the next sync (the cap per sync)."""


@dataclasses.dataclass(slots=True)
class _PhoneTally:
    """The phone part of one sync, counted."""

    synced: int = 0
    ended: int = 0
    skipped: int = 0
    deferred: int = 0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CallSync:
    """The background job: :meth:`sync_once` every ``interval`` seconds.

    ``rooms`` None means Twilio is not configured: the job does not run
    (:meth:`sync_once` raises :class:`RuntimeError`). ``phones`` None leaves
    phone calls alone; given, each sync looks up at most ``phone_lookups``
    accepted phone calls at least ``phone_min_age`` seconds old (so one
    being answered now is never raced). ``concurrency``
    bounds the lookups in flight; ``max_calls`` the calls of one sync.
    The store's lock lives ``lock_ttl`` seconds (default: two intervals,
    at least a minute) and is renewed every third of it while a sync runs.
    """

    def __init__(
        self,
        store: AsyncStore,
        rooms: Rooms | None,
        rules: SyncRules,
        *,
        phones: PhoneCalls | None = None,
        phone_min_age: float = PHONE_MIN_AGE,
        phone_lookups: int = PHONE_LOOKUPS,
        interval: float = 180.0,
        concurrency: int = 20,
        max_calls: int = MAX_CALLS,
        lock_ttl: float | None = None,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.rules = rules
        self.phones = phones
        self.phone_min_age = phone_min_age
        self.phone_lookups = phone_lookups
        self.interval = interval
        self.concurrency = concurrency
        self.max_calls = max_calls
        self.lock_ttl = max(60.0, interval * 2) if lock_ttl is None else lock_ttl
        self.clock = clock
        self.running = False
        self.next_run: dt.datetime | None = None
        self.last: SyncResult | None = None
        self.last_error: str | None = None
        """Why the last sync failed as a whole (the store), or None."""
        self.skipped_total = 0
        self.syncs = 0
        """Syncs run here (not counting those another server ran)."""
        self._token = secrets.token_hex(8)
        self._lock = trio.Lock()
        self._phone_looked: dict[str, int] = {}
        """The sync (its number here) that last looked each phone call up:
        the cap takes those never or longest ago looked up first, so calls
        that go on cannot keep the others waiting for ever."""
        self._rounds = 0

    async def sync_once(self) -> SyncResult:
        """Sync every accepted call now; one sync at a time (process and store).

        Raises :class:`RuntimeError` when Twilio is not configured,
        :class:`LockLost` when another server took the lock meanwhile (the
        sync stops: what it wrote stands, nothing more is written), and what
        the store raised (the sync is then retried at the next interval).
        """
        rooms = self.rooms
        if rooms is None:
            raise RuntimeError("Twilio is not configured")
        async with self._lock:
            started = self.clock()
            if not await self.store.call(
                self.store.store.acquire, _LOCK, self._token, self.lock_ttl
            ):
                # Another server syncs: this one's last sync stays its last.
                return SyncResult(started, self.clock(), 0, 0, 0, (), ran=False)
            try:
                with trio.CancelScope() as lost:
                    async with trio.open_nursery() as nursery:
                        # A sync may outlast the lock (thousands of slow
                        # lookups): keep it, or another server would sync
                        # the same calls at the same time.
                        nursery.start_soon(self._keep_lock, lost)
                        result = await self._sync(rooms, started)
                        nursery.cancel_scope.cancel()
                if lost.cancelled_caught:
                    raise LockLost("the sync lock was taken by another server")
            except ExceptionGroup as group:
                # The store's failure as itself (the nurseries wrap it): the
                # health says it, the routes answer it (503).
                raise first_leaf(group) from None
            finally:
                with trio.CancelScope(shield=True):
                    await self.store.call(self.store.store.release, _LOCK, self._token)
        self.last, self.last_error = result, None
        self.syncs += 1
        self.skipped_total += result.skipped
        LOGGER.info(
            "Synced %d calls with Twilio, ended %d calls", result.synced, result.ended
        )
        if result.phone_deferred:
            LOGGER.info(
                "%d phone calls left for the next sync (at most %d looked up per sync)",
                result.phone_deferred,
                self.phone_lookups,
            )
        return result

    async def _keep_lock(self, lost: trio.CancelScope) -> None:
        """Renew the lock every third of its life; cancel ``lost`` once it is gone."""
        while True:
            await trio.sleep(self.lock_ttl / 3)
            if not await self.store.call(
                self.store.store.renew, _LOCK, self._token, self.lock_ttl
            ):
                lost.cancel()
                return

    async def _sync(self, rooms: Rooms, started: dt.datetime) -> SyncResult:
        calls = await self.store.accepted(self.max_calls)
        ended = skipped = 0
        errors: dict[str, int] = {}
        # ``concurrency`` workers take the calls in turn: memory does not
        # grow with the number of calls (a task each would).
        waiting = iter(calls)

        async def worker() -> None:
            for call in waiting:
                await one(call)

        async def one(call: Call) -> None:
            nonlocal ended, skipped
            look = await rooms.look(call.room)
            verdict = decide(call, look, self.clock(), self.rules)
            if verdict.action == "skip":
                skipped += 1
                reason = verdict.error or "unknown"
                errors[reason] = errors.get(reason, 0) + 1
                return
            if verdict.call == call:
                return
            if not await self.store.replace(verdict.call, "accepted"):
                return  # ended meanwhile (a hang-up): theirs stands
            if verdict.action == "end":
                ended += 1
                LOGGER.info(
                    "Ended call %s - %s (Duration: %ds)",
                    call.id,
                    verdict.call.end_reason,
                    verdict.call.duration or 0,
                )

        async with trio.open_nursery() as nursery:
            for _ in range(min(self.concurrency, len(calls))):
                nursery.start_soon(worker)
        phone = _PhoneTally()
        if self.phones is not None:
            phone = await self._sync_phones(self.phones, errors)
        described = tuple(
            f"{reason} ({count} calls)" if count > 1 else reason
            for reason, count in sorted(errors.items())
        )
        return SyncResult(
            started,
            self.clock(),
            len(calls) + phone.synced,
            ended + phone.ended,
            skipped + phone.skipped,
            described,
            phone_synced=phone.synced,
            phone_ended=phone.ended,
            phone_deferred=phone.deferred,
        )

    def _phone_turns(self, calls: list[Call]) -> tuple[list[Call], int]:
        """The phone calls of this sync, and how many wait for the next.

        Those never or longest ago looked up come first, then the oldest.
        """
        now = self.clock()
        due = [
            call
            for call in calls
            if (now - (call.accepted_at or call.created_at)).total_seconds()
            >= self.phone_min_age
        ]
        looked = self._phone_looked
        # Forget the calls that ended or were forgotten: memory follows the
        # calls going on.
        self._phone_looked = {c.id: looked[c.id] for c in due if c.id in looked}
        due.sort(key=lambda c: (self._phone_looked.get(c.id, -1), c.created_at))
        chosen = due[: max(0, self.phone_lookups)]
        for call in chosen:
            self._phone_looked[call.id] = self._rounds
        return chosen, len(due) - len(chosen)

    async def _sync_phones(
        self, phones: PhoneCalls, errors: dict[str, int]
    ) -> _PhoneTally:
        """Ask Twilio about the phone calls whose turn it is; end those over.

        A call Twilio could not be asked about is a warning (one line) and
        is counted in ``errors``; the others go on.
        """
        self._rounds += 1
        calls, deferred = self._phone_turns(
            await self.store.accepted_phone(self.max_calls)
        )
        tally = _PhoneTally(synced=len(calls), deferred=deferred)
        waiting = iter(calls)

        async def worker() -> None:
            for call in waiting:
                await one(call)

        async def one(call: Call) -> None:
            call_sid = call.call_sid or call.id
            look = await phones.look(call_sid)
            verdict = decide_phone(call, look, self.clock())
            if verdict.action == "skip":
                tally.skipped += 1
                reason = verdict.error or "unknown"
                errors[reason] = errors.get(reason, 0) + 1
                LOGGER.warning(
                    "call sync: Twilio could not be asked about phone call %s: %s",
                    call_sid,
                    reason,
                )
                return
            if verdict.action != "end":
                return  # going on: its bridge is somewhere
            if not await self.store.replace(verdict.call, "accepted"):
                return  # ended meanwhile (its bridge, an operator): theirs stands
            tally.ended += 1
            LOGGER.info(
                "Ended call %s - %s (Twilio: %s, Duration: %ds)",
                call.id,
                verdict.call.end_reason,
                look.status or "not found",
                verdict.call.duration or 0,
            )

        async with trio.open_nursery() as nursery:
            for _ in range(min(self.concurrency, len(calls))):
                nursery.start_soon(worker)
        return tally

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sync every interval until cancelled (the first one an interval in).

        A failing sync (the store down) is logged and said in
        :attr:`last_error`; the job goes on.
        """
        self.running = True
        task_status.started()
        try:
            while True:
                self.next_run = self.clock() + dt.timedelta(seconds=self.interval)
                await trio.sleep(self.interval)
                try:
                    await self.sync_once()
                except Exception as exc:  # the store: said, tried again later
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    LOGGER.warning("call sync failed: %s", self.last_error)
        finally:
            self.running = False
            self.next_run = None

    def job(self) -> dict[str, Any]:
        """The seed's job description (``background_service.jobs[0]``)."""
        return {
            "id": JOB_ID,
            "name": JOB_NAME,
            "next_run": None
            if self.next_run is None
            else self.next_run.isoformat().replace("+00:00", "Z"),
            "trigger": f"interval[{dt.timedelta(seconds=round(self.interval))}]",
        }
