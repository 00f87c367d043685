"""A capability that uses every extension point, through public API only.

``Roster`` keeps a list of games: it is loaded by a service that must run
before ``games`` admits anyone, refuses blocked titles when their
``startup`` arrives, holds the forces and actions of paused titles, learns
how each connection ended, and shows all that in ``/health``, ``/stats``,
its routes (token, public, and its own key), its own HTTP server and its
console commands. The "Writing a capability" docs page walks through it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import trio
import trio.lowlevel
from quart import Blueprint, Quart, Request, request
from quart_trio import QuartTrio

from neuro_api.capability import Capability, Setup
from neuro_api.control import ApiError
from neuro_api.server import (
    ConnectionEvent,
    ConnectionEventKind,
    Console,
    ForceGate,
    Refusal,
    TrioNeuroServerClient,
)
from neuro_api.settings import setting


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


@dataclasses.dataclass(frozen=True, slots=True)
class RosterSettings:
    """The ``[roster]`` section: flags ``--roster-*``, its own variables."""

    section: ClassVar[str] = "roster"
    greeting: str = setting("hello", "what the roster's own server says")
    api_key: str | None = setting(
        None, "key of the roster's admin routes", env="ROSTER_API_KEY", secret=True
    )
    period: float = setting(0.5, "seconds between two looks", check=_positive)
    http_port: int = setting(0, "port of the roster's own HTTP server")


class Roster(Capability):
    """Blocks, pauses and remembers games by title."""

    name = "roster"
    settings = RosterSettings

    def __init__(self) -> None:
        self.loaded = False
        self.games_running_at_load: bool | None = None
        self.blocked: set[str] = set()
        self.events: list[ConnectionEvent] = []
        self.gate: ForceGate | None = None
        self.connected = 0

    # --- setup: every contribution --------------------------------------------

    def setup(self, app: Setup) -> None:
        config: RosterSettings = app.section()
        self.gate = app.add_force_gate()
        app.add_admission_check(self._admit)
        app.on_connection_event(self._on_event)
        process = app.process

        async def load(*, task_status: trio.TaskStatus[str]) -> None:
            # Started before games: no game can be admitted before this.
            states = {s.name: s.state.value for s in process.supervisor.status()}
            self.games_running_at_load = states["games"] == "running"
            await trio.lowlevel.checkpoint()
            self.loaded = True
            task_status.started("loaded")
            await trio.sleep_forever()

        app.add_service("roster-store", load, before=("games",))
        app.add_routes(self._token_routes())
        app.add_routes(self._public_routes(), prefix="/roster-public", auth="public")
        app.add_routes(
            self._admin_routes(),
            prefix="/roster-admin",
            auth=self._key_check(config.api_key),
        )
        app.add_http_server("roster-http", self._own_app(config), port=config.http_port)
        app.add_command("roster", "roster", "List the roster's games", self._cmd_roster)
        app.add_command(
            "pause", "pause <title>", "Hold a game's forces", self._cmd_pause
        )
        app.add_health(self._health)
        app.add_stats(lambda: {"connected": self.connected, "events": len(self.events)})

    # --- hooks ------------------------------------------------------------------

    def _admit(self, client: TrioNeuroServerClient, title: str) -> Refusal | None:
        if title in self.blocked:
            return Refusal(f"{title} is blocked by the roster", code=4003)
        return None

    def _on_event(self, event: ConnectionEvent) -> None:
        self.events.append(event)
        if event.kind is ConnectionEventKind.CONNECTED:
            self.connected += 1
        elif event.kind is ConnectionEventKind.DISCONNECTED:
            self.connected -= 1

    def _health(self) -> dict[str, Any]:
        # /health is public: counts, never titles.
        status = "healthy" if self.loaded else "degraded"
        return {"status": status, "blocked": len(self.blocked)}

    # --- routes -------------------------------------------------------------------

    def _token_routes(self) -> Blueprint:
        routes = Blueprint("roster", __name__)

        @routes.get("/games")
        async def games() -> Any:
            """Titles that started, in order."""
            started = ConnectionEventKind.STARTED
            return {"games": [e.game_title for e in self.events if e.kind is started]}

        return routes

    def _public_routes(self) -> Blueprint:
        routes = Blueprint("roster_public", __name__)

        @routes.get("/ping")
        async def ping() -> Any:
            """Needs no token."""
            return {"pong": True}

        return routes

    def _admin_routes(self) -> Blueprint:
        routes = Blueprint("roster_admin", __name__)

        @routes.post("/block")
        async def block() -> Any:
            """Block a title (needs the roster's own key)."""
            body = await request.get_json()
            self.blocked.add(str(body["title"]))
            return {"blocked": sorted(self.blocked)}

        return routes

    @staticmethod
    def _key_check(key: str | None) -> Any:
        async def check(req: Request) -> None:
            if key is None or req.headers.get("X-Roster-Key") != key:
                raise ApiError(403, "forbidden", "this route needs X-Roster-Key")

        return check

    @staticmethod
    def _own_app(config: RosterSettings) -> Quart:
        app = QuartTrio("roster")

        @app.get("/hello")
        async def hello() -> Any:
            return {"greeting": config.greeting}

        return app

    # --- console --------------------------------------------------------------------

    async def _cmd_roster(self, console: Console, args: list[str], data: str) -> None:
        started = [e.game_title for e in self.events if e.game_title]
        console.say("roster: " + (", ".join(dict.fromkeys(started)) or "empty"))

    async def _cmd_pause(self, console: Console, args: list[str], data: str) -> None:
        assert self.gate is not None
        if len(args) != 1:
            console.say("usage: pause <title>")
            return
        self.gate.hold(args[0])
        console.say(f"paused {args[0]}")
