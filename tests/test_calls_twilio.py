"""The calls capability's Twilio client against a fake Twilio on loopback.

Rules: every lookup goes to tests/fake_twilio over a real socket on
127.0.0.1 (``base_url``), on the real clock (the SDK blocks in threads:
Trio's autojump clock would jump during them), and an autouse guard fails
any name lookup of another host, so nothing ever leaves loopback. A
:class:`TwilioRooms` without ``base_url`` is never asked to look anything up.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jwt
import pytest
import requests
import trio
from fake_twilio import ACCOUNT_SID, FakeTwilio, ended, loopback_only

from neuro_api.calls._twilio import (
    IDENTITY_MAX,
    ROOM_MAX,
    TOKEN_TTL_MAX,
    RoomLook,
    TwilioRooms,
    identity_problem,
    make_token,
    room_problem,
)

KEY = "SK" + "1" * 32
SECRET = "a-test-api-secret-of-32-bytes-ok"  # PyJWT warns under 32 bytes
assert len(SECRET) >= 32
UNKNOWN_SID = "RM" + "f" * 32


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
def rooms(fake: FakeTwilio) -> Iterator[TwilioRooms]:
    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=fake.url, timeout=5) as r:
        yield r


# -- lookups ----------------------------------------------------------------


def test_in_progress_room_counts_connected_participants(
    fake: FakeTwilio, rooms: TwilioRooms
) -> None:
    sid = fake.add_room("living-room", participants=["tv", "phone", "tablet"])
    fake.disconnect("living-room", "phone")
    expected = RoomLook("found", "in-progress", 2, None)
    assert rooms.look("living-room") == expected
    assert rooms.look(sid) == expected
    # the participants were asked for by the room's SID, connected only
    assert ("GET", f"/v1/Rooms/{sid}/Participants?Status=connected") in fake.log


def test_empty_in_progress_room(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    fake.add_room("empty")
    assert rooms.look("empty") == RoomLook("found", "in-progress", 0, None)


def test_completed_room_has_its_end_time(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    end = ended(minutes_ago=3)
    sid = fake.add_room("done", participants=1)
    fake.set_status(sid, "completed", end_time=end)
    look = rooms.look(sid)
    assert look == RoomLook("found", "completed", 0, end)
    assert look.end_time is not None
    assert look.end_time.utcoffset() is not None  # aware
    # Twilio finds a room by name only while it is in progress
    assert rooms.look("done") == RoomLook("not_found")
    # an ended room's participants are not asked for
    assert not any("Participants" in target for _, target in fake.log)


def test_completed_room_without_end_time(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    sid = fake.add_room("done", status="completed")
    assert rooms.look(sid) == RoomLook("found", "completed", 0, None)


def test_failed_room(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    sid = fake.add_room("broken", status="failed", end_time=ended(1))
    look = rooms.look(sid)
    assert (look.state, look.status) == ("found", "failed")


def test_unreadable_end_time_is_left_out(
    fake: FakeTwilio, rooms: TwilioRooms, caplog: pytest.LogCaptureFixture
) -> None:
    sid = fake.add_room("done", status="completed")
    fake.answer_raw(
        sid,
        json.dumps({"sid": sid, "status": "completed", "end_time": "yesterday"}),
    )
    assert rooms.look(sid) == RoomLook("found", "completed", 0, None)
    assert "end_time it cannot read: 'yesterday'" in caplog.text


@pytest.mark.parametrize("room", ["nobody-here", UNKNOWN_SID])
def test_not_found(fake: FakeTwilio, rooms: TwilioRooms, room: str) -> None:
    fake.add_room("someone-else")
    assert rooms.look(room) == RoomLook("not_found")


def test_404_without_twilio_code_is_an_error(
    fake: FakeTwilio, rooms: TwilioRooms
) -> None:
    # a 404 that is not Twilio's "room not found" (error 20404) ends nothing
    sid = fake.add_room("behind-a-proxy")
    fake.fail(sid, 404)
    assert rooms.look(sid) == RoomLook("error", error="Twilio answered 404")


def test_removed_room_is_not_found(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    sid = fake.add_room("gone")
    fake.remove_room(sid)
    assert rooms.look(sid) == RoomLook("not_found")


def test_ended_by_rest_call_is_seen(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    sid = fake.add_room("short", participants=2)
    rooms._client.video.v1.rooms(sid).update(status="completed")
    look = rooms.look(sid)
    assert (look.state, look.status, look.participants) == ("found", "completed", 0)
    assert isinstance(look.end_time, datetime)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_error_is_an_error(
    fake: FakeTwilio, rooms: TwilioRooms, status: int
) -> None:
    sid = fake.add_room("flaky", participants=1)
    fake.fail(sid, status)
    assert rooms.look(sid) == RoomLook("error", error=f"Twilio answered {status}")
    fake.fail(sid, None)
    assert rooms.look(sid).state == "found"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "Twilio answered 500"), (403, "authentication failed (403)")],
)
def test_participants_error_is_an_error(
    fake: FakeTwilio, rooms: TwilioRooms, status: int, reason: str
) -> None:
    sid = fake.add_room("half-flaky", participants=1)
    fake.fail_participants(sid, status)
    assert rooms.look(sid) == RoomLook("error", error=reason)


def test_forbidden_is_an_authentication_error(
    fake: FakeTwilio, rooms: TwilioRooms
) -> None:
    sid = fake.add_room("not-yours")
    fake.fail(sid, 403)
    assert rooms.look(sid) == RoomLook("error", error="authentication failed (403)")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"participants": {}, "meta": {"key": "participants"}}', "malformed answer"),
        ('{"participants": [1], "meta": {"key": "participants"}}', "malformed answer"),
        ('{"a": [], "b": []}', "Twilio error: Page Records can not be deserialized"),
        ("nope", "malformed answer: not JSON"),
    ],
)
def test_malformed_participants_page_is_an_error(
    fake: FakeTwilio, rooms: TwilioRooms, body: str, reason: str
) -> None:
    sid = fake.add_room("odd-page", participants=1)
    fake.answer_raw(sid, body, participants=True)
    look = rooms.look(sid)
    assert look.state == "error"
    assert look.error is not None
    assert look.error.startswith(reason)


def test_hang_up_is_a_network_error(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    sid = fake.add_room("rude")
    fake.hang_up(sid)
    assert rooms.look(sid) == RoomLook(
        "error", error="network: Remote end closed connection without response"
    )
    fake.hang_up(sid, False)
    assert rooms.look(sid).state == "found"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<html>oops</html>", "malformed answer: not JSON"),
        ("[1, 2]", "malformed answer: not a JSON object"),
        ('{"status": "paused"}', "malformed answer: unknown room status 'paused'"),
        ('{"sid": "RMx"}', "malformed answer: unknown room status None"),
        (
            '{"status": ["completed"]}',
            "malformed answer: unknown room status ['completed']",
        ),
    ],
)
def test_malformed_answer_is_an_error(
    fake: FakeTwilio, rooms: TwilioRooms, body: str, reason: str
) -> None:
    sid = fake.add_room("odd")
    fake.answer_raw(sid, body)
    assert rooms.look(sid) == RoomLook("error", error=reason)


def test_slow_answer_times_out(fake: FakeTwilio) -> None:
    sid = fake.add_room("slow")
    fake.delay = 2.0  # cut short when the fake stops
    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=fake.url, timeout=0.2) as r:
        start = time.monotonic()
        look = r.look(sid)
        elapsed = time.monotonic() - start
    assert look == RoomLook("error", error="timed out after 0.2 s")
    assert elapsed < 1.5


def test_wrong_secret_is_an_authentication_error(fake: FakeTwilio) -> None:
    sid = fake.add_room("private")
    wrong = SECRET[::-1]
    with TwilioRooms(ACCOUNT_SID, KEY, wrong, base_url=fake.url) as r:
        assert r.look(sid) == RoomLook("error", error="authentication failed (401)")
        # authentication failures are never mistaken for a missing room
        assert r.look(UNKNOWN_SID) == RoomLook(
            "error", error="authentication failed (401)"
        )


def test_server_down_is_a_network_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    # nothing listens on the port now
    base = f"http://127.0.0.1:{port}"
    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=base, timeout=2) as r:
        assert r.look("anything") == RoomLook(
            "error", error="network: Connection refused"
        )


def test_participants_span_pages(fake: FakeTwilio, rooms: TwilioRooms) -> None:
    fake.max_page_size = 2
    sid = fake.add_room("crowd", participants=5)
    assert rooms.look(sid) == RoomLook("found", "in-progress", 5, None)
    pages = [target for _, target in fake.log if "/Participants" in target]
    # three pages; the 2nd and 3rd from Twilio's absolute next_page_url
    # (https://video.twilio.com/...), rewritten to the fake (the autouse
    # guard fails the test if one went to video.twilio.com)
    assert len(pages) == 3
    assert "Page=1" in pages[1]
    assert "Page=2" in pages[2]


def test_room_names_are_quoted_into_the_path(
    fake: FakeTwilio, rooms: TwilioRooms
) -> None:
    # never accepted by room_problem, but a stored name must not break the URL
    fake.add_room("a b/c?d", participants=1)
    assert rooms.look("a b/c?d") == RoomLook("found", "in-progress", 1, None)


def test_environment_is_not_read(
    fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "9" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "x" * 32)
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    sid = fake.add_room("here")
    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=fake.url) as r:
        client = r._client
        assert (client.edge, client.region, client.account_sid) == (
            None,
            None,
            ACCOUNT_SID,
        )
        assert r.look(sid).state == "found"


def test_region_with_base_url_still_reaches_the_fake(fake: FakeTwilio) -> None:
    sid = fake.add_room("dublin")
    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, region="ie1", base_url=fake.url) as r:
        assert r.look(sid).state == "found"


def test_base_url_with_a_path_prefix(fake: FakeTwilio) -> None:
    sid = fake.add_room("prefixed")
    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=f"{fake.url}/twilio/") as r:
        assert r.look(sid) == RoomLook("not_found")  # the fake has no prefix
    assert fake.log[-1] == ("GET", f"/twilio/v1/Rooms/{sid}")


def test_lookups_after_close_still_work(fake: FakeTwilio) -> None:
    sid = fake.add_room("again")
    r = TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=fake.url)
    assert r.look(sid).state == "found"
    r.close()
    assert r.look(sid).state == "found"  # a one-off session, closed after
    r.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "127.0.0.1:8080"}, "base_url must be an http"),
        ({"base_url": "ftp://127.0.0.1"}, "base_url must be an http"),
        ({"base_url": "http://"}, "base_url must be an http"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": -1.0}, "timeout must be positive"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TwilioRooms(ACCOUNT_SID, KEY, SECRET, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def session_overlap(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The most requests one ``requests.Session`` ever had in flight at once.

    A Session is not thread-safe (twilio's own client shares one): no
    session may serve two threads at the same time.
    """
    original = requests.Session.request
    lock = threading.Lock()
    in_flight: collections.Counter[int] = collections.Counter()
    most = {"overlap": 0}

    def tracked(self: requests.Session, *args: Any, **kwargs: Any) -> Any:
        with lock:
            in_flight[id(self)] += 1
            most["overlap"] = max(most["overlap"], in_flight[id(self)])
        try:
            return original(self, *args, **kwargs)
        finally:
            with lock:
                in_flight[id(self)] -= 1

    monkeypatch.setattr(requests.Session, "request", tracked)
    return most


async def test_many_lookups_from_many_threads(
    fake: FakeTwilio, session_overlap: dict[str, int]
) -> None:
    fake.delay = 0.02  # so that lookups overlap
    expected: dict[str, RoomLook] = {}
    for number in range(50):
        count = number % 4
        if number % 10 == 9:
            sid = fake.add_room(f"room-{number}", status="completed", end_time=ended(2))
            expected[sid] = RoomLook("found", "completed", 0, fake.room(sid).end_time)
        else:
            sid = fake.add_room(f"room-{number}", participants=count)
            expected[sid] = RoomLook("found", "in-progress", count, None)
    expected[UNKNOWN_SID] = RoomLook("not_found")
    limiter = trio.CapacityLimiter(10)
    results: dict[str, RoomLook] = {}

    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=fake.url) as r:

        async def look(room: str) -> None:
            results[room] = await trio.to_thread.run_sync(r.look, room, limiter=limiter)

        async with trio.open_nursery() as nursery:
            for room in expected:
                nursery.start_soon(look, room)

    assert results == expected
    assert session_overlap["overlap"] == 1
    # kept-alive connections were reused: at most one per concurrent lookup
    assert fake.requests > 90
    assert fake.connections <= 10


# -- tokens -------------------------------------------------------------------


def test_token_grants_one_room_to_one_identity() -> None:
    before = int(time.time())
    token = make_token(ACCOUNT_SID, KEY, SECRET, "Alice Smith", "living-room", 600)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["grants"] == {
        "identity": "Alice Smith",
        "video": {"room": "living-room"},
    }
    assert (claims["iss"], claims["sub"]) == (KEY, ACCOUNT_SID)
    assert claims["exp"] - claims["nbf"] == 600
    assert before <= claims["nbf"] <= int(time.time())
    assert jwt.get_unverified_header(token)["cty"] == "twilio-fpa;v=1"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET[::-1], algorithms=["HS256"])


@pytest.mark.parametrize(
    ("identity", "room", "ttl", "message"),
    [
        ("", "room", 60, "identity must not be empty"),
        ("alice", "a/b", 60, "room may only contain"),
        ("alice", "room", 0, "ttl must be 1 to 86400 seconds"),
        ("alice", "room", TOKEN_TTL_MAX + 1, "ttl must be 1 to 86400"),
        ("alice", "room", True, "ttl must be"),
        ("alice", "room", 60.0, "ttl must be"),
    ],
)
def test_token_refuses_bad_input(
    identity: str, room: str, ttl: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_token(ACCOUNT_SID, KEY, SECRET, identity, room, ttl)


def test_token_accepts_the_longest_ttl() -> None:
    token = make_token(ACCOUNT_SID, KEY, SECRET, "bob", "r", TOKEN_TTL_MAX)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["nbf"] == TOKEN_TTL_MAX


# -- names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("alice", None),
        ("Alice Smith", None),
        ("alice@example.com", None),
        ("user_42-tv.living", None),
        ("Zoë", None),
        ("日本語", None),
        ("a" * IDENTITY_MAX, None),
        ("é" * (IDENTITY_MAX // 2), None),
        ("a" * (IDENTITY_MAX + 1), "at most 128 characters"),
        ("é" * (IDENTITY_MAX // 2 + 1), "non-ASCII character counts as two"),
        ("", "identity must not be empty"),
        ("   ", "identity must not be empty"),
        (" alice", "must not start or end with whitespace"),
        ("alice ", "must not start or end with whitespace"),
        ("ali\nce", "control"),
        ("ali\tce", "control"),
        ("ali\x00ce", "control"),
        ("ali\x7fce", "control"),
        ("ali\x9bce", "control"),
        ("ali\u202ece", "bidi"),
        ("ali\u2028ce", "line-separator"),
        ("ali\ud800ce", "control"),
        (42, "identity must be a string"),
        (None, "identity must be a string"),
    ],
)
def test_identity_problem(value: object, problem: str | None) -> None:
    found = identity_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("living-room", None),
        ("room_42", None),
        ("call.abc~1", None),
        ("RM" + "0" * 32, None),
        ("a" * ROOM_MAX, None),
        ("...", None),
        ("a" * (ROOM_MAX + 1), "at most 128 characters"),
        ("", "room must not be empty"),
        ("living room", "may only contain"),
        ("a/b", "may only contain"),
        ("a?b", "may only contain"),
        ("a#b", "may only contain"),
        ("a%20b", "may only contain"),
        ("salle-à-manger", "may only contain"),
        ("room\n", "may only contain"),
        (".", "must not be . or .."),
        ("..", "must not be . or .."),
        (["room"], "room must be a string"),
    ],
)
def test_room_problem(value: object, problem: str | None) -> None:
    found = room_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, "https://video.twilio.com/v1/Rooms?Page=1"),
        ("http://127.0.0.1:9", "http://127.0.0.1:9/v1/Rooms?Page=1"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9/v1/Rooms?Page=1"),
        (
            "https://staging.example:8443/tw",
            "https://staging.example:8443/tw/v1/Rooms?Page=1",
        ),
    ],
)
def test_urls_are_rewritten_only_with_a_base_url(
    base_url: str | None, expected: str
) -> None:
    # no request is made: only the rewriting is looked at
    with TwilioRooms(ACCOUNT_SID, KEY, SECRET, base_url=base_url) as r:
        rewrite = r._http._rewrite
        assert rewrite("https://video.twilio.com/v1/Rooms?Page=1") == expected
        assert rewrite("https://video.ie1.twilio.com/v1/Rooms?Page=1") == (
            expected.replace("video.twilio.com", "video.ie1.twilio.com")
        )
