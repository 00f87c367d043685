"""Client status shared through a real redis-server (started on a free port).

Two instances, each with its own files, share one Redis, as two servers of
one deployment would; Redis is killed and started again mid-run.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
import trio
from redis_helpers import RedisServer, free_port, redis_server
from server_helpers import RawGame, connect
from status_helpers import Running, eventually, running_status

from neuro_api import command
from neuro_api.status import StatusManager
from neuro_api.status._manager import SYNCED_FILE, _RedisState
from neuro_api.status._redis import KEY, RedisStatus, SyncReply, SyncRequest

__all__ = ["redis_server"]  # the fixture, imported to be found

pytestmark = pytest.mark.timeout(40)


def shared(redis: RedisServer, field: str) -> list[str]:
    raw = redis.client().hget(KEY, field)
    return [] if raw is None else list(orjson.loads(raw))


def lists_file(run: Running, expected: list[str]) -> bool:
    return run.clients("pause_clients.json") == expected


@asynccontextmanager
async def instance(
    tmp_path: Path, name: str, url: str, *argv: str
) -> AsyncIterator[Running]:
    async with running_status(
        tmp_path / name,
        "--status-instance",
        name,
        "--status-redis-ttl",
        "1.5",
        *argv,
        environ={"REDIS_URL": url},
    ) as run:
        await eventually(lambda: run.manager.health()["redis"] != "connecting")
        yield run


async def test_a_block_on_one_instance_closes_the_game_on_another_within_a_second(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with (
        instance(tmp_path, "A", url) as a,
        instance(tmp_path, "B", url) as b,
        connect(b.games_url, "Roaming") as game,
    ):
        await game.startup()
        start = trio.current_time()
        async with a.http() as http:
            assert (await http.put("/status/blocked/Roaming")).status_code == 200
        reason = await game.expect_closed()
        assert trio.current_time() - start < 1.0
        assert (reason.code, reason.reason) == (1008, "blocked")
        # B keeps it in its own file too, and refuses it from now on.
        await eventually(lambda: b.clients("blocked_clients.json") == ["Roaming"])
        assert shared(redis_server, "blocked_clients") == ["Roaming"]
        async with connect(b.games_url, "Roaming") as again:
            await again.send_obj({"command": "startup", "game": "Roaming"})
            assert (await again.expect_closed()).code == 1008
        # A hand edit on B unblocks it everywhere.
        b.edit("blocked_clients.json", [])
        await eventually(lambda: a.manager.lists().blocked == ())
        await eventually(lambda: shared(redis_server, "blocked_clients") == [])


async def test_pauses_are_shared_and_active_lists_are_the_union(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with (
        instance(tmp_path, "A", url) as a,
        instance(tmp_path, "B", url) as b,
        connect(a.games_url, "On A") as on_a,
        connect(b.games_url, "On B") as on_b,
    ):
        await on_a.startup()
        await on_b.startup()
        await eventually(
            lambda: shared(redis_server, "active_clients") == ["On A", "On B"]
        )
        # Each instance's own file lists only its own games.
        await eventually(lambda: a.clients("active_clients.json") == ["On A"])
        await b.manager.pause("On A")
        await eventually(lambda: a.clients("pause_clients.json") == ["On A"])
        await eventually(lambda: a.process.server.forces_held("On A"))
        # Changes from both sides at once are merged, not overwritten.
        async with trio.open_nursery() as nursery:
            for n in range(10):
                side = a if n % 2 else b
                nursery.start_soon(side.manager.pause, f"Both {n}")
        expected = ["On A", *(f"Both {n}" for n in range(10))]
        await eventually(
            lambda: shared(redis_server, "paused_clients") == sorted(expected)
        )
        for run in (a, b):
            await eventually(functools.partial(lists_file, run, sorted(expected)))
    fields = redis_server.client().hgetall(KEY)
    assert {k.decode() if isinstance(k, bytes) else k for k in fields} >= {
        "active_clients",
        "paused_clients",
        "blocked_clients",
        "deactivate_clients",
        "connecting_internet_error",
    }
    # Both left: their games are no longer active, they are deactivated.
    assert shared(redis_server, "active_clients") == []
    assert "On A" in shared(redis_server, "deactivate_clients")


async def test_an_instance_that_died_has_its_entries_expire(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    dead = RedisStatus(redis_server.url, "dead", ttl=0.3)
    await trio.to_thread.run_sync(
        dead.sync,
        SyncRequest(available=frozenset({"Ghost"}), active=frozenset({"Ghost"})),
    )
    assert shared(redis_server, "active_clients") == ["Ghost"]
    dead.close()  # never renewed: as if killed
    async with instance(tmp_path, "A", redis_server.url):
        await eventually(lambda: shared(redis_server, "active_clients") == [])


async def test_clients_to_close_closes_the_game_where_it_runs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with (
        instance(tmp_path, "A", url) as a,
        instance(tmp_path, "B", url),
        connect(a.games_url, "Closing") as game,
    ):
        await game.startup()
        await eventually(lambda: shared(redis_server, "active_clients") == ["Closing"])
        client = redis_server.client()
        client.hset(KEY, "clients_to_close", '["Closing", "Nowhere"]')
        client.publish(f"{KEY}:changes", "admin")
        reason = await game.expect_closed()
        assert (reason.code, reason.reason) == (1000, "closed by request")
        # "Nowhere" is connected nowhere: it lapses after one TTL (1.5 s).
        await eventually(
            lambda: shared(redis_server, "clients_to_close") == ["Nowhere"]
        )
        await eventually(lambda: shared(redis_server, "clients_to_close") == [])
        # Closed, not blocked: it may come back.
        async with connect(a.games_url, "Closing") as back:
            await back.startup()


async def test_a_close_request_for_a_game_that_is_just_connecting_is_kept(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with instance(tmp_path, "A", url) as a:
        client = redis_server.client()
        client.hset(KEY, "clients_to_close", '["Late"]')
        client.publish(f"{KEY}:changes", "admin")
        await eventually(lambda: client.exists(f"{KEY}:to_close_since"))
        # No instance has it yet; it connects within the TTL, and is closed.
        async with connect(a.games_url, "Late") as game:
            await game.startup()
            reason = await game.expect_closed()
        assert (reason.code, reason.reason) == (1000, "closed by request")
        await eventually(lambda: shared(redis_server, "clients_to_close") == [])


async def test_redis_killed_and_restarted_mid_run(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="neuro_api.status")
    url = redis_server.url
    async with (
        instance(tmp_path, "A", url) as a,
        instance(tmp_path, "B", url) as b,
        connect(a.games_url, "Local") as local,
        connect(b.games_url, "Local") as remote,
    ):
        await local.startup()
        await remote.startup()
        await a.manager.pause("Before")
        await eventually(lambda: b.manager.lists().paused == ("Before",))
        redis_server.kill()
        await eventually(lambda: a.manager.health()["redis"] == "down")
        async with a.http() as http:
            health = (await http.get("/health")).json()
            assert health["status"] == "degraded"
            assert health["capabilities"]["status"]["redis"] == "down"
            report = (await http.get("/status")).json()
            assert "cannot reach Redis" in report["redis"]["error"]
            # Enforcement goes on from local state while Redis is away.
            assert (await http.put("/status/blocked/Local")).status_code == 200
        assert (await local.expect_closed()).code == 1008
        assert a.clients("blocked_clients.json") == ["Local"]
        # Redis comes back empty: A puts its lists back, B takes them.
        redis_server.start()
        reason = await remote.expect_closed(within=40)
        assert (reason.code, reason.reason) == (1008, "blocked")
        await eventually(lambda: shared(redis_server, "blocked_clients") == ["Local"])
        assert shared(redis_server, "paused_clients") == ["Before"]
        await eventually(lambda: a.manager.health()["status"] == "healthy")
    lost = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
    assert 1 <= len(lost) <= 2  # once per instance, not once per attempt


async def test_an_unreachable_redis_is_degraded_not_a_crash_nor_a_hot_loop(
    tmp_path: Path,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with instance(tmp_path, "A", url) as a:
        assert a.manager.health() == {
            "status": "degraded",
            "problems": ["redis"],
            "redis": "down",
        }
        async with connect(a.games_url, "Game") as game:
            await game.startup()  # games are served
        await trio.sleep(2.5)
        failures = a.manager.stats()["redis_failures"]
        assert 1 <= failures <= 3  # 1 s, then 2 s between attempts


async def test_a_malformed_redis_field_is_reported_and_left_alone(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    client.hset(KEY, "paused_clients", "not json")
    async with instance(tmp_path, "A", redis_server.url) as a:
        await a.manager.block("Someone")
        await eventually(lambda: shared(redis_server, "blocked_clients") == ["Someone"])
        await eventually(lambda: "redis" in a.manager.problems)
        assert "paused_clients" in a.manager.problems["redis"]
        assert client.hget(KEY, "paused_clients") == b"not json"
        await a.manager.pause("Mine")  # kept locally
        assert a.manager.lists().paused == ("Mine",)
        client.hset(KEY, "paused_clients", "[]")
        client.publish(f"{KEY}:changes", "admin")
        await eventually(lambda: "redis" not in a.manager.problems)


async def test_a_key_of_another_type_is_reported(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    client.set(KEY, '{"paused_clients": []}')  # a whole-document string
    async with instance(tmp_path, "A", redis_server.url) as a:
        await eventually(lambda: "redis" in a.manager.problems)
        assert "is a string, not a hash" in a.manager.problems["redis"]
        assert client.get(KEY) == b'{"paused_clients": []}'


async def test_an_instance_that_stops_leaves_the_union_at_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with running_status(
        tmp_path / "A",
        "--status-instance",
        "A",
        "--status-redis-ttl",
        "600",  # its entries would outlive the test: only leaving removes them
        "--shutdown-grace",
        "0.2",  # the raw game does not answer the close: do not wait for it
        environ={"REDIS_URL": url},
    ) as a:
        port = int(a.games_url.rsplit(":", 1)[1])
        game = await RawGame.connect(port, "Stays")
        await game.send(command.startup_command("Stays").decode())
        await game.receive()
        await eventually(lambda: shared(redis_server, "active_clients") == ["Stays"])
    # The process stopped (cancelled) with the game still connected.
    try:
        assert shared(redis_server, "active_clients") == []
        assert not redis_server.client().exists(f"{KEY}:instance:A")
    finally:
        await game.aclose()


async def test_a_field_that_is_not_utf8_is_reported_not_a_crash(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # Lua's cjson passes bytes that are not UTF-8 through: the script's
    # reply held them, and parsing it raised out of the sync loop, which
    # stopped the manager and the process (every instance on that Redis).
    client = redis_server.client()
    client.hset(KEY, "paused_clients", b'["Fine", "\xff\xfe"]')
    client.hset(KEY, "clients_to_close", b'["\xff"]')
    async with instance(tmp_path, "A", redis_server.url) as a:
        await eventually(lambda: "redis paused" in a.manager.problems)
        assert a.manager.lists().paused == ()  # not taken
        await a.manager.block("Someone")  # the other list is shared still
        await eventually(lambda: shared(redis_server, "blocked_clients") == ["Someone"])
        async with a.http() as http:
            report = (await http.get("/status")).json()
        assert "not taken" in report["problems"]["redis paused"]
        assert client.hget(KEY, "paused_clients") == b'["Fine","\xff\xfe"]'


async def synced_again(run: Running, times: int = 3) -> None:
    """Wait until ``run`` synced with Redis ``times`` more times."""
    syncs = run.manager.stats()["redis_syncs"]
    await eventually(lambda: run.manager.stats()["redis_syncs"] >= syncs + times)


async def test_a_malformed_file_loses_no_change_of_another_instance(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # A's pause file was unusable, so A could not take B's pause; its next
    # sync sent its stale list as a change and took B's pause out (and a
    # resume on B would have been undone the same way).
    url = redis_server.url
    async with instance(tmp_path, "A", url) as a, instance(tmp_path, "B", url) as b:
        await b.manager.pause("Resumed by B")
        await eventually(lambda: a.manager.lists().paused == ("Resumed by B",))
        a.edit("pause_clients.json", b"{not json")
        await eventually(lambda: "pause_clients.json" in a.manager.problems)
        await b.manager.pause("From B")
        await b.manager.resume("Resumed by B")
        # B's changes reached Redis (under load a sync may come late), then
        # A synced often enough to have undone them if it were to.
        await synced_again(b, 2)
        await synced_again(a)
        assert shared(redis_server, "paused_clients") == ["From B"]
        assert b.manager.lists().paused == ("From B",)
        # Fixed by hand: the fix and B's changes are all kept.
        a.edit("pause_clients.json", ["By Hand", "Resumed by B"])
        expected = ["By Hand", "From B"]
        await eventually(lambda: shared(redis_server, "paused_clients") == expected)
        await eventually(functools.partial(lists_file, a, expected))
        await eventually(functools.partial(lists_file, b, expected))


async def test_a_list_that_is_not_taken_does_not_start_a_sync_storm(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # While a shared list held a name no instance takes, each instance sent
    # its change again at every sync: A's resume and B's pause of one name
    # undid each other for ever, each publishing and waking the other.
    url = redis_server.url
    client = redis_server.client()
    async with instance(tmp_path, "A", url) as a:
        await a.manager.pause("Contested")
        await eventually(lambda: shared(redis_server, "paused_clients") != [])
        client.hset(KEY, "paused_clients", '["Bad\\u0001", "Contested"]')
        await a.manager.resume("Contested")
        await eventually(lambda: shared(redis_server, "paused_clients") == ["Bad\x01"])
        b_files = tmp_path / "B" / "Server_Data"
        b_files.mkdir(parents=True)
        (b_files / "pause_clients.json").write_bytes(b'{"clients": ["Contested"]}')
        async with instance(tmp_path, "B", url) as b:
            await eventually(lambda: "redis paused" in b.manager.problems)
            syncs = a.manager.stats()["redis_syncs"] + b.manager.stats()["redis_syncs"]
            await trio.sleep(1.0)
            later = a.manager.stats()["redis_syncs"] + b.manager.stats()["redis_syncs"]
            assert later - syncs <= 10  # renewals: every 0.5 s each
            assert b.manager.lists().paused == ("Contested",)  # its own, kept


async def test_a_file_that_cannot_be_written_is_a_problem_until_it_can(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # Taking another instance's change wrote the file from the sync loop,
    # where an OSError stopped the manager (and the process).
    url = redis_server.url
    async with instance(tmp_path, "A", url) as a, instance(tmp_path, "B", url) as b:
        # Moved away in one step (B may be writing in it: rmtree would race).
        b.directory.rename(tmp_path / "moved away")
        b.directory.write_bytes(b"a file, not a directory")
        await a.manager.pause("From A")
        await eventually(lambda: "pause_clients.json" in b.manager.problems)
        b.directory.unlink()
        await eventually(
            lambda: b.file("pause_clients.json").exists() and lists_file(b, ["From A"])
        )
        await eventually(lambda: b.manager.lists().paused == ("From A",))


async def test_keys_of_another_type_beside_the_hash_do_not_stop_the_sharing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # Only Clients_status itself was checked: the script failed on the set of
    # instances (or an instance's hash) of another type, after its first
    # writes and before its publish, so every sync failed ("Redis is
    # unreachable") and nothing was shared any more.
    client = redis_server.client()
    client.set(f"{KEY}:instances", "not a set")
    url = redis_server.url
    async with (
        instance(tmp_path, "A", url) as a,
        instance(tmp_path, "B", url) as b,
        connect(b.games_url, "Roaming") as game,
    ):
        await game.startup()
        await eventually(lambda: "redis" in a.manager.problems)
        assert "is a string, not a set" in a.manager.problems["redis"]
        assert a.manager.health()["redis"] == "up"
        await a.manager.block("Roaming")
        assert (await game.expect_closed(within=2)).code == 1008
        client.delete(f"{KEY}:instances")
        client.sadd(f"{KEY}:instances", "ghost")
        client.set(f"{KEY}:instance:ghost", "not a hash")
        await b.manager.pause("Paused on B")
        await eventually(lambda: a.manager.lists().paused == ("Paused on B",))
        await eventually(
            lambda: "instance:ghost" in a.manager.problems.get("redis", "")
        )


async def test_a_removal_made_while_an_instance_was_down_stays_removed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with instance(tmp_path, "B", url) as b:
        async with instance(tmp_path, "A", url) as a:
            await a.manager.block("X")
            await eventually(lambda: b.manager.lists().blocked == ("X",))
            await eventually(
                lambda: (
                    (a.directory / SYNCED_FILE).exists()
                    and b"X" in (a.directory / SYNCED_FILE).read_bytes()
                )
            )
        # A is down; B unblocks X; A starts again with X still in its file.
        await b.manager.unblock("X")
        await eventually(lambda: shared(redis_server, "blocked_clients") == [])
        old = orjson.loads(
            (tmp_path / "A/Server_Data/blocked_clients.json").read_bytes()
        )
        assert old == {"clients": ["X"]}
        async with instance(tmp_path, "A", url) as a:
            await eventually(lambda: a.manager.lists().blocked == ())
            assert a.clients("blocked_clients.json") == []
            assert shared(redis_server, "blocked_clients") == []
            assert b.manager.lists().blocked == ()


async def test_a_block_from_redis_applies_while_the_local_file_is_broken(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with (
        instance(tmp_path, "A", url) as a,
        instance(tmp_path, "B", url) as b,
        connect(a.games_url, "Target") as game,
    ):
        await game.startup()
        a.edit("blocked_clients.json", b"{broken")
        await eventually(lambda: "blocked_clients.json" in a.manager.problems)
        await b.manager.block("Target")
        reason = await game.expect_closed()
        assert (reason.code, reason.reason) == (1008, "blocked")
        assert a.file("blocked_clients.json").read_bytes() == b"{broken"
        # Fixed by hand (without the block): the block made elsewhere stays.
        a.edit("blocked_clients.json", ["Mine"])
        await eventually(
            lambda: shared(redis_server, "blocked_clients") == ["Mine", "Target"]
        )
        await eventually(lambda: a.manager.lists().blocked == ("Mine", "Target"))


class _AlwaysLost:
    """A store whose every sync says Redis lost something of ours."""

    ttl = 3.0

    def __init__(self) -> None:
        self.syncs = 0

    def sync(self, request: SyncRequest) -> SyncReply:
        self.syncs += 1
        return SyncReply(
            shared={}, to_close=frozenset(), problems=(), need_full=True, changed=False
        )

    def wait_for_change(self, timeout: float) -> str | None:
        time.sleep(min(timeout, 0.05))
        return None

    def close(self) -> None:
        pass


async def test_a_need_for_everything_that_persists_is_no_hot_loop(
    tmp_path: Path,
) -> None:
    manager = StatusManager(tmp_path)
    store = _AlwaysLost()
    manager._redis = _RedisState(store)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    # The first sync, once more with everything, then one per renewal (1 s).
    assert store.syncs <= 3
