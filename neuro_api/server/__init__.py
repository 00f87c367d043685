"""The Neuro side of the API: a server games connect to, and its layers.

Subclass :class:`AbstractTrioNeuroServer` and implement ``add_context`` and
``choose_force_action`` to get a working server; or run one of the engines
(``python -m neuro_api.server --help``).

The per-connection classes stack one idea per layer:
:class:`AbstractNeuroServerClient` (parse and dispatch) →
:class:`AbstractHandlerNeuroServerClient` (ids, results, forces, diagnostics,
context hand-off) → :class:`AbstractRecordingNeuroServerClient` (the action
registry) → :class:`BaseTrioNeuroServerClient` (trio-websocket I/O) →
:class:`TrioNeuroServerClient` (bound to its server).
"""

from __future__ import annotations

import importlib
import typing
import warnings

from neuro_api.command import (
    ActionResultData as ActionResultData,
)
from neuro_api.command import (
    ActionSchema as ActionSchema,
)
from neuro_api.command import (
    ContextData as ContextData,
)
from neuro_api.command import (
    ForceActionsData as ForceActionsData,
)
from neuro_api.command import (
    RegisterActionsData as RegisterActionsData,
)
from neuro_api.command import (
    UnregisterActionsData as UnregisterActionsData,
)
from neuro_api.server._base import AbstractTrioNeuroServer as AbstractTrioNeuroServer
from neuro_api.server._base import ServerInfo as ServerInfo
from neuro_api.server._client import (
    AbstractNeuroServerClient as AbstractNeuroServerClient,
)
from neuro_api.server._commands import Console as Console
from neuro_api.server._commands import ConsoleCommand as ConsoleCommand
from neuro_api.server._compat import check_action_names_type as check_action_names_type
from neuro_api.server._compat import deserialize_actions as deserialize_actions
from neuro_api.server._config import CHARACTERS as CHARACTERS
from neuro_api.server._config import ForcePolicy as ForcePolicy
from neuro_api.server._config import ServerConfig as ServerConfig
from neuro_api.server._console import (
    ConsoleInteractiveNeuroServer as ConsoleInteractiveNeuroServer,
)
from neuro_api.server._events import EventBus as EventBus
from neuro_api.server._events import ServerStats as ServerStats
from neuro_api.server._events import Subscriber as Subscriber
from neuro_api.server._events import TooManySubscribers as TooManySubscribers
from neuro_api.server._generation import DataGenerator as DataGenerator
from neuro_api.server._handler import (
    AbstractHandlerNeuroServerClient as AbstractHandlerNeuroServerClient,
)
from neuro_api.server._handler import ActionNames as ActionNames
from neuro_api.server._handler import ActionOutcome as ActionOutcome
from neuro_api.server._handler import FrameTooLarge as FrameTooLarge
from neuro_api.server._handler import OutcomeStatus as OutcomeStatus
from neuro_api.server._handler import TooManyHeldActions as TooManyHeldActions
from neuro_api.server._handler import UnanswerableForce as UnanswerableForce
from neuro_api.server._hooks import AdmissionCheck as AdmissionCheck
from neuro_api.server._hooks import ConnectionEvent as ConnectionEvent
from neuro_api.server._hooks import ConnectionEventKind as ConnectionEventKind
from neuro_api.server._hooks import ConnectionEvents as ConnectionEvents
from neuro_api.server._hooks import ContextEvents as ContextEvents
from neuro_api.server._hooks import ContextMessage as ContextMessage
from neuro_api.server._hooks import ForceGate as ForceGate
from neuro_api.server._hooks import Refusal as Refusal
from neuro_api.server._random import RandomNeuroServer as RandomNeuroServer
from neuro_api.server._recording import (
    AbstractRecordingNeuroServerClient as AbstractRecordingNeuroServerClient,
)
from neuro_api.server._trio_client import (
    BaseTrioNeuroServerClient as BaseTrioNeuroServerClient,
)
from neuro_api.server._trio_client import TrioNeuroServerClient as TrioNeuroServerClient

__all__ = [
    "CHARACTERS",
    "AbstractHandlerNeuroServerClient",
    "AbstractNeuroServerClient",
    "AbstractRecordingNeuroServerClient",
    "AbstractTrioNeuroServer",
    "ActionNames",
    "ActionOutcome",
    "ActionResultData",
    "ActionSchema",
    "AdmissionCheck",
    "BaseTrioNeuroServerClient",
    "ConnectionEvent",
    "ConnectionEventKind",
    "ConnectionEvents",
    "Console",
    "ConsoleCommand",
    "ConsoleInteractiveNeuroServer",
    "ContextData",
    "ContextEvents",
    "ContextMessage",
    "DataGenerator",
    "EventBus",
    "ForceActionsData",
    "ForceGate",
    "ForcePolicy",
    "FrameTooLarge",
    "OutcomeStatus",
    "RandomNeuroServer",
    "Refusal",
    "RegisterActionsData",
    "ServerConfig",
    "ServerInfo",
    "ServerStats",
    "Subscriber",
    "TooManyHeldActions",
    "TooManySubscribers",
    "TrioNeuroServerClient",
    "UnanswerableForce",
    "UnregisterActionsData",
    "check_action_names_type",
    "deserialize_actions",
]


_MOVED = frozenset({"NeuroProcess", "ProcessInfo"})
"""Deprecated aliases: the process moved to :mod:`neuro_api.app` (0.9)."""


def __getattr__(name: str) -> typing.Any:
    # NeuroProcess lives in neuro_api.app, the composition root above this
    # package. The old names still work, with a DeprecationWarning; nothing
    # in this package uses the process, and importing the package does not
    # import neuro_api.app (the one upward reference, made only when asked).
    if name in _MOVED:
        warnings.warn(
            f"neuro_api.server.{name} moved to neuro_api.app.{name}; the old "
            "name will be removed in a future release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("neuro_api.app"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
