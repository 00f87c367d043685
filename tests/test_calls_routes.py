"""The calls API over real sockets: the seed's routes, bodies and errors.

A process with the control plane, the games' server and the calls
capability, on 127.0.0.1 port 0; the registry in the test's directory.
"""

from __future__ import annotations

import datetime as dt
import io
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import jwt
import pytest
import trio
from fake_twilio import FakeTwilio, loopback_only
from redis_helpers import RedisServer, redis_server
from test_neuro_process import Provider

from neuro_api.app import (
    ControlPlaneCapability,
    GamesCapability,
    NeuroProcess,
    build_parser,
)
from neuro_api.calls import CallsCapability, CallsSettings
from neuro_api.calls._capability import settings_exposed
from neuro_api.calls._model import Call
from neuro_api.calls._store import SqliteCallStore
from neuro_api.calls._sync import LockLost
from neuro_api.manager import ServerInfo as ManagedServer
from neuro_api.server import RandomNeuroServer
from neuro_api.settings import load_settings

__all__ = ["redis_server"]  # the fixture, imported to be found
pytestmark = pytest.mark.timeout(30)
WAIT: Final = 10.0
TOKEN: Final = "an-admin-token-for-the-calls-tests"
SID: Final = "AC" + "0" * 32
KEY: Final = "SK" + "1" * 32
SECRET: Final = "a-test-secret-of-at-least-32-bytes-long"
T0: Final = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)


class Running:
    def __init__(self, process: NeuroProcess, calls: CallsCapability) -> None:
        self.process = process
        self.calls = calls

    @property
    def url(self) -> str:
        info = {s.name: s.info for s in self.process.supervisor.status()}["calls"]
        assert isinstance(info, ManagedServer)
        return info.local_url

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=WAIT)

    def admin(self) -> httpx.AsyncClient:
        return self.client(Authorization=f"Bearer {TOKEN}")

    def control(self) -> httpx.AsyncClient:
        info = {s.name: s.info for s in self.process.supervisor.status()}
        control = info["control-plane"]
        assert isinstance(control, ManagedServer)
        return httpx.AsyncClient(
            base_url=control.local_url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=WAIT,
        )


@asynccontextmanager
async def running(
    data_dir: Path,
    *argv: str,
    environ: dict[str, str] | None = None,
    tunnels: Any = None,
) -> AsyncIterator[Running]:
    flags = ["--engine", "random", "--port", "0", "--http-port", "0"]
    flags += ["--api-token", TOKEN, "--data-dir", str(data_dir), "--calls-port", "0"]
    parsed = build_parser([CallsSettings]).parse_args([*flags, *argv])
    settings = load_settings(parsed, environ=environ or {}, sections=[CallsSettings])
    calls = CallsCapability()
    process = NeuroProcess(
        settings,
        RandomNeuroServer(),
        capabilities=[ControlPlaneCapability(), GamesCapability(), calls],
        tunnels=tunnels,
        out=io.StringIO(),
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            await nursery.start(
                lambda task_status: process.run(
                    handle_signals=False, task_status=task_status
                )
            )
        yield Running(process, calls)
        nursery.cancel_scope.cancel()


KEYS: Final = {
    "TWILIO_ACCOUNT_SID": SID,
    "TWILIO_API_KEY": KEY,
    "TWILIO_API_SECRET": SECRET,
}


async def test_health_is_public_and_says_the_time(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        answer = await http.get("/api/health")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["service"]) == ("healthy", "neuro_api calls")
    assert body["timestamp"].endswith("Z")


async def test_a_token_for_a_room(tmp_path: Path) -> None:
    async with running(tmp_path, environ=KEYS) as run, run.client() as http:
        answer = await http.post(
            "/api/token", json={"identity": "alice", "room": "living-room"}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["identity"], body["room"]) == ("alice", "living-room")
        claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
        assert claims["iss"] == KEY
        assert claims["sub"] == SID
        assert claims["grants"]["identity"] == "alice"
        assert claims["grants"]["video"] == {"room": "living-room"}
        assert claims["exp"] - claims["nbf"] <= 3600 + 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"room": "r"}, "Missing required field: identity"),
        ({"identity": "alice"}, "Missing required field: room"),
        ({"identity": "", "room": "r"}, "Missing required field: identity"),
        ({"identity": 5, "room": "r"}, "Field identity must be a string"),
        ([], "Invalid JSON body: expected an object"),
    ],
)
async def test_token_errors(tmp_path: Path, body: Any, message: str) -> None:
    async with running(tmp_path, environ=KEYS) as run, run.client() as http:
        answer = await http.post("/api/token", json=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": message}


async def test_bad_json_and_bad_names(tmp_path: Path) -> None:
    async with running(tmp_path, environ=KEYS) as run, run.client() as http:
        answer = await http.post(
            "/api/token",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert (answer.status_code, answer.json()) == (
            400,
            {"error": "Invalid JSON body"},
        )
        answer = await http.post(
            "/api/token", json={"identity": "a" * 500, "room": "r"}
        )
        assert answer.status_code == 400
        assert "identity" in answer.json()["error"]


async def test_unconfigured_twilio_is_503_and_the_rest_runs(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        async with run.client() as http:
            answer = await http.post("/api/token", json={"identity": "a", "room": "r"})
            assert answer.status_code == 503
            assert answer.json() == {
                "error": "Twilio is not configured: set TWILIO_ACCOUNT_SID, "
                "TWILIO_API_KEY and TWILIO_API_SECRET"
            }
            made = await http.post(
                "/api/calls", json={"caller": "a", "callee": "b", "room": "r"}
            )
            assert made.status_code == 201
        async with run.admin() as admin:
            answer = await admin.post("/api/admin/sync-twilio")
            assert answer.status_code == 503
        async with run.control() as control:
            health = (await control.get("/health")).json()
        section = health["capabilities"]["calls"]
        assert (section["status"], section["twilio"]) == ("healthy", "not configured")


async def test_a_call_from_start_to_end(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        made = await http.post(
            "/api/calls", json={"caller": "alice", "callee": "bob", "room": "r1"}
        )
        call = made.json()
        assert made.status_code == 201
        assert (call["status"], call["caller"], call["callee"]) == (
            "pending",
            "alice",
            "bob",
        )
        assert call["created_at"].endswith("Z")
        accepted = (await http.post(f"/api/calls/{call['id']}/accept")).json()
        assert accepted["status"] == "accepted"
        assert accepted["accepted_at"] is not None
        again = await http.post(f"/api/calls/{call['id']}/accept")
        assert again.status_code == 409
        assert "accepted" in again.json()["error"]
        ended = (await http.post(f"/api/calls/{call['id']}/end")).json()
        assert (ended["status"], ended["end_reason"]) == ("ended", "hangup")
        assert ended["duration"] >= 0
        assert (await http.post(f"/api/calls/{call['id']}/end")).status_code == 409
        assert (await http.get(f"/api/calls/{call['id']}")).json() == ended
        missing = await http.get("/api/calls/nope")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": "Call not found"},
        )
        assert (await http.post("/api/calls/nope/end")).status_code == 404
        listed = (await http.get("/api/calls", params={"status": "ended"})).json()
        assert [c["id"] for c in listed["calls"]] == [call["id"]]
        assert (await http.get("/api/calls", params={"status": "x"})).status_code == 400
        assert (await http.get("/api/calls", params={"status": "pending"})).json()[
            "calls"
        ] == []


async def test_the_registry_survives_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        made = (
            await http.post(
                "/api/calls", json={"caller": "a", "callee": "b", "room": "r"}
            )
        ).json()
    assert (tmp_path / "calls.sqlite3").exists()
    async with running(tmp_path) as run, run.client() as http:
        again = await http.get(f"/api/calls/{made['id']}")
    assert again.json() == made


async def test_admin_routes_need_the_token(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        async with run.client() as anonymous:
            for path in ("/api/admin/background-service", "/api/admin/stats"):
                assert (await anonymous.get(path)).status_code == 401
            assert (await anonymous.post("/api/admin/sync-twilio")).status_code == 401
        async with run.admin() as admin:
            background = (await admin.get("/api/admin/background-service")).json()
        assert background == {
            "success": True,
            "background_service": {
                "running": False,  # Twilio is not configured
                "jobs": [
                    {
                        "id": "sync_calls_twilio",
                        "name": "Sync Calls with Twilio",
                        "next_run": None,
                        "trigger": "interval[0:03:00]",
                    }
                ],
            },
        }


async def test_admin_stats_count_the_registry(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http, run.admin() as admin:
        ids = []
        for caller, callee in (("a", "b"), ("b", "a"), ("a", "c"), ("d", "e")):
            made = await http.post(
                "/api/calls", json={"caller": caller, "callee": callee, "room": "r"}
            )
            ids.append(made.json()["id"])
        await http.post(f"/api/calls/{ids[3]}/accept")  # d-e: running
        await http.post(f"/api/calls/{ids[2]}/end")  # a-c: over
        stats = (await admin.get("/api/admin/stats")).json()
    assert stats == {
        "success": True,
        "stats": {
            "total_users": 5,
            "active_users": 4,  # a, b (pending), d, e (accepted); c's is over
            "total_calls": 4,
            "active_sessions": 1,
            "recent_calls": 4,
            "total_contacts": 3,
            "phone_calls": 0,
            "active_phone_calls": 0,
        },
    }


class _Watched(SqliteCallStore):
    """Says when the statistics begin; waits at their first call for a go."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.events: list[str] = []
        self.counting = threading.Event()
        self.go = threading.Event()

    def all_calls(self) -> Iterator[Call]:
        for n, call in enumerate(super().all_calls()):
            if n == 0:
                self.counting.set()
                self.go.wait(WAIT)
            if n % 500 == 0:
                self.events.append("page")
            yield call

    def get(self, call_id: str) -> Call | None:
        self.events.append("get")
        return super().get(call_id)


async def test_admin_stats_do_not_hold_the_registry_while_they_count(
    tmp_path: Path,
) -> None:
    # Counting a big registry takes long (100,000 calls: a second); the
    # calls of the TV app must not wait for all of it.
    async with running(tmp_path) as run, run.client() as http, run.admin() as admin:
        assert run.calls.service is not None
        async_store = run.calls.service.store
        watched = _Watched(tmp_path / "watched.sqlite3")
        old, async_store.store = async_store.store, watched
        try:
            for n in range(1500):
                watched.add(Call.new("a", "b", "r", T0 + dt.timedelta(seconds=n)))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(admin.get, "/api/admin/stats")
                while not watched.counting.is_set():  # noqa: ASYNC110 - a thread's
                    await trio.sleep(0.01)
                nursery.start_soon(http.get, "/api/calls/nope")
                while async_store._limiter.statistics().tasks_waiting == 0:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                watched.go.set()
        finally:
            async_store.store = old
            watched.close()
    assert watched.events.index("get") < len(watched.events) - 1, watched.events


async def test_cors_for_the_electron_app_and_local_pages_only(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        for origin in ("file://", "http://localhost:5173", "http://127.0.0.1:3000"):
            answer = await http.get("/api/health", headers={"Origin": origin})
            assert answer.headers.get("Access-Control-Allow-Origin") == origin
        for foreign in (
            "https://evil.example",
            # A loopback origin's prefix is not a loopback origin.
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io:3000",
            "http://localhost:3000.evil.example",
            "file://evil.example",
        ):
            answer = await http.get("/api/health", headers={"Origin": foreign})
            assert "Access-Control-Allow-Origin" not in answer.headers, foreign
        preflight = await http.options(
            "/api/calls",
            headers={
                "Origin": "file://",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.headers.get("Access-Control-Allow-Origin") == "file://"


async def test_a_full_registry_refuses_new_calls_with_503(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        assert run.calls.service is not None
        store = run.calls.service.store.store
        assert isinstance(store, SqliteCallStore)
        store.max_calls = 2
        body = {"caller": "a", "callee": "b", "room": "r"}
        for _ in range(2):
            assert (await http.post("/api/calls", json=body)).status_code == 201
        full = await http.post("/api/calls", json=body)
        assert full.status_code == 503
        assert full.json() == {
            "error": "the call registry is full (2 calls, none ended)"
        }
        assert (await http.get("/api/calls")).json()["count"] == 2


async def test_a_registry_that_is_down_answers_503(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with (
        running(tmp_path, environ={"REDIS_URL": redis_server.url}) as run,
        run.client() as http,
        run.admin() as admin,
    ):
        made = await http.post(
            "/api/calls", json={"caller": "alice", "callee": "bob", "room": "r"}
        )
        call_id = made.json()["id"]
        redis_server.kill()
        answers = [
            await http.get("/api/calls"),
            await http.get(f"/api/calls/{call_id}"),
            await http.post(f"/api/calls/{call_id}/end"),
            await http.post(
                "/api/calls", json={"caller": "alice", "callee": "bob", "room": "r"}
            ),
            await admin.get("/api/admin/stats"),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"].startswith(
                "the call registry is unavailable: "
            ), answer.text


async def test_a_sync_that_fails_says_why_with_the_seed_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, environ=KEYS) as run, run.admin() as admin:
        assert run.calls.service is not None
        sync = run.calls.service.sync

        async def lost() -> None:
            raise LockLost("the sync lock was taken by another server")

        async def locked() -> None:
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(sync, "sync_once", lost)
        answer = await admin.post("/api/admin/sync-twilio")
        assert (answer.status_code, answer.json()) == (
            409,
            {"error": "the sync lock was taken by another server"},
        )
        monkeypatch.setattr(sync, "sync_once", locked)
        answer = await admin.post("/api/admin/sync-twilio")
        assert answer.status_code == 503, answer.text


@pytest.mark.parametrize("broken", ["a directory", "not a database"])
async def test_a_registry_file_that_cannot_be_opened_is_named(
    tmp_path: Path, broken: str
) -> None:
    # The rest of the process runs; the registry's service retries (backing
    # off) and says which file is wrong: SQLite's own message does not.
    path = tmp_path / "calls.sqlite3"
    if broken == "a directory":
        path.mkdir()
    else:
        path.write_bytes(b"garbage " * 512)
    async with running(tmp_path) as run:
        with trio.fail_after(WAIT):
            while True:
                status = {s.name: s for s in run.process.supervisor.status()}
                error = status["calls-registry"].last_error
                if error is not None:
                    break
                await trio.sleep(0.01)
        assert str(path) in error, error
        assert status["games"].state.value == "running"


async def test_a_local_page_may_call_the_admin_routes_with_its_token(
    tmp_path: Path,
) -> None:
    # The browser's preflight carries no Authorization (it asks whether it
    # may send one): it must succeed, or no page can use the admin routes.
    async with running(tmp_path) as run, run.client() as http:
        preflight = await http.options(
            "/api/admin/stats",
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200, preflight.text
        allowed = preflight.headers["Access-Control-Allow-Origin"]
        assert allowed == "http://localhost:5173"
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
        assert preflight.content == b""  # nothing but the CORS headers
        foreign = await http.options(
            "/api/admin/stats",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert "Access-Control-Allow-Origin" not in foreign.headers
        # The real request still needs the token.
        answer = await http.get(
            "/api/admin/stats", headers={"Origin": "http://localhost:5173"}
        )
        assert answer.status_code == 401


async def test_a_body_over_the_limit_is_413_however_it_is_sent(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as run, run.client() as http:
        sized = await http.post("/api/calls", content=b" " * 70_000)
        assert sized.status_code == 413, sized.text
        assert isinstance(sized.json()["error"], str)
        # Chunked: no Content-Length to refuse it by; counted as it comes.
        url = httpx.URL(run.url)
        assert url.port is not None
        stream = await trio.open_tcp_stream(url.host, url.port)
        async with stream:
            chunk = b" " * 1024
            head = (
                b"POST /api/calls HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            await stream.send_all(head)
            try:
                for _ in range(100):
                    await stream.send_all(b"400\r\n" + chunk + b"\r\n")
                await stream.send_all(b"0\r\n\r\n")
            except trio.BrokenResourceError:
                pass  # the server answered and closed before the end
            answer = b""
            with trio.fail_after(WAIT):
                while b"\r\n\r\n" not in answer:
                    data = await stream.receive_some()
                    if not data:
                        break
                    answer += data
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_off_with_no_calls(tmp_path: Path) -> None:
    async with running(tmp_path, "--no-calls") as run:
        assert run.calls.service is None
        names = {s.name for s in run.process.supervisor.status()}
        assert not names & {"calls", "calls-registry", "calls-sync"}
    assert not (tmp_path / "calls.sqlite3").exists()


async def test_sync_now_against_twilio_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTwilio(KEY, SECRET) as fake, loopback_only(monkeypatch) as left:
        environ = {**KEYS, "TWILIO_BASE_URL": fake.url}
        fake.add_room("busy", participants=2)
        fake.add_room("flaky", participants=2)
        fake.fail("flaky", 500)
        async with (
            running(tmp_path, environ=environ) as run,
            run.client() as http,
            run.admin() as admin,
        ):
            ids = {}
            for room in ("busy", "gone", "flaky"):
                made = await http.post(
                    "/api/calls", json={"caller": "a", "callee": "b", "room": room}
                )
                ids[room] = made.json()["id"]
                await http.post(f"/api/calls/{ids[room]}/accept")
            answer = await admin.post("/api/admin/sync-twilio")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["success"], body["message"]) == (True, "Twilio sync completed")
            assert (body["synced"], body["ended"]) == (3, 1)
            gone = (await http.get(f"/api/calls/{ids['gone']}")).json()
            assert (gone["status"], gone["end_reason"]) == ("ended", "room_not_found")
            for room in ("busy", "flaky"):  # a Twilio error ends nothing
                call = (await http.get(f"/api/calls/{ids[room]}")).json()
                assert call["status"] == "accepted"
            async with run.control() as control:
                health = (await control.get("/health")).json()
                stats = (await control.get("/stats")).json()
            section = health["capabilities"]["calls"]
            assert section["status"] == "degraded"  # a call was left alone
            assert section["sync"]["last_skipped"] == 1
            assert section["twilio"] == "configured"
            assert stats["capabilities"]["calls"]["syncs"] == 1
            # Twilio down as a whole: nothing is ended.
            fake.fail_all = 503
            answer = await admin.post("/api/admin/sync-twilio")
            assert (answer.json()["synced"], answer.json()["ended"]) == (2, 0)
            background = (await admin.get("/api/admin/background-service")).json()
            assert background["background_service"]["running"] is True
            job = background["background_service"]["jobs"][0]
            assert job["next_run"].endswith("Z")
    assert left == []  # nothing but loopback was ever asked for


async def test_the_openapi_document_lists_the_routes(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.client() as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert {
        "/api/health",
        "/api/token",
        "/api/calls",
        "/api/calls/{call_id}",
        "/api/calls/{call_id}/accept",
        "/api/calls/{call_id}/end",
        "/api/admin/sync-twilio",
        "/api/admin/background-service",
        "/api/admin/stats",
    } <= set(paths)


async def test_two_servers_share_the_registry_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    environ = {"REDIS_URL": redis_server.url}
    async with (
        running(tmp_path / "A", environ=environ) as a,
        running(tmp_path / "B", environ=environ) as b,
        a.client() as on_a,
        b.client() as on_b,
    ):
        made = await on_a.post(
            "/api/calls", json={"caller": "alice", "callee": "bob", "room": "r"}
        )
        call_id = made.json()["id"]
        accepted = await on_b.post(f"/api/calls/{call_id}/accept")
        assert accepted.json()["status"] == "accepted"
        ended = (await on_a.post(f"/api/calls/{call_id}/end")).json()
        assert ended["status"] == "ended"
        assert (await on_b.post(f"/api/calls/{call_id}/end")).status_code == 409
    assert not (tmp_path / "A" / "calls.sqlite3").exists()


async def test_an_exposed_calls_api_is_said_when_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Tunnelled (a fake provider: nothing leaves loopback), its TV routes
    # open to the internet: said once, when the service starts.
    async with running(tmp_path, "--tunnel", tunnels=Provider()):
        pass
    warned = [r.getMessage() for r in caplog.records if r.name == "neuro_api.calls"]
    assert any("(--tunnel)" in m and "need no auth" in m for m in warned)
    caplog.clear()
    async with running(tmp_path):
        pass
    assert not [r for r in caplog.records if "need no auth" in r.getMessage()]
    assert settings_exposed("0.0.0.0", tunnel=False)
    assert not settings_exposed("127.0.0.1", tunnel=False)
