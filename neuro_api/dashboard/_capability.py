"""The dashboard capability: its settings section and where its pages mount."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from neuro_api.capability import Capability, Setup
from neuro_api.control import RouteAuth
from neuro_api.dashboard._auth import api_credential, login_blueprint, page_check
from neuro_api.dashboard._pages import PREFIX, dashboard_pages
from neuro_api.dashboard._sessions import DashboardSessions
from neuro_api.settings import setting

__all__ = ["DashboardCapability", "DashboardSettings"]


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"


@dataclasses.dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The ``[dashboard]`` section."""

    section: ClassVar[str] = "dashboard"
    enabled: bool = setting(
        True,
        "serve the web dashboard at /ui/ on the control plane (needs --http)",
        flag="--dashboard",
    )
    session_ttl: float = setting(
        12 * 3600.0,
        "seconds a dashboard login lasts",
        check=_positive,
        metavar="SECONDS",
    )
    max_sessions: int = setting(
        64,
        "dashboard logins kept at once (the oldest is dropped beyond)",
        check=_at_least_one,
        metavar="N",
    )
    frame_log: int = setting(
        500,
        "frames a dashboard page keeps in its live log (the oldest dropped)",
        check=_at_least_one,
        metavar="N",
    )


class DashboardCapability(Capability):
    """The web dashboard (``/ui/`` on the control plane): see :doc:`/dashboard`.

    On when the control plane is (``--http``) and ``--dashboard`` (the
    default). Without a token (a loopback-only control plane) the pages are
    open to this machine, as the JSON routes are; with one, ``/ui/login``
    takes the token once and sets a session cookie.
    """

    name = "dashboard"
    settings = DashboardSettings

    def setup(self, app: Setup) -> None:
        """Mount the pages and their static files under ``/ui``."""
        config: DashboardSettings = app.section()
        if not config.enabled or not app.settings.http:
            return
        token = app.admin_token
        sessions = DashboardSessions(config.session_ttl, config.max_sessions)
        # Without a token (loopback only), "token" means the control plane's
        # guard (no foreign Origin, a loopback Host), as for the JSON routes.
        # With one, a login (a session cookie) opens the pages, and the
        # control plane accepts that cookie (with CSRF) instead of the token.
        auth: RouteAuth = "token" if token is None else page_check(sessions, token)
        app.add_routes(login_blueprint(sessions, token), prefix=PREFIX, auth="public")
        if token is not None:
            app.add_credential(api_credential(sessions))
        app.add_routes(
            dashboard_pages(frame_log=config.frame_log, servers=app.manager.list),
            prefix=PREFIX,
            auth=auth,
        )
