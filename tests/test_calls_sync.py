"""The call sync over a real SQLite store and a fake async Twilio."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from neuro_api.calls._decide import RoomLook, SyncRules
from neuro_api.calls._model import Call
from neuro_api.calls._store import SqliteCallStore
from neuro_api.calls._sync import AsyncStore, CallSync, LockLost, ThreadedRooms

pytestmark = pytest.mark.timeout(30)
T0 = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
RULES = SyncRules(min_age=300, empty_timeout=300, single_timeout=600)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class FakeRooms:
    """Twilio as the test says it is; each look takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.rooms: dict[str, RoomLook] = {}
        self.delay = delay
        self.looks = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: trio.Event | None = None

    async def look(self, room: str) -> RoomLook:
        self.looks += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await trio.sleep(self.delay)
            return self.rooms.get(room, RoomLook("not_found"))
        finally:
            self.in_flight -= 1


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteCallStore]:
    made = SqliteCallStore(tmp_path / "calls.sqlite3")
    yield made
    made.close()


def add_accepted(store: SqliteCallStore, room: str, at: float = 0) -> Call:
    when = T0 + dt.timedelta(seconds=at)
    call = Call.new("alice", "bob", room, when).accept(when)
    store.add(call)
    return call


async def test_a_sync_applies_the_rules_and_says_so_as_the_seed(
    store: SqliteCallStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="neuro_api.calls")
    clock = Clock()
    rooms = FakeRooms()
    gone = add_accepted(store, "gone")
    busy = add_accepted(store, "busy")
    empty = add_accepted(store, "empty")
    flaky = add_accepted(store, "flaky")
    rooms.rooms["busy"] = RoomLook("found", "in-progress", 2)
    rooms.rooms["empty"] = RoomLook("found", "in-progress", 0)
    rooms.rooms["flaky"] = RoomLook("error", error="Twilio answered 500")
    sync = CallSync(AsyncStore(store), rooms, RULES, clock=clock)
    clock.advance(400)
    first = await sync.sync_once()
    assert (first.synced, first.ended, first.skipped) == (4, 1, 1)
    assert first.errors == ("Twilio answered 500",)
    ended = store.get(gone.id)
    assert ended is not None
    assert (ended.status, ended.end_reason, ended.duration) == (
        "ended",
        "room_not_found",
        400,
    )
    tracked = store.get(empty.id)
    assert tracked is not None
    assert tracked.empty_since == clock.now  # the clock starts
    clock.advance(301)
    second = await sync.sync_once()
    assert (second.synced, second.ended) == (3, 1)
    abandoned = store.get(empty.id)
    assert abandoned is not None
    assert (abandoned.end_reason, abandoned.duration) == ("room_abandoned", 701)
    assert store.get(busy.id).status == "accepted"  # type: ignore[union-attr]
    assert store.get(flaky.id).status == "accepted"  # type: ignore[union-attr]
    messages = [r.getMessage() for r in caplog.records]
    assert "Synced 4 calls with Twilio, ended 1 calls" in messages
    assert f"Ended call {empty.id} - room_abandoned (Duration: 701s)" in messages
    assert sync.skipped_total == 2


async def test_the_sync_leaves_phone_calls_alone(store: SqliteCallStore) -> None:
    # A phone call has no Video room: Twilio would say "not found", and the
    # sync would end a call that is going on.
    clock = Clock()
    rooms = FakeRooms()
    video = add_accepted(store, "gone")
    phone = Call.phone("CA" + "1" * 32, "+15550001111", "+15550002222", T0)
    store.add(phone)
    sync = CallSync(AsyncStore(store), rooms, RULES, clock=clock)
    clock.advance(400)
    result = await sync.sync_once()
    assert (result.synced, result.ended, rooms.looks) == (1, 1, 1)
    assert store.get(phone.id) == phone
    assert store.get(video.id).status == "ended"  # type: ignore[union-attr]


async def test_a_hang_up_during_the_sync_wins(store: SqliteCallStore) -> None:
    rooms = FakeRooms()
    rooms.gate = trio.Event()
    call = add_accepted(store, "gone")
    sync = CallSync(AsyncStore(store), rooms, RULES, clock=Clock())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sync.sync_once)
        while rooms.in_flight == 0:  # noqa: ASYNC110 - a counter of the fake
            await trio.sleep(0.01)
        hung_up = call.end(T0 + dt.timedelta(seconds=5), "hangup")
        assert store.replace(hung_up, "accepted")
        rooms.gate.set()
    assert store.get(call.id) == hung_up
    assert sync.last is not None
    assert sync.last.ended == 0


async def test_two_servers_sharing_a_store_sync_one_at_a_time(
    store: SqliteCallStore,
) -> None:
    rooms = FakeRooms()
    rooms.gate = trio.Event()
    add_accepted(store, "busy")
    first = CallSync(AsyncStore(store), rooms, RULES, clock=Clock())
    second = CallSync(AsyncStore(store), rooms, RULES, clock=Clock())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.sync_once)
        while rooms.in_flight == 0:  # noqa: ASYNC110 - a counter of the fake
            await trio.sleep(0.01)
        other = await second.sync_once()
        assert not other.ran  # the first holds the lock
        assert second.last is None  # its health shows no sync of its own
        rooms.gate.set()
    assert first.last is not None
    assert first.last.ran
    again = await second.sync_once()  # released: its turn
    assert again.ran


async def test_a_sync_longer_than_its_lock_keeps_the_lock(
    store: SqliteCallStore,
) -> None:
    # The lock expires (so a crashed server does not block the others for
    # ever), but a sync still running renews it: two never overlap.
    rooms = FakeRooms(delay=0.6)  # the real clock: the lock's is real too
    add_accepted(store, "busy")
    rooms.rooms["busy"] = RoomLook("found", "in-progress", 2)
    first = CallSync(AsyncStore(store), rooms, RULES, clock=Clock(), lock_ttl=0.2)
    second = CallSync(AsyncStore(store), rooms, RULES, clock=Clock(), lock_ttl=0.2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.sync_once)
        await trio.sleep(0.4)  # past the lock's first expiry
        assert rooms.in_flight == 1
        other = await second.sync_once()
        assert not other.ran
    assert first.last is not None
    assert first.last.ran
    assert (await second.sync_once()).ran  # released at the end


async def test_a_sync_that_lost_its_lock_stops(store: SqliteCallStore) -> None:
    rooms = FakeRooms(delay=0.6)
    call = add_accepted(store, "gone")
    sync = CallSync(AsyncStore(store), rooms, RULES, clock=Clock(), lock_ttl=0.3)

    async def attempt() -> None:
        with pytest.raises(LockLost):
            await sync.sync_once()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt)
        while rooms.in_flight == 0:  # noqa: ASYNC110 - a counter of the fake
            await trio.sleep(0.01)
        # Lost (Redis restarted, a pause longer than the lock): another
        # server took it.
        store.release("sync", sync._token)
        assert store.acquire("sync", "another server", 60)
    assert store.get(call.id) == call  # no write without the lock
    assert not store.acquire("sync", "a third", 60)  # theirs, still


@pytest.mark.parametrize("failing", ["calls", "replace"])
async def test_a_store_failing_during_a_sync_is_said_as_itself(
    store: SqliteCallStore, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # Not "ExceptionGroup: Exceptions from Trio nursery" in the health, and
    # the routes can tell a store failure (503) from a bug.
    add_accepted(store, "gone")

    def broken(*args: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, failing, broken)
    sync = CallSync(AsyncStore(store), FakeRooms(), RULES, clock=Clock())
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        await sync.sync_once()
    assert store.acquire("sync", "another", 60)  # released all the same


async def test_many_rooms_are_looked_up_at_once_and_bounded(
    store: SqliteCallStore,
) -> None:
    rooms = FakeRooms(delay=0.05)
    for n in range(200):
        add_accepted(store, f"room {n}")
        rooms.rooms[f"room {n}"] = RoomLook("found", "in-progress", 2)
    sync = CallSync(AsyncStore(store), rooms, RULES, clock=Clock(), concurrency=20)
    start = trio.current_time()
    result = await sync.sync_once()
    elapsed = trio.current_time() - start
    assert result.synced == 200
    assert rooms.most_in_flight == 20
    assert elapsed < 5  # one at a time: 10 s


async def test_a_lookup_that_hangs_is_an_error_for_that_call() -> None:
    class Hanging:
        def look(self, room: str) -> RoomLook:
            import time  # noqa: PLC0415 - only here

            time.sleep(0.5)
            return RoomLook("found", "in-progress", 2)

    rooms = ThreadedRooms(Hanging(), trio.CapacityLimiter(2), timeout=0.1)
    look = await rooms.look("r")
    assert (look.state, look.error) == ("error", "timed out after 0.1 s")


async def test_unconfigured_twilio_and_the_job_description(
    store: SqliteCallStore,
) -> None:
    sync = CallSync(AsyncStore(store), None, RULES, interval=180, clock=Clock())
    with pytest.raises(RuntimeError, match="not configured"):
        await sync.sync_once()
    assert sync.job() == {
        "id": "sync_calls_twilio",
        "name": "Sync Calls with Twilio",
        "next_run": None,
        "trigger": "interval[0:03:00]",
    }


async def test_the_job_runs_every_interval_and_survives_a_failing_store(
    store: SqliteCallStore,
) -> None:
    rooms = FakeRooms()
    add_accepted(store, "gone")
    sync = CallSync(AsyncStore(store), rooms, RULES, interval=0.05, clock=Clock())
    async with trio.open_nursery() as nursery:
        await nursery.start(sync.run)
        assert sync.running
        assert sync.job()["next_run"] == "2026-12-06T08:00:00.050000Z"
        while sync.last is None:  # noqa: ASYNC110 - the job's own state
            await trio.sleep(0.01)
        assert sync.last.ended == 1
        store.close()  # the store fails from now on
        while sync.last_error is None:  # noqa: ASYNC110 - the job's own state
            await trio.sleep(0.01)
        assert "ProgrammingError" in sync.last_error
        assert sync.running  # still going
        nursery.cancel_scope.cancel()
    assert not sync.running


def test_a_sync_covers_every_call_the_registry_may_hold() -> None:
    # It loaded the 10,000 newest accepted calls: older ones were never
    # checked against Twilio, whatever their rooms became.
    from neuro_api.calls._store import MAX_CALLS  # noqa: PLC0415

    sync = CallSync(AsyncStore(None), FakeRooms(), RULES)  # type: ignore[arg-type]
    assert sync.max_calls >= MAX_CALLS
