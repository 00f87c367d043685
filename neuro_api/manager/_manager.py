"""ServerManager: named HTTP and WebSocket servers and their tunnels, one nursery."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import Unpack
from urllib.parse import urlsplit

import trio
from hypercorn.typing import ASGIFramework
from trio_websocket import WebSocketConnection

from neuro_api._shared import raise_one
from neuro_api.manager._errors import ServerCrashedError, ServerStartError
from neuro_api.manager._http import HttpService
from neuro_api.manager._info import ServerInfo, public_url, upstream_url
from neuro_api.manager._service import Service, run_service
from neuro_api.manager._websocket import (
    WebSocketHandler,
    WebSocketOptions,
    WebSocketService,
)
from neuro_api.manager.tunnels import TunnelError, TunnelProvider

__all__ = ["ServerManager"]

LOGGER = logging.getLogger("neuro_api.manager")

# Past a server's graceful_timeout, how long its own shutdown (Quart's
# after_serving, websocket closing handshakes) may still take before it is
# cancelled.
_DRAIN_GRACE = 2.0


def _cancelled() -> bool:
    return trio.current_effective_deadline() == -math.inf


class ServerManager:
    """Every extra server the process runs, each with an optional public tunnel.

    Start it in a nursery (``manager = await nursery.start(manager.run)``),
    then start servers by name with :meth:`start_http` and
    :meth:`start_websocket`. Servers run in the manager's nursery: one that
    crashes after it started is logged and removed and cannot disturb the
    others.

    ``tunnels`` opens public URLs (e.g.
    :class:`~neuro_api.manager.tunnels.NgrokTunnels`); without it,
    ``tunnel=True`` is refused and nothing ngrok-related is touched. The
    manager owns the provider: it calls ``tunnels.kill()`` when it exits.
    ``tunnel_timeout`` bounds closing one tunnel and that final kill.
    """

    def __init__(
        self, *, tunnels: TunnelProvider | None = None, tunnel_timeout: float = 10.0
    ) -> None:
        self._tunnels = tunnels
        self._tunnel_timeout = tunnel_timeout
        self._nursery: trio.Nursery | None = None
        # Starting, running and stopping servers, in start order; a name is
        # taken from the moment its start begins until its server has ended.
        self._services: dict[str, Service] = {}

    async def run(
        self, *, task_status: trio.TaskStatus[ServerManager] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the servers until cancelled.

        ``started()`` returns the manager itself, ready for ``start_*``. On
        cancellation every server stops at once (use :meth:`stop_all` first
        for a graceful drain) and, in ``finally``, the tunnel provider is
        killed in a shielded call bounded by ``tunnel_timeout``, so no ngrok
        process outlives the manager. Raises :class:`RuntimeError` if it is
        already running.
        """
        if self._nursery is not None:
            raise RuntimeError("this ServerManager is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._services.clear()
            await self._kill_tunnels()

    async def start_http(
        self,
        name: str,
        app: ASGIFramework,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tunnel: bool = False,
        public_path: str = "",
        require_tunnel: bool = False,
        graceful_timeout: float = 5.0,
    ) -> ServerInfo:
        """Serve the ASGI ``app`` (Quart-Trio included) with Hypercorn as ``name``.

        Returns once the server listens and its tunnel (if any) is settled.
        Stopping gives in-flight requests ``graceful_timeout`` seconds, runs
        the app's shutdown, then cancels. See :meth:`start_websocket` for the
        tunnel options and the errors.
        """
        service = HttpService(
            name, app, host=host, port=port, graceful_timeout=graceful_timeout
        )
        return await self._start(
            service, tunnel or require_tunnel, public_path, require_tunnel
        )

    async def start_websocket(
        self,
        name: str,
        handler: WebSocketHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        tunnel: bool = False,
        public_path: str = "",
        require_tunnel: bool = False,
        graceful_timeout: float = 5.0,
        **serve_kwargs: Unpack[WebSocketOptions],
    ) -> ServerInfo:
        """Serve ``handler`` (called with each ``WebSocketRequest``) as ``name``.

        ``serve_kwargs`` go to ``trio_websocket.serve_websocket``. An
        exception escaping the handler is logged and closes only its own
        connection (code 1011). Accepted connections are listed by
        :meth:`connections`. Stopping closes them with 1001 and gives
        handlers ``graceful_timeout`` seconds to return, then cancels.

        ``tunnel=True`` opens a public URL to the port after the server
        listens: ``public_url`` is the ``wss://`` (``https://`` for HTTP)
        form with ``public_path`` appended. If it fails, the server keeps
        running locally and ``tunnel_error`` says why; with
        ``require_tunnel=True`` (which implies ``tunnel``) the server is
        stopped and :class:`~neuro_api.manager.tunnels.TunnelError` raised.

        Raises :class:`ValueError` for a name already in use (or a tunnel
        without a provider), :class:`~neuro_api.manager.ServerBindError` (an
        ``OSError``) when the address cannot be bound, and
        :class:`~neuro_api.manager.ServerStartError` when the server fails
        to start otherwise. After any error, nothing of this server is left:
        no task, no tunnel, no name. Cancelling the call stops it too.
        """
        service = WebSocketService(
            name,
            handler,
            host=host,
            port=port,
            ssl_context=ssl_context,
            graceful_timeout=graceful_timeout,
            options=serve_kwargs,
        )
        return await self._start(
            service, tunnel or require_tunnel, public_path, require_tunnel
        )

    async def serve_http(
        self,
        name: str,
        app: ASGIFramework,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tunnel: bool = False,
        public_path: str = "",
        require_tunnel: bool = False,
        graceful_timeout: float = 5.0,
        task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``app`` as :meth:`start_http` does, in the calling task.

        For a supervised service: ``task_status.started(info)`` once it
        listens (and its tunnel is settled); returns once :meth:`stop`
        drained it; a crash is raised here, where it happened, not logged
        and swallowed; cancelling the call stops the server at once. The
        server is listed, tunnelled and stopped by name like any other. The
        manager must be running (for its tunnels).
        """
        service = HttpService(
            name, app, host=host, port=port, graceful_timeout=graceful_timeout
        )
        await self._serve_here(
            service, tunnel or require_tunnel, public_path, require_tunnel, task_status
        )

    async def serve_websocket(
        self,
        name: str,
        handler: WebSocketHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        tunnel: bool = False,
        public_path: str = "",
        require_tunnel: bool = False,
        graceful_timeout: float = 5.0,
        task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
        **serve_kwargs: Unpack[WebSocketOptions],
    ) -> None:
        """Serve ``handler`` as :meth:`start_websocket` does, in the calling task.

        See :meth:`serve_http`: ready through ``task_status``, returns once
        stopped (:meth:`stop` closes its connections with 1001 first), and
        raises what crashed it.
        """
        service = WebSocketService(
            name,
            handler,
            host=host,
            port=port,
            ssl_context=ssl_context,
            graceful_timeout=graceful_timeout,
            options=serve_kwargs,
        )
        await self._serve_here(
            service, tunnel or require_tunnel, public_path, require_tunnel, task_status
        )

    def list(self) -> builtins.list[ServerInfo]:
        """The running servers, in start order (starting ones are not listed)."""
        return [service.info for service in self._services.values() if service.info]

    def connections(self, name: str) -> builtins.list[WebSocketConnection]:
        """The open connections of WebSocket server ``name``, oldest first.

        Raises :class:`KeyError` for an unknown name and :class:`ValueError`
        for an HTTP server.
        """
        service = self._running_service(name)
        if not isinstance(service, WebSocketService):
            raise ValueError(f"server {name!r} is an HTTP server, not a WebSocket one")
        return service.connections()

    async def stop(self, name: str) -> None:
        """Stop server ``name``: close its tunnel, drain it, cancel what is left.

        Returns when the server has ended. Raises :class:`KeyError` for an
        unknown name. If the call is cancelled, the server is cancelled at
        once.
        """
        await self._stop(self._running_service(name))

    async def wait(self, name: str) -> None:
        """Return when running server ``name`` ends.

        Returns normally when it was stopped (or the manager is stopping);
        raises :class:`ServerCrashedError`, with the crash as its cause, when
        it ended on its own. Raises :class:`KeyError` for an unknown name.
        A supervised service awaits this to notice its server dying.
        """
        service = self._running_service(name)
        await service.done.wait()
        if not service.stopping and not _cancelled():
            reason = service.error or "it returned"
            raise ServerCrashedError(
                f"{service.kind} server {name!r} ended on its own: {reason}", name=name
            ) from service.error

    async def stop_all(self) -> None:
        """Stop every running server concurrently, as :meth:`stop` does.

        The manager keeps running; servers still starting are not included.
        """
        async with trio.open_nursery() as nursery:
            for service in builtins.list(self._services.values()):
                if service.info is not None:
                    nursery.start_soon(self._stop, service)

    # Internals.

    def _running_service(self, name: str) -> Service:
        service = self._services.get(name)
        if service is None or service.info is None:
            raise KeyError(f"no running server named {name!r}")
        return service

    def _forget(self, service: Service) -> None:
        if self._services.get(service.name) is service:
            del self._services[service.name]

    def _register(self, service: Service, tunnel: bool) -> trio.Nursery:
        """Take the service's name; the manager's nursery (it must run)."""
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError(
                "the ServerManager is not running; start manager.run first"
            )
        name = service.name
        if name in self._services:
            raise ValueError(f"a server named {name!r} already exists")
        if tunnel and self._tunnels is None:
            raise ValueError(
                f"server {name!r} wants a tunnel, but no provider is configured"
            )
        self._services[name] = service
        return nursery

    async def _start(
        self, service: Service, tunnel: bool, public_path: str, require_tunnel: bool
    ) -> ServerInfo:
        nursery = self._register(service, tunnel)
        return await self._bring_up(
            nursery,
            functools.partial(self._run, service),
            service,
            tunnel,
            public_path,
            require_tunnel,
        )

    async def _bring_up(
        self,
        nursery: trio.Nursery,
        run: Callable[..., Awaitable[object]],
        service: Service,
        tunnel: bool,
        public_path: str,
        require_tunnel: bool,
    ) -> ServerInfo:
        """Start ``run`` in ``nursery``, open the tunnel; undo all on failure."""
        name = service.name
        started = False
        try:
            local_url = await nursery.start(run)
            started = True
            port = urlsplit(local_url).port or 0
            info = ServerInfo(
                name=name, kind=service.kind, local_url=local_url, port=port
            )
            if tunnel:
                info = await self._open_tunnel(
                    service, info, public_path, require_tunnel
                )
            if service.done.is_set():
                raise ServerStartError(
                    f"{service.kind} server {name!r} ended while starting", name=name
                )
        except BaseException:
            self._forget(service)
            graceful = started and not _cancelled()
            with trio.CancelScope(shield=True):
                if graceful:  # e.g. a required tunnel failed: let the app shut down
                    await self._stop(service)
                else:
                    await self._close_tunnel(service)
                    service.cancel_scope.cancel()
                    await service.done.wait()
            raise
        service.info = info
        return info

    async def _serve_here(
        self,
        service: Service,
        tunnel: bool,
        public_path: str,
        require_tunnel: bool,
        task_status: trio.TaskStatus[ServerInfo],
    ) -> None:
        self._register(service, tunnel)
        try:
            try:
                async with trio.open_nursery() as nursery:
                    run = functools.partial(run_service, service, contain=False)
                    info = await self._bring_up(
                        nursery, run, service, tunnel, public_path, require_tunnel
                    )
                    task_status.started(info)
            except BaseExceptionGroup as group:
                raise_one(group)  # our own nursery's: raise what ended it
        finally:
            self._forget(service)
            with trio.CancelScope(shield=True):
                await self._close_tunnel(service)

    async def _run(
        self, service: Service, *, task_status: trio.TaskStatus[str]
    ) -> None:
        try:
            await run_service(service, task_status=task_status)
        finally:
            self._forget(service)
            if (
                service.tunnel_url is not None
                and not service.stopping
                and not _cancelled()
            ):
                # It ended on its own (crashed): take its public URL down too.
                # Under cancellation the manager's final kill does that.
                await self._close_tunnel(service)

    async def _open_tunnel(
        self, service: Service, info: ServerInfo, public_path: str, require: bool
    ) -> ServerInfo:
        assert self._tunnels is not None  # checked in _start
        try:
            tunnel_url = await self._tunnels.open(
                upstream_url(info.local_url), name=service.name
            )
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if require:
                raise TunnelError(
                    f"{service.kind} server {service.name!r} requires a tunnel, "
                    f"which failed: {reason}"
                ) from exc
            LOGGER.warning(
                "%s server %r runs without its tunnel: %s",
                service.kind,
                service.name,
                reason,
            )
            return dataclasses.replace(info, tunnel_error=reason)
        service.tunnel_url = tunnel_url
        url = public_url(service.kind, tunnel_url, public_path)
        LOGGER.info("%s server %r is public at %s", service.kind, service.name, url)
        return dataclasses.replace(info, public_url=url)

    async def _close_tunnel(self, service: Service) -> None:
        url, service.tunnel_url = service.tunnel_url, None
        if url is None or self._tunnels is None:
            return
        with trio.move_on_after(self._tunnel_timeout) as scope:
            try:
                await self._tunnels.close(url)
            except Exception:
                LOGGER.warning(
                    "closing the tunnel of %r failed", service.name, exc_info=True
                )
        if scope.cancelled_caught:
            LOGGER.warning("closing the tunnel of %r timed out", service.name)

    async def _stop(self, service: Service) -> None:
        if not service.stopping:
            service.stopping = True
            try:
                await self._close_tunnel(service)
                with trio.move_on_after(service.graceful_timeout + _DRAIN_GRACE):
                    await service.drain()
            finally:
                # Past the deadline, or stop() itself was cancelled.
                service.cancel_scope.cancel()
        await service.done.wait()

    async def _kill_tunnels(self) -> None:
        if self._tunnels is None:
            return
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self._tunnel_timeout) as scope,
        ):
            try:
                await self._tunnels.kill()
            except Exception:
                LOGGER.exception("killing the tunnel provider failed")
        if scope.cancelled_caught:
            LOGGER.error("killing the tunnel provider timed out; it may outlive us")
