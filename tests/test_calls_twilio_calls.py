"""Twilio's REST API for phone calls (hang up; say and hang up) on loopback.

Rules as in test_calls_twilio: every request goes to tests/fake_twilio over
a real socket on 127.0.0.1 (``base_url``), on the real clock (the SDK
blocks in threads), and an autouse guard fails any name lookup of another
host.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import trio
from fake_twilio import ACCOUNT_SID, FakeTwilio, loopback_only

from neuro_api.calls import ThreadedCalls, TwilioCallError, TwilioCalls
from neuro_api.calls._twilio_calls import TWIML_MAX

pytestmark = pytest.mark.timeout(30)
KEY = "SK" + "1" * 32
SECRET = "a-test-api-secret-of-32-bytes-ok"
UNKNOWN = "CA" + "f" * 32
GOODBYE = "<Response><Say>Goodbye</Say><Hangup/></Response>"


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with loopback_only(monkeypatch) as refused:
        yield
    assert refused == [], f"tried to leave loopback: {refused}"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(KEY, SECRET) as server:
        yield server


@pytest.fixture
def calls(fake: FakeTwilio) -> Iterator[TwilioCalls]:
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url, timeout=5) as c:
        yield c


def test_complete_hangs_up_a_call_in_progress(
    fake: FakeTwilio, calls: TwilioCalls
) -> None:
    sid = fake.add_call()
    assert calls.complete(sid) is True
    call = fake.call(sid)
    assert call.status == "completed"
    assert call.updates == [{"Status": "completed"}]
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
    assert fake.log == [("POST", path)]


def test_say_and_hang_up_sends_the_twiml(fake: FakeTwilio, calls: TwilioCalls) -> None:
    sid = fake.add_call()
    assert calls.say_and_hang_up(sid, GOODBYE) is True
    call = fake.call(sid)
    assert call.updates == [{"Twiml": GOODBYE}]
    assert call.status == "completed"


@pytest.mark.parametrize("status", ["completed", "busy", "canceled"])
def test_a_call_not_in_progress_is_no_error(
    fake: FakeTwilio, calls: TwilioCalls, status: str
) -> None:
    sid = fake.add_call()
    fake.end_call(sid, status)  # the caller hung up first
    assert calls.complete(sid) is False
    assert calls.say_and_hang_up(sid, GOODBYE) is False
    assert len(fake.call(sid).updates) == 2  # both reached Twilio (21220)


def test_an_unknown_call_is_no_error(fake: FakeTwilio, calls: TwilioCalls) -> None:
    assert calls.complete(UNKNOWN) is False


def test_hanging_up_twice(fake: FakeTwilio, calls: TwilioCalls) -> None:
    sid = fake.add_call()
    assert calls.complete(sid) is True
    assert calls.complete(sid) is False


TROUBLE = "(error 20500: Unable to update record: Internal Server Error)"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, f"Twilio answered 500 {TROUBLE}"),
        (503, f"Twilio answered 503 {TROUBLE}"),
        (403, f"authentication failed (403) {TROUBLE}"),
    ],
)
def test_twilio_trouble_is_one_line(
    fake: FakeTwilio, calls: TwilioCalls, status: int, reason: str
) -> None:
    sid = fake.add_call()
    fake.fail_call(sid, status)
    with pytest.raises(TwilioCallError) as raised:
        calls.complete(sid)
    assert str(raised.value) == reason


def test_twiml_twilio_cannot_read_is_its_error(
    fake: FakeTwilio, calls: TwilioCalls
) -> None:
    sid = fake.add_call()
    with pytest.raises(TwilioCallError) as raised:
        calls.say_and_hang_up(sid, "<Response><Say>unclosed")
    assert str(raised.value) == (
        "Twilio answered 400 (error 12100: Unable to update record: "
        "Document parse failure)"
    )
    assert fake.call(sid).status == "in-progress"


def test_wrong_secret_is_an_authentication_error(fake: FakeTwilio) -> None:
    sid = fake.add_call()
    with (
        TwilioCalls(ACCOUNT_SID, KEY, SECRET[::-1], base_url=fake.url) as wrong,
        pytest.raises(TwilioCallError, match=r"^authentication failed \(401\)"),
    ):
        wrong.complete(sid)
    assert fake.call(sid).status == "in-progress"


def test_slow_answer_times_out(fake: FakeTwilio) -> None:
    sid = fake.add_call()
    fake.delay = 2.0  # cut short when the fake stops
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url, timeout=0.2) as c:
        start = time.monotonic()
        with pytest.raises(TwilioCallError, match=r"^timed out after 0.2 s$"):
            c.complete(sid)
    assert time.monotonic() - start < 1.5


def test_server_down_is_a_network_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with (
        TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=base, timeout=2) as c,
        pytest.raises(TwilioCallError, match=r"^network: Connection refused$"),
    ):
        c.complete(UNKNOWN)


@pytest.mark.parametrize(
    "call_sid", ["", "CA123", "RM" + "0" * 32, "CA" + "0" * 31 + "/", "CA" + "0" * 33]
)
def test_what_is_no_call_sid_is_refused_before_anything_is_sent(
    fake: FakeTwilio, calls: TwilioCalls, call_sid: str
) -> None:
    with pytest.raises(ValueError, match="not a Twilio CallSid"):
        calls.complete(call_sid)
    assert fake.requests == 0


@pytest.mark.parametrize("twiml", ["", "x" * (TWIML_MAX + 1)])
def test_twiml_twilio_would_refuse_for_its_length(
    fake: FakeTwilio, calls: TwilioCalls, twiml: str
) -> None:
    with pytest.raises(ValueError, match="twiml must be 1 to 4000 characters"):
        calls.say_and_hang_up(fake.add_call(), twiml)
    assert fake.requests == 0


def test_environment_is_not_read(
    fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "9" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "x" * 32)
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    sid = fake.add_call()
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url) as c:
        assert c.complete(sid) is True  # the fake knows ACCOUNT_SID's calls only


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "127.0.0.1:8080"}, "base_url must be an http"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TwilioCalls(ACCOUNT_SID, KEY, SECRET, **kwargs)  # type: ignore[arg-type]


# -- from Trio -----------------------------------------------------------------


async def test_threaded_updates_are_bounded_in_number(fake: FakeTwilio) -> None:
    fake.delay = 0.1
    sids = [fake.add_call() for _ in range(6)]
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url) as blocking:
        limiter = trio.CapacityLimiter(2)
        threaded = ThreadedCalls(blocking, limiter, timeout=10)
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, limiter.borrowed_tokens)
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as updates:
                for sid in sids:
                    updates.start_soon(threaded.complete, sid)
            nursery.cancel_scope.cancel()
    assert most == 2
    assert {fake.call(sid).status for sid in sids} == {"completed"}


async def test_a_threaded_update_that_hangs_times_out(fake: FakeTwilio) -> None:
    sid = fake.add_call()
    fake.delay = 3.0  # longer than the whole bound, shorter than the client's
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url) as blocking:
        threaded = ThreadedCalls(blocking, trio.CapacityLimiter(1), timeout=0.3)
        start = trio.current_time()
        with pytest.raises(TwilioCallError, match=r"^timed out after 0.3 s$"):
            await threaded.say_and_hang_up(sid, GOODBYE)
        assert trio.current_time() - start < 1.5


async def test_a_cancelled_update_returns_at_once(fake: FakeTwilio) -> None:
    sid = fake.add_call()
    fake.delay = 3.0
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url) as blocking:
        threaded = ThreadedCalls(blocking, trio.CapacityLimiter(1), timeout=10)
        with trio.move_on_after(0.2) as scope:
            await threaded.complete(sid)
        assert scope.cancelled_caught


# -- looking a call up (the sync) ----------------------------------------------


def test_the_fakes_call_has_every_field_the_sdk_reads(fake: FakeTwilio) -> None:
    # The fake answers Twilio's Call resource as twilio-python reads it:
    # every key CallInstance takes from the payload, no other.
    import inspect  # noqa: PLC0415 - only here
    import re  # noqa: PLC0415

    from twilio.rest.api.v2010.account.call import CallInstance  # noqa: PLC0415

    read = set(re.findall(r'payload\.get\(\s*"(\w+)"', inspect.getsource(CallInstance)))
    body = fake._call_json(fake.call(fake.add_call()))
    assert set(body) == read


@pytest.mark.parametrize(
    "status",
    ["queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer"],
)
def test_look_says_twilios_status(
    fake: FakeTwilio, calls: TwilioCalls, status: str
) -> None:
    sid = fake.add_call(status=status)
    look = calls.look(sid)
    assert (look.state, look.status, look.end_time, look.error) == (
        "found",
        status,
        None,
        None,
    )
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
    assert fake.log == [("GET", path)]


def test_look_gives_twilios_end_time(fake: FakeTwilio, calls: TwilioCalls) -> None:
    sid = fake.add_call()
    end = datetime(2026, 12, 6, 8, 30, 15, tzinfo=UTC)
    fake.end_call(sid, "canceled", end_time=end)
    look = calls.look(sid)
    assert (look.state, look.status, look.end_time) == ("found", "canceled", end)


def test_look_says_an_unknown_call_is_not_found(
    fake: FakeTwilio, calls: TwilioCalls
) -> None:
    assert calls.look(UNKNOWN).state == "not_found"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "Twilio answered 500 (error 20500: Unable to fetch record: "),
        (401, "authentication failed (401) (error 20500: Unable to fetch record: "),
    ],
)
def test_look_says_twilios_trouble_in_one_line(
    fake: FakeTwilio, calls: TwilioCalls, status: int, reason: str
) -> None:
    sid = fake.add_call()
    fake.fail_call(sid, status)
    look = calls.look(sid)
    assert look.state == "error"
    assert look.error is not None
    assert look.error.startswith(reason)
    assert "\n" not in look.error


def test_look_refuses_a_status_twilio_does_not_have(
    fake: FakeTwilio, calls: TwilioCalls
) -> None:
    sid = fake.add_call()
    fake.set_call_status(sid, "exploded\n")
    look = calls.look(sid)
    assert (look.state, look.error) == (
        "error",
        "malformed answer: unknown call status 'exploded\\n'",
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": ["completed"]}, "malformed answer: unknown call status"),
        ({"status": {"a": 1}}, "malformed answer: unknown call status"),
        ({"status": 7}, "malformed answer: unknown call status 7"),
        ({"end_time": 5}, "malformed answer: "),
        ({"end_time": "Mon, 31 Feb 2026 00:00:00 +0000"}, "malformed answer: day"),
        ({"end_time": "Mon, 01 Jan 99999 00:00:00 +0000"}, "malformed answer: year"),
        ({"date_created": "Mon, 01 Dec 2026 25:00:00 +0000"}, "malformed answer: "),
    ],
)
def test_look_of_odd_json_is_an_error_not_a_raise(
    fake: FakeTwilio, calls: TwilioCalls, fields: dict[str, object], reason: str
) -> None:
    # The SDK reads the dates as it builds the call and raises what their
    # parsing does (a 31 February, a number): one call's odd answer must
    # not end the whole sync.
    sid = fake.add_call(status="completed")
    fake.answer_call_fields(sid, fields)
    look = calls.look(sid)
    assert look.state == "error"
    assert (look.error or "").startswith(reason)
    assert "\n" not in (look.error or "")


def test_look_of_no_call_sid_sends_nothing(
    fake: FakeTwilio, calls: TwilioCalls
) -> None:
    look = calls.look("RM" + "0" * 32)
    assert look.state == "error"
    assert "not a Twilio CallSid" in (look.error or "")
    assert fake.requests == 0


def test_look_slow_or_down_is_an_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=base, timeout=2) as c:
        look = c.look(UNKNOWN)
    assert (look.state, look.error) == ("error", "network: Connection refused")


async def test_a_threaded_look_that_hangs_is_an_error(fake: FakeTwilio) -> None:
    sid = fake.add_call()
    fake.delay = 3.0
    with TwilioCalls(ACCOUNT_SID, KEY, SECRET, base_url=fake.url) as blocking:
        threaded = ThreadedCalls(blocking, trio.CapacityLimiter(1), timeout=0.3)
        start = trio.current_time()
        look = await threaded.look(sid)
        assert (look.state, look.error) == ("error", "timed out after 0.3 s")
        assert trio.current_time() - start < 1.5
