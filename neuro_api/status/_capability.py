"""The client-status capability: settings, service, routes, console, hooks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Final

from quart import Blueprint

from neuro_api.capability import Capability, Setup
from neuro_api.control import ApiError
from neuro_api.server import Console
from neuro_api.settings import setting
from neuro_api.status._files import MAX_NAME_LENGTH
from neuro_api.status._manager import ListKind, StatusFileError, StatusManager

__all__ = ["SERVER_DATA", "StatusCapability", "StatusSettings"]

SERVER_DATA: Final = "Server_Data"
"""The files live in ``<data-dir>/Server_Data`` (the seed's place)."""


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"


def _instance_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 64 or not value.isprintable() or " " in value:
        return "must be 1 to 64 printable characters, no spaces"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class StatusSettings:
    """The ``[status]`` section."""

    section: ClassVar[str] = "status"
    enabled: bool = setting(
        True,
        "keep the client-status lists (pause, block, active ...) in files and "
        "enforce them",
        flag="--status",
    )
    period: float = setting(
        0.5,
        "seconds between two looks at the hand-edited files",
        check=_positive,
        metavar="SECONDS",
    )
    max_known: int = setting(
        10_000,
        "clients remembered beyond those connected or listed (the least "
        "recently seen are forgotten)",
        check=_at_least_one,
        metavar="N",
    )
    redis_ttl: float = setting(
        10.0,
        "seconds an instance's entries outlive it in Redis (renewed every third of it)",
        check=_positive,
        metavar="SECONDS",
    )
    instance: str | None = setting(
        None,
        "this instance's id in Redis (default: random)",
        metavar="ID",
        check=_instance_id,
    )


class StatusCapability(Capability):
    """Client status (seed "Server_Manager"): see :doc:`/status`.

    :attr:`manager` is the :class:`StatusManager` once set up (None when
    off with ``--no-status``).
    """

    name = "status"
    settings = StatusSettings

    def __init__(self) -> None:
        self.manager: StatusManager | None = None

    def setup(self, app: Setup) -> None:
        """Add the ``status`` service, the hooks, routes and console commands."""
        config: StatusSettings = app.section()
        if not config.enabled:
            return
        manager = StatusManager(
            Path(app.settings.data_dir) / SERVER_DATA,
            period=config.period,
            max_known=config.max_known,
            redis_url=app.settings.redis_url,
            redis_ttl=config.redis_ttl,
            instance_id=config.instance,
        )
        self.manager = manager
        app.add_admission_check(manager.admit)
        app.on_connection_event(manager.on_connection_event)
        manager.attach(app.server, app.add_force_gate("paused"))
        # Loaded before any game is admitted: a blocked title is refused
        # from the first connection on.
        app.add_service("status", manager.run, before=("games",), critical=True)
        app.add_routes(status_routes(manager), prefix="/status")
        app.add_health(manager.health)
        app.add_stats(manager.stats)
        for name, usage, text, handler in _commands(manager):
            app.add_command(name, usage, text, handler)


def _name(client: str) -> str:
    """The client name of a route's path (validated by the manager)."""
    if len(client) > MAX_NAME_LENGTH:
        raise ApiError(
            400,
            "bad_client_name",
            f"a client name is at most {MAX_NAME_LENGTH} characters",
        )
    return client


def status_routes(manager: StatusManager) -> Blueprint:
    """``/status`` routes of ``manager`` (admin auth: the control plane's)."""
    # <name:client>: the control plane's converter for names games chose (a
    # title may start with "/"): these routes are only served there.
    routes = Blueprint("status_lists", __name__)

    @routes.get("")
    async def get_status() -> Any:
        """Every list, each client's states, the files' and Redis' health.

        ``lists`` holds the seed's lists (``available``, ``active``,
        ``paused``, ``blocked``, ``deactivated``, ``connection_error``);
        ``clients`` maps each known client to its states; ``files`` says
        what is wrong with each file (``error``, None when fine); ``redis``
        whether the shared mirror is ``off``, ``up`` or ``down``.
        """
        return manager.report()

    async def change(kind: ListKind, client: str, add: bool) -> Any:
        name = _name(client)
        try:
            await manager.set_listed(kind, name, add)
        except ValueError as exc:
            raise ApiError(400, "bad_client_name", str(exc)) from None
        except StatusFileError as exc:
            raise ApiError(409, "status_file_unusable", str(exc)) from None
        return {"client": name, "states": manager.lists().state_of(name)}

    @routes.put("/paused/<name:client>")
    async def pause(client: str) -> Any:
        """Pause a client: its forces and actions are held until resumed.

        Any name may be paused, connected or not. 400 ``bad_client_name``
        for a name that cannot be a client's; 409 ``status_file_unusable``
        while ``pause_clients.json`` is malformed (fix it first).
        """
        return await change("paused", client, True)

    @routes.delete("/paused/<name:client>")
    async def resume(client: str) -> Any:
        """Resume a client: what was held is delivered, in order."""
        return await change("paused", client, False)

    @routes.put("/blocked/<name:client>")
    async def block(client: str) -> Any:
        """Block a client: its connections close, and it is refused.

        Closed with 1008 ``blocked``, refused until unblocked. Any name may
        be blocked, connected or not (a title before it ever connects).
        """
        return await change("blocked", client, True)

    @routes.delete("/blocked/<name:client>")
    async def unblock(client: str) -> Any:
        """Unblock a client: it may connect again."""
        return await change("blocked", client, False)

    return routes


def _commands(manager: StatusManager) -> list[tuple[str, str, str, Any]]:
    async def status(console: Console, args: list[str], data: str) -> None:
        lists = manager.lists()
        for field in dataclasses.fields(lists):
            names = getattr(lists, field.name)
            shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
            console.say(f"{field.name} ({len(names)}): {shown or '-'}")
        for where, problem in sorted(manager.problems.items()):
            console.say(f"problem: {where}: {problem}")

    def changer(kind: ListKind, add: bool, done: str) -> Any:
        async def handler(console: Console, args: list[str], data: str) -> None:
            name = " ".join(args)
            if not name:
                console.say("name the game: the title it started with")
                return
            try:
                await manager.set_listed(kind, name, add)
            except (ValueError, StatusFileError) as exc:
                console.say(f"cannot: {exc}")
                return
            console.say(f"{name}: {done}")

        return handler

    return [
        ("status", "status", "Show the client-status lists", status),
        (
            "pause",
            "pause GAME",
            "Hold a game's forces and actions",
            changer("paused", True, "paused"),
        ),
        (
            "resume",
            "resume GAME",
            "Deliver what a paused game held",
            changer("paused", False, "resumed"),
        ),
        (
            "block",
            "block GAME",
            "Close a game and refuse it",
            changer("blocked", True, "blocked"),
        ),
        (
            "unblock",
            "unblock GAME",
            "Let a blocked game connect again",
            changer("blocked", False, "unblocked"),
        ),
    ]
