"""Routes other capabilities add to the calls HTTP app (its own port).

The voice capability serves Twilio's webhook and media stream there: the
calls API is the server Twilio reaches (``--calls-port``, tunnelled with
``--tunnel``). :func:`mount_routes` registers a blueprint and refuses a
route the app serves already; WebSockets get an origin check of their own
(:func:`check_websocket_origin`) instead of quart-cors', which refuses every
WebSocket without an ``Origin`` header, as Twilio's are.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Final

import quart_cors
from quart import Blueprint, Quart, websocket

from neuro_api.control import ApiError, RouteCollision

__all__ = ["check_websocket_origin", "mount_routes", "origin_allowed"]

_IGNORED_METHODS: Final = frozenset({"HEAD", "OPTIONS"})
_VARIABLE: Final = re.compile(r"<[^>]*>")
"""A path variable: ``/calls/<sid>`` and ``/calls/<int:n>`` are one path."""


def origin_allowed(origin: str, allowed: list[re.Pattern[str] | str]) -> bool:
    """Whether ``origin`` is one of ``allowed`` (:func:`origin_patterns`' list)."""
    return any(
        pattern.match(origin) if isinstance(pattern, re.Pattern) else pattern == origin
        for pattern in allowed
    )


def check_websocket_origin(
    allowed: list[re.Pattern[str] | str],
) -> Callable[[], Awaitable[None]]:
    """A ``before_websocket`` function: 403 for a web page's origin not allowed.

    A browser always sends ``Origin`` with a WebSocket; a program (Twilio)
    need not. So no ``Origin`` passes (the route checks its caller itself),
    and one that is not in ``allowed`` is refused before the handshake: a
    page elsewhere cannot open the route with the browser's cookies.
    """

    async def check() -> None:
        origin = websocket.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, allowed):
            raise ApiError(403, "forbidden_origin", "this origin may not connect")

    return check


def mount_routes(app: Quart, blueprint: Blueprint, owner: str) -> None:
    """Register ``blueprint`` on ``app``; its WebSockets skip quart-cors' check.

    Raises ``ValueError`` when a blueprint of that name is registered, and
    :class:`~neuro_api.control.RouteCollision` (a ``ValueError``) naming
    ``owner`` when one of its routes has the method and path (WebSocket or
    not) of a route the app serves already.
    """
    if blueprint.name in app.blueprints:
        raise ValueError(
            f"blueprint {blueprint.name!r} of {owner} is on the calls app "
            "already; give it another name"
        )
    served: dict[tuple[str, str, bool], str] = {}
    for rule in app.url_map.iter_rules():
        for key in _keys(rule.rule, rule.methods, rule.websocket):
            served[key] = rule.endpoint
    app.register_blueprint(blueprint)
    prefix = f"{blueprint.name}."
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(prefix):
            continue
        for key in _keys(rule.rule, rule.methods, rule.websocket):
            if served.get(key, rule.endpoint) != rule.endpoint:
                kind = "WebSocket" if rule.websocket else key[0]
                raise RouteCollision(
                    f"route {kind} {rule.rule} of {owner} collides with a route "
                    "of the calls app"
                )
        if rule.websocket:  # quart_cors.cors_exempt, which mypy cannot type
            setattr(
                app.view_functions[rule.endpoint],
                quart_cors.QUART_CORS_EXEMPT_ATTRIBUTE,
                True,
            )


def _keys(
    rule: str, methods: set[str] | None, is_websocket: bool
) -> list[tuple[str, str, bool]]:
    path = _VARIABLE.sub("<>", rule)
    return [
        (method, path, is_websocket)
        for method in sorted((methods or set()) - _IGNORED_METHODS)
    ]
