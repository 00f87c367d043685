"""The sync ends phone calls whose bridge died, on Twilio's word.

A phone call is registered through ``CallsService.start_phone_call`` and never
ended (its process died mid-call); the sync asks the fake Twilio REST server
on loopback for the Call (real sockets, the real twilio client in worker
threads) and ends it in a real SQLite registry when Twilio says it is over.
The sync's own clock is a test clock (ages, end times); the requests run on
the real one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import pytest
import trio
from fake_twilio import ACCOUNT_SID, FakeTwilio, loopback_only
from test_calls_routes import KEY, KEYS, SECRET, running

from neuro_api.calls import CallsService, ThreadedCalls, TwilioCalls
from neuro_api.calls._decide import SyncRules
from neuro_api.calls._model import Call
from neuro_api.calls._store import SqliteCallStore
from neuro_api.calls._sync import AsyncStore, CallSync

pytestmark = pytest.mark.timeout(30)
T0: Final = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
_MINUTE: Final = dt.timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class NoRooms:
    """No video call is in these tests: a room lookup is a test failure."""

    async def look(self, room: str) -> object:
        raise AssertionError(f"room {room} looked up")


class World:
    def __init__(self, fake: FakeTwilio, store: SqliteCallStore, phones: ThreadedCalls):
        self.fake = fake
        self.store = store
        self.clock = Clock()
        self.phones = phones
        self.async_store = AsyncStore(store)
        self.service = CallsService(
            self.async_store, self.sync(), None, clock=self.clock
        )

    def sync(self, **kwargs: object) -> CallSync:
        return CallSync(
            self.async_store,
            NoRooms(),  # type: ignore[arg-type]
            SyncRules(),
            phones=self.phones,
            clock=self.clock,
            **kwargs,  # type: ignore[arg-type]
        )

    async def left_running(self, from_: str = "+15550001111") -> str:
        """A call Twilio has, started in the registry and never ended there."""
        sid = self.fake.add_call(from_, "+15550002222", start_time=self.clock.now)
        await self.service.start_phone_call(sid, from_, "+15550002222")
        return sid

    def get(self, sid: str) -> Call:
        call = self.store.get(sid)
        assert call is not None
        return call


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with loopback_only(monkeypatch) as refused:
        yield
    assert refused == [], f"tried to leave loopback: {refused}"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with (
        FakeTwilio(KEY, SECRET) as fake,
        TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url, timeout=5) as calls,
    ):
        store = SqliteCallStore(tmp_path / "calls.sqlite3")
        try:
            yield World(fake, store, ThreadedCalls(calls, trio.CapacityLimiter(4), 5))
        finally:
            store.close()


@pytest.mark.parametrize(
    "status", ["completed", "busy", "failed", "no-answer", "canceled"]
)
async def test_a_call_over_at_twilio_is_ended_at_its_end_time(
    world: World, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="neuro_api.calls")
    dead = await world.left_running()
    live = await world.left_running("+15553334444")
    world.fake.end_call(dead, status, end_time=T0 + dt.timedelta(seconds=95))
    world.clock.advance(300)
    result = await world.sync().sync_once()
    assert (result.synced, result.ended, result.skipped) == (2, 1, 0)
    assert (result.phone_synced, result.phone_ended, result.phone_deferred) == (2, 1, 0)
    ended = world.get(dead)
    assert (ended.status, ended.end_reason, ended.duration) == (
        "ended",
        "ended_at_twilio",
        95,
    )
    assert ended.ended_at == T0 + dt.timedelta(seconds=95)
    assert world.get(live).status == "accepted"  # in progress: left alone
    messages = [r.getMessage() for r in caplog.records]
    assert f"Ended call {dead} - ended_at_twilio (Twilio: {status}, Duration: 95s)" in (
        messages
    )
    # Its bridge, if it still ran somewhere, finds it ended: nothing changes.
    assert await world.service.end_phone_call(dead, "caller_hung_up") is None


@pytest.mark.parametrize("status", ["queued", "ringing", "in-progress"])
async def test_a_call_going_on_at_twilio_is_left(world: World, status: str) -> None:
    sid = await world.left_running()
    world.fake.set_call_status(sid, status)
    world.clock.advance(3600)
    result = await world.sync().sync_once()
    assert (result.phone_synced, result.phone_ended) == (1, 0)
    assert world.get(sid).status == "accepted"
    assert world.fake.requests == 1


async def test_a_call_twilio_does_not_know_is_ended_with_its_reason(
    world: World,
) -> None:
    sid = await world.left_running()
    world.fake.remove_call(sid)
    world.clock.advance(120)
    result = await world.sync().sync_once()
    assert result.phone_ended == 1
    ended = world.get(sid)
    assert (ended.status, ended.end_reason, ended.duration) == (
        "ended",
        "unknown_to_twilio",
        120,
    )


async def test_young_calls_are_not_looked_up(world: World) -> None:
    # A call being answered now may not be in Twilio's records yet as it
    # will be: never raced.
    sid = await world.left_running()
    world.fake.end_call(sid)
    sync = world.sync(phone_min_age=60)
    world.clock.advance(59)
    result = await sync.sync_once()
    assert (result.synced, result.phone_synced, result.phone_deferred) == (0, 0, 0)
    assert world.fake.requests == 0
    assert world.get(sid).status == "accepted"
    world.clock.advance(1)
    assert (await sync.sync_once()).phone_ended == 1


async def test_a_sync_looks_up_so_many_calls_and_the_rest_next_time(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="neuro_api.calls")
    going_on = []
    for _ in range(3):
        going_on.append(await world.left_running())
        world.clock.advance(1)
    dead = await world.left_running()  # the newest
    world.fake.end_call(dead)
    sync = world.sync(phone_lookups=2)
    world.clock.advance(600)
    first = await sync.sync_once()
    assert (first.phone_synced, first.phone_ended, first.phone_deferred) == (2, 0, 2)
    assert world.fake.requests == 2
    assert "2 phone calls left for the next sync (at most 2 looked up per sync)" in [
        r.getMessage() for r in caplog.records
    ]
    # The oldest two go on: they do not keep the others waiting for ever,
    # those not looked up yet come next.
    second = await sync.sync_once()
    assert (second.phone_synced, second.phone_ended, second.phone_deferred) == (
        2,
        1,
        2,
    )
    assert world.get(dead).end_reason == "ended_at_twilio"
    third = await sync.sync_once()
    assert (third.phone_synced, third.phone_deferred) == (2, 1)
    assert {world.get(sid).status for sid in going_on} == {"accepted"}


async def test_twilios_trouble_with_one_call_does_not_stop_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = await world.left_running()
    dead = [await world.left_running() for _ in range(3)]
    for sid in [flaky, *dead]:
        world.fake.end_call(sid)
    world.fake.fail_call(flaky, 500)
    world.clock.advance(120)
    result = await world.sync().sync_once()
    assert (result.phone_synced, result.phone_ended, result.skipped) == (4, 3, 1)
    assert result.errors == (
        "Twilio answered 500 (error 20500: Unable to fetch record: "
        "Internal Server Error)",
    )
    assert world.get(flaky).status == "accepted"  # uncertainty never ends a call
    assert {world.get(sid).status for sid in dead} == {"ended"}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"call sync: Twilio could not be asked about phone call {flaky}: "
        "Twilio answered 500 (error 20500: Unable to fetch record: "
        "Internal Server Error)"
    ]
    world.fake.fail_call(flaky, None)
    assert (await world.sync().sync_once()).phone_ended == 1


async def test_a_call_twilio_describes_oddly_does_not_stop_the_sync(
    world: World,
) -> None:
    odd = await world.left_running()
    dead = [await world.left_running() for _ in range(3)]
    for sid in [odd, *dead]:
        world.fake.end_call(sid)
    world.fake.answer_call_fields(odd, {"end_time": "Mon, 31 Feb 2026 08:00:00 +0000"})
    world.clock.advance(120)
    result = await world.sync().sync_once()
    assert (result.phone_synced, result.phone_ended, result.skipped) == (4, 3, 1)
    assert result.errors == ("malformed answer: day is out of range for month",)
    assert world.get(odd).status == "accepted"
    assert {world.get(sid).status for sid in dead} == {"ended"}


async def test_a_bridge_ending_its_call_during_the_lookup_wins(world: World) -> None:
    sid = await world.left_running()
    world.fake.end_call(sid)
    world.fake.delay = 0.5
    world.clock.advance(120)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(world.sync().sync_once)
        with trio.fail_after(5):  # the lookup is out
            while world.fake.requests == 0:  # noqa: ASYNC110 - the fake's counter
                await trio.sleep(0.01)
        await world.service.end_phone_call(sid, "caller_hung_up")
    assert world.get(sid).end_reason == "caller_hung_up"


async def test_video_and_phone_calls_in_one_sync(world: World) -> None:
    class Rooms:
        def __init__(self) -> None:
            self.looked: list[str] = []

        async def look(self, room: str) -> object:
            from neuro_api.calls import RoomLook  # noqa: PLC0415

            self.looked.append(room)
            return RoomLook("not_found")

    video = Call.new("alice", "bob", "r1", T0).accept(T0)
    world.store.add(video)
    sid = await world.left_running()
    world.fake.end_call(sid)
    rooms = Rooms()
    sync = CallSync(
        world.async_store,
        rooms,  # type: ignore[arg-type]
        SyncRules(),
        phones=world.phones,
        clock=world.clock,
    )
    world.clock.advance(120)
    result = await sync.sync_once()
    assert rooms.looked == ["r1"]  # a phone call has no room
    assert (result.synced, result.ended, result.phone_ended) == (2, 2, 1)
    assert world.get(video.id).end_reason == "room_not_found"
    assert world.get(sid).end_reason == "ended_at_twilio"


# -- through the process ---------------------------------------------------------


async def test_sync_now_ends_a_phone_call_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTwilio(KEY, SECRET) as fake:
        environ = {**KEYS, "TWILIO_BASE_URL": fake.url}
        flags = ("--calls-phone-min-age", "0")
        async with (
            running(tmp_path, *flags, environ=environ) as run,
            run.admin() as admin,
            run.control() as control,
        ):
            service = run.calls.service
            assert service is not None
            dead, live = fake.add_call(), fake.add_call()
            for sid in (dead, live):
                await service.start_phone_call(sid, "+15550001111", "+15550002222")
            # Ended a minute ago at Twilio (its bridge had the grace).
            fake.end_call(dead, end_time=dt.datetime.now(dt.UTC) - _MINUTE)
            answer = await admin.post("/api/admin/sync-twilio")
            assert (answer.json()["synced"], answer.json()["ended"]) == (2, 1)
            call = (await control.get("/calls/registry", params={"q": dead})).json()
            assert call["calls"][0]["end_reason"] == "ended_at_twilio"
            health = (await control.get("/health")).json()["capabilities"]["calls"]
            stats = (await control.get("/stats")).json()["capabilities"]["calls"]
    assert health["status"] == "healthy"
    assert (health["sync"]["last_errors"], health["sync"]["last_phone_deferred"]) == (
        [],
        0,
    )
    assert (stats["last_phone_synced"], stats["last_phone_ended"]) == (2, 1)


async def test_a_hang_up_never_waits_for_the_syncs_lookups(tmp_path: Path) -> None:
    # The sync's lookups (20 at once) and the bridges' hang-ups both go to
    # Twilio's REST API: while Twilio is slow to describe calls, a caller
    # whose call Neuro ended must not wait in silence behind them.
    with FakeTwilio(KEY, SECRET) as fake:
        environ = {**KEYS, "TWILIO_BASE_URL": fake.url}
        flags = ("--calls-phone-min-age", "0", "--calls-lookup-timeout", "8")
        async with running(tmp_path, *flags, environ=environ) as run:
            service = run.calls.service
            assert service is not None
            for _ in range(20):
                sid = fake.add_call()
                await service.start_phone_call(sid, "+15550001111", "+15550002222")
            live = fake.add_call()
            fake.slow_gets = 5.0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(service.sync.sync_once)
                with trio.fail_after(5):  # the lookups are out
                    while fake.requests < 8:  # noqa: ASYNC110 - the fake's counter
                        await trio.sleep(0.01)
                start = trio.current_time()
                assert await service.hang_up(live) is True
                # Behind the lookups it would wait their 5 s; its own request
                # takes milliseconds (seconds on a loaded machine).
                assert trio.current_time() - start < 2.5
    assert fake.call(live).status == "completed"


async def test_without_credentials_twilio_is_never_asked(
    tmp_path: Path,
) -> None:
    with FakeTwilio(KEY, SECRET) as fake:
        environ = {"TWILIO_BASE_URL": fake.url}  # an address, but no keys
        flags = ("--calls-phone-min-age", "0", "--calls-sync-interval", "0.05")
        async with (
            running(tmp_path, *flags, environ=environ) as run,
            run.admin() as admin,
        ):
            service = run.calls.service
            assert service is not None
            sid = "CA" + "1" * 32
            await service.start_phone_call(sid, "+15550001111", "+15550002222")
            await trio.sleep(0.3)  # several intervals: the job does not run
            answer = await admin.post("/api/admin/sync-twilio")
            assert answer.status_code == 503
            call = await service.store.call(service.store.store.get, sid)
            assert call is not None
            assert call.status == "accepted"
        assert fake.requests == 0


async def test_a_call_that_just_ended_is_left_to_its_bridge(world: World) -> None:
    # Twilio says "completed" the moment the caller hangs up; the bridge
    # records its own reason a moment later: the sync leaves it that long.
    sid = await world.left_running()
    world.clock.advance(300)
    world.fake.end_call(sid, "completed", end_time=world.clock.now)
    world.clock.advance(5)
    await world.sync().sync_once()
    assert world.get(sid).status == "accepted"
    assert (await world.service.end_phone_call(sid, "caller_hung_up")) is not None
    assert world.get(sid).end_reason == "caller_hung_up"
    # A bridge that died: ended once the grace is over.
    other = await world.left_running("+15553334444")
    world.clock.advance(60)  # old enough to be looked up
    world.fake.end_call(other, "completed", end_time=world.clock.now)
    world.clock.advance(31)
    await world.sync().sync_once()
    assert world.get(other).end_reason == "ended_at_twilio"
