"""The sync's rules, row by row (a pure function: no clock, no I/O)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from neuro_api.calls._decide import RoomLook, SyncRules, decide
from neuro_api.calls._model import Call, IllegalTransition, iso, parse_iso

T0 = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
RULES = SyncRules(min_age=300, empty_timeout=300, single_timeout=600)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def accepted(**changes: object) -> Call:
    call = Call.new("alice", "bob", "room-1", T0).accept(at(10))
    return dataclasses.replace(call, **changes)  # type: ignore[arg-type]


FOUND = RoomLook("found", "in-progress", participants=2)


@pytest.mark.parametrize(
    ("look", "now", "call", "action", "reason", "ended_at"),
    [
        # Twilio's trouble: never end on uncertainty.
        (RoomLook("error", error="Twilio answered 500"), 5000, {}, "skip", None, None),
        (RoomLook("error", error="timed out"), 5000, {}, "skip", None, None),
        # Gone or over: at once, whatever the age.
        (RoomLook("not_found"), 20, {}, "end", "room_not_found", 20),
        (RoomLook("found", "completed"), 20, {}, "end", "room_completed", 20),
        (
            RoomLook("found", "completed", end_time=at(15)),
            900,
            {},
            "end",
            "room_completed",
            15,
        ),
        # An end time before the call began, or in the future: clamped.
        (
            RoomLook("found", "completed", end_time=at(-60)),
            900,
            {},
            "end",
            "room_completed",
            10,
        ),
        (
            RoomLook("found", "completed", end_time=at(5000)),
            900,
            {},
            "end",
            "room_completed",
            900,
        ),
        (RoomLook("found", "failed"), 20, {}, "end", "room_failed", 20),
        # Empty: only old calls, only after the empty timeout.
        (RoomLook("found", "in-progress", 0), 100, {}, "keep", None, None),
        (
            RoomLook("found", "in-progress", 0),
            100,
            {"empty_since": at(-1000)},
            "keep",  # empty for long, but the call is younger than min_age
            None,
            None,
        ),
        (
            RoomLook("found", "in-progress", 0),
            900,
            {"empty_since": at(600)},
            "keep",  # exactly the timeout: not more than it
            None,
            None,
        ),
        (
            RoomLook("found", "in-progress", 0),
            901,
            {"empty_since": at(600)},
            "end",
            "room_abandoned",
            901,
        ),
        (RoomLook("found", "in-progress", 0), 5000, {}, "keep", None, None),
        # One participant: the single timeout.
        (
            RoomLook("found", "in-progress", 1),
            1201,
            {"single_since": at(600)},
            "end",
            "single_participant_timeout",
            1201,
        ),
        (
            RoomLook("found", "in-progress", 1),
            1200,
            {"single_since": at(600)},
            "keep",
            None,
            None,
        ),
        (
            RoomLook("found", "in-progress", 1),
            5000,
            {"empty_since": at(0)},  # was empty: now one is back
            "keep",
            None,
            None,
        ),
        # Two or more: kept, clocks reset.
        (
            FOUND,
            5000,
            {"empty_since": at(0), "single_since": at(0)},
            "keep",
            None,
            None,
        ),
    ],
)
def test_the_seeds_table(
    look: RoomLook,
    now: float,
    call: dict[str, object],
    action: str,
    reason: str | None,
    ended_at: float | None,
) -> None:
    before = accepted(**call)
    verdict = decide(before, look, at(now), RULES)
    assert verdict.action == action
    assert verdict.call.end_reason == reason
    if ended_at is None:
        assert verdict.call.status == "accepted"
    else:
        assert verdict.call.status == "ended"
        assert verdict.call.ended_at == at(ended_at)
        # Duration: from acceptance (10 s) in whole seconds.
        assert verdict.call.duration == max(0, int(ended_at) - 10)
    if action == "skip":
        assert verdict.call is before
        assert verdict.error is not None
        assert not verdict.changed


def test_the_empty_clock_starts_at_the_first_sync_that_sees_it() -> None:
    call = accepted()
    empty = RoomLook("found", "in-progress", 0)
    first = decide(call, empty, at(400), RULES)
    assert (first.action, first.call.empty_since) == ("keep", at(400))
    second = decide(first.call, empty, at(580), RULES)
    assert (second.action, second.call.empty_since) == ("keep", at(400))
    third = decide(second.call, empty, at(701), RULES)
    assert (third.action, third.call.end_reason) == ("end", "room_abandoned")
    assert third.call.duration == 691
    # Someone came back in between: the clock starts again.
    back = decide(second.call, FOUND, at(600), RULES)
    assert back.call.empty_since is None
    again = decide(back.call, empty, at(701), RULES)
    assert again.action == "keep"


def test_transitions_and_illegal_ones() -> None:
    call = Call.new("alice", "bob", "room", T0)
    assert call.status == "pending"
    with pytest.raises(IllegalTransition, match="cannot become pending"):
        call._moved("pending")
    ended = call.end(at(5), "hangup")
    assert (ended.duration, ended.end_reason) == (0, "hangup")
    with pytest.raises(IllegalTransition, match="is ended"):
        ended.accept(at(6))
    with pytest.raises(IllegalTransition):
        ended.end(at(6), "hangup")
    done = call.accept(at(1)).end(at(62.9), "hangup")
    assert done.duration == 61
    with pytest.raises(IllegalTransition):
        call.accept(at(1)).accept(at(2))


def test_json_round_trip_and_iso_format() -> None:
    call = accepted(empty_since=at(30))
    data = call.to_json()
    assert data["created_at"] == "2026-12-06T08:00:00.000Z"
    assert Call.from_json(data) == call
    assert iso(None) is None
    assert parse_iso(None) is None
    with pytest.raises(ValueError, match="unknown call status"):
        Call.from_json(data | {"status": "ringing"})


def test_a_phone_call_round_trips_and_old_rows_are_video_calls() -> None:
    sid = "CA" + "0" * 32
    call = Call.phone(sid, "+15551234567", "+15550009999", at(0))
    data = call.to_json()
    assert (data["kind"], data["call_sid"], data["id"], data["room"]) == (
        "phone",
        sid,
        sid,
        sid,
    )
    assert (data["status"], data["accepted_at"]) == ("accepted", data["created_at"])
    assert Call.from_json(data) == call
    before = accepted()
    video = before.to_json()
    assert (video["kind"], video["call_sid"]) == ("video", None)
    old = {k: v for k, v in video.items() if k not in {"kind", "call_sid"}}
    assert Call.from_json(old) == before
    with pytest.raises(ValueError, match="unknown call kind"):
        Call.from_json(data | {"kind": "fax"})
