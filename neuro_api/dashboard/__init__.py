"""The web dashboard: the control plane's games, status and services in a browser.

A capability (:class:`DashboardCapability`) that mounts server-rendered
pages under ``/ui`` on the control plane; a little JavaScript of the
package's own (no build step, nothing from the internet) keeps them live
through the control plane's JSON routes and its ``/events`` stream. See
:doc:`/dashboard`.
"""

from __future__ import annotations

from neuro_api.dashboard._capability import DashboardCapability as DashboardCapability
from neuro_api.dashboard._capability import DashboardSettings as DashboardSettings
from neuro_api.dashboard._pages import PREFIX as PREFIX
from neuro_api.dashboard._pages import dashboard_pages as dashboard_pages

__all__ = ["PREFIX", "DashboardCapability", "DashboardSettings", "dashboard_pages"]
