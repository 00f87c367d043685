"""Client status (seed "Server_Manager"): paused, blocked, active games.

Work in progress for issue 13: :class:`ClientStates` holds the states and
the seed's rules; the files, Redis and the capability come next.
"""

from __future__ import annotations

from neuro_api.status._model import ClientStates as ClientStates
from neuro_api.status._model import StatusLists as StatusLists

__all__ = ["ClientStates", "StatusLists"]
