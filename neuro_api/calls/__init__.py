"""Calls (seed "SmartTV Backend"): Twilio video tokens, a call registry, a sync.

:class:`CallsCapability` serves the seed's routes on a port of its own
(``--calls-port``, 3001): access tokens for Twilio Video rooms, a registry
of calls (SQLite in ``--data-dir``, or Redis with ``--redis-url``), and a
job that checks every accepted video call against Twilio every 3 minutes and
ends those whose rooms are gone, abandoned or left with one participant.
Phone calls (the voice capability's) are in the registry too, through
:class:`CallsService`'s phone API, and Twilio is asked to hang them up
through :class:`TwilioCalls`; the same job ends those left accepted (their
bridge's process died) once Twilio says they are over. See the "Calls"
docs page.
"""

from __future__ import annotations

from neuro_api.calls._app import CallsService as CallsService
from neuro_api.calls._app import TwilioKeys as TwilioKeys
from neuro_api.calls._app import call_stats as call_stats
from neuro_api.calls._capability import CallsCapability as CallsCapability
from neuro_api.calls._capability import CallsSettings as CallsSettings
from neuro_api.calls._decide import SyncRules as SyncRules
from neuro_api.calls._decide import Verdict as Verdict
from neuro_api.calls._decide import decide as decide
from neuro_api.calls._model import Call as Call
from neuro_api.calls._model import CallKind as CallKind
from neuro_api.calls._model import IllegalTransition as IllegalTransition
from neuro_api.calls._store import CallExists as CallExists
from neuro_api.calls._store import CallStore as CallStore
from neuro_api.calls._store import RedisCallStore as RedisCallStore
from neuro_api.calls._store import RegistryFull as RegistryFull
from neuro_api.calls._store import SqliteCallStore as SqliteCallStore
from neuro_api.calls._sync import CallSync as CallSync
from neuro_api.calls._sync import SyncResult as SyncResult
from neuro_api.calls._twilio import RoomLook as RoomLook
from neuro_api.calls._twilio import TwilioRooms as TwilioRooms
from neuro_api.calls._twilio import make_token as make_token
from neuro_api.calls._twilio_calls import ThreadedCalls as ThreadedCalls
from neuro_api.calls._twilio_calls import TwilioCallError as TwilioCallError
from neuro_api.calls._twilio_calls import TwilioCalls as TwilioCalls

__all__ = [
    "Call",
    "CallExists",
    "CallKind",
    "CallStore",
    "CallSync",
    "CallsCapability",
    "CallsService",
    "CallsSettings",
    "IllegalTransition",
    "RedisCallStore",
    "RegistryFull",
    "RoomLook",
    "SqliteCallStore",
    "SyncResult",
    "SyncRules",
    "ThreadedCalls",
    "TwilioCallError",
    "TwilioCalls",
    "TwilioKeys",
    "TwilioRooms",
    "Verdict",
    "call_stats",
    "decide",
    "make_token",
]
