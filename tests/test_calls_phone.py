"""Phone calls in the registry: the API a bridge uses, and what clients see.

``CallsService.start_phone_call`` / ``end_phone_call`` over real stores
(SQLite and a real redis-server), then through a real process: phone calls
in ``/api/calls``, ``/calls/registry`` and the stats, and Twilio asked to
hang up through the fake Twilio on loopback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
import trio
from fake_twilio import FakeTwilio, loopback_only
from redis_helpers import RedisServer
from test_calls_routes import KEY, KEYS, SECRET, running
from test_neuro_process import Provider

from neuro_api.calls import CallsService, RegistryFull, TwilioCallError
from neuro_api.calls._decide import SyncRules
from neuro_api.calls._model import Call
from neuro_api.calls._store import CallStore, RedisCallStore, SqliteCallStore
from neuro_api.calls._sync import AsyncStore, CallSync

pytestmark = pytest.mark.timeout(30)
T0: Final = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
SID: Final = "CA" + "a" * 32
GOODBYE: Final = "<Response><Say>Goodbye</Say><Hangup/></Response>"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
async def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[CallsService]:
    made: CallStore
    server: RedisServer | None = None
    if request.param == "sqlite":
        made = SqliteCallStore(tmp_path / "calls.sqlite3", max_calls=5)
    else:
        server = RedisServer(tmp_path)
        server.start()
        made = RedisCallStore(server.url, max_calls=5)
    store = AsyncStore(made)
    sync = CallSync(store, None, SyncRules())
    try:
        yield CallsService(store, sync, None, clock=Clock())
    finally:
        made.close()
        if server is not None:
            server.close()


def _clock(service: CallsService) -> Clock:
    assert isinstance(service.clock, Clock)
    return service.clock


async def test_a_phone_call_from_start_to_end(service: CallsService) -> None:
    call = await service.start_phone_call(SID, "+15551234567", "+15550009999")
    assert call == Call(
        SID,
        "+15551234567",
        "+15550009999",
        SID,
        "accepted",
        T0,
        accepted_at=T0,
        kind="phone",
        call_sid=SID,
    )
    assert await service.store.call(service.store.store.get, SID) == call
    _clock(service).now = T0 + dt.timedelta(seconds=95.7)
    ended = await service.end_phone_call(SID, "caller_hung_up")
    assert ended is not None
    assert (ended.status, ended.duration, ended.end_reason) == (
        "ended",
        95,
        "caller_hung_up",
    )
    assert ended.ended_at == T0 + dt.timedelta(seconds=95.7)
    assert await service.store.call(service.store.store.get, SID) == ended
    # Ending it again, or a call the registry never had, changes nothing.
    assert await service.end_phone_call(SID, "max_duration") is None
    assert await service.end_phone_call("CA" + "b" * 32, "caller_hung_up") is None
    assert await service.store.call(service.store.store.get, SID) == ended


async def test_twilio_asking_twice_registers_one_call(service: CallsService) -> None:
    first = await service.start_phone_call(SID, "+15551234567", "+15550009999")
    _clock(service).now = T0 + dt.timedelta(seconds=3)
    again = await service.start_phone_call(SID, "+15551234567", "+15550009999")
    assert again == first
    await service.end_phone_call(SID, "caller_hung_up")
    late = await service.start_phone_call(SID, "+15551234567", "+15550009999")
    assert late.status == "ended"  # the caller checks: this call is over
    calls = await service.store.call(service.store.store.calls)
    assert [c.id for c in calls] == [SID]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("", "unknown"),
        ("  ", "unknown"),
        ("anonymous", "anonymous"),
        ("client:alice", "client:alice"),
        ("+1555\n\x1b[2J", "+1555\\n\\x1b[2J"),
        ("sip:" + "x" * 300, "sip:" + "x" * 124),
    ],
)
async def test_caller_and_callee_are_kept_printable_and_short(
    service: CallsService, given: str, kept: str
) -> None:
    call = await service.start_phone_call(SID, given, given)
    assert (call.caller, call.callee) == (kept, kept)


@pytest.mark.parametrize(
    "call_sid",
    ["", "CA123", "RM" + "0" * 32, "CA" + "0" * 31 + "/", "CA" + "0" * 33, "../x"],
)
async def test_what_is_no_call_sid_is_refused(
    service: CallsService, call_sid: str
) -> None:
    with pytest.raises(ValueError, match="not a Twilio CallSid"):
        await service.start_phone_call(call_sid, "a", "b")
    with pytest.raises(ValueError, match="not a Twilio CallSid"):
        await service.end_phone_call(call_sid, "caller_hung_up")
    assert await service.store.call(service.store.store.calls) == []


@pytest.mark.parametrize("reason", ["", " x", "x" * 65, "a\nb"])
async def test_a_bad_end_reason_is_refused(service: CallsService, reason: str) -> None:
    await service.start_phone_call(SID, "a", "b")
    with pytest.raises(ValueError, match="an end reason is 1 to 64"):
        await service.end_phone_call(SID, reason)
    call = await service.store.call(service.store.store.get, SID)
    assert call is not None
    assert call.status == "accepted"


async def test_a_video_call_is_not_ended_as_a_phone_call(
    service: CallsService,
) -> None:
    # A video call can never have a CallSid for its id (Call.new's are 16
    # hex digits), but a store shared with something else might: no harm.
    video = Call(SID, "a", "b", "r", "accepted", T0, accepted_at=T0)
    await service.store.call(service.store.store.add, video)
    assert await service.end_phone_call(SID, "caller_hung_up") is None
    with pytest.raises(ValueError, match="no phone call"):
        await service.start_phone_call(SID, "a", "b")
    assert await service.store.call(service.store.store.get, SID) == video


async def test_a_full_registry_refuses_a_phone_call(service: CallsService) -> None:
    for n in range(5):
        await service.start_phone_call(f"CA{n:032x}", "a", "b")
    with pytest.raises(RegistryFull):
        await service.start_phone_call(SID, "a", "b")
    await service.end_phone_call(f"CA{0:032x}", "caller_hung_up")
    await service.start_phone_call(SID, "a", "b")  # an ended one made room


async def test_an_operator_may_end_a_phone_call_left_running(
    service: CallsService,
) -> None:
    # A process that died mid-call never ends it: the seed's end route can.
    call = await service.start_phone_call(SID, "a", "b")
    ended = call.end(T0, "hangup")
    assert await service.store.replace(ended, "accepted")
    assert await service.end_phone_call(SID, "caller_hung_up") is None


async def test_without_twilio_hanging_up_says_so(service: CallsService) -> None:
    with pytest.raises(TwilioCallError, match="Twilio is not configured"):
        await service.hang_up(SID)
    with pytest.raises(TwilioCallError, match="Twilio is not configured"):
        await service.say_and_hang_up(SID, GOODBYE)


# -- through the process ---------------------------------------------------------


async def test_phone_calls_in_the_routes_and_the_stats(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        service = run.calls.service
        assert service is not None
        made = await http.post(
            "/api/calls", json={"caller": "alice", "callee": "bob", "room": "r"}
        )
        video = made.json()["id"]
        await service.start_phone_call(SID, "+15551234567", "+15550009999")
        other = "CA" + "c" * 32
        await service.start_phone_call(other, "+15557654321", "+15550009999")
        await service.end_phone_call(other, "max_duration")
        listed = (await http.get("/api/calls")).json()
        assert [c["id"] for c in listed["calls"]] == [other, SID, video]
        one = (await http.get(f"/api/calls/{SID}")).json()
        assert (one["kind"], one["call_sid"], one["room"], one["status"]) == (
            "phone",
            SID,
            SID,
            "accepted",
        )
        assert listed["calls"][2]["kind"] == "video"
        assert listed["calls"][2]["call_sid"] is None
        phones = (await http.get("/api/calls", params={"kind": "phone"})).json()
        assert [c["id"] for c in phones["calls"]] == [other, SID]
        live = await http.get("/api/calls", params={"kind": "phone", "status": "ended"})
        assert [c["id"] for c in live.json()["calls"]] == [other]
        videos = (await http.get("/api/calls", params={"kind": "video"})).json()
        assert [c["id"] for c in videos["calls"]] == [video]
        bad = await http.get("/api/calls", params={"kind": "fax"})
        assert (bad.status_code, bad.json()) == (
            400,
            {"error": "kind must be one of video, phone"},
        )
        async with run.control() as control:
            registry = await control.get("/calls/registry", params={"kind": "phone"})
            assert [c["id"] for c in registry.json()["calls"]] == [other, SID]
            searched = await control.get(
                "/calls/registry", params={"kind": "phone", "q": "7654"}
            )
            assert [c["id"] for c in searched.json()["calls"]] == [other]
            searched = await control.get(
                "/calls/registry", params={"kind": "video", "q": "alice"}
            )
            assert [c["id"] for c in searched.json()["calls"]] == [video]
            bad = await control.get("/calls/registry", params={"kind": "fax"})
            assert bad.status_code == 400
            assert bad.json()["error"]["code"] == "invalid_request"
            stats = (await control.get("/calls/stats")).json()["stats"]
        assert (stats["total_calls"], stats["phone_calls"]) == (3, 2)
        assert stats["active_phone_calls"] == 1
        assert stats["active_users"] == 4  # alice, bob, the caller, our number
        # An operator ends a phone call left running with the seed's route.
        ended = (await http.post(f"/api/calls/{SID}/end")).json()
        assert (ended["status"], ended["end_reason"]) == ("ended", "hangup")
        assert await service.end_phone_call(SID, "caller_hung_up") is None


async def test_twilio_is_asked_to_hang_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTwilio(KEY, SECRET) as fake, loopback_only(monkeypatch) as left:
        environ = {**KEYS, "TWILIO_BASE_URL": fake.url}
        async with running(tmp_path, environ=environ) as run:
            service = run.calls.service
            assert service is not None
            first, second = fake.add_call(), fake.add_call()
            assert await service.hang_up(first) is True
            assert fake.call(first).updates == [{"Status": "completed"}]
            assert await service.hang_up(first) is False  # over already
            assert await service.say_and_hang_up(second, GOODBYE) is True
            assert fake.call(second).updates == [{"Twiml": GOODBYE}]
            fake.fail_all = 500
            with pytest.raises(TwilioCallError, match=r"^Twilio answered 500"):
                await service.hang_up(fake.add_call())
            fake.fail_all = None
            # Hanging up changes nothing in the registry: the bridge does.
            await service.start_phone_call(second, "a", "b")
            await service.hang_up(second)
            call = await service.store.call(service.store.store.get, second)
            assert call is not None
            assert call.status == "accepted"
    assert left == []


async def test_a_stalled_twilio_cannot_hold_a_hang_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTwilio(KEY, SECRET) as fake, loopback_only(monkeypatch):
        environ = {**KEYS, "TWILIO_BASE_URL": fake.url}
        fake.delay = 5.0  # cut short when the fake stops
        flags = ("--calls-lookup-timeout", "0.3")
        async with running(tmp_path, *flags, environ=environ) as run:
            assert run.calls.service is not None
            start = trio.current_time()
            with pytest.raises(TwilioCallError, match=r"timed out after 0\.3 s"):
                await run.calls.service.hang_up(fake.add_call())
            assert trio.current_time() - start < 2


@pytest.mark.parametrize(
    "argv",
    [("--tunnel",), ("--no-calls-open-phone-calls",)],
    ids=["tunnelled", "flag"],
)
async def test_a_reachable_calls_api_shows_phone_calls_only_with_the_token(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    # The TV app's routes are open, as the seed's; a caller's number is not
    # for whoever reaches the tunnel Twilio uses.
    tunnels = Provider() if "--tunnel" in argv else None
    async with (
        running(tmp_path, *argv, tunnels=tunnels) as run,
        run.client() as http,
        run.admin() as admin,
    ):
        service = run.calls.service
        assert service is not None
        made = await http.post(
            "/api/calls", json={"caller": "alice", "callee": "bob", "room": "r"}
        )
        video = made.json()["id"]
        await service.start_phone_call(SID, "+15551234567", "+15550009999")
        listed = (await http.get("/api/calls")).json()
        assert [c["id"] for c in listed["calls"]] == [video]
        assert "+1555" not in str(listed)
        asked = await http.get("/api/calls", params={"kind": "phone"})
        assert asked.status_code == 401
        assert (await http.get(f"/api/calls/{SID}")).status_code == 404
        assert (await http.post(f"/api/calls/{SID}/end")).status_code == 404
        assert (await http.get(f"/api/calls/{video}")).status_code == 200
        # With the API token, everything, as on loopback.
        listed = (await admin.get("/api/calls")).json()
        assert [c["id"] for c in listed["calls"]] == [SID, video]
        phones = (await admin.get("/api/calls", params={"kind": "phone"})).json()
        assert [c["id"] for c in phones["calls"]] == [SID]
        ended = (await admin.post(f"/api/calls/{SID}/end")).json()
        assert ended["status"] == "ended"
