"""The composition root: the process, its capabilities and the command line.

The top floor of the package: it may import every other part, and none of
them imports it (``python -m neuro_api.server`` is a thin entry point into
:func:`main`). A :class:`NeuroProcess` runs one Neuro server and every
:class:`Capability` (the built-ins: the games' server, the control plane,
the console; then yours) under one supervisor. See the docs' "Writing a
capability" page.
"""

from __future__ import annotations

from neuro_api.app._builtins import (
    ConsoleCapability as ConsoleCapability,
)
from neuro_api.app._builtins import (
    ControlPlaneCapability as ControlPlaneCapability,
)
from neuro_api.app._builtins import GamesCapability as GamesCapability
from neuro_api.app._builtins import default_capabilities as default_capabilities
from neuro_api.app._cli import build_parser as build_parser
from neuro_api.app._cli import main as main
from neuro_api.app._cli import make_engine as make_engine
from neuro_api.app._process import LISTENING as LISTENING
from neuro_api.app._process import NeuroProcess as NeuroProcess
from neuro_api.app._process import ProcessInfo as ProcessInfo
from neuro_api.capability import Capability as Capability
from neuro_api.capability import HealthSection as HealthSection
from neuro_api.capability import ServiceSpec as ServiceSpec
from neuro_api.capability import Setup as Setup
from neuro_api.capability import StatsSection as StatsSection

__all__ = [
    "LISTENING",
    "Capability",
    "ConsoleCapability",
    "ControlPlaneCapability",
    "GamesCapability",
    "HealthSection",
    "NeuroProcess",
    "ProcessInfo",
    "ServiceSpec",
    "Setup",
    "StatsSection",
    "build_parser",
    "default_capabilities",
    "main",
    "make_engine",
]
