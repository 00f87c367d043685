"""The HTTP control plane: a Quart-Trio app over a running Neuro server.

:func:`create_app` builds the app; serve it with Hypercorn in the server's
nursery (the ServerManager does). Routes (all JSON; the OpenAPI document is
at ``/openapi.json``, interactive docs at ``/docs``, which need no
internet):

* ``GET /health``, ``GET /stats``, ``GET /config``, ``GET /events`` (SSE);
* ``GET /games``, ``GET /games/{game}``;
* ``POST /games/{game}/actions/{action}`` (execute, returns the result),
  ``POST /games/{game}/reregister``, ``.../shutdown/graceful``,
  ``.../shutdown/immediate``, ``.../speech-finished`` (``{game}`` may be
  ``*`` for every game);
* ``POST /``: a raw Neuro message for every game (Randy-compatible).

With a token configured, every route but ``/health`` and the documentation
needs ``Authorization: Bearer <token>``, or another credential a
capability accepts (:data:`Credential`). Capabilities add blueprints
(:class:`Routes`) under their own prefixes, each with its auth; a route
two of them would both serve is refused when the app is built
(:class:`RouteCollision`). Errors are ``{"error": {"code",
"message"}}``. A route's JSON body may be left out when all its fields have
defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from quart_schema import QuartSchema
from quart_trio import QuartTrio

from neuro_api import __version__
from neuro_api.control._auth import (
    Credential,
    admin_check,
    install_auth,
    new_token,
    public,
    valid_while,
)
from neuro_api.control._docs import serve_swagger_ui
from neuro_api.control._errors import ApiError, install_error_handlers
from neuro_api.control._games import games
from neuro_api.control._limits import BodyLimit, body_limit
from neuro_api.control._openapi import ControlOpenAPI
from neuro_api.control._routes import (
    RouteAuth,
    RouteCollision,
    Routes,
    install_names,
    mount,
)
from neuro_api.control._status import HealthSource, StatsSource, status
from neuro_api.server import AbstractTrioNeuroServer

__all__ = [
    "ApiError",
    "Credential",
    "HealthSource",
    "RouteAuth",
    "RouteCollision",
    "Routes",
    "StatsSource",
    "admin_check",
    "create_app",
    "new_token",
    "public",
    "valid_while",
]


def _always_healthy() -> Mapping[str, Any]:
    return {"status": "healthy", "services": []}


def _no_sections() -> Mapping[str, Mapping[str, Any]]:
    return {}


def create_app(
    server: AbstractTrioNeuroServer,
    *,
    token: str | None = None,
    health: HealthSource = _always_healthy,
    settings: Callable[[], Mapping[str, Any]] = dict,
    stats: StatsSource = _no_sections,
    routes: Iterable[Routes] = (),
    credentials: Iterable[Credential] = (),
) -> QuartTrio:
    """Build the control-plane app for ``server``.

    ``token`` set: every route but ``GET /health`` and the OpenAPI document
    (and its ``/docs`` page) needs ``Authorization: Bearer <token>``;
    ``None``: everything is open (for a loopback-only server).
    ``health`` reports the supervisor's view (default: always healthy);
    ``settings`` returns the effective settings, already redacted;
    ``stats`` returns extra ``/stats`` sections by name (capabilities').
    ``routes`` are mounted after the control plane's own; raises
    :class:`RouteCollision` if two routes would serve one method and path.
    ``credentials`` (:data:`Credential`) may accept a request to a token
    route without the bearer token (the dashboard's session cookie); they
    are asked in order, only when ``token`` is set.
    A request body over ``server.config.max_message_size`` + 4096 bytes gets
    413, and so does a message whose frame to a game would be over
    ``max_message_size``. Bodies held at once are bounded (64 MiB; requests
    carrying the token have 64 MiB of their own), beyond that 503. ``/docs``
    serves Swagger UI's files itself (it needs no internet).
    """
    app = QuartTrio("neuro_api.control", static_folder=None)  # no /static route
    install_names(app)  # <name:...> in routes: names a game chose, "/" and all
    app.config["NEURO_SERVER"] = server
    app.config["NEURO_HEALTH"] = health
    app.config["NEURO_SETTINGS"] = settings
    app.config["NEURO_STATS"] = stats
    app.config["NEURO_TOKEN_REQUIRED"] = token is not None
    QuartSchema(
        app,
        info={
            "title": "neuro_api control plane",
            "version": __version__,
            "description": "Inspect and drive the games connected to a Neuro "
            'server. Errors are `{"error": {"code", "message"}}`.',
        },
        openapi_provider_class=ControlOpenAPI,
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    serve_swagger_ui(app)  # not from a CDN: /docs works offline
    install_error_handlers(app)
    install_auth(app, token, credentials)
    app.register_blueprint(status)
    app.register_blueprint(games)
    mount(app, routes)
    limit = body_limit(server.config.max_message_size)
    app.config["MAX_CONTENT_LENGTH"] = limit  # what Quart would enforce itself
    # Quart's documented way to add ASGI middleware.
    # With the token, so that requests carrying it have their own budget of
    # bodies held at once (those without it cannot make them fail).
    app.asgi_app = BodyLimit(  # type: ignore[method-assign]
        app.asgi_app, limit, app.config["BODY_TIMEOUT"], token=token
    )
    return app
