"""Client status over real sockets: files, enforcement, HTTP and console.

Each test runs a process with the status capability (tests/status_helpers.py)
on 127.0.0.1 port 0, with its files in the test's directory, and plays
games over real WebSocket connections.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from server_helpers import PLAY, connect
from status_helpers import eventually, running_status

from neuro_api.server import (
    ConnectionEvent,
    ConnectionEventKind,
    Refusal,
    TrioNeuroServerClient,
)
from neuro_api.status import StatusFileError, StatusManager
from neuro_api.status._files import encode_clients
from neuro_api.status._manager import MAX_LISTED

pytestmark = pytest.mark.timeout(30)


# --- the files ------------------------------------------------------------------


async def test_missing_files_are_created_empty_and_indented_like_the_seed(
    tmp_path: Path,
) -> None:
    async with running_status(tmp_path) as run:
        names = sorted(p.name for p in run.directory.iterdir())
        assert names == [
            "Network_Action.json",
            "active_clients.json",
            "blocked_clients.json",
            "deactivate_clients.json",
            "pause_clients.json",
        ]
        for name in names:
            assert run.file(name).read_bytes() == b'{\n  "clients": []\n}'
        async with (
            connect(run.games_url, "Zebra") as zebra,
            connect(run.games_url, "Aardvark") as aardvark,
        ):
            await zebra.startup()
            await aardvark.startup()
            await eventually(lambda: len(run.clients("active_clients.json")) == 2)
            assert run.file("active_clients.json").read_bytes() == (
                b'{\n  "clients": [\n    "Aardvark",\n    "Zebra"\n  ]\n}'
            )


async def test_outputs_are_rewritten_only_when_they_change(tmp_path: Path) -> None:
    async with running_status(tmp_path) as run:
        writes = run.manager.writes
        before = {p.name: p.stat().st_mtime_ns for p in run.directory.iterdir()}
        for _ in range(5):  # many periods with nothing new
            await run.manager.tick()
        assert run.manager.writes == writes
        after = {p.name: p.stat().st_mtime_ns for p in run.directory.iterdir()}
        assert after == before
        async with connect(run.games_url, "Game") as game:
            await game.startup()
            await eventually(lambda: run.clients("active_clients.json") == ["Game"])
            await run.manager.tick()
            # Only active_clients.json changed (deactivated is still empty).
            assert run.manager.writes == writes + 1
            after = {p.name: p.stat().st_mtime_ns for p in run.directory.iterdir()}
            assert after["active_clients.json"] != before["active_clients.json"]
            for name in ("deactivate_clients.json", "Network_Action.json"):
                assert after[name] == before[name]


async def test_an_abrupt_disconnect_is_a_network_error_until_it_reconnects(
    tmp_path: Path,
) -> None:
    async with running_status(tmp_path) as run:
        async with connect(run.games_url, "Flaky") as game:
            await game.startup()
            await eventually(lambda: run.clients("active_clients.json") == ["Flaky"])
            await game.drop()  # no close handshake: TCP closed (1006)
        await eventually(lambda: run.clients("Network_Action.json") == ["Flaky"])
        assert run.clients("active_clients.json") == []
        assert run.clients("deactivate_clients.json") == ["Flaky"]
        async with connect(run.games_url, "Flaky") as game:
            await game.startup()
            await eventually(lambda: run.clients("Network_Action.json") == [])
            assert run.clients("active_clients.json") == ["Flaky"]
        # A clean close is no network error.
        await eventually(lambda: run.clients("active_clients.json") == [])
        assert run.clients("Network_Action.json") == []


async def test_the_last_runs_files_are_known_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "Server_Data"
    directory.mkdir()
    for name, clients in {
        "active_clients.json": ["Was Running"],  # the last run crashed
        "Network_Action.json": ["Lost"],
        "deactivate_clients.json": ["Old"],
    }.items():
        (directory / name).write_bytes(orjson.dumps({"clients": clients}))
    async with running_status(tmp_path) as run:
        await eventually(lambda: run.clients("active_clients.json") == [])
        lists = run.manager.lists()
        assert lists.deactivated == ("Lost", "Old", "Was Running")
        assert lists.connection_error == ("Lost",)


# --- blocked ---------------------------------------------------------------------


async def test_a_hand_edit_blocking_a_game_closes_it_and_refuses_it_again(
    tmp_path: Path,
) -> None:
    async with running_status(tmp_path) as run:
        async with (
            connect(run.games_url, "Cheater") as cheater,
            connect(run.games_url, "Honest") as honest,
        ):
            await cheater.startup()
            await honest.startup()
            start = trio.current_time()
            run.edit("blocked_clients.json", ["Cheater"])
            reason = await cheater.expect_closed()
            assert (reason.code, reason.reason) == (1008, "blocked")
            assert trio.current_time() - start < 1.0
            await honest.context("still here")  # the other game is untouched
            await honest.expect_silence(0.1)
        async with connect(run.games_url, "Cheater") as again:
            await again.send_obj({"command": "startup", "game": "Cheater"})
            reason = await again.expect_closed()
            assert (reason.code, reason.reason) == (1008, "blocked")
        lists = run.manager.lists()
        assert "Cheater" in lists.deactivated  # (available & blocked)
        assert lists.connection_error == ()  # closed by us, cleanly
        run.edit("blocked_clients.json", [])
        await eventually(lambda: run.manager.lists().blocked == ())
        async with connect(run.games_url, "Cheater") as back:
            await back.startup()  # unblocked: gone from the list, welcome


async def test_a_title_is_blocked_before_it_ever_connects(tmp_path: Path) -> None:
    async with running_status(tmp_path) as run:
        async with run.http() as http:
            answer = await http.put("/status/blocked/Future Game")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "client": "Future Game",
            "states": ["available", "blocked", "deactivated"],
        }
        assert run.clients("blocked_clients.json") == ["Future Game"]
        async with connect(run.games_url, "Future Game") as game:
            await game.send_obj({"command": "startup", "game": "Future Game"})
            reason = await game.expect_closed()
        assert (reason.code, reason.reason) == (1008, "blocked")


def late_start(admitted: trio.Event, go: trio.Event) -> type[TrioNeuroServerClient]:
    """A client class whose startup, once admitted, waits before it is acknowledged.

    As a slow acknowledgement does: the game was admitted, but the server
    has not said yet that it started.
    """

    class LateStart(TrioNeuroServerClient):
        async def handle_startup(self, game_title: str) -> None:
            admitted.set()
            await go.wait()
            await super().handle_startup(game_title)

    return LateStart


async def test_a_game_blocked_between_its_admission_and_its_start_is_closed(
    tmp_path: Path,
) -> None:
    # The block closed only titles the manager had seen start: a startup
    # admitted a moment before the block landed went on being served.
    async with running_status(tmp_path) as run:
        admitted, go = trio.Event(), trio.Event()
        run.process.server.client_class = late_start(admitted, go)
        async with connect(run.games_url, "Racing") as game:
            await game.send_obj({"command": "startup", "game": "Racing"})
            with trio.fail_after(5):
                await admitted.wait()
            await run.manager.block("Racing")
            go.set()
            reason = await game.expect_closed(within=2)
            assert (reason.code, reason.reason) == (1008, "blocked")


async def test_a_blocked_game_that_never_sent_startup_is_closed(
    tmp_path: Path,
) -> None:
    # A game is admitted by its first frame, whatever it is; one that never
    # sends startup never "started", and a block left it connected.
    async with (
        running_status(tmp_path) as run,
        connect(run.games_url, "No Startup") as game,
    ):
        await game.register(PLAY)
        await eventually(
            lambda: run.process.server.get_client("No Startup") is not None
        )
        await run.manager.block("No Startup")
        reason = await game.expect_closed(within=2)
        assert (reason.code, reason.reason) == (1008, "blocked")


@pytest.mark.parametrize("title", ["Bell\x07", "x" * 300, ""])
async def test_a_title_that_cannot_be_listed_is_served_but_not_listed(
    tmp_path: Path, title: str
) -> None:
    # The production server serves any title; no list may name this one
    # (empty, too long, control characters), and once written in
    # active_clients.json it would make that file unusable at the next
    # start (never rewritten again). So it plays, unlisted.
    async with running_status(tmp_path) as run:
        async with connect(run.games_url, title) as game:
            await game.send_obj({"command": "startup", "game": title})
            await game.receive()  # acknowledged
            await eventually(lambda: run.manager.stats()["unlisted_games"] == 1)
            await run.manager.tick()
            assert run.clients("active_clients.json") == []
            assert run.manager.lists().available == ()
        await run.manager.tick()
        assert run.clients("deactivate_clients.json") == []
        assert run.clients("Network_Action.json") == []
    manager = StatusManager(tmp_path / "Server_Data")
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        assert manager.problems == {}
        nursery.cancel_scope.cancel()


# --- paused ----------------------------------------------------------------------


async def test_pause_holds_a_force_and_resume_delivers_it(tmp_path: Path) -> None:
    async with running_status(tmp_path) as run, run.http() as http:
        async with connect(run.games_url, "Sleepy") as game:
            await game.startup()
            await game.register(PLAY)
            answer = await http.put("/status/paused/Sleepy")
            assert answer.json()["states"] == ["available", "active", "paused"]
            await game.force("play", query="your move")
            await game.context("context keeps flowing")
            await game.expect_silence(0.5)  # the engine's action is held
            games = (await http.get("/games")).json()["games"]
            assert [g["held_by"] for g in games] == [["paused"]]
            answer = await http.delete("/status/paused/Sleepy")
            assert answer.status_code == 200
            action = await game.expect_action()
            assert action.name == "play"
            await game.result(action.id, True)
            games = (await http.get("/games")).json()["games"]
            assert [g["held_by"] for g in games] == [[]]
        assert run.clients("pause_clients.json") == []


async def test_a_held_force_the_game_replaces_is_dropped(tmp_path: Path) -> None:
    async with (
        running_status(tmp_path) as run,
        connect(run.games_url, "Paused") as game,
    ):
        await game.startup()
        await game.register(PLAY)
        await run.manager.pause("Paused")
        await game.force("play", query="first")
        await game.expect_silence(0.2)
        await game.unregister("play")  # the force's only action is gone
        await game.register(PLAY)
        await game.force("play", query="second")
        await run.manager.resume("Paused")
        action = await game.expect_action()
        await game.result(action.id, True)
        await game.expect_silence(0.3)  # one action, not two


# --- changes from everywhere -------------------------------------------------------


async def test_a_hand_edit_and_an_api_change_in_one_period_are_both_kept(
    tmp_path: Path,
) -> None:
    async with running_status(tmp_path, "--status-period", "60") as run:
        # The period is long: the manager has not seen the hand edit yet
        # when the API change comes; it reads the file again before writing.
        run.edit("pause_clients.json", ["By Hand"])
        await run.manager.pause("By API")
        assert run.clients("pause_clients.json") == ["By API", "By Hand"]
        assert run.manager.lists().paused == ("By API", "By Hand")


async def test_console_commands(tmp_path: Path) -> None:
    async with running_status(tmp_path) as run:
        await run.type("block Bad Game")
        await run.output.wait_for("Bad Game: blocked")
        await run.type("pause Slow Game")
        await run.output.wait_for("Slow Game: paused")
        await run.type("status")
        out = await run.output.wait_for("connection_error (0)")
        assert "blocked (1): Bad Game" in out
        assert "paused (1): Slow Game" in out
        await run.type("resume Slow Game")
        await run.output.wait_for("Slow Game: resumed")
        await run.type("unblock Bad Game")
        await run.output.wait_for("Bad Game: unblocked")
        await run.type("pause")
        await run.output.wait_for("name the game")
        assert run.clients("blocked_clients.json") == []
        assert run.clients("pause_clients.json") == []


async def test_bad_names_and_unusable_files_are_clear_errors(tmp_path: Path) -> None:
    async with running_status(tmp_path) as run, run.http() as http:
        answer = await http.put("/status/paused/" + "x" * 300)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "bad_client_name"
        answer = await http.put("/status/blocked/bell%07")
        assert answer.status_code == 400
        assert "control characters" in answer.json()["error"]["message"]
        run.edit("pause_clients.json", b"{not json")
        await eventually(lambda: "pause_clients.json" in run.manager.problems)
        answer = await http.put("/status/paused/Someone")
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "status_file_unusable"
        assert run.file("pause_clients.json").read_bytes() == b"{not json"
        # A title with a slash is a name like any other.
        answer = await http.put("/status/blocked/Team A/B")
        assert answer.json()["client"] == "Team A/B"
        # The routes need the token (the control plane's auth).
        assert run.info.control is not None
        async with httpx.AsyncClient(base_url=run.info.control.local_url) as anonymous:
            assert (await anonymous.get("/status")).status_code == 401


# --- malformed files ---------------------------------------------------------------


async def test_a_malformed_file_keeps_the_last_good_list_until_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="neuro_api.status")
    async with running_status(tmp_path) as run, run.http() as http:
        run.edit("blocked_clients.json", ["Blocked"])
        await eventually(lambda: run.manager.lists().blocked == ("Blocked",))
        bad = b'{"clients": ["ok", 42]}'
        run.edit("blocked_clients.json", bad)
        await eventually(lambda: "blocked_clients.json" in run.manager.problems)
        for _ in range(3):
            await run.manager.tick()
        # Kept in force, never overwritten, said once.
        assert run.manager.lists().blocked == ("Blocked",)
        assert run.file("blocked_clients.json").read_bytes() == bad
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "blocked_clients.json" in warnings[0].getMessage()
        assert "clients[1]" in warnings[0].getMessage()
        async with connect(run.games_url, "Blocked") as game:
            await game.send_obj({"command": "startup", "game": "Blocked"})
            assert (await game.expect_closed()).code == 1008
        health = (await http.get("/health")).json()
        assert health["status"] == "degraded"
        section = health["capabilities"]["status"]
        assert section == {
            "status": "degraded",
            "problems": ["blocked_clients.json"],
            "redis": "off",
        }
        report = (await http.get("/status")).json()
        assert "clients[1]" in report["files"]["blocked_clients.json"]["error"]
        run.edit("blocked_clients.json", ["Other"])
        await eventually(lambda: run.manager.lists().blocked == ("Other",))
        assert run.manager.problems == {}
        assert (await http.get("/health")).json()["status"] == "healthy"


async def test_a_file_of_the_wrong_shape_is_a_problem_and_a_deleted_one_is_made_again(
    tmp_path: Path,
) -> None:
    async with running_status(tmp_path) as run:
        await run.manager.pause("Kept")
        for bad in (b"[]", b'{"clients": "all"}', b'{"clients": [""]}', b"null"):
            run.edit("pause_clients.json", bad)
            await eventually(lambda: "pause_clients.json" in run.manager.problems)
            assert run.manager.lists().paused == ("Kept",)
            run.edit("pause_clients.json", ["Kept"])
            await eventually(lambda: not run.manager.problems)
        # Deleted: created again, empty, as at start (everyone resumed).
        run.file("pause_clients.json").unlink()
        await eventually(lambda: run.manager.lists().paused == ())
        assert run.clients("pause_clients.json") == []
        assert not run.manager.problems
        # The whole directory deleted: everything is created again.
        async with connect(run.games_url, "Game") as game:
            await game.startup()
            # Gone in one step (the manager may be writing in it).
            run.directory.rename(tmp_path / "moved away")
            await eventually(lambda: run.file("active_clients.json").exists())
            await eventually(lambda: run.clients("active_clients.json") == ["Game"])
            await eventually(lambda: run.file("blocked_clients.json").exists())
        assert not run.manager.problems


async def test_a_deleted_directory_is_made_again_by_the_next_change(
    tmp_path: Path,
) -> None:
    # The write failed (FileNotFoundError out of the route: a 500).
    async with running_status(tmp_path) as run, run.http() as http:
        run.directory.rename(tmp_path / "moved away")
        answer = await http.put("/status/blocked/Someone")
        assert answer.status_code == 200, answer.text
        assert run.clients("blocked_clients.json") == ["Someone"]


async def test_a_directory_that_cannot_be_used_is_a_problem_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Server_Data turned into a file: looking at the inputs raised (not a
    # directory) out of the manager's loop, which stopped the process; and
    # each failed write of the outputs logged a new warning (its message
    # named a new temporary file each time).
    caplog.set_level(logging.INFO, logger="neuro_api.status")
    directory = tmp_path / "Server_Data"
    manager = StatusManager(directory, period=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        shutil.rmtree(directory)
        directory.write_bytes(b"a file, not a directory")
        manager.on_connection_event(
            ConnectionEvent(ConnectionEventKind.STARTED, "session", "Game")
        )
        for _ in range(5):
            await manager.tick()
        assert {"files", "pause_clients.json", "blocked_clients.json"} <= set(
            manager.problems
        )
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 3, [r.getMessage() for r in warnings]
        with pytest.raises(StatusFileError, match=r"pause_clients\.json"):
            await manager.pause("Someone")
        directory.unlink()  # fixed: every file is written again
        await manager.pause("Someone")
        await manager.tick()
        assert orjson.loads((directory / "active_clients.json").read_bytes()) == {
            "clients": ["Game"]
        }
        assert "files" not in manager.problems
        nursery.cancel_scope.cancel()


async def test_a_full_disk_is_said_once_not_once_per_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failed write's message named its temporary file, new each time:
    # a new warning every period for as long as the disk stayed full.
    caplog.set_level(logging.INFO, logger="neuro_api.status")
    manager = StatusManager(tmp_path / "Server_Data", period=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)

        def disk_full(path: Path, data: bytes) -> os.stat_result:
            temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary))

        monkeypatch.setattr("neuro_api.status._files.write_atomic", disk_full)
        manager.on_connection_event(
            ConnectionEvent(ConnectionEventKind.STARTED, "session", "Game")
        )
        for _ in range(5):
            await manager.tick()
        warnings = [
            r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
        ]
        assert len(warnings) == 1, warnings
        assert "No space left on device" in warnings[0]
        nursery.cancel_scope.cancel()


async def test_a_hand_edit_listing_too_many_clients_keeps_the_last_good_list(
    tmp_path: Path,
) -> None:
    # The API and Redis hold a list to 10,000 names; a file had no bound:
    # 1.5 million short names fit in the 16 MiB a file may be, and taking
    # them held the event loop for seconds at each change.
    directory = tmp_path / "Server_Data"
    directory.mkdir()
    many = [f"g{n}" for n in range(MAX_LISTED + 1)]
    # An output file (the last run's) is not bounded so: it may list more.
    (directory / "deactivate_clients.json").write_bytes(encode_clients(many))
    manager = StatusManager(directory, period=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await manager.pause("Kept")
        (directory / "pause_clients.json").write_bytes(encode_clients(many))
        await manager.tick()
        assert manager.lists().paused == ("Kept",)
        problem = manager.problems["pause_clients.json"]
        assert f"at most {MAX_LISTED} clients" in problem
        assert "deactivate_clients.json" not in manager.problems
        nursery.cancel_scope.cancel()


async def test_status_report_lists_states_files_and_redis(tmp_path: Path) -> None:
    async with running_status(tmp_path) as run, run.http() as http:
        async with connect(run.games_url, "Live") as game:
            await game.startup()
            await run.manager.pause("Live")
            await run.manager.block("Gone")
            report = (await http.get("/status")).json()
        assert report["lists"] == {
            "available": ["Gone", "Live"],
            "active": ["Live"],
            "paused": ["Live"],
            "blocked": ["Gone"],
            "deactivated": ["Gone"],
            "connection_error": [],
        }
        assert report["clients"]["Live"] == ["available", "active", "paused"]
        assert report["redis"]["state"] == "off"
        assert set(report["files"]) == {
            "pause_clients.json",
            "blocked_clients.json",
            "active_clients.json",
            "deactivate_clients.json",
            "Network_Action.json",
        }
        stats = (await http.get("/stats")).json()["capabilities"]["status"]
        assert (stats["paused"], stats["blocked"]) == (1, 1)
        openapi = (await http.get("/openapi.json")).json()
        assert "/status/paused/{client}" in openapi["paths"]


def test_the_report_of_ten_thousand_clients_is_quick(tmp_path: Path) -> None:
    # Each client's states were looked up in the sorted lists (tuples): the
    # report took seconds at the number of clients remembered by default,
    # holding the event loop (every game) all along.
    manager = StatusManager(tmp_path)
    titles = [f"Game {n:05d}" for n in range(10_000)]
    for title in titles:
        manager.states.connected(title)
    manager.states.set_paused(titles[::2])
    start = time.perf_counter()
    report = manager.report()
    assert time.perf_counter() - start < 1.0
    assert report["clients"]["Game 00000"] == ["available", "active", "paused"]
    assert report["clients"]["Game 00001"] == ["available", "active"]


async def test_off_with_no_status(tmp_path: Path) -> None:
    async with running_status(tmp_path, "--no-status") as run:
        assert run.capability.manager is None
        assert not (tmp_path / "Server_Data").exists()
        async with run.http() as http:
            assert (await http.get("/status")).status_code == 404


class _Expelled:
    """A stand-in server that records what the manager closes."""

    def __init__(self) -> None:
        self.expelled: list[tuple[str, int, str]] = []

    def expel(self, title: str, refusal: Refusal) -> int:
        self.expelled.append((title, refusal.code, refusal.reason))
        return 1


async def test_a_game_blocked_between_admission_and_start_is_closed(
    tmp_path: Path,
) -> None:
    manager = StatusManager(tmp_path)
    server = _Expelled()
    manager.server = server  # type: ignore[assignment]
    manager.on_connection_event(
        ConnectionEvent(ConnectionEventKind.CONNECTED, "s1", None)
    )
    # Admitted (not blocked yet); then blocked before its startup was
    # acknowledged: the block saw no active "Racer" to close.
    manager.states.set_blocked(["Racer"])
    manager.on_connection_event(
        ConnectionEvent(ConnectionEventKind.STARTED, "s1", "Racer")
    )
    assert server.expelled == [("Racer", 1008, "blocked")]


async def test_set_listed_names_only_the_two_lists_an_admin_changes(
    tmp_path: Path,
) -> None:
    manager = StatusManager(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await manager.set_listed("blocked", "Game", True)
        assert manager.lists().blocked == ("Game",)
        await manager.set_listed("blocked", "Game", False)
        assert manager.lists().blocked == ()
        with pytest.raises(ValueError, match="no list 'active'"):
            await manager.set_listed("active", "Game", True)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
