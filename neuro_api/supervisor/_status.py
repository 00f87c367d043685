"""What the supervisor reports about each service."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["Health", "ServiceState", "ServiceStatus"]

Health = Literal["healthy", "degraded", "unhealthy"]
"""``healthy``: every service runs; ``degraded``: an optional one does not;
``unhealthy``: a critical one does not, or the supervisor is stopping."""


class ServiceState(enum.Enum):
    """Where a service is in its life.

    ``starting``: being started, or waiting for its dependencies to run;
    ``running``: it reported ready; ``backoff``: it failed and waits to be
    restarted; ``failed``: it failed for good (restarts exhausted, or a
    critical service); ``stopping``: being stopped; ``stopped``: not started
    yet, or stopped.
    """

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    # An object without a data form (a service reporting itself) says
    # nothing useful as a repr: show nothing rather than a memory address.
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceStatus:
    """A snapshot of one service, taken by :meth:`Supervisor.status`."""

    name: str
    state: ServiceState
    critical: bool
    restarts: int
    """Restarts after failures since the supervisor began (never reset)."""
    last_error: str | None
    """Why it last failed (:func:`describe_exception`), or None."""
    started_at: float | None
    """``trio.current_time()`` when it last reported ready, or None."""
    uptime: float
    """Seconds since ``started_at`` while running, else 0."""
    info: Any
    """What its most recent ``task_status.started()`` reported."""
    retry_in: float | None = None
    """Seconds until its next start while in ``backoff``, else None."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``/health``.

        ``info`` is shown as JSON when it is data (dataclasses included) and
        as ``None`` otherwise.
        """
        return {
            "name": self.name,
            "state": self.state.value,
            "critical": self.critical,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "uptime": self.uptime,
            "retry_in": self.retry_in,
            "info": _jsonable(self.info),
        }
