"""The OpenAI Realtime API: a pool of exclusive connections, and an engine.

:class:`RealtimePool` (the seed's "WebSocket Manager") keeps WebSocket
connections to the Realtime API and leases each to one user at a time
(``async with pool.connection_context() as conn``), resetting what a lease
changed before the next. :class:`RealtimeNeuroServer` (``--engine
realtime``) answers forces by function calling through the pool.
:class:`RealtimeCapability` runs the pool as a service, with
``/realtime/health``, ``/realtime/stats``, ``/realtime/config`` and the
console's ``realtime``. See the "Realtime" docs page.
"""

from __future__ import annotations

from neuro_api.realtime._capability import RealtimeCapability as RealtimeCapability
from neuro_api.realtime._capability import RealtimeSettings as RealtimeSettings
from neuro_api.realtime._config import DEFAULT_MODEL as DEFAULT_MODEL
from neuro_api.realtime._config import DEFAULT_URL as DEFAULT_URL
from neuro_api.realtime._config import PoolConfig as PoolConfig
from neuro_api.realtime._connection import RealtimeConnection as RealtimeConnection
from neuro_api.realtime._context import GameContexts as GameContexts
from neuro_api.realtime._engine import DEFAULT_INSTRUCTIONS as DEFAULT_INSTRUCTIONS
from neuro_api.realtime._engine import RealtimeNeuroServer as RealtimeNeuroServer
from neuro_api.realtime._errors import ConnectionLost as ConnectionLost
from neuro_api.realtime._errors import LeaseTimeout as LeaseTimeout
from neuro_api.realtime._errors import RealtimeAPIError as RealtimeAPIError
from neuro_api.realtime._errors import RealtimeError as RealtimeError
from neuro_api.realtime._errors import RealtimeUnavailable as RealtimeUnavailable
from neuro_api.realtime._errors import ResponseFailed as ResponseFailed
from neuro_api.realtime._pool import RealtimePool as RealtimePool
from neuro_api.realtime._tools import MAX_TOOLS as MAX_TOOLS
from neuro_api.realtime._tools import ToolSet as ToolSet
from neuro_api.realtime._tools import tool_name as tool_name

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_MODEL",
    "DEFAULT_URL",
    "MAX_TOOLS",
    "ConnectionLost",
    "GameContexts",
    "LeaseTimeout",
    "PoolConfig",
    "RealtimeAPIError",
    "RealtimeCapability",
    "RealtimeConnection",
    "RealtimeError",
    "RealtimeNeuroServer",
    "RealtimePool",
    "RealtimeSettings",
    "RealtimeUnavailable",
    "ResponseFailed",
    "ToolSet",
    "tool_name",
]
