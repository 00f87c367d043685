"""Supervised services: the machinery every part of the server plugs into.

A *service* is ``async def run(*, task_status=trio.TASK_STATUS_IGNORED)``: it
calls ``task_status.started(info)`` once when it is ready (``info`` is what a
caller needs, such as bound URLs), runs until cancelled, and cleans up in
``finally``. A :class:`Supervisor` starts services in dependency order, each
after the previous one reported ready; restarts a crashed optional service
with exponential backoff; stops everything (in reverse order) and raises
:class:`CriticalServiceError` when a critical one fails; and stops them all
in reverse order on :meth:`Supervisor.shutdown` or when its ``run`` is
cancelled, asking each to stop gracefully first::

    supervisor = Supervisor()
    supervisor.add("store", store.run)
    supervisor.add("http", http.run, depends_on=["store"], stop=http.stop)
    supervisor.add("games", games.run, critical=True, depends_on=["http"])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        ...  # supervisor.status(), supervisor.health()

A dependency orders starts and stops only: a service starts (and restarts)
only while its dependencies are running, and fails for good if one of them
does; a dependency's later crash does not restart its dependants.
"""

from __future__ import annotations

from neuro_api.supervisor._errors import CriticalServiceError as CriticalServiceError
from neuro_api.supervisor._errors import ServiceError as ServiceError
from neuro_api.supervisor._errors import describe_exception as describe_exception
from neuro_api.supervisor._status import Health as Health
from neuro_api.supervisor._status import ServiceState as ServiceState
from neuro_api.supervisor._status import ServiceStatus as ServiceStatus
from neuro_api.supervisor._supervisor import ServiceHandle as ServiceHandle
from neuro_api.supervisor._supervisor import ServiceRun as ServiceRun
from neuro_api.supervisor._supervisor import StopHook as StopHook
from neuro_api.supervisor._supervisor import Supervisor as Supervisor

__all__ = [
    "CriticalServiceError",
    "Health",
    "ServiceError",
    "ServiceHandle",
    "ServiceRun",
    "ServiceState",
    "ServiceStatus",
    "StopHook",
    "Supervisor",
    "describe_exception",
]
