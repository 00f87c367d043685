"""The calls capability's routes on the control plane (``/calls/...``).

The registry with filters, the sync job and the counts, under the control
plane's auth: what the dashboard's calls page reads. Bodies of the sync,
job and stats routes are the admin routes' (the seed's).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from fake_twilio import FakeTwilio, loopback_only
from test_calls_routes import KEYS, Running, running

from neuro_api.calls import _control
from neuro_api.calls._control import CallMatches
from neuro_api.calls._model import Call

pytestmark = pytest.mark.timeout(30)
T0: Final = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)


async def _make(http: httpx.AsyncClient, caller: str, callee: str, room: str) -> str:
    made = await http.post(
        "/api/calls", json={"caller": caller, "callee": callee, "room": room}
    )
    assert made.status_code == 201, made.text
    call_id: str = made.json()["id"]
    return call_id


async def _registry(run: Running, **params: str) -> dict[str, Any]:
    async with run.control() as control:
        answer = await control.get("/calls/registry", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_the_registry_with_its_filters(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        alice = await _make(http, "Alice", "bob", "kitchen")
        carol = await _make(http, "carol", "dave", "garden")
        again = await _make(http, "bob", "alice", "hall")
        await http.post(f"/api/calls/{carol}/end")
        everything = await _registry(run)
        seed = (await http.get("/api/calls")).json()
        assert everything["calls"] == seed["calls"]  # same calls, same order
        assert [c["id"] for c in everything["calls"]] == [again, carol, alice]
        assert everything["count"] == everything["matched"] == 3
        ended = await _registry(run, status="ended")
        assert [c["id"] for c in ended["calls"]] == [carol]
        # Text ignores case and looks at both identities, the room, the id.
        found = await _registry(run, q="ALICE")
        assert [c["id"] for c in found["calls"]] == [again, alice]
        assert (found["matched"], found["scanned"]) == (2, 3)
        assert [c["id"] for c in (await _registry(run, q="garden"))["calls"]] == [carol]
        assert (await _registry(run, q=alice[:10]))["count"] == 1
        assert (await _registry(run, q="hangup"))["count"] == 1  # end reason
        newest = await _registry(run, q="alice", limit="1")
        assert [c["id"] for c in newest["calls"]] == [again]
        assert newest["matched"] == 2  # more matched than shown
        both = await _registry(run, q="alice", status="pending")
        assert both["count"] == 2
        assert (await _registry(run, q="nobody"))["calls"] == []


async def test_a_search_reads_the_registry_a_page_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_control, "SCAN_PAGE", 2)
    async with running(tmp_path) as run, run.client() as http:
        ids = [await _make(http, f"caller{n}", "x", "room") for n in range(7)]
        assert run.calls.service is not None
        store = run.calls.service.store
        turns = 0
        original = store.call

        async def counted(function: Any, *args: Any) -> Any:
            nonlocal turns
            turns += 1
            return await original(function, *args)

        monkeypatch.setattr(store, "call", counted)
        found = await _registry(run, q="caller", limit="3")
    assert [c["id"] for c in found["calls"]] == ids[::-1][:3]
    assert (found["matched"], found["scanned"]) == (7, 7)
    assert turns == 5  # 7 calls in pages of 2, then the empty page


def test_matches_keep_the_newest_within_the_limit() -> None:
    matches = CallMatches(None, "x", 3)
    calls = [
        Call(f"id{n:04}", "x", "y", "r", "pending", T0 + dt.timedelta(seconds=n))
        for n in range(2000)
    ]
    for start in range(0, 2000, 100):
        assert matches.add(calls[start : start + 100]) == 100
        assert len(matches._heap) <= 3  # memory follows the limit
    assert [c.id for c in matches.newest()] == ["id1999", "id1998", "id1997"]
    assert (matches.matched, matches.scanned) == (2000, 2000)
    assert matches.add([]) == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "lost"}, "status must be one of pending, accepted, ended"),
        ({"limit": "0"}, "limit must be a whole number 1 to 1000"),
        ({"limit": "1001"}, "limit must be a whole number 1 to 1000"),
        ({"limit": "ten"}, "limit must be a whole number 1 to 1000"),
        ({"limit": "-5"}, "limit must be a whole number 1 to 1000"),
        ({"limit": "\u00b2"}, "limit must be a whole number 1 to 1000"),
        ({"limit": "9" * 5000}, "limit must be a whole number 1 to 1000"),
        ({"q": "x" * 201}, "q is at most 200 characters"),
    ],
)
async def test_bad_filters_are_400(
    tmp_path: Path, params: dict[str, str], message: str
) -> None:
    async with running(tmp_path) as run, run.control() as control:
        answer = await control.get("/calls/registry", params=params)
    assert answer.status_code == 400
    assert answer.json() == {"error": {"code": "invalid_request", "message": message}}


async def test_the_routes_take_the_control_plane_token(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.control() as control:
        anonymous = httpx.AsyncClient(base_url=str(control.base_url))
        async with anonymous:
            for path in ("/calls/registry", "/calls/job", "/calls/stats"):
                assert (await anonymous.get(path)).status_code == 401, path
            assert (await anonymous.post("/calls/sync")).status_code == 401
        paths = (await control.get("/openapi.json")).json()["paths"]
    assert {"/calls/registry", "/calls/sync", "/calls/job", "/calls/stats"} <= set(
        paths
    )


async def test_job_and_stats_are_the_admin_routes_bodies(tmp_path: Path) -> None:
    async with (
        running(tmp_path) as run,
        run.client() as http,
        run.admin() as admin,
        run.control() as control,
    ):
        first = await _make(http, "a", "b", "r")
        await _make(http, "b", "c", "r")
        await http.post(f"/api/calls/{first}/accept")
        for ours, seeds in (
            ("/calls/job", "/api/admin/background-service"),
            ("/calls/stats", "/api/admin/stats"),
        ):
            mine, theirs = await control.get(ours), await admin.get(seeds)
            assert mine.status_code == 200
            assert mine.json() == theirs.json()
        assert (await control.get("/calls/stats")).json()["stats"]["total_calls"] == 2
        answer = await control.post("/calls/sync")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "twilio_not_configured"


async def test_sync_now_on_the_control_plane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTwilio(KEYS["TWILIO_API_KEY"], KEYS["TWILIO_API_SECRET"]) as fake:
        with loopback_only(monkeypatch) as left:
            environ = {**KEYS, "TWILIO_BASE_URL": fake.url}
            async with (
                running(tmp_path, environ=environ) as run,
                run.client() as http,
                run.control() as control,
            ):
                gone = await _make(http, "a", "b", "gone")
                await http.post(f"/api/calls/{gone}/accept")
                answer = await control.post("/calls/sync")
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert (body["success"], body["synced"], body["ended"]) == (
                    True,
                    1,
                    1,
                )
                ended = await _registry(run, status="ended")
                assert ended["calls"][0]["end_reason"] == "room_not_found"
                job = (await control.get("/calls/job")).json()
                assert job["background_service"]["jobs"][0]["next_run"].endswith("Z")
        assert left == []


async def test_a_registry_that_is_down_is_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*args: Any) -> Any:
        raise sqlite3.OperationalError("database is locked at /secret/path")

    async with running(tmp_path) as run, run.control() as control:
        assert run.calls.service is not None
        store = run.calls.service.store.store
        monkeypatch.setattr(store, "calls", locked)
        monkeypatch.setattr(store, "all_calls", locked)
        for params in ({}, {"q": "x"}):
            answer = await control.get("/calls/registry", params=params)
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "registry_unavailable"
            assert "secret" not in answer.text
        answer = await control.get("/calls/stats")
        assert answer.status_code == 503
