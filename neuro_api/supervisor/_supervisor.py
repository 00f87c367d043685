"""The supervisor: start services in dependency order, restart, stop in reverse."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol, final

import trio

from neuro_api._shared import exponential_delay
from neuro_api.supervisor._errors import CriticalServiceError, describe_exception
from neuro_api.supervisor._graph import start_order
from neuro_api.supervisor._status import Health, ServiceState, ServiceStatus

__all__ = ["ServiceHandle", "ServiceRun", "StopHook", "Supervisor"]

LOGGER: Final = logging.getLogger("neuro_api.supervisor")

STARTING: Final = ServiceState.STARTING
RUNNING: Final = ServiceState.RUNNING
BACKOFF: Final = ServiceState.BACKOFF
FAILED: Final = ServiceState.FAILED
STOPPING: Final = ServiceState.STOPPING
STOPPED: Final = ServiceState.STOPPED


class ServiceRun(Protocol):
    """A service: ``async def run(*, task_status=trio.TASK_STATUS_IGNORED)``.

    It calls ``task_status.started(info)`` once, when it is ready, and runs
    until cancelled (or until its stop hook asks it to return).
    """

    def __call__(self, *, task_status: trio.TaskStatus[Any]) -> Awaitable[object]:
        """Run the service."""


StopHook = Callable[[], object]
"""Asks a service to stop gracefully; may be sync or return an awaitable."""


class _Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    FINISHED = "finished"


@dataclasses.dataclass(eq=False, slots=True)
class _Service:
    name: str
    run: ServiceRun
    critical: bool
    depends_on: tuple[str, ...]
    restart: bool
    stop: StopHook | None
    initial_backoff: float
    max_backoff: float
    max_restarts: int | None
    state: ServiceState = STOPPED
    restarts: int = 0
    failures: int = 0
    """Consecutive failures since it last ran stably."""
    last_error: str | None = None
    started_at: float | None = None
    retry_at: float | None = None
    """``trio.current_time()`` of its next start while in backoff."""
    info: Any = None
    stop_requested: bool = False
    scope: trio.CancelScope = dataclasses.field(default_factory=trio.CancelScope)
    done: trio.Event | None = None
    """Set when its supervising task ended; None while it has none."""


def backoff_delay(
    failures: int, initial: float, maximum: float, jitter: float, rand: float
) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure.

    ``initial * 2 ** (failures - 1)`` capped at ``maximum``, then reduced by
    up to ``jitter`` (a fraction) using ``rand`` in [0, 1), so that services
    failing together do not restart in lockstep.
    """
    return exponential_delay(
        min(failures - 1, 64),
        initial=initial,
        maximum=maximum,
        jitter=jitter,
        rand=rand,
    )


@final
class ServiceHandle:
    """What :meth:`Supervisor.add` returns: the service's name and live status."""

    __slots__ = ("_supervisor", "name")

    def __init__(self, supervisor: Supervisor, name: str) -> None:
        self._supervisor = supervisor
        self.name = name

    def status(self) -> ServiceStatus:
        """The service's current :class:`ServiceStatus`."""
        return self._supervisor._snapshot(self._supervisor._services[self.name])

    def __repr__(self) -> str:
        return f"<ServiceHandle {self.name!r}>"


@final
class Supervisor:
    """Runs services in one nursery: ordered start, restarts, ordered stop.

    Add services with :meth:`add`, then ``await nursery.start(supervisor.run)``
    (or ``trio.run(supervisor.run)``). ``grace`` bounds a shutdown caused by
    cancelling :meth:`run` or by a critical failure; an optional service that
    ran ``stable_after`` seconds before failing restarts with its initial
    backoff again; ``jitter`` is the fraction by which a backoff may be
    shortened at random (``rng`` supplies the randomness, for tests).
    """

    def __init__(
        self,
        *,
        grace: float = 10.0,
        stable_after: float = 60.0,
        jitter: float = 0.25,
        rng: random.Random | None = None,
    ) -> None:
        if grace < 0 or stable_after < 0 or not 0 <= jitter <= 1:
            msg = "grace and stable_after must be >= 0, jitter between 0 and 1"
            raise ValueError(msg)
        self._grace = grace
        self._stable_after = stable_after
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._services: dict[str, _Service] = {}
        self._phase = _Phase.NEW
        self._stopping = False
        self._deadline = math.inf
        self._fatal: CriticalServiceError | None = None
        self._starting: _Service | None = None
        self._grace_scope: trio.CancelScope | None = None
        self._startup_ok = False
        self._changed = trio.Event()
        """Replaced by a new event on every state change, after being set."""
        self._stop_requested = trio.Event()
        self._startup_done = trio.Event()
        self._finished = trio.Event()

    def add(
        self,
        name: str,
        run: ServiceRun,
        *,
        critical: bool = False,
        depends_on: Iterable[str] = (),
        restart: bool = True,
        stop: StopHook | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_restarts: int | None = None,
    ) -> ServiceHandle:
        """Add a service to be started by :meth:`run`.

        ``depends_on`` names services that must be running before this one
        starts (they may be added later; unknown names and cycles are
        reported by :meth:`run`). ``stop`` is called first when the service
        is stopped; the service then has what is left of the grace period to
        return before it is cancelled.

        An optional service that fails (raises, or returns without being
        asked to stop) is restarted after ``initial_backoff`` seconds,
        doubling per failure in a row up to ``max_backoff`` (less a random
        jitter); a run of the supervisor's ``stable_after`` seconds resets
        both the backoff and the count. After ``max_restarts`` restarts in a
        row (None: no limit; ``restart=False``: none) it stays ``failed``. A
        critical service is never restarted: its failure stops them all.

        Raises ValueError for a duplicate name or a bad parameter, TypeError
        if ``depends_on`` is a string, RuntimeError once :meth:`run` began.
        """
        if self._phase is not _Phase.NEW:
            msg = f"cannot add service {name!r}: the supervisor already ran"
            raise RuntimeError(msg)
        if name in self._services:
            msg = f"duplicate service name {name!r}"
            raise ValueError(msg)
        if isinstance(depends_on, str):
            msg = f"depends_on of {name!r} must be a collection of names, not a str"
            raise TypeError(msg)
        if initial_backoff < 0 or max_backoff < initial_backoff:
            msg = f"service {name!r}: need 0 <= initial_backoff <= max_backoff"
            raise ValueError(msg)
        if max_restarts is not None and max_restarts < 0:
            msg = f"service {name!r}: max_restarts must be >= 0 or None"
            raise ValueError(msg)
        self._services[name] = _Service(
            name=name,
            run=run,
            critical=critical,
            depends_on=tuple(dict.fromkeys(depends_on)),
            restart=restart,
            stop=stop,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            max_restarts=max_restarts,
        )
        return ServiceHandle(self, name)

    def add_dependency(self, name: str, depends_on: str) -> None:
        """Make service ``name`` start after (and stop before) ``depends_on``.

        For ordering decided after :meth:`add` (a service that must run
        before another added earlier). Both may be added later; unknown
        names and cycles are reported by :meth:`run`. Raises KeyError for an
        unknown ``name`` and RuntimeError once :meth:`run` began.
        """
        if self._phase is not _Phase.NEW:
            msg = f"cannot order service {name!r}: the supervisor already ran"
            raise RuntimeError(msg)
        svc = self._services[name]
        if depends_on not in svc.depends_on:
            svc.depends_on = (*svc.depends_on, depends_on)

    def start_order(self) -> list[str]:
        """The names of the services, in the order :meth:`run` starts them.

        Raises ValueError naming an unknown dependency or a cycle, as
        :meth:`run` would (check the services before running them).
        """
        graph = {name: svc.depends_on for name, svc in self._services.items()}
        return start_order(graph)

    # -- queries -------------------------------------------------------------

    def _snapshot(self, svc: _Service) -> ServiceStatus:
        uptime = 0.0
        if svc.state is RUNNING and svc.started_at is not None:
            uptime = trio.current_time() - svc.started_at
        retry_in = None
        if svc.state is BACKOFF and svc.retry_at is not None:
            retry_in = max(0.0, svc.retry_at - trio.current_time())
        return ServiceStatus(
            name=svc.name,
            state=svc.state,
            critical=svc.critical,
            restarts=svc.restarts,
            last_error=svc.last_error,
            started_at=svc.started_at,
            uptime=uptime,
            info=svc.info,
            retry_in=retry_in,
        )

    def status(self) -> list[ServiceStatus]:
        """A snapshot of every service, in the order they were added."""
        return [self._snapshot(svc) for svc in self._services.values()]

    def health(self) -> Health:
        """How the services are doing, as ``/health`` reports it.

        ``unhealthy`` if stopping or a critical service is not running,
        ``degraded`` if an optional one is not, else ``healthy``.
        """
        down = [svc for svc in self._services.values() if svc.state is not RUNNING]
        if self._stopping or any(svc.critical for svc in down):
            return "unhealthy"
        return "degraded" if down else "healthy"

    def health_report(self) -> dict[str, Any]:
        """``{"status": health(), "services": [...]}``, JSON-ready for ``/health``."""
        return {
            "status": self.health(),
            "services": [status.as_dict() for status in self.status()],
        }

    # -- running -------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every service, supervise them, and stop them all at the end.

        Services start one at a time in dependency order (ties in the order
        they were added), each only after the previous one reported ready.
        ``task_status.started(self)`` is reported when that pass is over:
        every critical service is running and every optional one is running,
        in backoff, failed, or waiting for a dependency that is not running
        (such dependants start as soon as it runs). A critical service that
        waits for an optional dependency delays it.

        Returns normally after :meth:`shutdown`, without reporting started if
        that came before. Cancelling ``run`` shuts down like :meth:`shutdown`
        within the supervisor's ``grace``, then re-raises ``Cancelled``; if a
        shutdown was already under way, everything is cancelled at once.
        Raises :class:`CriticalServiceError` once everything is stopped if a
        critical service failed, ValueError for an unknown dependency or a
        cycle, RuntimeError if called twice. A service's own errors never
        escape: they are logged and shown in :meth:`status`.
        """
        if self._phase is not _Phase.NEW:
            msg = "Supervisor.run() can only be called once"
            raise RuntimeError(msg)
        order = [self._services[name] for name in self.start_order()]
        self._phase = _Phase.RUNNING
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._work, order)
            try:
                await self._startup_done.wait()
                if self._startup_ok:
                    task_status.started(self)
                await self._finished.wait()
            except trio.Cancelled:
                LOGGER.info("supervisor cancelled; stopping services")
                self._request_stop(self._grace)
                raise
        if self._fatal is not None:
            raise self._fatal

    async def shutdown(self, *, grace: float | None = None) -> None:
        """Stop every service in reverse start order and wait until done.

        Each service's stop hook is called first, and it gets what remains
        of ``grace`` seconds (default: the supervisor's) to return; then it
        is cancelled. Services without a hook, or not running, are cancelled
        right away. A second call (or cancelling :meth:`run` meanwhile)
        cancels everything at once. Cancelling the caller only stops the
        waiting. Does nothing if :meth:`run` is not running.
        """
        if self._phase is not _Phase.RUNNING:
            return
        self.request_shutdown(grace=grace)
        await self._finished.wait()

    def request_shutdown(self, *, grace: float | None = None) -> None:
        """Like :meth:`shutdown`, without waiting for the stop to end.

        For a task reading signals (``trio.open_signal_receiver``), and for
        code inside a service (which, awaiting :meth:`shutdown`, would wait
        for its own stop). Call it from Trio, not from a raw signal handler.
        """
        if self._phase is _Phase.RUNNING:
            self._request_stop(self._grace if grace is None else grace)

    def _request_stop(self, grace: float) -> None:
        if self._stopping:
            self._stop_now()
            return
        LOGGER.info("shutting down (grace %.1f s)", grace)
        self._stopping = True
        self._deadline = trio.current_time() + grace
        self._stop_requested.set()
        if self._starting is not None and self._starting.state is not RUNNING:
            # The start pass waits for this service: cancel it so the pass can
            # end and the ordered stop begin.
            self._starting.stop_requested = True
            self._starting.scope.cancel()
        self._notify()

    def _stop_now(self) -> None:
        LOGGER.warning("stopping at once: cancelling every service")
        self._deadline = -math.inf
        if self._grace_scope is not None:
            self._grace_scope.cancel()
        for svc in self._services.values():
            svc.stop_requested = True
            svc.scope.cancel()

    async def _work(self, order: list[_Service]) -> None:
        # Shielded: cancelling run() must not hit every service at once, but
        # start the ordered stop below (run() asks for it when cancelled).
        with trio.CancelScope(shield=True):
            try:
                async with trio.open_nursery() as services:
                    for svc in order:
                        if self._stopping:
                            break
                        self._starting = svc
                        svc.done = trio.Event()
                        await services.start(self._supervise, svc)
                    self._starting = None
                    if not self._stopping:
                        self._log_started(order)
                        self._startup_ok = True
                        self._startup_done.set()
                    await self._stop_requested.wait()
                    for svc in reversed(order):
                        await self._stop_one(svc)
                LOGGER.info("all services stopped")
            finally:
                self._phase = _Phase.FINISHED
                self._startup_done.set()
                self._finished.set()

    def _log_started(self, order: list[_Service]) -> None:
        """Say how the start pass went: all started, or which are not and why."""
        down = [svc for svc in order if svc.state is not RUNNING]
        if not down:
            LOGGER.info("all %d services started", len(order))
            return
        LOGGER.warning(
            "%d of %d services started; %s",
            len(order) - len(down),
            len(order),
            "; ".join(self._why_down(svc) for svc in down),
        )

    def _why_down(self, svc: _Service) -> str:
        if svc.state is BACKOFF:
            return f"{svc.name} is retrying: {svc.last_error}"
        if svc.state is FAILED:
            return f"{svc.name} failed: {svc.last_error}"
        waiting = [
            name for name in svc.depends_on if self._services[name].state is not RUNNING
        ]
        if svc.state is STARTING and waiting:
            return f"{svc.name} waits for {', '.join(waiting)}"
        return f"{svc.name} is {svc.state.value}"

    async def _stop_one(self, svc: _Service) -> None:
        svc.stop_requested = True
        if svc.done is not None and not svc.done.is_set():
            graceful = svc.state is RUNNING and svc.stop is not None
            self._set_state(svc, STOPPING)
            if graceful:
                with trio.CancelScope(deadline=self._deadline) as self._grace_scope:
                    if await self._call_stop_hook(svc):
                        await svc.done.wait()
                self._grace_scope = None
                if not svc.done.is_set():
                    LOGGER.warning("service %r did not stop; cancelling it", svc.name)
            svc.scope.cancel()
            await svc.done.wait()
        self._set_state(svc, STOPPED)

    async def _call_stop_hook(self, svc: _Service) -> bool:
        """Ask ``svc`` to stop; False if the hook failed (no use waiting)."""
        assert svc.stop is not None
        try:
            result = svc.stop()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            LOGGER.warning(
                "stop hook of service %r failed: %s", svc.name, describe_exception(exc)
            )
            return False
        return True

    # -- one service ---------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _set_state(self, svc: _Service, state: ServiceState) -> None:
        if svc.stop_requested and state in (STARTING, RUNNING, BACKOFF):
            return
        if state is not svc.state:
            LOGGER.debug("service %r: %s -> %s", svc.name, svc.state.value, state.value)
            svc.state = state
            self._notify()

    async def _supervise(
        self, svc: _Service, *, task_status: trio.TaskStatus[None]
    ) -> None:
        reported = False

        def report() -> None:
            nonlocal reported
            if not reported:
                reported = True
                task_status.started()

        try:
            with svc.scope:
                await self._keep_running(svc, report)
        finally:
            assert svc.done is not None
            svc.done.set()
            report()

    async def _wait_for_dependencies(
        self, svc: _Service, report: Callable[[], None]
    ) -> _Service | None:
        """Wait until all dependencies run; return one that failed for good."""
        while True:
            deps = [self._services[name] for name in svc.depends_on]
            if failed := next((dep for dep in deps if dep.state is FAILED), None):
                return failed
            if all(dep.state is RUNNING for dep in deps):
                return None
            if svc.state is not STARTING:
                waiting = [dep.name for dep in deps if dep.state is not RUNNING]
                LOGGER.info("service %r waits for %s", svc.name, ", ".join(waiting))
                self._set_state(svc, STARTING)
            if not svc.critical:
                report()
            await self._changed.wait()

    def _told_to_stop(self, svc: _Service) -> bool:
        # A method, not an inline test: mypy would narrow the flags to False
        # across awaits that can change them.
        return self._stopping or svc.stop_requested

    async def _attempt(
        self, svc: _Service, report: Callable[[], None]
    ) -> tuple[float | None, BaseException | None, str]:
        """Run ``svc`` once: (when it got ready or None, its error, why it ended)."""
        began: float | None = None
        try:
            async with trio.open_nursery() as attempt:
                svc.info = await attempt.start(svc.run)
                began = svc.started_at = trio.current_time()
                if svc.failures:
                    # Repeated failures were logged quietly: say it is over.
                    LOGGER.info(
                        "service %r running (after %d failed attempts)",
                        svc.name,
                        svc.failures,
                    )
                else:
                    LOGGER.info("service %r running", svc.name)
                self._set_state(svc, RUNNING)
                report()
        except Exception as exc:
            return began, exc, describe_exception(exc)
        except BaseExceptionGroup as group:
            # Cancelled by us, and something failed while it unwound.
            _, rest = group.split(trio.Cancelled)
            if rest is None or not svc.scope.cancel_called:
                raise
            if rest.split(Exception)[1] is not None:  # e.g. KeyboardInterrupt
                raise
            return began, rest, describe_exception(rest)
        return began, None, "returned without being asked to stop"

    async def _keep_running(self, svc: _Service, report: Callable[[], None]) -> None:
        while not self._told_to_stop(svc):
            if failed := await self._wait_for_dependencies(svc, report):
                reason = f"dependency {failed.name!r} failed: {failed.last_error}"
                self._failed(svc, reason, None, report)
                return
            if self._told_to_stop(svc):
                return
            if svc.failures:
                svc.restarts += 1
            self._set_state(svc, STARTING)
            began, error, reason = await self._attempt(svc, report)
            if self._told_to_stop(svc):
                if error is not None:
                    LOGGER.warning("service %r failed stopping: %s", svc.name, reason)
                return
            if began is not None and trio.current_time() - began >= self._stable_after:
                svc.failures = 0
            # The same failure again and again (a port in use) is said once.
            repeated = svc.failures > 0 and reason == svc.last_error
            svc.last_error = reason
            svc.failures += 1
            if (
                svc.critical
                or not svc.restart
                or (svc.max_restarts is not None and svc.failures > svc.max_restarts)
            ):
                self._failed(svc, reason, error, report)
                return
            delay = backoff_delay(
                svc.failures,
                svc.initial_backoff,
                svc.max_backoff,
                self._jitter,
                self._rng.random(),
            )
            if repeated:
                LOGGER.debug(
                    "service %r failed again: %s; restarting in %.2f s",
                    svc.name,
                    reason,
                    delay,
                )
            else:
                LOGGER.warning(
                    "service %r failed: %s; restarting in %.2f s (the same failure "
                    "again is logged at debug level)",
                    svc.name,
                    reason,
                    delay,
                )
            svc.retry_at = trio.current_time() + delay
            self._set_state(svc, BACKOFF)
            report()
            await trio.sleep(delay)
            svc.retry_at = None

    def _failed(
        self,
        svc: _Service,
        reason: str,
        error: BaseException | None,
        report: Callable[[], None],
    ) -> None:
        """Mark ``svc`` failed for good; stop everything if it is critical."""
        svc.last_error = reason
        self._set_state(svc, FAILED)
        report()
        if not svc.critical:
            LOGGER.error("service %r failed for good: %s", svc.name, reason)
            return
        LOGGER.error("critical service %r failed: %s", svc.name, reason)
        if self._fatal is None:
            self._fatal = CriticalServiceError(svc.name, reason)
            self._fatal.__cause__ = error
        if not self._stopping:
            self._request_stop(self._grace)
