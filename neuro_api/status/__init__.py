"""Client status (seed "Server_Manager"): paused, blocked, active games.

The clients are the games connected to the Neuro server, named by title.
:class:`StatusManager` keeps the seed's lists in ``Data/Server_Data/*.json``
(hand-editable, written atomically), enforces them on the games (blocked
ones closed and refused, paused ones held) and shares them through Redis
(hash ``Clients_status``) between instances. :class:`StatusCapability`
plugs it into the process; see the "Client status" docs page.
"""

from __future__ import annotations

from neuro_api.status._capability import (
    SERVER_DATA as SERVER_DATA,
)
from neuro_api.status._capability import (
    StatusCapability as StatusCapability,
)
from neuro_api.status._capability import (
    StatusSettings as StatusSettings,
)
from neuro_api.status._manager import BLOCKED as BLOCKED
from neuro_api.status._manager import CLOSED_BY_REQUEST as CLOSED_BY_REQUEST
from neuro_api.status._manager import StatusFileError as StatusFileError
from neuro_api.status._manager import StatusManager as StatusManager
from neuro_api.status._model import ClientStates as ClientStates
from neuro_api.status._model import StatusLists as StatusLists

__all__ = [
    "BLOCKED",
    "CLOSED_BY_REQUEST",
    "SERVER_DATA",
    "ClientStates",
    "StatusCapability",
    "StatusFileError",
    "StatusLists",
    "StatusManager",
    "StatusSettings",
]
