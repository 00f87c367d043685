"""Routes added to the control plane: a blueprint, its prefix, its auth.

The control plane's own routes and every capability's are one URL space;
a path two of them would both answer is refused when the app is built
(:class:`RouteCollision`), instead of the later one silently never running.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, Literal

from quart import Blueprint, Quart, Request
from werkzeug.routing import PathConverter

__all__ = [
    "NameConverter",
    "RouteAuth",
    "RouteCollision",
    "Routes",
    "auth_of",
    "install_names",
    "mount",
]

RouteAuth = Literal["token", "public"] | Callable[[Request], Awaitable[None]]
"""Who may call a blueprint's routes.

``"token"``: the control plane's bearer token, when one is configured (the
default, like every route of the control plane); ``"public"``: anyone (only
for routes that reveal nothing about the games or the settings); a
coroutine function: the capability's own check, called with the request
instead of the token check. It raises :class:`~neuro_api.control.ApiError`
(401 or 403, say) to refuse. Without a token (a loopback-only control
plane), requests from web pages and non-loopback hosts are refused first,
whatever the auth.
"""

_AUTH_KEY: Final = "NEURO_ROUTE_AUTH"
_IGNORED_METHODS: Final = frozenset({"HEAD", "OPTIONS"})
"""Added to routes by Quart itself: never what a capability declared."""
_VARIABLE: Final = re.compile(r"<[^>]*>")
"""A path variable: ``/games/<game>`` and ``/games/<int:id>`` are one path."""


class NameConverter(PathConverter):
    """``<name:...>``: a name a game chose, as the rest of the path.

    Action names and titles may hold ``/`` (the server warns, and takes
    them): sent encoded (``%2F``), they arrive decoded. ``<path:...>``
    takes a ``/`` inside but not in front, so ``/Victim`` got a 404, and,
    with slashes merged, ``//Victim`` was redirected (308, the method
    repeated) to ``/Victim``: another game's, or another action's, route.
    """

    regex = ".+?"
    part_isolating = False  # set by hand: werkzeug infers it from "/" in regex


def install_names(app: Quart) -> None:
    """Give ``app`` the ``<name:...>`` converter, and never merge slashes.

    Call it before any route is added. Merged slashes would make a name's
    leading ``/`` a redirect to another name (see :class:`NameConverter`).
    """
    app.url_map.converters["name"] = NameConverter
    app.url_map.merge_slashes = False


class RouteCollision(ValueError):
    """Two routes would answer the same method and path."""


@dataclasses.dataclass(frozen=True, slots=True)
class Routes:
    """A blueprint to mount on the control plane, under ``prefix``.

    ``prefix`` starts with ``/`` (``/status``) and is the blueprint's own;
    ``owner`` names who brought it, for errors (a capability's name).
    """

    blueprint: Blueprint
    prefix: str
    auth: RouteAuth = "token"
    owner: str = ""

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(
                f"route prefix {self.prefix!r} of {self.owner or 'a blueprint'}: "
                "must start with '/' and not end with one (such as '/status')"
            )
        if self.auth not in ("token", "public") and not callable(self.auth):
            raise ValueError(f"route auth {self.auth!r}: 'token', 'public' or a check")


def mount(app: Quart, routes: Iterable[Routes], *, builtin: str = "control") -> None:
    """Register every blueprint, then refuse any method and path served twice.

    Raises :class:`RouteCollision` naming both owners (the app's own routes
    are ``builtin``'s) and :class:`ValueError` for a blueprint mounted twice.
    """
    owners: dict[str, str] = {}
    table: dict[str, RouteAuth] = app.config.setdefault(_AUTH_KEY, {})
    for entry in routes:
        name = entry.blueprint.name
        if name in app.blueprints or name in owners:
            raise ValueError(
                f"blueprint {name!r} of {entry.owner or 'a capability'} is "
                "mounted already; give it another name"
            )
        app.register_blueprint(entry.blueprint, url_prefix=entry.prefix)
        owners[name] = entry.owner or name
        table[name] = entry.auth
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for rule in app.url_map.iter_rules():
        mounted = _mounted(rule.endpoint, owners)
        owner = builtin if mounted is None else owners[mounted]
        path = _VARIABLE.sub("<>", rule.rule)
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            other, endpoint = seen.setdefault((method, path), (owner, rule.endpoint))
            if endpoint != rule.endpoint:
                raise RouteCollision(
                    f"route {method} {rule.rule} of {owner!r} collides with "
                    f"the same route of {other!r}"
                )


def auth_of(app: Quart, endpoint: str) -> RouteAuth:
    """The auth of the blueprint serving ``endpoint`` (default ``"token"``).

    A blueprint nested in a mounted one (``outer.inner.view``) has the
    mounted one's auth.
    """
    table: dict[str, RouteAuth] = app.config.get(_AUTH_KEY, {})
    mounted = _mounted(endpoint, table)
    return "token" if mounted is None else table[mounted]


def _mounted(endpoint: str, table: Mapping[str, object]) -> str | None:
    """The mounted blueprint ``endpoint`` belongs to, nested ones included.

    Quart names a nested blueprint's endpoints ``outer.inner.view``; the
    mounted one is the outermost name in ``table``.
    """
    names = endpoint.split(".")[:-1]
    for length in range(1, len(names) + 1):
        candidate = ".".join(names[:length])
        if candidate in table:
            return candidate
    return None
