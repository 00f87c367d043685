"""Capabilities: how a part of the process plugs in.

A capability is one object that contributes any of: a settings section,
supervised services (ordered before or after others), HTTP routes on the
control plane or an HTTP server of its own, console commands, ``/health``
and ``/stats`` sections, and the Neuro server's hooks (admission, force
gates, connection events). :class:`~neuro_api.app.NeuroProcess` calls each
capability's :meth:`Capability.setup` with a :class:`Setup`, then each
one's :meth:`Capability.finish`, before anything runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, Literal, Protocol, TypeVar

import trio
from hypercorn.typing import ASGIFramework
from quart import Blueprint

from neuro_api._shared import StatusCallback
from neuro_api.capability._announce import server_lines
from neuro_api.control import Credential, RouteAuth, Routes
from neuro_api.manager import ServerInfo as ManagedServer
from neuro_api.manager import ServerManager
from neuro_api.server import (
    AbstractTrioNeuroServer,
    AdmissionCheck,
    ConnectionEvent,
    ConsoleCommand,
    ForceGate,
    ServerConfig,
)
from neuro_api.server._commands import CommandHandler
from neuro_api.settings import SectionSettings, Settings
from neuro_api.supervisor import ServiceRun, StopHook, Supervisor

__all__ = [
    "Capability",
    "HealthSection",
    "ProcessParts",
    "ServiceSpec",
    "Setup",
    "StatsSection",
    "worst",
]

HealthSection = Callable[[], Mapping[str, Any]]
"""Returns a capability's ``/health`` section: ``{"status": "healthy" |
"degraded" | "unhealthy", ...}``; a status other than healthy makes the
whole report at least that (unhealthy: HTTP 503)."""
StatsSection = Callable[[], Mapping[str, Any]]
"""Returns a capability's ``/stats`` section (JSON-ready counters)."""
Health = Literal["healthy", "degraded", "unhealthy"]
_LEVELS: Final[tuple[Health, ...]] = ("healthy", "degraded", "unhealthy")
_SEVERITY: Final[dict[str, int]] = {name: n for n, name in enumerate(_LEVELS)}
_C = TypeVar("_C", bound="Capability")


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service a capability asked for (see :meth:`Setup.add_service`)."""

    name: str
    run: ServiceRun
    owner: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    critical: bool = False
    stop: StopHook | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class ProcessParts(Protocol):
    """What a :class:`Setup` uses of the process that runs the capabilities.

    :class:`~neuro_api.app.NeuroProcess` is one; a capability reaches it
    only through :class:`Setup`, so that capability packages never import
    :mod:`neuro_api.app` (which imports them to register them).
    """

    settings: Settings
    server: AbstractTrioNeuroServer
    manager: ServerManager
    supervisor: Supervisor
    announced: bool
    token: str | None
    """The control plane's bearer token (None: open to this machine only)."""
    capabilities: tuple[Capability, ...]
    """Every capability, in registration order (the order of their setup)."""

    def add_service_spec(self, spec: ServiceSpec) -> object:
        """Supervise a capability's service."""

    def add_routes(self, routes: Routes) -> None:
        """Have the control plane mount ``routes``."""

    def add_credential(self, check: Credential) -> None:
        """Have the control plane accept ``check`` besides its bearer token."""

    def add_command(self, command: ConsoleCommand) -> None:
        """Have the console offer ``command``."""

    def add_health(self, name: str, section: HealthSection) -> None:
        """Show ``section()`` in ``/health``."""

    def add_stats(self, name: str, section: StatsSection) -> None:
        """Show ``section()`` in ``/stats``."""

    def print_lines(self, lines: Iterable[str]) -> None:
        """Print lines for a person or a script (URLs) to the process's out."""


class Capability:
    """One part of the process; subclass it and override what you contribute.

    ``name`` names it in errors, ``/health`` and ``/stats``, and is the
    default prefix of its routes (``/name``). ``settings`` is its settings
    type (see :class:`~neuro_api.settings.SectionSettings`): the command
    line, the environment and the ``[section]`` table of the config file
    are read for it, and :meth:`Setup.section` returns the result.
    """

    name: ClassVar[str] = ""
    settings: ClassVar[type[SectionSettings] | None] = None
    engines: ClassVar[tuple[str, ...]] = ()
    """Engines it offers: names ``--engine`` accepts besides the built-in
    ones; :meth:`make_engine` makes them."""

    def make_engine(
        self, name: str, settings: Settings, config: ServerConfig
    ) -> AbstractTrioNeuroServer:
        """Make engine ``name`` (one of :attr:`engines`) before setup.

        ``config`` is the server configuration of ``settings``. Raise
        :class:`~neuro_api.settings.SettingsError` (a one-line CLI error)
        when the settings cannot make it.
        """
        raise NotImplementedError(f"capability {self.name!r} makes no engines")

    def setup(self, app: Setup) -> None:
        """Contribute services, routes, commands, health, stats and hooks.

        Called once, before anything runs, in registration order.
        """

    def finish(self, app: Setup) -> None:
        """Called once every capability's :meth:`setup` ran (default: nothing).

        For a capability that gathers what others contributed (the control
        plane mounts every capability's routes here, the console adds their
        commands), so routes and console commands are refused here: add them
        in :meth:`setup`.
        """

    def __repr__(self) -> str:
        return f"<capability {self.name!r}>"


class Setup:
    """What a capability's :meth:`~Capability.setup` gets: the process's parts.

    Everything is public API: the settings, the Neuro server and its hooks,
    the :class:`~neuro_api.manager.ServerManager`, the other capabilities
    (:meth:`capability`), and the registrars below. Registrations are only
    accepted during setup and finish.
    """

    def __init__(self, process: ProcessParts, owner: Capability) -> None:
        self.process = process
        self.owner = owner
        """The capability being set up (whose setup or finish this is)."""
        self.phase: Literal["setup", "finish", "closed"] = "setup"
        """Which call the capability is in; contributions are refused once
        ``closed``, and routes and commands once in ``finish``."""

    @property
    def settings(self) -> Settings:
        """The process's settings (every section included)."""
        return self.process.settings

    @property
    def server(self) -> AbstractTrioNeuroServer:
        """The Neuro server games connect to (the engine)."""
        return self.process.server

    @property
    def admin_token(self) -> str | None:
        """The control plane's bearer token, for admin routes of one's own.

        None when the process is reachable from this machine only (see
        :func:`~neuro_api.control.admin_check`, which applies it).
        """
        return self.process.token

    @property
    def manager(self) -> ServerManager:
        """The :class:`~neuro_api.manager.ServerManager` servers run through."""
        return self.process.manager

    def capability(self, kind: type[_C]) -> _C | None:
        """The capability of class ``kind`` (or a subclass) that was set up before.

        For a capability that uses another's public API: the voice
        capability finds the calls capability's
        :attr:`~neuro_api.calls.CallsCapability.service` this way. In
        :meth:`~Capability.setup`, only capabilities registered before this
        one are found (their setup has run; register yours after those it
        uses: ``[*default_capabilities(), Yours()]``); in
        :meth:`~Capability.finish` and later, any (every setup has run).
        Returns the first registered match, or None when there is none (not
        registered, or registered after this one). Whether it is on is its
        own business: a capability turned off by its settings is still set
        up, and says so (``CallsCapability.service`` is None with
        ``--no-calls``).
        """
        candidates = self.process.capabilities
        if self.phase == "setup":
            for index, candidate in enumerate(candidates):
                if candidate is self.owner:
                    candidates = candidates[:index]
                    break
        for candidate in candidates:
            if isinstance(candidate, kind):
                return candidate
        return None

    def section(self) -> Any:
        """The capability's own settings (its :attr:`Capability.settings`)."""
        kind = self.owner.settings
        if kind is None:
            raise TypeError(f"capability {self.owner.name!r} has no settings")
        return self.settings.section(kind)

    def _check_open(self, *, gathered: str | None = None) -> None:
        name = self.owner.name
        if self.phase == "closed":
            raise RuntimeError(
                f"capability {name!r}: contributions are only accepted in "
                "setup() and finish()"
            )
        if gathered is not None and self.phase == "finish":
            # Gathered by another capability's finish(), which may have run.
            raise RuntimeError(
                f"capability {name!r}: add {gathered} in setup(), not finish()"
            )

    # --- services --------------------------------------------------------------

    def add_service(
        self,
        name: str,
        run: ServiceRun,
        *,
        before: Iterable[str] = (),
        after: Iterable[str] = (),
        critical: bool = False,
        stop: StopHook | None = None,
        **options: Any,
    ) -> None:
        """Supervise ``run`` (``async def run(*, task_status)``) as ``name``.

        It starts after the services named in ``after`` are running and
        before those named in ``before`` start (a store loaded before
        ``games`` admits anyone); every service starts after
        ``server-manager``. ``critical=True``: its failure stops the
        process; otherwise it is restarted with backoff. ``stop`` asks it
        to stop gracefully (a drain); ``options`` are those of
        :meth:`~neuro_api.supervisor.Supervisor.add`. Unknown names are
        reported when the process runs.
        """
        self._check_open()
        for kind, names in (("before", before), ("after", after)):
            if isinstance(names, str):
                raise TypeError(f"{kind} of {name!r} must be a collection of names")
        self.process.add_service_spec(
            ServiceSpec(
                name,
                run,
                self.owner.name,
                tuple(before),
                tuple(after),
                critical,
                stop,
                dict(options),
            )
        )

    def add_http_server(
        self,
        name: str,
        app: ASGIFramework,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tunnel: bool = False,
        public_path: str = "",
        critical: bool = False,
        before: Iterable[str] = (),
        after: Iterable[str] = (),
    ) -> None:
        """Serve ``app`` (Quart-Trio, any ASGI app) on a port of its own.

        A supervised service ``name`` that serves it through the
        ServerManager (so it is listed, tunnelled with ``tunnel`` and
        drained on stop like the control plane); its status ``info`` is
        the :class:`~neuro_api.manager.ServerInfo` with its URLs, which are
        printed after the listening line (``neuro_api NAME on URL``).
        """
        process = self.process
        manager = process.manager
        grace = self.settings.shutdown_grace

        async def serve(*, task_status: trio.TaskStatus[ManagedServer]) -> None:
            def started(info: ManagedServer) -> None:
                task_status.started(info)
                if process.announced:  # started late: its URL was not shown
                    process.print_lines(server_lines(info))

            await manager.serve_http(
                name,
                app,
                host=host,
                port=port,
                tunnel=tunnel,
                public_path=public_path,
                graceful_timeout=grace,
                task_status=StatusCallback(started),
            )

        async def drain() -> None:
            if any(info.name == name for info in manager.list()):
                await manager.stop(name)

        self.add_service(
            name, serve, before=before, after=after, critical=critical, stop=drain
        )

    # --- the control plane, the console ----------------------------------------

    def add_routes(
        self,
        blueprint: Blueprint,
        *,
        prefix: str | None = None,
        auth: RouteAuth = "token",
    ) -> None:
        """Mount ``blueprint`` on the control plane under ``prefix``.

        ``prefix`` defaults to ``/<capability name>``; ``auth`` is
        ``"token"`` (the control plane's token), ``"public"`` or a check of
        the capability's own (see :data:`~neuro_api.control.RouteAuth`).
        The routes appear in the OpenAPI document; one that collides with
        another route makes the process refuse to start
        (:class:`~neuro_api.control.RouteCollision`).
        """
        self._check_open(gathered="routes")
        self.process.add_routes(
            Routes(
                blueprint,
                prefix if prefix is not None else f"/{self.owner.name}",
                auth,
                self.owner.name,
            )
        )

    def add_credential(self, check: Credential) -> None:
        """Let ``check`` admit requests to the control plane's token routes.

        ``check`` (a :data:`~neuro_api.control.Credential`) is asked, in
        registration order, about a request that has no valid
        ``Authorization: Bearer`` header when a token is configured: True
        admits it, False leaves it to the next credential and finally to
        the 401, an :class:`~neuro_api.control.ApiError` refuses it with
        that error. It applies to every route whose auth is ``"token"`` (the
        control plane's own and capabilities'), not to ``"public"`` routes
        or routes with a check of their own, and never to a token in the
        URL (refused first). Without a token it is not asked. The
        dashboard's login session is one. A credential is a way in to
        everything the token opens: refuse what a web page could forge
        (check ``Origin`` and a CSRF token on unsafe methods).
        """
        self._check_open(gathered="credentials")
        self.process.add_credential(check)

    def add_command(
        self, name: str, usage: str, help: str, handler: CommandHandler
    ) -> None:
        """Add a console command, listed in ``help`` (see :class:`ConsoleCommand`).

        ``handler(console, args, data)`` prints with ``console.say``.
        Commands exist only when the console is on (``--console``).
        """
        self._check_open(gathered="console commands")
        self.process.add_command(ConsoleCommand(name, usage, help, handler))

    def add_health(self, section: HealthSection) -> None:
        """Show ``section()`` in ``/health`` under the capability's name."""
        self._check_open()
        self.process.add_health(self.owner.name, section)

    def add_stats(self, section: StatsSection) -> None:
        """Show ``section()`` in ``/stats`` under the capability's name."""
        self._check_open()
        self.process.add_stats(self.owner.name, section)

    # --- the Neuro server's hooks ----------------------------------------------

    def add_admission_check(self, check: AdmissionCheck) -> None:
        """Decide on each game's first ``startup``.

        See :meth:`~neuro_api.server.AbstractTrioNeuroServer.add_admission_check`.
        """
        self._check_open()
        self.server.add_admission_check(check)

    def add_force_gate(self, name: str | None = None) -> ForceGate:
        """A :class:`~neuro_api.server.ForceGate` of this capability, in use."""
        self._check_open()
        return self.server.add_force_gate(ForceGate(name or self.owner.name))

    def on_connection_event(
        self, listener: Callable[[ConnectionEvent], object]
    ) -> Callable[[], None]:
        """Call ``listener`` with every game connection's events."""
        self._check_open()
        return self.server.connection_events.subscribe(listener)


def worst(statuses: Iterable[str]) -> Health:
    """The worst of ``statuses`` (unknown ones count as degraded)."""
    level = max((_SEVERITY.get(s, 1) for s in statuses), default=0)
    return _LEVELS[level]
