"""The call registry's two stores, one suite: SQLite and a real redis-server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_helpers import RedisServer

from neuro_api.calls import _store
from neuro_api.calls._model import Call
from neuro_api.calls._store import (
    CallExists,
    CallStore,
    RedisCallStore,
    RegistryFull,
    SqliteCallStore,
)

T0 = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CallStore]:
    made: CallStore
    server: RedisServer | None = None
    if request.param == "sqlite":
        made = SqliteCallStore(tmp_path / "calls.sqlite3", max_calls=50)
    else:
        server = RedisServer(tmp_path)
        server.start()
        made = RedisCallStore(server.url, max_calls=50)
    try:
        yield made
    finally:
        made.close()
        if server is not None:
            server.close()


def test_add_get_and_list_newest_first(store: CallStore) -> None:
    first = Call.new("alice", "bob", "r1", at(0))
    second = Call.new("carol", "dave", "r2", at(5)).accept(at(6))
    store.add(first)
    store.add(second)
    assert store.get(first.id) == first
    assert store.get("nope") is None
    assert store.calls() == [second, first]
    assert store.calls("accepted") == [second]
    assert store.calls("pending") == [first]
    assert store.calls("ended") == []
    assert store.calls(limit=1) == [second]
    assert sorted(c.id for c in store.all_calls()) == sorted([first.id, second.id])


def test_replace_is_compare_and_set_on_the_status(store: CallStore) -> None:
    call = Call.new("alice", "bob", "r1", at(0))
    store.add(call)
    accepted = call.accept(at(1))
    assert store.replace(accepted, "pending")
    assert not store.replace(accepted, "pending")  # it is accepted now
    tracked = dataclasses.replace(accepted, empty_since=at(50))
    assert store.replace(tracked, "accepted")  # same status: tracking only
    assert store.get(call.id) == tracked
    ended = tracked.end(at(100), "hangup")
    assert store.replace(ended, "accepted")
    assert store.calls("accepted") == []
    assert store.calls("ended") == [ended]
    # The sync's late write after a hang-up loses: nothing changes.
    assert not store.replace(tracked.end(at(200), "room_abandoned"), "accepted")
    assert store.get(call.id) == ended
    assert not store.replace(Call.new("x", "y", "z", at(0)), "pending")  # gone


def test_old_ended_calls_are_forgotten_past_the_cap(store: CallStore) -> None:
    live = [Call.new(f"u{n}", "v", f"r{n}", at(n)) for n in range(30)]
    for call in live:
        store.add(call)
    for n in range(40):
        store.add(Call.new("old", "v", "r", at(100 + n)).end(at(101 + n), "hangup"))
    calls = store.calls(limit=1000)
    assert len(calls) == 50
    assert {c.id for c in live} <= {c.id for c in calls}  # never a live one


def test_a_registry_full_of_live_calls_refuses_new_ones(store: CallStore) -> None:
    # Anyone may create calls (no auth) and pending ones never end by
    # themselves: past the cap, with no ended call to forget, add refuses.
    live = [Call.new(f"u{n}", "v", f"r{n}", at(n)) for n in range(50)]
    for call in live:
        store.add(call)
    with pytest.raises(RegistryFull):
        store.add(Call.new("one", "more", "r", at(99)))
    assert {c.id for c in store.calls(limit=1000)} == {c.id for c in live}
    store.replace(live[0].end(at(100), "hangup"), "pending")
    late = Call.new("one", "more", "r", at(101))
    store.add(late)  # an ended call made room
    assert store.get(late.id) == late
    assert store.get(live[0].id) is None
    assert len(store.calls(limit=1000)) == 50


def test_one_holder_of_a_lock_at_a_time(store: CallStore) -> None:
    assert store.acquire("sync", "a", 60)
    assert not store.acquire("sync", "b", 60)
    store.release("sync", "b")  # not its lock: nothing happens
    assert not store.acquire("sync", "b", 60)
    store.release("sync", "a")
    assert store.acquire("sync", "b", 0.05)
    threading.Event().wait(0.1)  # expired: anyone may take it
    assert store.acquire("sync", "c", 60)


def test_only_the_holder_renews_a_lock(store: CallStore) -> None:
    assert store.acquire("sync", "a", 0.2)
    assert not store.renew("sync", "b", 60)  # not its lock
    assert store.renew("sync", "a", 60)
    threading.Event().wait(0.3)  # past the first expiry: renewed
    assert not store.acquire("sync", "b", 60)
    store.release("sync", "a")
    assert not store.renew("sync", "a", 60)  # given back: gone
    assert store.acquire("sync", "b", 60)


def test_threads_racing_on_one_call_change_it_once(store: CallStore) -> None:
    call = Call.new("alice", "bob", "r1", at(0)).accept(at(1))
    store.add(call)
    wins: list[bool] = []

    def end(reason: str) -> None:
        wins.append(store.replace(call.end(at(9), reason), "accepted"))

    threads = [threading.Thread(target=end, args=(f"r{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1


def test_sqlite_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    first = SqliteCallStore(path)
    call = Call.new("alice", "bob", "r1", at(0))
    first.add(call)
    first.close()
    again = SqliteCallStore(path)
    try:
        assert again.get(call.id) == call
    finally:
        again.close()


def phone(n: int, seconds: float) -> Call:
    return Call.phone(f"CA{n:032x}", f"+1555000{n:04}", "+15550009999", at(seconds))


def test_calls_are_listed_by_kind(store: CallStore) -> None:
    video = [Call.new(f"u{n}", "v", f"r{n}", at(2 * n)) for n in range(5)]
    phones = [phone(n, 2 * n + 1) for n in range(5)]
    for call in [*video, *phones]:
        store.add(call)
    ended = phones[1].end(at(30), "caller_hung_up")
    assert store.replace(ended, "accepted")
    phones[1] = ended
    assert store.get(phones[0].id) == phones[0]
    assert store.calls(kind="phone") == phones[::-1]
    assert store.calls(kind="video") == video[::-1]
    assert store.calls(kind="phone", limit=2) == [phones[4], phones[3]]
    assert store.calls("ended", kind="phone") == [ended]
    assert store.calls("accepted", kind="phone") == [
        phones[4],
        phones[3],
        phones[2],
        phones[0],
    ]
    assert store.calls("accepted", kind="video") == []
    assert store.calls("pending", kind="video", limit=3) == video[::-1][:3]
    assert len(store.calls()) == 10


def test_an_id_in_the_registry_is_not_added_again(store: CallStore) -> None:
    first = phone(1, 0)
    store.add(first)
    again = dataclasses.replace(first, caller="someone else", created_at=at(9))
    with pytest.raises(CallExists):
        store.add(again)
    assert store.get(first.id) == first
    assert store.calls() == [first]
    assert store.calls("accepted") == [first]
    assert store.calls(kind="phone") == [first]


def test_forgotten_phone_calls_leave_their_index(store: CallStore) -> None:
    for n in range(80):
        store.add(phone(n, n).end(at(n + 0.5), "caller_hung_up"))
    assert len(store.calls(kind="phone", limit=1000)) == 50
    if isinstance(store, RedisCallStore):
        assert store._client.zcard("Calls:kind:phone") == 50


def test_a_kind_filter_reads_past_a_page(
    store: CallStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "_PAGE", 3)
    calls = []
    for n in range(12):  # one video call in four
        made = Call.new("u", "v", "r", at(n)) if n % 4 == 0 else phone(n, n)
        store.add(made)
        calls.append(made)
    video = [c for c in calls if c.kind == "video"][::-1]
    assert store.calls(kind="video") == video
    assert store.calls(kind="video", limit=2) == video[:2]
    assert store.calls("pending", kind="video") == video


def test_the_live_phone_calls_are_read_without_the_ended_ones(
    store: CallStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sync asks for the accepted phone calls each interval: a registry
    # full of phone calls that ended must not be read through each time.
    monkeypatch.setattr(_store, "_PAGE", 3)
    for n in range(40):
        store.add(phone(n, n).end(at(n + 0.5), "caller_hung_up"))
    live = [phone(100 + n, 50 + n) for n in range(2)]
    for call in live:
        store.add(call)
    store.add(Call.new("u", "v", "r", at(60)).accept(at(61)))
    if isinstance(store, RedisCallStore):
        read: list[int] = []
        load = store._load

        def counted(ids: list[object]) -> list[Call]:
            read.append(len(list(ids)))
            return load(ids)

        monkeypatch.setattr(store, "_load", counted)
    assert store.calls("accepted", kind="phone") == live[::-1]
    if isinstance(store, RedisCallStore):
        assert sum(read) <= 3  # the accepted ones, not the 42 phone calls


OLD_ID = "0123456789abcdef"
OLD_ROW = {  # a call as servers wrote it before calls had kinds
    "id": OLD_ID,
    "caller": "alice",
    "callee": "bob",
    "room": "kitchen",
    "status": "accepted",
    "created_at": "2026-12-06T08:00:00.000Z",
    "accepted_at": "2026-12-06T08:00:05.000Z",
    "ended_at": None,
    "duration": None,
    "end_reason": None,
    "empty_since": None,
    "single_since": None,
}


def test_calls_stored_before_kinds_are_video_calls(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    SqliteCallStore(path).close()  # the table, as every version makes it
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO calls VALUES (?, ?, ?, ?)",
            (OLD_ID, "accepted", "2026-12-06T08:00:00.000Z", json.dumps(OLD_ROW)),
        )
    db.close()
    store = SqliteCallStore(path)
    try:
        _an_old_row_is_a_video_call(store)
    finally:
        store.close()


def test_calls_stored_in_redis_before_kinds_are_video_calls(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        client = server.client()
        score = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC).timestamp()
        client.set(f"Calls:call:{OLD_ID}", json.dumps(OLD_ROW))
        client.zadd("Calls:created", {OLD_ID: score})
        client.zadd("Calls:status:accepted", {OLD_ID: score})
        store = RedisCallStore(server.url)
        try:
            _an_old_row_is_a_video_call(store)
        finally:
            store.close()
    finally:
        server.close()


def _an_old_row_is_a_video_call(store: CallStore) -> None:
    old = store.get(OLD_ID)
    assert old is not None
    assert (old.kind, old.call_sid, old.caller) == ("video", None, "alice")
    assert store.calls("accepted", kind="video") == [old]
    assert store.calls(kind="phone") == []
    store.add(phone(1, 60))
    assert [c.kind for c in store.calls()] == ["phone", "video"]
    assert store.calls(kind="video") == [old]
    ended = old.end(at(120), "hangup")
    assert store.replace(ended, "accepted")
    assert store.get(old.id) == ended
