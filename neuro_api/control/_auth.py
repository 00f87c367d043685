"""Bearer-token check: every route but health and the API's own documentation."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

from quart import Quart, Request, current_app, g, has_app_context, request

from neuro_api._origins import is_loopback_host, origin_host
from neuro_api.control._errors import ApiError
from neuro_api.control._routes import auth_of

__all__ = [
    "Credential",
    "admin_check",
    "bearer_credentials",
    "install_auth",
    "is_public",
    "new_token",
    "public",
    "still_allowed",
    "valid_while",
]

F = TypeVar("F", bound=Callable[..., object])

Credential = Callable[[Request], Awaitable[bool]]
"""Another way than the bearer token into the control plane's token routes.

A coroutine function called with the request when a token is configured
and the request has no valid ``Authorization: Bearer`` header (a token in
the URL is refused before any credential is asked). It returns True to
accept the request, False to leave it to the next credential (and, after
the last, to the 401); it may raise :class:`~neuro_api.control.ApiError`
to refuse the request with a reason of its own (a session cookie on a POST
without its CSRF token: 403). It never widens a route that has an auth of
its own (``"public"`` or a check): only ``"token"`` routes, the control
plane's own included. Without a token (loopback only), credentials are not
asked: everything local is open and the loopback guard applies.
"""

_VALID_WHILE: Final = "neuro_api_valid_while"
"""Where :func:`valid_while` keeps its check, on the request's ``g``."""
_PUBLIC_ATTRIBUTE: Final = "_neuro_api_public"
_SCHEMA_ENDPOINTS: Final = frozenset({"openapi", "swagger_ui"})
"""quart-schema's OpenAPI document and interactive docs."""
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing (a page of any local origin may read: it
cannot see the answer, the control plane sends no CORS headers)."""
_URL_TOKEN_NAMES: Final = frozenset({"access_token", "api_token", "token"})
"""Query parameters that would carry a token (OAuth's ``access_token``...)."""


def valid_while(check: Callable[[], bool]) -> None:
    """Say, from a :data:`Credential`, how long the request's credential holds.

    A credential that accepts a request may end before the answer does: a
    login session logged out of while its tab reads ``/events``. Call this
    with a check (True while the credential still holds) in the request's
    context; long answers (the event stream) end at their next event once
    it returns False. Without a call, a credential holds for the whole
    request, as the bearer token does.
    """
    setattr(g, _VALID_WHILE, check)


def _always() -> bool:
    return True


def still_allowed() -> Callable[[], bool]:
    """The current request's check from :func:`valid_while`.

    Always True without one. Call this in the request's context; call what
    it returns anywhere (a streaming answer's generator).
    """
    check: Callable[[], bool] = g.get(_VALID_WHILE, _always)
    return check


def new_token() -> str:
    """Return a fresh random token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def public(route: F) -> F:
    """Mark a route as open even when a token is configured (``/health``).

    Apply it under the ``@blueprint.get(...)`` line. Only for routes that
    reveal nothing about the games or the settings.
    """
    setattr(route, _PUBLIC_ATTRIBUTE, True)
    return route


def is_public(endpoint: str, view: object) -> bool:
    """Whether route ``endpoint`` (served by ``view``) needs no token.

    Routes marked :func:`public`, the API's documentation, and every route
    of a blueprint mounted with an auth other than ``"token"`` (public, or
    its owner's own check).
    """
    if endpoint in _SCHEMA_ENDPOINTS or getattr(view, _PUBLIC_ATTRIBUTE, False):
        return True
    return has_app_context() and auth_of(current_app, endpoint) != "token"


def install_auth(
    app: Quart, token: str | None, credentials: Iterable[Credential] = ()
) -> None:
    """Require ``Authorization: Bearer <token>`` on every non-public route.

    Reading routes reveal game data (actions, frames, settings), so they
    need the token as much as mutating ones. Requests that match no route
    pass, to get their 404 or 405. ``token=None`` means the control plane is
    reachable only from this machine and everything is open to local
    programs, but not to web pages (a foreign ``Origin`` or a non-loopback
    ``Host`` gets 403); the caller decides (see
    :attr:`neuro_api.settings.Settings.exposed`). ``credentials``
    (:data:`Credential`) may accept a request without the bearer token,
    in order, when a token is configured.
    """
    if token is None:
        _install_loopback_guard(app)
    else:
        _install_token_check(app, token, tuple(credentials))
    _install_own_checks(app)


def admin_check(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """The control plane's auth as a check of one's own (:data:`RouteAuth`).

    For admin routes of an app that is not the control plane (a
    capability's own HTTP server): with a token, ``Authorization: Bearer
    <token>`` (a token in the URL refused); without one (the process is
    reachable from this machine only), requests from another site's web
    page or with a non-loopback ``Host`` are refused (403). Raises
    :class:`ApiError` (401 or 403).
    """

    async def check(request: Request) -> None:
        if token is None:
            _loopback_only(request)
            return
        if any(name.lower() in _URL_TOKEN_NAMES for name in request.args):
            raise _unauthorized(
                "a token in the URL is refused (URLs end up in logs); send "
                "'Authorization: Bearer <token>'"
            )
        given = bearer_credentials(request.headers.get("Authorization", ""))
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise _unauthorized("this route needs 'Authorization: Bearer <token>'")

    return check


def _install_own_checks(app: Quart) -> None:
    """Run the checks of blueprints mounted with an auth of their own."""

    @app.before_request
    async def check_own() -> None:
        endpoint = request.endpoint
        if endpoint is None:
            return
        auth = auth_of(current_app, endpoint)
        if callable(auth):
            await auth(request)


def _install_token_check(
    app: Quart, token: str, credentials: tuple[Credential, ...]
) -> None:
    expected = token.encode()

    @app.before_request
    async def check_token() -> None:
        endpoint = request.endpoint
        if endpoint is None:
            return
        if is_public(endpoint, current_app.view_functions.get(endpoint)):
            return
        if any(name.lower() in _URL_TOKEN_NAMES for name in request.args):
            # Refused even with a good header: URLs end up in access logs,
            # proxies and browser history, so the token must not be there.
            raise _unauthorized(
                "a token in the URL is refused (URLs end up in logs); send "
                "'Authorization: Bearer <token>'"
            )
        given = bearer_credentials(request.headers.get("Authorization", ""))
        if given is not None and hmac.compare_digest(given.encode(), expected):
            return
        for credential in credentials:
            if await credential(request):
                return
        raise _unauthorized("this route needs 'Authorization: Bearer <token>'")


def bearer_credentials(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None.

    The scheme is matched without regard to case (``bearer``, ``BEARER``:
    RFC 7235, section 2.1) and may be followed by more than one space.
    Another scheme, or no token, gives None.
    """
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.lstrip(" ") or None


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message,
        headers={"WWW-Authenticate": 'Bearer realm="neuro_api"'},
    )


def _install_loopback_guard(app: Quart) -> None:
    """Open routes still refuse what only a browser tricked into it would send.

    With no token, anything on this machine may use the control plane; a
    web page open in the user's browser must not. A request whose
    ``Origin`` is another site (cross-site request forgery) or whose
    ``Host`` is not a loopback name (DNS rebinding) gets 403; so does an
    unsafe request (a ``POST``...) from a page of another origin of this
    machine (another port: :func:`_own_origin_only`), and any request a
    page of another origin makes the browser send but a navigation
    (:func:`_sent_for_another_page`).
    """

    @app.before_request
    async def check_origin() -> None:
        _loopback_only(request)
        if request.method not in _SAFE_METHODS:
            _own_origin_only(request)
        if _sent_for_another_page(request):
            raise ApiError(
                403,
                "forbidden_origin",
                "requests a web page of another origin has the browser send "
                f"(Sec-Fetch-Site: {request.headers.get('Sec-Fetch-Site')}) are "
                "refused; this control plane has no token and answers local "
                "requests only",
            )


def _sent_for_another_page(request: Request) -> bool:
    """Whether a browser sends ``request`` for a page of another origin.

    Fetch Metadata (Chromium, Firefox, Safari): an ``<img>`` of any page
    makes the browser send a GET with no ``Origin``; it cannot read the
    answer, yet the server does the work (encodes every game's actions,
    generates data). ``Sec-Fetch-Site`` says who asked: the control plane's
    own pages (``same-origin``) and the user (``none``: an address typed, a
    bookmark) are served, and so is a navigation (a link followed) that
    does not embed the answer in the other page. Programs send no such
    header.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is None or site.lower() in {"same-origin", "none"}:
        return False
    navigating = (
        request.method == "GET"
        and request.headers.get("Sec-Fetch-Mode", "").lower() == "navigate"
        and request.headers.get("Sec-Fetch-Dest", "").lower() not in {"object", "embed"}
    )
    return not navigating


def _own_origin_only(request: Request) -> None:
    """403 for a request sent by a page of another origin than the control plane.

    A page served by another program of this machine (a dev server on
    another port, a game's web build) passes the loopback check, yet it is
    another origin: without reading any answer it can make the browser
    send a form's ``POST`` (``POST /`` takes any body, the shutdown routes
    none). The dashboard's own pages send their origin; programs send no
    ``Origin`` at all.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    own = f"{request.scheme}://{request.headers.get('Host', '')}".lower()
    if origin.strip().rstrip("/").lower() != own:
        raise ApiError(
            403,
            "forbidden_origin",
            f"changes from the web page at {origin!r} are refused; only the "
            "control plane's own pages (and programs, which send no Origin) "
            "may make them",
        )


def _loopback_only(request: Request) -> None:
    """403 unless the request comes from this machine, not from a web page."""
    host = request.headers.get("Host", "")
    if not is_loopback_host(host):
        raise ApiError(
            403,
            "forbidden_host",
            f"Host {host!r} is not a loopback name; this control plane "
            "has no token and answers local requests only",
        )
    origin = request.headers.get("Origin")
    if origin is not None and not is_loopback_host(origin_host(origin)):
        raise ApiError(
            403,
            "forbidden_origin",
            f"requests from the web page at {origin!r} are refused; this "
            "control plane has no token and answers local requests only",
        )
