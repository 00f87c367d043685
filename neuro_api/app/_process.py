"""The process behind ``python -m neuro_api.server``: one supervised nursery.

The composition root. Every part is a capability
(:class:`~neuro_api.capability.Capability`); the built-ins, in start order
(stopped in reverse):

1. ``server-manager`` (critical, the process's own): the
   :class:`~neuro_api.manager.ServerManager` every server runs through,
   with its ngrok tunnels when ``--tunnel``;
2. ``control-plane`` (optional, restarted with backoff, at least every
   5 s): the HTTP control plane (:mod:`neuro_api.control`) served by
   Hypercorn; if it cannot start (its port is in use, say), the process
   says so where its URL would be, runs without it, and prints its URL once
   it starts;
3. ``games`` (critical): the games' WebSocket server; if it dies the process
   exits non-zero with the reason;
4. ``engine`` (optional): the engine's own background work (the console
   engine's prompts); ``console`` (optional): the console of any other
   engine, with ``--console``.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final, TextIO

import trio

from neuro_api._redact import redact_data
from neuro_api._shared import first_leaf
from neuro_api.app._builtins import CONTROL_RETRY, default_capabilities
from neuro_api.capability import (
    Capability,
    HealthSection,
    ServiceSpec,
    Setup,
    StatsSection,
    worst,
)
from neuro_api.capability._announce import server_lines, tunnel_lines
from neuro_api.control import Credential, Routes, new_token
from neuro_api.manager import (
    NgrokTunnels,
    ServerManager,
    TunnelProvider,
)
from neuro_api.manager import ServerInfo as ManagedServer
from neuro_api.server import AbstractTrioNeuroServer, ConsoleCommand, ServerConfig
from neuro_api.settings import REDACTED, Settings
from neuro_api.supervisor import (
    CriticalServiceError,
    ServiceHandle,
    ServiceRun,
    ServiceState,
    StopHook,
    Supervisor,
    describe_exception,
)

__all__ = ["LISTENING", "NeuroProcess", "ProcessInfo"]

LOGGER: Final = logging.getLogger("neuro_api.server")
LISTENING: Final = "neuro_api server listening on"
"""Start of the one stdout line printed once games can connect (scripts
parse it)."""
_GAMES: Final = "games"
_YOUNG_GC_THRESHOLD: Final = 5_000
"""Allocations between collections of the youngest generation with
``tune_gc`` (CPython's default is 700)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What :meth:`NeuroProcess.run` reports once everything is up."""

    games: ManagedServer
    control: ManagedServer | None
    token: str | None
    """The control plane's bearer token (``None``: routes are open to local
    programs, which only happens when nothing is reachable from elsewhere)."""


class NeuroProcess:
    """Runs a Neuro server and its capabilities under one :class:`Supervisor`.

    This is what ``python -m neuro_api.server`` runs; a library user runs it
    the same way with an engine of their own, and adds capabilities (or
    single services with :meth:`add_service`)::

        settings = load_settings(sections=[RosterSettings])
        process = NeuroProcess(
            settings, MyEngine(), capabilities=[*default_capabilities(), Roster()]
        )
        trio.run(process.run)

    ``capabilities`` defaults to :func:`~neuro_api.app.default_capabilities`
    (control plane, games, client status, console); each one's ``setup``
    and ``finish`` run here, so a bad contribution (a route that collides,
    say) raises now. An engine made without a
    :class:`~neuro_api.server.ServerConfig` gets the one of ``settings``
    (``--result-timeout`` and the rest apply to it).

    ``tunnels`` defaults to ngrok (pyngrok) when ``settings.tunnel`` is set;
    tests pass a provider of their own. It is kept as :attr:`tunnels`, so a
    caller can check :meth:`~neuro_api.manager.NgrokTunnels.missing` before
    running (the command line does). ``out`` receives the few lines a
    person or a script needs (URLs, a generated token).
    """

    def __init__(
        self,
        settings: Settings,
        server: AbstractTrioNeuroServer,
        *,
        capabilities: Iterable[Capability] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        tunnels: TunnelProvider | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.server = server
        if not server.config_given:
            server.configure(ServerConfig.from_settings(settings))
        self.ssl_context = ssl_context
        if tunnels is None and settings.tunnel:
            tunnels = NgrokTunnels(
                ngrok_path=settings.ngrok_path, auth_token=settings.ngrok_authtoken
            )
        self.tunnels = tunnels
        self.manager = ServerManager(tunnels=tunnels)
        self.supervisor = Supervisor(grace=settings.shutdown_grace)
        self._token_generated = settings.api_token is None and settings.exposed
        self.token = new_token() if self._token_generated else settings.api_token
        self._token_shown = False
        self._out = out or sys.stdout
        self.announced = False
        """Whether the listening line was printed (later URLs print alone)."""
        self._when_announced: list[Callable[[], object]] = []
        self.routes: list[Routes] = []
        """Every capability's routes, for the control plane to mount."""
        self.credentials: list[Credential] = []
        """Credentials capabilities accept besides the control plane's token."""
        self.console_commands: list[ConsoleCommand] = []
        """Every capability's console commands, for the console to add."""
        self._health: dict[str, HealthSection] = {}
        self._stats: dict[str, StatsSection] = {}
        self._before: list[tuple[str, str]] = []
        self.supervisor.add("server-manager", self.manager.run, critical=True)
        self.capabilities: tuple[Capability, ...] = tuple(
            default_capabilities() if capabilities is None else capabilities
        )
        self._set_up()

    def _set_up(self) -> None:
        names = [capability.name for capability in self.capabilities]
        for name in names:
            if not name or names.count(name) > 1:
                raise ValueError(f"capability name {name!r}: empty or used twice")
        setups = [Setup(self, capability) for capability in self.capabilities]
        for capability, setup in zip(self.capabilities, setups, strict=True):
            capability.setup(setup)
        for setup in setups:
            setup.phase = "finish"
        for capability, setup in zip(self.capabilities, setups, strict=True):
            capability.finish(setup)
        for setup in setups:
            setup.phase = "closed"
        self._order_services()
        if _GAMES not in self.supervisor.start_order():
            raise ValueError(
                "no capability serves the games: include GamesCapability "
                "(see default_capabilities())"
            )

    def _order_services(self) -> None:
        """Apply every ``before=``; ValueError for unknown names or a cycle."""
        known = set(self.supervisor.start_order())  # unknown after=, cycles
        for later, earlier in self._before:
            if later not in known:
                raise ValueError(
                    f"service {earlier!r} is to start before {later!r}, "
                    "which no capability adds"
                )
            self.supervisor.add_dependency(later, earlier)
        self._before.clear()
        self.supervisor.start_order()  # a cycle made by before=

    # --- what capabilities contribute (through Setup) ------------------------

    def add_service_spec(self, spec: ServiceSpec) -> ServiceHandle:
        """Supervise a capability's service (see :meth:`Setup.add_service`)."""
        handle = self.supervisor.add(
            spec.name,
            spec.run,
            depends_on=("server-manager", *spec.after),
            critical=spec.critical,
            stop=spec.stop,
            **spec.options,
        )
        self._before += [(later, spec.name) for later in spec.before]
        return handle

    def add_routes(self, routes: Routes) -> None:
        """Have the control plane mount ``routes``."""
        self.routes.append(routes)

    def add_credential(self, check: Credential) -> None:
        """Have the control plane accept ``check`` besides its token."""
        self.credentials.append(check)

    def add_command(self, command: ConsoleCommand) -> None:
        """Have the console offer ``command``; ValueError for a taken name."""
        if any(c.name == command.name for c in self.console_commands):
            raise ValueError(f"console command {command.name!r} exists already")
        self.console_commands.append(command)

    def add_health(self, name: str, section: HealthSection) -> None:
        """Show ``section()`` in ``/health`` under ``name``."""
        if name in self._health:
            raise ValueError(f"a health section {name!r} exists already")
        self._health[name] = section

    def add_stats(self, name: str, section: StatsSection) -> None:
        """Show ``section()`` in ``/stats`` under ``name``."""
        if name in self._stats:
            raise ValueError(f"a stats section {name!r} exists already")
        self._stats[name] = section

    def add_service(
        self,
        name: str,
        run: ServiceRun,
        *,
        depends_on: Iterable[str] = (_GAMES,),
        critical: bool = False,
        stop: StopHook | None = None,
        **options: Any,
    ) -> ServiceHandle:
        """Supervise ``run`` in the process's nursery, as service ``name``.

        ``run`` is ``async def run(*, task_status)``: it calls
        ``task_status.started(info)`` once ready and runs until cancelled.
        By default it starts once games can connect, and is restarted with
        backoff if it fails; ``critical=True`` makes its failure stop the
        process instead. ``options`` are those of
        :meth:`~neuro_api.supervisor.Supervisor.add` (backoff, restarts).
        Call before :meth:`run`; raises :class:`ValueError` for a name in
        use and :class:`RuntimeError` once the process runs. A capability
        does this with :meth:`Setup.add_service`, which can also order it
        before another service.
        """
        if isinstance(depends_on, str):
            raise TypeError(f"depends_on of {name!r} must be a collection of names")
        spec = ServiceSpec(
            name, run, "", (), tuple(depends_on), critical, stop, dict(options)
        )
        return self.add_service_spec(spec)

    # --- what the control plane shows ------------------------------------------

    def health_report(self) -> dict[str, Any]:
        """The supervisor's health, with the tunnels and capabilities' sections.

        A tunnel that was asked for and failed leaves the local servers up
        (so no service is down), but the process is not what was asked for:
        ``degraded``, with ``tunnel_errors``. A capability's section that is
        not healthy makes the whole report at least as bad; one that fails
        to report counts as degraded. ``/health`` needs no token, so every
        secret is hidden in it (an error message may quote one) and a
        section must not hold game data.
        """
        report = self.supervisor.health_report()
        statuses = [report["status"]]
        missing = [
            f"{info.name}: {info.tunnel_error}"
            for info in self.manager.list()
            if info.tunnel_error
        ]
        if missing:
            report["tunnel_errors"] = missing
            statuses.append("degraded")
        sections = {name: _section(source) for name, source in self._health.items()}
        if sections:
            report["capabilities"] = sections
            statuses += [str(s.get("status", "healthy")) for s in sections.values()]
        report["status"] = worst(statuses)
        # Public (no token needed): an error message must not show a secret.
        redacted: dict[str, Any] = redact_data(report, self.secrets())
        return redacted

    def secrets(self) -> list[str]:
        """Every secret of the process: the settings' and the token."""
        return [*self.settings.secrets(), *([self.token] if self.token else [])]

    def stats_sections(self) -> dict[str, dict[str, Any]]:
        """The capabilities' ``/stats`` sections by name (secrets hidden)."""
        sections = {name: _section(source) for name, source in self._stats.items()}
        redacted: dict[str, dict[str, Any]] = redact_data(sections, self.secrets())
        return redacted

    def shown_settings(self) -> dict[str, Any]:
        """The settings as ``/config`` shows them, secrets redacted.

        A token this process generated (``exposed`` with no ``api_token``)
        is set as much as a configured one, so it shows as redacted too.
        """
        shown = self.settings.redacted()
        if self.token is not None:
            shown["api_token"] = REDACTED
        return shown

    # --- the process -----------------------------------------------------------

    async def run(
        self,
        *,
        handle_signals: bool = True,
        tune_gc: bool = False,
        task_status: trio.TaskStatus[ProcessInfo] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every service until SIGINT/SIGTERM, ``quit`` or cancellation.

        Reports :class:`ProcessInfo` once games can connect (after printing
        the listening line). The first signal drains gracefully within
        ``settings.shutdown_grace``; a second stops at once. Raises
        :class:`~neuro_api.supervisor.CriticalServiceError` if the games'
        server or the manager fails (at start: e.g. the port is in use).

        With ``tune_gc`` (what ``python -m neuro_api.server`` does), once
        everything is up, :func:`gc.freeze` moves every object made so far
        (modules, the web app, the services: some 70,000 objects, all living
        as long as the process) out of the garbage collector's reach. Full
        collections then only walk what serving games made, which cuts their
        pauses from about 40 ms to about 10 ms. The youngest generation is
        also collected every 5,000 allocations instead of 700: the server
        makes few reference cycles, and each collection walks the objects of
        every round trip in flight, so fewer collections are less work (under
        load, about a quarter of the time). Both are undone when this returns. A
        process that runs more than this server decides that for itself,
        hence off by default.
        """
        thresholds = gc.get_threshold()
        tuned = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._supervise, nursery.cancel_scope)
                if handle_signals:
                    # Before the listening line: a script may signal as soon
                    # as it reads it, and must get a drain, not a dead process.
                    await nursery.start(self._watch_signals)
                info = self._info()
                self._announce(info)
                if tune_gc:
                    tuned = True
                    gc.freeze()
                    gc.set_threshold(_YOUNG_GC_THRESHOLD, *thresholds[1:])
                task_status.started(info)
                nursery.start_soon(self._watch_stop_request)
        except BaseExceptionGroup as group:
            # Callers get the supervisor's one clear error, not our nursery's
            # wrapping of it (see the CLI's exit codes).
            critical, _ = group.split(CriticalServiceError)
            if critical is None:
                raise
            first = first_leaf(critical)
            raise first from first.__cause__
        finally:
            if tuned:
                gc.set_threshold(*thresholds)
                gc.unfreeze()

    async def _supervise(
        self, done: trio.CancelScope, *, task_status: trio.TaskStatus[Supervisor]
    ) -> None:
        try:
            await self.supervisor.run(task_status=task_status)
        finally:
            done.cancel()  # the supervisor stopped: so do the watchers

    def _info(self) -> ProcessInfo:
        infos = {s.name: s.info for s in self.supervisor.status()}
        games = infos["games"]
        control = infos.get("control-plane")
        assert isinstance(games, ManagedServer)
        return ProcessInfo(
            games=games,
            control=control if isinstance(control, ManagedServer) else None,
            token=self.token,
        )

    def _announce(self, info: ProcessInfo) -> None:
        lines = [f"{LISTENING} {info.games.local_url}", *tunnel_lines(info.games)]
        if info.control is not None:
            lines += self.control_lines(info.control)
        elif self.settings.http:
            lines.append(self._control_missing_line())
        for status in self.supervisor.status():
            if status.name not in {_GAMES, "control-plane"} and isinstance(
                status.info, ManagedServer
            ):
                lines += server_lines(status.info)
        self.announced = True
        self.print_lines(lines)
        for callback in self._when_announced:
            callback()

    def when_announced(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the listening line was printed.

        For what must not come before it on stdout (the console's idle
        prompt: scripts read the listening line first).
        """
        self._when_announced.append(callback)

    def control_lines(self, control: ManagedServer) -> list[str]:
        """The control plane's URL lines (and the generated token, once)."""
        lines = [f"neuro_api control plane on {control.local_url}"]
        lines += tunnel_lines(control)
        if self._token_generated and not self._token_shown:
            lines.append(f"neuro_api control plane token: {self.token}")
            self._token_shown = True
        return lines

    def _control_missing_line(self) -> str:
        status = next(s for s in self.supervisor.status() if s.name == "control-plane")
        why = status.last_error or status.state.value
        if status.state is ServiceState.FAILED:
            return f"neuro_api control plane not started: {why}"
        return (
            f"neuro_api control plane not started yet: {why} (retrying at least "
            f"every {CONTROL_RETRY:g} s; its URL follows once it starts)"
        )

    def print_lines(self, lines: Iterable[str]) -> None:
        """Print lines a person or a script needs (URLs, a token) to ``out``."""
        for line in lines:
            print(line, file=self._out, flush=True)

    async def _watch_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                LOGGER.info(
                    "%s received; stopping (again to stop at once)",
                    signal.Signals(signum).name,
                )
                self.supervisor.request_shutdown()

    async def _watch_stop_request(self) -> None:
        await self.server.wait_stop_requested()
        LOGGER.info("stop requested; stopping")
        self.supervisor.request_shutdown()


def _section(source: Callable[[], Any]) -> dict[str, Any]:
    """A capability's section; one that fails says so instead (degraded)."""
    try:
        return dict(source())
    except Exception as exc:
        LOGGER.debug("a capability's section failed", exc_info=True)
        return {"status": "degraded", "error": describe_exception(exc)}
