"""The action registry of the server over real WebSocket connections.

Rules: 127.0.0.1 port 0, a deadline on every wait, the game closes first
(see ``server_helpers``).
"""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio
from server_helpers import (
    PASS,
    PLAY,
    WAVE,
    Game,
    RecordingServer,
    connect,
    start_server,
)

from neuro_api import command
from neuro_api.command import Action
from neuro_api.diagnostics import Severity
from neuro_api.server import RandomNeuroServer, TrioNeuroServerClient
from neuro_api.server._handler import _REMEMBERED_IDS, _Recent, split_actions

pytestmark = pytest.mark.timeout(30)


async def _register_raw(game: Game, actions: list[Any]) -> None:
    await game.send_obj(
        {
            "command": "actions/register",
            "game": game.title,
            "data": {"actions": actions},
        }
    )


async def test_register_actions(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await game.register(WAVE)
        await server.settle(game)
        client = server.client_of(game)
        assert list(client.actions) == ["play", "pass", "wave"]
        assert client.actions["play"] == PLAY
        assert client.registered_names() == ["play", "pass", "wave"]
    assert server.seen == []


async def test_duplicate_identical_registration_is_info(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.register(PLAY)
        diag = await server.wait_diag("action.duplicate-identical", game="Game")
        assert server.client_of(game).actions == {"play": PLAY}
    assert diag.severity is Severity.INFO
    assert diag.subject == "play"
    assert server.ids() == ["action.duplicate-identical"]


async def test_duplicate_conflicting_registration_keeps_the_original(
    nursery: trio.Nursery,
) -> None:
    changed = Action("play", "A different description", {"type": "object"})
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.register(changed)
        diag = await server.wait_diag("action.duplicate-conflicting", game="Game")
        assert server.client_of(game).actions["play"] == PLAY
        # A force offers the original to the engine.
        await game.force("play")
        call = await server.wait_force_calls(1)
        action = await game.expect_action()
        await game.result(action.id)
    assert diag.severity is Severity.WARNING
    assert call.actions == (PLAY,)


async def test_duplicate_within_one_frame(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS, Action("pass", "Other"))
        await server.wait_diag("action.duplicate-conflicting", game="Game")
        assert server.client_of(game).actions == {"pass": PASS}


async def test_invalid_entries_rejected_good_ones_registered(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await _register_raw(
            game,
            [
                {"name": "good_one", "description": "Fine"},
                5,
                {"name": 3, "description": "numeric name"},
                {"description": "no name"},
                {"name": "no_description"},
                {"name": "bad_schema", "description": "x", "schema": "object"},
                None,
                {"name": "good_two", "description": "Also fine", "schema": None},
            ],
        )
        await server.settle(game)
        assert list(server.client_of(game).actions) == ["good_one", "good_two"]
    rejected = server.diags("action.rejected", game="Game")
    assert len(rejected) == 6
    assert {d.severity for d in rejected} == {Severity.ERROR}
    details = " ".join(d.message for d in rejected)
    for field in ("[1]", "[2].name", "[3].name", "[4].description", "[5].schema"):
        assert field in details
    # "schema": null is tolerated, with a note.
    assert server.diags("protocol.null-value", game="Game")


@pytest.mark.parametrize(
    ("schema", "error_id"),
    [
        ({"type": "string"}, "action.schema-type-not-object"),
        (
            {"type": "array", "items": {"type": "integer"}},
            "action.schema-type-not-object",
        ),
        (
            {"type": "object", "properties": {"x": {"type": "nonsense"}}},
            "action.schema-invalid",
        ),
        ({"type": "object", "required": "cell"}, "action.schema-invalid"),
    ],
)
async def test_error_severity_schema_not_registered(
    nursery: trio.Nursery, schema: dict[str, Any], error_id: str
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(Action("broken", "Has a bad schema", schema), PASS)
        await server.settle(game)
        assert list(server.client_of(game).actions) == ["pass"]
        await game.force("broken")
        await server.wait_diag("force.none-registered", game="Game")
    error = server.diags(error_id, game="Game")
    assert len(error) == 1
    assert error[0].severity is Severity.ERROR
    assert error[0].subject == "broken"
    rejected = server.diags("action.rejected", game="Game")
    assert [d.subject for d in rejected] == ["broken"]


@pytest.mark.parametrize(
    ("action", "error_id"),
    [
        (Action("", "Empty name"), "action.name-empty"),
        (Action("empty", "No schema keys", {}), None),
    ],
)
async def test_name_and_empty_schema(
    nursery: trio.Nursery, action: Action, error_id: str | None
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(action)
        await server.settle(game)
        registered = action.name in server.client_of(game).actions
    if error_id is None:
        assert registered
        assert server.ids("Game") == ["action.schema-empty"]
    else:
        assert not registered
        assert server.ids("Game") == [error_id, "action.rejected"]


async def test_warnings_do_not_prevent_registration(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(
            Action("Play Card!", "Shouting name"),
            Action("quiet", ""),
        )
        await server.settle(game)
        assert set(server.client_of(game).actions) == {"Play Card!", "quiet"}
    assert set(server.ids("Game")) == {
        "action.name-not-lowercase",
        "action.name-invalid-chars",
        "action.description-missing",
    }
    assert {d.severity for d in server.seen} == {Severity.WARNING}


async def test_unsupported_keywords_warned_and_registered(
    nursery: trio.Nursery,
) -> None:
    schema = {
        "type": "object",
        "title": "Move",
        "properties": {
            # A *property* named title is not the keyword.
            "title": {"type": "string"},
            "cell": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            "tags": {"type": "array", "uniqueItems": True},
            "note": {"type": "string", "default": None},
        },
        "additionalProperties": False,
    }
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(Action("move", "Move a piece", schema))
        await server.settle(game)
        assert "move" in server.client_of(game).actions
    [unsupported] = server.diags("action.schema-unsupported-keywords", game="Game")
    assert unsupported.severity is Severity.WARNING
    for keyword in ("title", "oneOf", "additionalProperties"):
        assert keyword in unsupported.message
    assert "/properties/title" not in unsupported.message
    [unknown] = server.diags("action.schema-unknown-keywords", game="Game")
    assert "uniqueItems" in unknown.message
    assert "action.rejected" not in server.ids()


async def test_unregister(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS, WAVE)
        await game.unregister("pass")
        await server.settle(game)
        assert list(server.client_of(game).actions) == ["play", "wave"]
    assert server.seen == []


async def test_unregister_unknown_is_info(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.unregister("play", "ghost", "phantom")
        diag = await server.wait_diag("action.unregister-unknown", game="Game")
        assert server.client_of(game).actions == {}
    assert diag.severity is Severity.INFO
    assert "ghost" in diag.message
    assert "phantom" in diag.message
    assert "play" not in diag.message.replace("phantom", "")


async def test_unregister_empty_is_warning(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.send_obj(
            {
                "command": "actions/unregister",
                "game": "Game",
                "data": {"action_names": []},
            }
        )
        diag = await server.wait_diag("action.unregister-empty", game="Game")
        assert server.client_of(game).actions == {"play": PLAY}
    assert diag.severity is Severity.WARNING


async def test_register_empty_is_warning(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await _register_raw(game, [])
        diag = await server.wait_diag("action.register-empty", game="Game")
    assert diag.severity is Severity.WARNING


async def test_cross_game_name_collision(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with (
        connect(info.url, "Chess") as chess,
        connect(info.url, "Checkers") as checkers,
    ):
        await chess.startup()
        await checkers.startup()
        await chess.register(PLAY, PASS)
        await server.settle(chess)
        await checkers.register(PLAY, WAVE)
        diag = await server.wait_diag("action.name-collision", game="Checkers")
        # Both keep their own action: the names are shared, not the actions.
        assert "play" in server.client_of(chess).actions
        assert "play" in server.client_of(checkers).actions
    assert diag.severity is Severity.WARNING
    assert diag.subject == "play"
    assert "Chess" in diag.message
    assert server.ids() == ["action.name-collision"]


async def test_no_collision_with_a_disconnected_game(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Chess") as chess:
        await chess.startup()
        await chess.register(PLAY)
        await server.settle(chess)
    await server.wait_until(lambda: not server.clients)
    async with connect(info.url, "Checkers") as checkers:
        await checkers.startup()
        await checkers.register(PLAY)
        await server.settle(checkers)
    assert server.seen == []


async def test_same_game_reconnecting_is_no_collision(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Chess") as old, connect(info.url, "Chess") as new:
        await old.startup()
        await old.register(PLAY)
        await server.settle(old)
        await new.startup()
        await new.register(PLAY)
        await server.settle(new)
    assert server.seen == []


class _HidingClient(TrioNeuroServerClient):
    """A registry that hides one action from lookups (get_action overridden)."""

    def get_action(self, name: str) -> Action | None:
        return None if name == "secret" else super().get_action(name)


@pytest.mark.parametrize("hiding", [False, True])
async def test_force_lookups_ask_an_overridden_get_action(hiding: bool) -> None:
    cls = _HidingClient if hiding else TrioNeuroServerClient
    server = RandomNeuroServer()
    client = cls(cast(Any, None), server)
    play, secret = Action("play", "Play"), Action("secret", "Hidden")
    frame = command.actions_register_command("Game", [play, secret])
    await client.handle_frame(frame)  # registering sends nothing
    assert set(client.actions) == {"play", "secret"}
    known, unknown = client.lookup_actions(["play", "secret", "nope", "play"])
    if hiding:
        assert (known, unknown) == ({"play": play}, ["secret", "nope"])
    else:
        assert (known, unknown) == ({"play": play, "secret": secret}, ["nope"])


PLAYING, PASSING = Action("play", "Play"), Action("pass", "Pass")
REGISTRY = {"play": PLAYING, "pass": PASSING}


@pytest.mark.parametrize(
    ("names", "known", "unknown"),
    [
        (("play", "pass"), {"play": PLAYING, "pass": PASSING}, []),
        (("pass", "play", "pass"), {"pass": PASSING, "play": PLAYING}, []),
        (("nope", "play", "nope"), {"play": PLAYING}, ["nope", "nope"]),
        (("x", "y"), {}, ["x", "y"]),
        ((), {}, []),
    ],
)
def test_split_actions_keeps_order_and_drops_repeats(
    names: tuple[str, ...], known: dict[str, Action], unknown: list[str]
) -> None:
    for given in (names, list(names), iter(names)):  # any iterable, read once
        found, missing = split_actions(given, REGISTRY.get)
        assert (found, missing) == (known, unknown)
        assert list(found) == list(known)


def test_remembered_ids_keep_at_least_the_limit_and_stay_bounded() -> None:
    recent = _Recent()
    for n in range(10 * _REMEMBERED_IDS):
        recent.add(str(n), float(n))
        newest = range(max(0, n + 1 - _REMEMBERED_IDS), n + 1)
        assert all(str(k) in recent for k in newest[:: 37 if n % 53 else 1])
        assert len(recent) < 2 * _REMEMBERED_IDS
    assert recent.get(str(10 * _REMEMBERED_IDS - 1)) == 10 * _REMEMBERED_IDS - 1
    assert recent.get(str(_REMEMBERED_IDS - 1)) is None
    assert "0" not in recent


# --- re-registration asked for by Neuro (actions/reregister_all) -------------


async def test_registrations_answering_reregister_all_are_expected(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await server.settle(game)
        await server.client_of(game).send_reregister_all_command()
        assert isinstance(await game.receive(), command.ReregisterAll)
        changed = Action("pass", "Skip this turn, politely")
        await game.register(PLAY, changed)  # what PROPOSALS.md asks for
        await server.settle(game)
        assert [d for d in server.ids("Game") if d.startswith("action.duplicate")] == []
        # The game's current definition replaced the old one.
        assert server.client_of(game).actions["pass"] == changed
        # Once answered, a registration of the same name is a duplicate again.
        await game.register(PLAY)
        await server.wait_diag("action.duplicate-identical", game="Game")


async def test_an_injected_reregister_all_is_awaited_too(
    nursery: trio.Nursery,
) -> None:
    # Randy's ``POST /`` may inject the frame: the answer is expected the same.
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await server.settle(game)
        await server.client_of(game).inject(command.ReregisterAll())
        assert isinstance(await game.receive(), command.ReregisterAll)
        await game.register(PLAY)
        await server.settle(game)
        assert [d for d in server.ids("Game") if d.startswith("action.duplicate")] == []


async def test_a_changed_action_with_errors_keeps_the_old_one(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await server.settle(game)
        await server.client_of(game).send_reregister_all_command()
        await game.receive()
        await game.register(Action("play", "Play", {"type": "object", "required": 5}))
        await server.wait_diag("action.rejected", game="Game")
        assert server.client_of(game).actions["play"] == PLAY


async def test_unregistered_or_restarted_names_are_no_longer_awaited(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY, PASS)
        await server.settle(game)
        await server.client_of(game).send_reregister_all_command()
        await game.receive()
        await game.unregister("pass")
        await game.register(PASS)  # registered afresh: no diagnostic at all
        await game.register(PASS)  # and now a duplicate
        await server.wait_diag("action.duplicate-identical", game="Game")
        (duplicate,) = server.diags("action.duplicate-identical")
        assert duplicate.subject == "pass"
        await server.client_of(game).send_reregister_all_command()
        await game.receive()
        await game.startup()  # a startup clears everything, the wait too
        await game.register(PLAY)
        await game.register(PLAY)
        await server.wait_diag("action.duplicate-identical", game="Game", count=2)
