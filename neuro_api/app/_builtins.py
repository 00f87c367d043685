"""The built-in capabilities: the games' server, the control plane, the console.

They plug in exactly as any other capability does (see
:mod:`neuro_api.capability`): services, routes, commands.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, TextIO, cast

import trio
from quart_trio import QuartTrio

from neuro_api._shared import StatusCallback
from neuro_api.calls import CallsCapability
from neuro_api.capability import Capability, Setup
from neuro_api.control import create_app
from neuro_api.dashboard import DashboardCapability
from neuro_api.manager import ServerBindError
from neuro_api.manager import ServerInfo as ManagedServer
from neuro_api.realtime import RealtimeCapability
from neuro_api.server import Console, ConsoleInteractiveNeuroServer
from neuro_api.status import StatusCapability
from neuro_api.supervisor import ServiceError
from neuro_api.voice import VoiceCapability

if TYPE_CHECKING:
    from neuro_api.app._process import NeuroProcess

__all__ = [
    "CONTROL_RETRY",
    "ConsoleCapability",
    "ControlPlaneCapability",
    "GamesCapability",
    "default_capabilities",
    "listen_failure",
]

GAMES: Final = "games"
CONTROL: Final = "control"
CONTROL_RETRY: Final = 5.0
"""Longest wait between two starts of the control plane: trying to bind
costs little, and a port freed should be taken soon."""


def _process_of(app: Setup) -> NeuroProcess:
    """The process of the built-ins: always a NeuroProcess (they are its own)."""
    return cast("NeuroProcess", app.process)


def listen_failure(error: ServerBindError) -> str:
    """``cannot listen on HOST:PORT: REASON``, the reason in the OS's words."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"cannot listen on {error.host}:{error.port}: {reason}"


@contextlib.contextmanager
def plain_bind_errors() -> Iterator[None]:
    """Report a server that cannot bind as one plain sentence (logs, /health)."""
    try:
        yield
    except ServerBindError as exc:
        raise ServiceError(listen_failure(exc)) from exc


class GamesCapability(Capability):
    """The games' WebSocket server (critical) and the engine's own work.

    Services: ``games`` serves :meth:`handle_websocket_request` through the
    ServerManager in its own task (a crash surfaces there; stopping it is
    the drain: every game is closed with 1001), with the server's upkeep
    beside it; ``engine`` runs the engine's ``background()`` once games can
    connect.
    """

    name = "games"

    def setup(self, app: Setup) -> None:
        """Add the ``games`` and ``engine`` services."""
        process = _process_of(app)
        app.add_service(
            GAMES,
            lambda *, task_status: self._serve(process, task_status=task_status),
            critical=True,
            stop=lambda: _stop(process, GAMES),
        )
        app.add_service(
            "engine",
            lambda *, task_status: _run_engine(process, task_status=task_status),
            after=(GAMES,),
        )

    async def _serve(
        self, process: NeuroProcess, *, task_status: trio.TaskStatus[ManagedServer]
    ) -> None:
        server, settings = process.server, process.settings
        async with trio.open_nursery() as nursery:
            # Memory given back after waves of games leaving; log summaries.
            await nursery.start(server.upkeep)
            with plain_bind_errors():
                await process.manager.serve_websocket(
                    GAMES,
                    server.handle_websocket_request,
                    host=settings.host,
                    port=settings.port,
                    ssl_context=process.ssl_context,
                    tunnel=settings.tunnel,
                    graceful_timeout=settings.shutdown_grace,
                    task_status=task_status,
                    **server.serve_options(),
                )
            nursery.cancel_scope.cancel()


async def _run_engine(
    process: NeuroProcess, *, task_status: trio.TaskStatus[None]
) -> None:
    task_status.started()
    await process.server.background()
    # The console's input may end while games are still served.
    await trio.sleep_forever()


async def _stop(process: NeuroProcess, name: str) -> None:
    """Drain server ``name`` if it runs (its service then returns)."""
    if any(info.name == name for info in process.manager.list()):
        await process.manager.stop(name)


class ControlPlaneCapability(Capability):
    """The HTTP control plane (``--http``), with every capability's routes.

    Its app is built once every capability is set up (:meth:`finish`), so
    a route that collides with another stops the process before it starts.
    The ``control-plane`` service is optional and retried at least every
    5 s (its port may be busy); once it starts late, its URL is printed.
    """

    name = "control"

    def __init__(self) -> None:
        self.app: QuartTrio | None = None

    def setup(self, app: Setup) -> None:
        """Add the ``control-plane`` service (its app is built in :meth:`finish`)."""
        process = _process_of(app)
        if not app.settings.http:
            return
        app.add_service(
            "control-plane",
            lambda *, task_status: self._serve(process, task_status=task_status),
            stop=lambda: self._stop(process),
            max_backoff=CONTROL_RETRY,
        )

    def finish(self, app: Setup) -> None:
        """Build the app with every capability's routes (collisions raise)."""
        process = _process_of(app)
        if not app.settings.http:
            return
        self.app = create_app(
            process.server,
            token=process.token,
            health=process.health_report,
            settings=process.shown_settings,
            stats=process.stats_sections,
            routes=process.routes,
            credentials=process.credentials,
        )

    async def _stop(self, process: NeuroProcess) -> None:
        # Live event streams never end on their own: end them first, so the
        # drain waits only for real requests.
        process.server.events.end_subscriptions()
        await _stop(process, CONTROL)

    async def _serve(
        self, process: NeuroProcess, *, task_status: trio.TaskStatus[ManagedServer]
    ) -> None:
        assert self.app is not None
        settings = process.settings

        def started(info: ManagedServer) -> None:
            task_status.started(info)
            if process.announced:
                # Started late (its port was busy at first, or it was
                # restarted): its address, and the token it needs, were not
                # printed yet.
                process.print_lines(process.control_lines(info))

        with plain_bind_errors():
            await process.manager.serve_http(
                CONTROL,
                self.app,
                host=settings.http_host,
                port=settings.http_port,
                tunnel=settings.tunnel,
                graceful_timeout=settings.shutdown_grace,
                task_status=StatusCallback(started),
            )


class ConsoleCapability(Capability):
    """Console commands on stdin: the console engine's, or any engine's.

    On with ``--console`` (``settings.console``); by default only for the
    console engine, whose prompts read the same input. Every capability's
    commands are added to it (:meth:`finish`). ``input``, ``output`` and
    ``idle_prompt`` are for tests and embedding (default: stdin, stdout,
    and the prompt ``"neuro> "`` when stdin is a terminal).
    """

    name = "console"

    def __init__(
        self,
        *,
        input: trio.abc.ReceiveStream | None = None,
        output: TextIO | None = None,
        idle_prompt: str | None = None,
    ) -> None:
        self._input = input
        self._output = output
        self._idle_prompt = idle_prompt
        self.console: Console | None = None
        """The console, once set up (None when off)."""

    def finish(self, app: Setup) -> None:
        """Find or make the console; add every capability's commands."""
        server = app.server
        if isinstance(server, ConsoleInteractiveNeuroServer):
            console = server.console  # its prompts read the same input
            reads_stdin = self._input is None
        elif app.settings.console:
            console = Console(
                server, input=self._input, output=self._output, seed=app.settings.seed
            )
            reads_stdin = self._input is None
            app.add_service(
                "console",
                lambda *, task_status: _run_console(console, task_status=task_status),
                after=(GAMES,),
            )
        else:
            return
        self.console = console
        for command in _process_of(app).console_commands:
            console.add_command(command)
        prompt = self._idle_prompt
        if prompt is None and reads_stdin and _stdin_is_a_terminal():
            prompt = "neuro> "
        if prompt is not None:
            # Not before the listening line: scripts read stdout's first line.
            _process_of(app).when_announced(
                functools.partial(console.enable_idle_prompt, prompt)
            )


async def _run_console(console: Console, *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    await console.run()
    # Its input ended: the process goes on without a console.
    await trio.sleep_forever()


def _stdin_is_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False


def default_capabilities() -> list[Capability]:
    """Fresh instances of the built-in capabilities, in registration order.

    Add yours after them: ``[*default_capabilities(), MyCapability()]``.
    """
    return [
        ControlPlaneCapability(),
        GamesCapability(),
        StatusCapability(),
        CallsCapability(),
        RealtimeCapability(),
        VoiceCapability(),
        DashboardCapability(),
        ConsoleCapability(),
    ]
