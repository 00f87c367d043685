"""The process behind ``python -m neuro_api.server``: one supervised nursery.

Services, in start order (stopped in reverse):

1. ``server-manager`` (critical): the :class:`~neuro_api.manager.ServerManager`
   every server runs through, with its ngrok tunnels when ``--tunnel``;
2. ``control-plane`` (optional, restarted with backoff, at least every
   5 s): the HTTP control plane (:mod:`neuro_api.control`) served by
   Hypercorn; if it cannot start (its port is in use, say), the process
   says so where its URL would be, runs without it, and prints its URL once
   it starts;
3. ``games`` (critical): the games' WebSocket server; if it dies the process
   exits non-zero with the reason;
4. ``engine`` (optional): the engine's own background work (the console).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Final, TextIO

import trio

from neuro_api._shared import first_leaf
from neuro_api.control import create_app, new_token
from neuro_api.manager import (
    NgrokTunnels,
    ServerBindError,
    ServerManager,
    TunnelProvider,
)
from neuro_api.manager import ServerInfo as ManagedServer
from neuro_api.server._base import AbstractTrioNeuroServer
from neuro_api.settings import REDACTED, Settings
from neuro_api.supervisor import (
    CriticalServiceError,
    ServiceError,
    ServiceHandle,
    ServiceRun,
    ServiceState,
    StopHook,
    Supervisor,
)

__all__ = ["LISTENING", "NeuroProcess", "ProcessInfo"]

LOGGER: Final = logging.getLogger("neuro_api.server")
LISTENING: Final = "neuro_api server listening on"
"""Start of the one stdout line printed once games can connect (scripts
parse it)."""
_GAMES: Final = "games"
_CONTROL: Final = "control"
_CONTROL_RETRY: Final = 5.0
"""Longest wait between two starts of the control plane: trying to bind
costs little, and a port freed should be taken soon."""
_YOUNG_GC_THRESHOLD: Final = 5_000
"""Allocations between collections of the youngest generation with
``tune_gc`` (CPython's default is 700)."""


def listen_failure(error: ServerBindError) -> str:
    """``cannot listen on HOST:PORT: REASON``, the reason in the OS's words."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"cannot listen on {error.host}:{error.port}: {reason}"


@contextlib.contextmanager
def _plain_bind_errors() -> Iterator[None]:
    """Report a server that cannot bind as one plain sentence (logs, /health)."""
    try:
        yield
    except ServerBindError as exc:
        raise ServiceError(listen_failure(exc)) from exc


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What :meth:`NeuroProcess.run` reports once everything is up."""

    games: ManagedServer
    control: ManagedServer | None
    token: str | None
    """The control plane's bearer token (``None``: routes are open to local
    programs, which only happens when nothing is reachable from elsewhere)."""


class NeuroProcess:
    """Runs a Neuro server and its control plane under one :class:`Supervisor`.

    This is what ``python -m neuro_api.server`` runs; a library user runs it
    the same way with an engine of their own, and adds services with
    :meth:`add_service`::

        process = NeuroProcess(load_settings(), MyEngine())
        process.add_service("scoreboard", scoreboard.run)
        trio.run(process.run)

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
        ssl_context: ssl.SSLContext | None = None,
        tunnels: TunnelProvider | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.server = server
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
        self.supervisor.add("server-manager", self.manager.run, critical=True)
        if settings.http:
            self.supervisor.add(
                "control-plane",
                self._serve_control,
                depends_on=("server-manager",),
                stop=self._stop_control,
                max_backoff=_CONTROL_RETRY,
            )
        self.supervisor.add(
            "games",
            self._serve_games,
            critical=True,
            depends_on=("server-manager",),
            stop=self._stopper(_GAMES),
        )
        self.supervisor.add("engine", self._run_engine, depends_on=("games",))
        self._announced = False

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
        use and :class:`RuntimeError` once the process runs.
        """
        return self.supervisor.add(
            name, run, depends_on=depends_on, critical=critical, stop=stop, **options
        )

    def health_report(self) -> dict[str, Any]:
        """The supervisor's health, ``degraded`` too if a tunnel is missing.

        A tunnel that was asked for and failed leaves the local servers up
        (so no service is down), but the process is not what was asked for.
        """
        report = self.supervisor.health_report()
        missing = [
            f"{info.name}: {info.tunnel_error}"
            for info in self.manager.list()
            if info.tunnel_error
        ]
        if missing:
            report["tunnel_errors"] = missing
            if report["status"] == "healthy":
                report["status"] = "degraded"
        return report

    def _shown_settings(self) -> dict[str, Any]:
        """The settings as ``/config`` shows them, secrets redacted.

        A token this process generated (``exposed`` with no ``api_token``)
        is set as much as a configured one, so it shows as redacted too.
        """
        shown = self.settings.redacted()
        if self.token is not None:
            shown["api_token"] = REDACTED
        return shown

    # --- services ------------------------------------------------------------

    def _stopper(self, name: str) -> Callable[[], Awaitable[None]]:
        async def stop() -> None:
            if any(info.name == name for info in self.manager.list()):
                await self.manager.stop(name)

        return stop

    async def _stop_control(self) -> None:
        # Live event streams never end on their own: end them first, so the
        # drain waits only for real requests.
        self.server.events.end_subscriptions()
        await self._stopper(_CONTROL)()

    async def _hold(self, name: str) -> None:
        """Stay up while server ``name`` runs; stop it if cancelled."""
        try:
            await self.manager.wait(name)
        finally:
            with trio.CancelScope(shield=True):
                await self._stopper(name)()

    async def _serve_games(
        self, *, task_status: trio.TaskStatus[ManagedServer]
    ) -> None:
        with _plain_bind_errors():
            info = await self.manager.start_websocket(
                _GAMES,
                self.server.handle_websocket_request,
                host=self.settings.host,
                port=self.settings.port,
                ssl_context=self.ssl_context,
                tunnel=self.settings.tunnel,
                graceful_timeout=self.settings.shutdown_grace,
                **self.server.serve_options(),
            )
        task_status.started(info)
        async with trio.open_nursery() as nursery:
            # Memory given back after waves of games leaving; log summaries.
            await nursery.start(self.server.upkeep)
            await self._hold(_GAMES)
            nursery.cancel_scope.cancel()

    async def _serve_control(
        self, *, task_status: trio.TaskStatus[ManagedServer]
    ) -> None:
        app = create_app(
            self.server,
            token=self.token,
            health=self.health_report,
            settings=self._shown_settings,
        )
        with _plain_bind_errors():
            info = await self.manager.start_http(
                _CONTROL,
                app,
                host=self.settings.http_host,
                port=self.settings.http_port,
                tunnel=self.settings.tunnel,
                graceful_timeout=self.settings.shutdown_grace,
            )
        task_status.started(info)
        if self._announced:
            # Started late (its port was busy at first, or it was restarted):
            # its address, and the token it needs, were not printed yet.
            self._print(self._control_lines(info))
        await self._hold(_CONTROL)

    async def _run_engine(self, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await self.server.background()
        # The console's input may end while games are still served.
        await trio.sleep_forever()

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
        lines = [f"{LISTENING} {info.games.local_url}", *self._tunnel_lines(info.games)]
        if info.control is not None:
            lines += self._control_lines(info.control)
        elif self.settings.http:
            lines.append(self._control_missing_line())
        self._announced = True
        self._print(lines)

    def _control_lines(self, control: ManagedServer) -> list[str]:
        lines = [f"neuro_api control plane on {control.local_url}"]
        lines += self._tunnel_lines(control)
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
            f"every {_CONTROL_RETRY:g} s; its URL follows once it starts)"
        )

    @staticmethod
    def _tunnel_lines(server: ManagedServer) -> list[str]:
        if server.public_url:
            return [f"neuro_api public {server.name} URL: {server.public_url}"]
        if server.tunnel_error:
            return [f"neuro_api {server.name}: no tunnel: {server.tunnel_error}"]
        return []

    def _print(self, lines: Iterable[str]) -> None:
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
