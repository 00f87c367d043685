"""Per-connection limits: what one game can make the server keep is bounded.

Each limit drops or refuses with a diagnostic, never silently, and the game
keeps being served. Real sockets on 127.0.0.1 port 0.
"""

from __future__ import annotations

import sys
from typing import Any, cast

import pytest
import trio
from server_helpers import PASS, RecordingServer, connect, start_server

from neuro_api.command import Action
from neuro_api.diagnostics import Severity
from neuro_api.server import ForcePolicy, RandomNeuroServer, TrioNeuroServerClient

pytestmark = pytest.mark.timeout(30)


async def test_registry_is_capped_per_game(nursery: trio.Nursery) -> None:
    server = RecordingServer(max_actions=5)
    info = await start_server(nursery, server)
    async with connect(info.url, "Hoarder") as game:
        await game.startup()
        await game.register(*(Action(f"a{i}", "An action") for i in range(3)))
        await game.register(*(Action(f"b{i}", "An action") for i in range(9)))
        await server.settle(game)
        client = server.client_of(game)
        assert list(client.actions) == ["a0", "a1", "a2", "b0", "b1"]
        (limit,) = server.diags("action.limit", game="Hoarder")
        assert limit.severity is Severity.ERROR
        assert "7 action(s) not registered (b2, b3, b4, b5, b6, ...)" in limit.message
        assert "at most 5 actions" in limit.message
        # Unregistering makes room again.
        await game.unregister("a0")
        await game.register(Action("c0", "An action"))
        await server.settle(game)
        assert "c0" in client.actions
        assert len(server.diags("action.limit", game="Hoarder")) == 1


async def test_held_context_is_capped_by_count(nursery: trio.Nursery) -> None:
    server = RecordingServer(max_held_context=3)
    info = await start_server(nursery, server)
    async with connect(info.url, "Chatty") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        for index in range(5):
            await game.context(f"held {index}")
        await server.settle(game)
        assert len(server.diags("context.dropped", game="Chatty")) == 2
        assert "3 messages" in server.diags("context.dropped")[0].message
        await game.result(action.id, True, "done")
        await server.wait_until(lambda: "held 4" in server.messages())
    assert server.messages()[-3:] == ["held 2", "held 3", "held 4"]


async def test_held_context_is_capped_by_size(nursery: trio.Nursery) -> None:
    server = RecordingServer(max_held_context_chars=10_000)
    info = await start_server(nursery, server)
    async with connect(info.url, "Verbose") as game:
        await game.startup()
        await game.register(PASS)
        await game.force("pass")
        action = await game.expect_action()
        for index in range(5):
            await game.context(f"{index}" * 4000)
        await server.settle(game)
        client = server.client_of(game)
        assert client._held_chars <= 10_000
        dropped = server.diags("context.dropped", game="Verbose")
        assert len(dropped) == 3
        assert "10000 characters" in dropped[0].message
        await game.result(action.id, True, "done")
        await server.wait_until(lambda: "4" * 4000 in server.messages())
    assert server.messages()[-2:] == ["3" * 4000, "4" * 4000]


async def test_queue_overflow_and_stale_queued_forces_are_reported(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer(force_policy=ForcePolicy.QUEUE, max_queued_forces=2)
    info = await start_server(nursery, server)
    async with connect(info.url, "Eager") as game:
        await game.startup()
        await game.register(PASS, Action("other", "Another"))
        await game.force("pass")
        first = await game.expect_action()
        await game.force("other", query="q1")
        await game.force("other", query="q2")
        await game.force("other", query="q3")  # pushes q1 out
        await server.settle(game)
        (full,) = server.diags("force.queue-full", game="Eager")
        assert "limit 2" in full.message
        # The queued forces only name "other": once it is gone, they are
        # dropped with a diagnostic each, not silently.
        await game.unregister("other")
        await game.result(first.id, True, "done")
        await server.wait_until(
            lambda: len(server.diags("force.queued-dropped", game="Eager")) == 2
        )
        assert [c.query for c in server.force_calls] == ["Your turn"]


async def test_a_game_that_never_answers_cannot_grow_the_pending_actions(
    nursery: trio.Nursery,
) -> None:
    # The worst input: forces as fast as it can send them, no result ever.
    server = RecordingServer(max_pending_actions=4)
    info = await start_server(nursery, server)
    async with connect(info.url, "Flood") as game:
        await game.startup()
        await game.register(PASS)
        ids = []
        for _ in range(50):
            await game.force("pass")
            ids.append((await game.expect_action()).id)
        await server.settle(game)
        client = server.client_of(game)
        assert len(client.pending_ids) == 4
        assert client.pending_ids == tuple(ids[-4:])  # the newest are kept
        given_up = server.diags("result.given-up", game="Flood")
        assert given_up  # reported (rate limited in the log, all recorded)
        assert "the oldest, 'pass'" in given_up[0].message
        # A result for a given-up action comes after all: said so, discarded.
        await game.result(ids[0], True, "done at last")
        await server.wait_diag("result.after-given-up", game="Flood")
        # The newest are still answered normally.
        await game.result(ids[-1], True, "done")
        await server.wait_until(
            lambda: ids[-1] not in server.client_of(game).pending_ids
        )


def test_max_pending_actions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pending_actions"):
        RecordingServer(max_pending_actions=0)


async def test_a_result_after_unregister_is_accepted_quietly(
    nursery: trio.Nursery,
) -> None:
    """What the official SDK README recommends: unregister, then answer."""
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await server.settle(game)
        client = server.client_of(game)
        client.start_action("nope", None)  # never registered, on purpose
        action = await game.expect_action()
        await game.result(action.id, False, "unknown action")
        await server.wait_until(lambda: bool(server.outcomes))
        await game.force("pass")
        second = await game.expect_action()
        await game.unregister("pass")
        await game.result(second.id, True, "done")
        await server.wait_until(lambda: len(server.outcomes) == 2)
        await server.settle(game)
    assert server.outcomes[1][1].success
    found = server.ids("Game")
    assert "force.cancelled-by-unregister" not in found
    assert not [i for i in found if "unregistered" in i]
    assert client.active_force is None


def test_a_game_connection_keeps_a_small_instance_dict() -> None:
    """CPython shares the keys of instance dicts up to 30 attributes.

    One more attribute on the client classes (an instance per connection)
    makes every connection's ``__dict__`` a dict of its own: 1.3 KiB more per
    game, 1.3 MB per thousand idle games. Keep the instance state under the
    limit (or move it to an object of its own, as ReaderGuard does).
    """
    server = RandomNeuroServer()
    client = TrioNeuroServerClient(cast(Any, None), server)
    assert len(vars(client)) < 30, sorted(vars(client))
    assert sys.getsizeof(vars(client)) < 600
