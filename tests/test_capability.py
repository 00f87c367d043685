"""Every capability contribution, exercised by ``tests/sample_capability.py``.

A real process (games' server, control plane, the roster's own HTTP server)
on 127.0.0.1 port 0; games are real WebSocket clients. Only public API is
used, as a capability's author would.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from quart import Blueprint
from sample_capability import Roster, RosterSettings
from server_helpers import Game, Output, connect

from neuro_api.app import (
    Capability,
    ConsoleCapability,
    ControlPlaneCapability,
    GamesCapability,
    NeuroProcess,
    ProcessInfo,
    Setup,
    build_parser,
)
from neuro_api.command import Action
from neuro_api.control import RouteCollision
from neuro_api.manager import ServerInfo as ManagedServer
from neuro_api.server import (
    AbstractTrioNeuroServer,
    ConnectionEventKind,
    RandomNeuroServer,
    TooManyHeldActions,
)
from neuro_api.settings import REDACTED, SettingsError, load_settings

pytestmark = pytest.mark.timeout(30)
WAIT = 10.0
TOKEN = "a-control-plane-token-for-tests"
KEY = "the-roster-admin-key"


def roster_settings(*argv: str, environ: dict[str, str] | None = None) -> Any:
    flags = ["--engine", "random", "--port", "0", "--http-port", "0", *argv]
    parsed = build_parser([RosterSettings]).parse_args(flags)
    return load_settings(parsed, environ=environ or {}, sections=[RosterSettings])


class Running:
    """A process with the roster, and what a test needs to talk to it."""

    def __init__(
        self,
        process: NeuroProcess,
        info: ProcessInfo,
        roster: Roster,
        typed: trio.abc.SendStream,
        output: Output,
        stdout: io.StringIO,
    ) -> None:
        self.stdout = stdout
        self.process = process
        self.info = info
        self.roster = roster
        self.typed = typed
        self.output = output

    @property
    def games_url(self) -> str:
        return self.info.games.local_url

    def http(self, **headers: str) -> httpx.AsyncClient:
        assert self.info.control is not None
        return httpx.AsyncClient(
            base_url=self.info.control.local_url, headers=headers, timeout=WAIT
        )

    def authed(self) -> httpx.AsyncClient:
        return self.http(Authorization=f"Bearer {TOKEN}")

    def server_info(self, name: str) -> ManagedServer:
        info = {s.name: s.info for s in self.process.supervisor.status()}[name]
        assert isinstance(info, ManagedServer)
        return info

    async def type(self, line: str) -> None:
        await self.typed.send_all(line.encode() + b"\n")


@asynccontextmanager
async def running(*argv: str) -> AsyncIterator[Running]:
    settings = roster_settings(
        "--console", "--api-token", TOKEN, *argv, environ={"ROSTER_API_KEY": KEY}
    )
    roster = Roster()
    typed, input_stream = trio.testing.memory_stream_pair()
    output = Output()
    capabilities: list[Capability] = [
        ControlPlaneCapability(),
        GamesCapability(),
        ConsoleCapability(input=input_stream, output=output, idle_prompt="neuro> "),
        roster,
    ]
    stdout = io.StringIO()
    process = NeuroProcess(
        settings, RandomNeuroServer(), capabilities=capabilities, out=stdout
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            info = await nursery.start(
                lambda task_status: process.run(
                    handle_signals=False, task_status=task_status
                )
            )
        yield Running(process, info, roster, typed, output, stdout)
        nursery.cancel_scope.cancel()


# --- settings ---------------------------------------------------------------------


def test_a_section_has_flags_variables_and_a_config_table(tmp_path: Path) -> None:
    help_text = build_parser([RosterSettings]).format_help()
    assert "roster:" in help_text  # its own --help group
    assert "--roster-greeting" in help_text
    assert "[env NEURO_API_ROSTER_GREETING]" in help_text
    assert "[env ROSTER_API_KEY]" in help_text

    config = tmp_path / "neuro.toml"
    config.write_text('port = 9000\n[roster]\ngreeting = "from file"\nperiod = 2\n')
    settings = roster_settings(
        "--config", str(config), "--roster-period", "3",
        environ={"NEURO_API_ROSTER_GREETING": "from env"},
    )  # fmt: skip
    section = settings.section(RosterSettings)
    assert section == RosterSettings(greeting="from env", period=3.0)
    assert settings.sources["roster.greeting"] == "env"
    assert settings.sources["roster.period"] == "flag"
    assert settings.port == 0  # the flag beats the file

    bad = tmp_path / "bad.toml"
    bad.write_text("[roster]\nperoid = 1\n")
    with pytest.raises(SettingsError, match=r"\[roster\]: unknown setting 'peroid'"):
        roster_settings("--config", str(bad))
    with pytest.raises(SettingsError, match="--roster-period: must be > 0"):
        roster_settings("--roster-period", "0")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[rooster]\nperiod = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'rooster'"):
        roster_settings("--config", str(unknown))


def test_a_sections_secret_is_redacted_everywhere() -> None:
    settings = roster_settings(environ={"ROSTER_API_KEY": "s3cret-roster-key"})
    assert settings.section(RosterSettings).api_key == "s3cret-roster-key"
    shown = settings.redacted()
    assert shown["roster"]["api_key"] == REDACTED
    assert "s3cret" not in orjson.dumps(shown).decode()
    assert "s3cret-roster-key" in settings.secrets()  # for the log redactor
    assert "s3cret" not in repr(settings.section(RosterSettings))


# --- the running process ------------------------------------------------------------


async def test_its_service_starts_before_games_and_shows_in_health_and_stats() -> None:
    async with running() as run:
        assert run.roster.loaded
        assert run.roster.games_running_at_load is False
        names = [s.name for s in run.process.supervisor.status()]
        assert {"roster-store", "roster-http"} <= set(names)
        async with run.http() as http:
            health = (await http.get("/health")).json()
        assert health["status"] == "healthy"
        assert health["capabilities"]["roster"] == {"status": "healthy", "blocked": 0}
        async with connect(run.games_url, "Stats Game") as game:
            await game.startup()
            async with run.authed() as http:
                stats = (await http.get("/stats")).json()
        assert stats["capabilities"]["roster"]["connected"] == 1
        run.roster.loaded = False  # its health section now says degraded
        async with run.http() as http:
            assert (await http.get("/health")).json()["status"] == "degraded"


async def test_routes_have_their_declared_auth_and_are_documented() -> None:
    async with running() as run:
        async with run.http() as anonymous:
            assert (await anonymous.get("/roster/games")).status_code == 401
            assert (await anonymous.get("/roster-public/ping")).json() == {"pong": True}
            refused = await anonymous.post("/roster-admin/block", json={"title": "x"})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden"
            document = (await anonymous.get("/openapi.json")).json()
        assert {"/roster/games", "/roster-public/ping", "/roster-admin/block"} <= set(
            document["paths"]
        )
        assert "security" in document["paths"]["/roster/games"]["get"]
        assert "security" not in document["paths"]["/roster-public/ping"]["get"]
        async with run.authed() as http:
            assert (await http.get("/roster/games")).json() == {"games": []}
            # The token is not the roster's key: its own check decides.
            assert (await http.post("/roster-admin/block", json={})).status_code == 403
        async with run.http(**{"X-Roster-Key": KEY}) as admin:
            blocked = await admin.post("/roster-admin/block", json={"title": "Bad"})
        assert blocked.json() == {"blocked": ["Bad"]}


async def test_its_own_http_server_runs_beside_the_control_plane() -> None:
    async with running("--roster-greeting", "hi there") as run:
        own = run.server_info("roster-http")
        assert own.port not in (0, run.info.games.port)
        async with httpx.AsyncClient(base_url=own.local_url) as http:
            assert (await http.get("/hello")).json() == {"greeting": "hi there"}
        lines = run.stdout.getvalue().splitlines()
        assert lines[0].startswith("neuro_api server listening on ws://")
        assert f"neuro_api roster-http on {own.local_url}" in lines
        listed = [server.name for server in run.process.manager.list()]
        assert listed == ["control", "games", "roster-http"]


async def test_admission_refuses_a_blocked_title_with_its_code() -> None:
    async with running() as run:
        run.roster.blocked.add("Blocked Game")
        async with connect(run.games_url, "Blocked Game") as game:
            await game.send_obj({"command": "startup", "game": "Blocked Game"})
            reason = await game.expect_closed()
        assert (reason.code, reason.reason) == (
            4003,
            "Blocked Game is blocked by the roster",
        )
        async with connect(run.games_url, "Good Game") as game:
            await game.startup()  # others are admitted
        gone = run.roster.events[-1]
        assert gone.kind is ConnectionEventKind.DISCONNECTED
        assert gone.game_title == "Good Game"


async def test_connection_events_tell_a_clean_close_from_a_network_error() -> None:
    async with running() as run:
        async with connect(run.games_url, "Clean") as game:
            await game.startup()
        async with connect(run.games_url, "Dropped") as game:
            await game.startup()
            await game.drop()
            with trio.fail_after(WAIT):
                while run.roster.connected:  # noqa: ASYNC110 - a plain counter
                    await trio.sleep(0.01)
        kinds = [(e.kind.value, e.game_title) for e in run.roster.events]
        assert kinds == [
            ("connected", None),
            ("started", "Clean"),
            ("disconnected", "Clean"),
            ("connected", None),
            ("started", "Dropped"),
            ("disconnected", "Dropped"),
        ]
        clean, dropped = run.roster.events[2], run.roster.events[5]
        assert (clean.clean, clean.network_error, clean.close_code) == (
            True,
            False,
            1000,
        )
        assert (dropped.clean, dropped.network_error, dropped.close_code) == (
            False,
            True,
            1006,
        )


ACTIONS = (
    Action("jump", "Jump"),
    Action("wave", "Wave", {"type": "object", "properties": {}}),
)


async def _forced_while_paused(run: Running, game: Game) -> None:
    await game.startup()
    await game.register(*ACTIONS)
    await run.type("pause Paused")
    await run.output.wait_for("paused Paused")
    await game.force("jump", query="pick one")


async def test_a_force_gate_holds_forces_and_actions_then_lets_them_go_in_order() -> (
    None
):
    async with running() as run, connect(run.games_url, "Paused") as game:
        await _forced_while_paused(run, game)
        async with run.authed() as http, trio.open_nursery() as nursery:
            answers: list[httpx.Response] = []

            # An action from the control plane waits while the game is held.
            async def act() -> None:
                answers.append(
                    await http.post("/games/Paused/actions/wave", json={"data": {}})
                )

            nursery.start_soon(act)
            await game.expect_silence(0.5)  # neither the force's nor the route's
            assert run.process.server.forces_held("Paused")
            assert run.roster.gate is not None
            run.roster.gate.release("Paused")
            first = await game.expect_action()
            assert first.name == "wave"  # the held action first, then the force
            await game.result(first.id, True)
            second = await game.expect_action()
            assert second.name == "jump"
            await game.result(second.id, True)
        assert answers[0].json()["outcome"]["status"] == "success"


async def test_a_held_game_that_leaves_ends_its_held_actions_cleanly() -> None:
    async with running() as run:
        async with connect(run.games_url, "Paused") as game, run.authed() as http:
            await _forced_while_paused(run, game)
            async with trio.open_nursery() as nursery:
                answers: list[httpx.Response] = []

                async def act() -> None:
                    answers.append(
                        await http.post("/games/Paused/actions/wave", json={})
                    )

                nursery.start_soon(act)
                await trio.sleep(0.2)
                await game.drop()
        # Never sent (the game left while held): its outcome says so.
        assert answers[0].status_code == 200
        assert answers[0].json()["outcome"]["status"] == "disconnected"
        assert run.process.server.clients == {}


async def test_capability_commands_show_in_help_and_run() -> None:
    async with running() as run:
        await run.output.wait_for("neuro> ")
        await run.type("help")
        shown = await run.output.wait_for("quit - Stop the server")
        assert "  roster - List the roster's games" in shown
        assert "  pause <title> - Hold a game's forces" in shown
        assert shown.index("pause <title>") < shown.index("help - Show")
        async with connect(run.games_url, "Listed") as game:
            await game.startup()
            await run.type("roster")
            await run.output.wait_for("roster: Listed")
            await run.type("list")
            await run.output.wait_for("Game: Listed")


# --- mistakes a capability can make are errors at start ------------------------------


class Colliding(Capability):
    name = "colliding"

    def setup(self, app: Setup) -> None:
        routes = Blueprint("colliding", __name__)

        @routes.get("/health")
        async def health() -> dict[str, str]:
            return {}

        app.add_routes(routes, prefix="")


class CollidingWithRoster(Capability):
    name = "second"

    def setup(self, app: Setup) -> None:
        routes = Blueprint("second", __name__)

        @routes.get("/games")
        async def games() -> dict[str, str]:
            return {}

        app.add_routes(routes, prefix="/roster")


def test_a_route_that_collides_is_refused_before_anything_runs() -> None:
    settings = roster_settings()
    with pytest.raises(ValueError, match="must start with '/'"):
        NeuroProcess(settings, RandomNeuroServer(), capabilities=[Colliding()])
    with pytest.raises(ValueError, match="no capability serves the games"):
        NeuroProcess(settings, RandomNeuroServer(), capabilities=[])
    capabilities: list[Capability] = [
        ControlPlaneCapability(),
        GamesCapability(),
        Roster(),
    ]
    NeuroProcess(settings, RandomNeuroServer(), capabilities=capabilities)
    with pytest.raises(RouteCollision, match=r"GET /roster/games of '(second|roster)'"):
        NeuroProcess(
            settings,
            RandomNeuroServer(),
            capabilities=[
                ControlPlaneCapability(),
                GamesCapability(),
                Roster(),
                CollidingWithRoster(),
            ],
        )


def test_contributions_after_setup_and_bad_names_are_refused() -> None:
    settings = roster_settings()
    kept: list[Setup] = []

    class Late(Capability):
        name = "late"

        def setup(self, app: Setup) -> None:
            kept.append(app)

    NeuroProcess(
        settings, RandomNeuroServer(), capabilities=[GamesCapability(), Late()]
    )
    with pytest.raises(RuntimeError, match="only accepted in setup"):
        kept[0].add_health(dict)
    with pytest.raises(ValueError, match="used twice"):
        NeuroProcess(settings, RandomNeuroServer(), capabilities=[Late(), Late()])


def test_ordering_before_an_unknown_service_fails_before_anything_runs() -> None:
    class Early(Capability):
        name = "early"

        def setup(self, app: Setup) -> None:
            app.add_service("early", trio.sleep_forever, before=("nothing",))  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="'early' is to start before 'nothing'"):
        NeuroProcess(
            roster_settings(),
            RandomNeuroServer(),
            capabilities=[GamesCapability(), Early()],
        )


class Upstreamish(AbstractTrioNeuroServer):
    def add_context(self, game_title: str, message: str, reply: bool) -> None:
        pass

    async def choose_force_action(  # type: ignore[override]  # upstream's form
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
    ) -> tuple[str, str | None]:
        return actions[0].name, None


async def test_an_engine_without_a_config_gets_the_settings_one() -> None:
    settings = roster_settings("--result-timeout", "3.5", "--max-retries", "0")
    engine = RandomNeuroServer()
    assert engine.config.result_timeout == 20.0
    NeuroProcess(settings, engine)
    assert (engine.config.result_timeout, engine.config.max_retries) == (3.5, 0)
    kept = RandomNeuroServer(RandomNeuroServer().config)
    NeuroProcess(settings, kept)
    assert kept.config.result_timeout == 20.0  # given its own: kept
    evil = Upstreamish("evil")  # upstream's MyServer("neuro") form
    NeuroProcess(settings, evil)
    assert (evil.config.character_id, evil.config.result_timeout) == ("evil", 3.5)


async def test_held_actions_are_bounded_and_raw_messages_do_not_wait_for_them() -> None:
    async with (
        running("--console") as run,
        connect(run.games_url, "Paused") as paused,
        connect(run.games_url, "Free") as free,
    ):
        await _forced_while_paused(run, paused)
        await free.startup()
        client = run.process.server.get_client("Paused")
        assert client is not None
        limit = client.config.max_pending_actions
        async with trio.open_nursery() as nursery:
            for _ in range(limit):
                nursery.start_soon(client.execute_action, "wave", "{}")
            await trio.sleep(0.2)
            with pytest.raises(TooManyHeldActions, match="this one was not kept"):
                await client.execute_action("wave", "{}")
            async with run.authed() as http:
                refused = await http.post(
                    "/games/Paused/actions/wave", json={"data": {}}
                )
                assert refused.status_code == 429
                assert refused.json()["error"]["code"] == "too_many_held_actions"
                # Randy's raw message reaches the free game at once.
                raw = {
                    "command": "action",
                    "data": {"id": "raw-1", "name": "wave", "data": "{}"},
                }
                answer = await http.post("/", json=raw)
            # The held game's line is full: it is left out (not promised).
            assert answer.json() == {"sent_to": ["Free"]}
            assert (await free.expect_action()).id == "raw-1"
            nursery.cancel_scope.cancel()


async def test_a_raw_message_for_a_held_game_goes_out_once_released() -> None:
    async with (
        running() as run,
        connect(run.games_url, "Paused") as game,
        run.authed() as http,
    ):
        await _forced_while_paused(run, game)
        raw = {"command": "action", "data": {"id": "raw-1", "name": "wave"}}
        answer = await http.post("/", json=raw)
        assert answer.json() == {"sent_to": [], "held_for": ["Paused"]}
        await game.expect_silence(0.3)
        assert run.roster.gate is not None
        run.roster.gate.release("Paused")
        assert (await game.expect_action()).id == "raw-1"
        assert (await game.expect_action()).name == "jump"  # then the force
