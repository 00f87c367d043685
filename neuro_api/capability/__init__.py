"""Capabilities: how a part of the process plugs in (see the docs' page).

A floor below :mod:`neuro_api.app`: a capability package (client status,
calls, ...) imports :class:`Capability` and :class:`Setup` from here, and
:mod:`neuro_api.app` imports the capability packages to register them, so
neither imports the other both ways. The same names are re-exported by
:mod:`neuro_api.app`.
"""

from __future__ import annotations

from neuro_api.capability._capability import Capability as Capability
from neuro_api.capability._capability import HealthSection as HealthSection
from neuro_api.capability._capability import ProcessParts as ProcessParts
from neuro_api.capability._capability import ServiceSpec as ServiceSpec
from neuro_api.capability._capability import Setup as Setup
from neuro_api.capability._capability import StatsSection as StatsSection
from neuro_api.capability._capability import worst as worst

__all__ = [
    "Capability",
    "HealthSection",
    "ProcessParts",
    "ServiceSpec",
    "Setup",
    "StatsSection",
    "worst",
]
