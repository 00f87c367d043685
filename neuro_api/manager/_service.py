"""One managed server's lifetime: start protocol, start errors, crash containment."""

from __future__ import annotations

import abc
import logging
from typing import ClassVar, TypeVar

import trio

from neuro_api._shared import StatusCallback
from neuro_api._shared import leaves as _leaves
from neuro_api.manager._errors import ServerBindError, ServerStartError
from neuro_api.manager._info import ServerInfo, ServerKind, host_port

__all__ = ["Service", "StatusCallback", "run_service"]

LOGGER = logging.getLogger("neuro_api.manager")

T = TypeVar("T")


class Service(abc.ABC):
    """A server the manager runs: how to serve it and how to drain it."""

    kind: ClassVar[ServerKind]

    def __init__(self, name: str, *, host: str, port: int, graceful_timeout: float):
        self.name = name
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self.cancel_scope = trio.CancelScope()
        self.done = trio.Event()
        self.info: ServerInfo | None = None
        self.tunnel_url: str | None = None
        self.stopping = False
        self.error: Exception | None = None
        """What ended the server after it started, if it crashed."""

    @abc.abstractmethod
    async def serve(self, *, task_status: trio.TaskStatus[str]) -> None:
        """Serve until drained or cancelled; ``started(local_url)`` once listening."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Stop accepting, let in-flight work finish, return when :attr:`done`.

        The caller bounds this with a deadline and then cancels
        :attr:`cancel_scope`.
        """

    def startup_failure(self) -> str | None:
        """Why the framework refused to start, if it said so."""
        return None


async def run_service(
    service: Service, *, task_status: trio.TaskStatus[str], contain: bool = True
) -> None:
    """Run ``service.serve`` inside ``service.cancel_scope``; set ``done`` at the end.

    ``started(local_url)`` is forwarded. A failure before that raises
    :class:`ServerBindError` (an address problem) or :class:`ServerStartError`
    (anything else, cause attached) out of ``nursery.start``. A failure after
    it is logged and ends only this server, never the manager's nursery;
    with ``contain=False`` it is raised instead (the server runs in its
    owner's task, which must learn of it). Cancellation propagates.
    """
    started = False

    def on_started(local_url: str) -> None:
        nonlocal started
        started = True
        task_status.started(local_url)

    try:
        with service.cancel_scope:
            await service.serve(task_status=StatusCallback(on_started))
    except Exception as exc:
        if not started:
            raise start_error(service, exc) from exc
        service.error = exc
        if not contain:
            raise
        LOGGER.error("%s server %r crashed", service.kind, service.name, exc_info=exc)
    finally:
        service.done.set()


def start_error(service: Service, exc: Exception) -> ServerStartError:
    """Translate what a server raised before it started into one clear error.

    Hypercorn nests the real error two or three ExceptionGroups deep; the
    leaves say what happened.
    """
    kind, name = service.kind, service.name
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, OSError):
            address = host_port(service.host, service.port)
            reason = leaf.strerror or str(leaf)
            return ServerBindError(
                leaf.errno,
                f"cannot bind {kind} server {name!r} to {address}: {reason}",
                name=name,
                host=service.host,
                port=service.port,
            )
    failure = service.startup_failure()
    if failure is not None:
        reason = f"lifespan startup failed: {failure}"
    else:
        reason = "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves)
    return ServerStartError(
        f"{kind} server {name!r} failed to start: {reason}", name=name
    )
