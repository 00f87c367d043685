"""Who may use the dashboard: the login page, the pages' check, the API's.

Without a token (a control plane reachable from this machine only) the
dashboard is as open as the control plane: anything local may use it,
and the loopback guard refuses requests from other sites' web pages
(their ``Origin``) and from non-loopback ``Host`` names (DNS rebinding).
There is no session then, and no CSRF token to check: a local program
could send the same requests without one, and what a web page could
forge is what the guard refuses.

With a token, a person logs in once on ``/ui/login`` (the token goes in
the form's body, never in a URL) and gets a session
(:class:`~neuro_api.dashboard._sessions.DashboardSessions`). The session
cookie opens the pages (:func:`page_check`) and the control plane's token
routes (:func:`api_credential`, a :data:`~neuro_api.control.Credential`):
reading with the cookie alone (``EventSource('/events')`` sends nothing
else), changing anything only with the session's CSRF token in an
``X-CSRF-Token`` header and an ``Origin`` that is the control plane's own.
The cookie is SameSite=Strict, so other sites' pages do not send it at
all; the CSRF token and the Origin check also stop pages of the same site
(another port of ``localhost``), which SameSite lets through.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from quart import (
    Blueprint,
    Request,
    Response,
    current_app,
    has_app_context,
    render_template,
    request,
)
from werkzeug.exceptions import HTTPException

from neuro_api.control import ApiError, Credential, admin_check, valid_while
from neuro_api.control._auth import _URL_TOKEN_NAMES, _sent_for_another_page
from neuro_api.dashboard._sessions import (
    COOKIE,
    DashboardSessions,
    LoginLimiter,
    is_https,
)

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "api_credential",
    "csrf_token_for",
    "login_blueprint",
    "page_check",
    "safe_next",
]

LOGGER: Final = logging.getLogger(__name__)
CSRF_HEADER: Final = "X-CSRF-Token"
"""The header carrying the session's CSRF token on unsafe requests."""
CSRF_FIELD: Final = "csrf_token"
"""The form field that may carry it instead (the logout form)."""
HOME: Final = "/ui/"
LOGIN: Final = "/ui/login"
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"
"""What a URL path may hold unencoded (RFC 3986, ``pchar``)."""
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSIONS_KEY: Final = "NEURO_DASHBOARD_SESSIONS"
_PAGE_HEADERS: Final = {
    # The login page has no script and loads nothing: say so, so that an
    # injected tag could do nothing; and it must not be framed (a page
    # tricking a click into a frame) nor cached (shared machines).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it Chromium sends ``Origin: null`` with the
    # form's POST, which the login refuses as a foreign page's.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

PageCheck = Callable[[Request], Awaitable[None]]


def safe_next(target: str | None, default: str = HOME) -> str:
    """``target`` if it is a path on this site, else ``default``.

    Only a path that starts with one ``/`` (no scheme, no host, no ``//``
    or slash-backslash that a browser would read as another host, no backslash,
    space or control character) is kept: a login must not send the browser
    to another site (an open redirect).
    """
    if not target or not target.startswith("/") or len(target) > 2048:
        return default
    if any(ch == "\\" or ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in target):
        return default
    if target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def csrf_token_for(request: Request) -> str:
    """The CSRF token for ``<meta name="csrf-token">`` of a page.

    The token of the session ``request``'s cookie names; ``""`` when there
    is none: without a token configured (nothing is checked then: see the
    module's documentation) or on a page served without a login. Call it
    in a request of an app that mounts :func:`login_blueprint`.
    """
    if not has_app_context():
        return ""
    sessions: DashboardSessions | None = current_app.config.get(_SESSIONS_KEY)
    if sessions is None:
        return ""
    return sessions.csrf_token(request.cookies.get(COOKIE)) or ""


def _see_other(location: str) -> Response:
    """303: the browser GETs ``location`` (a path of this site) next."""
    return Response("", 303, headers={"Location": location})


def _digest(text: str) -> bytes:
    # Compared as digests: equal lengths, so the comparison says nothing
    # about the token's length either.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _token_in_url(request: Request) -> bool:
    return any(name.lower() in _URL_TOKEN_NAMES for name in request.args)


def _own_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` is the control plane's own.

    Same host and port as the ``Host`` header (what the browser connected
    to), scheme http or https as the request came (``X-Forwarded-Proto``
    from a tunnel counts). A missing or ``null`` Origin is not.
    """
    origin = request.headers.get("Origin", "").strip().lower()
    host = request.headers.get("Host", "").strip().lower()
    if not origin or not host:
        return False
    schemes = {request.scheme.lower(), "https" if is_https(request) else "http"}
    return origin in {f"{scheme}://{host}" for scheme in schemes}


def _check_embedded(request: Request) -> None:
    """Refuse (403) what a page of another origin has the browser send.

    SameSite=Strict keeps the cookie off other sites' requests, not off
    those of pages on another port of this machine (the same site): their
    ``<img>`` sends a GET with the cookie, which the server would answer
    (generated data, every game's actions) for nobody to read.
    """
    if _sent_for_another_page(request):
        raise ApiError(
            403,
            "forbidden_origin",
            "requests a web page of another origin has the browser send "
            f"(Sec-Fetch-Site: {request.headers.get('Sec-Fetch-Site')}) are "
            "refused, with the dashboard's session too",
        )


def _check_unsafe(
    sessions: DashboardSessions, session_id: str, request: Request, given: str | None
) -> None:
    """Refuse (403) an unsafe request a page of another origin could forge."""
    if not _own_origin(request):
        origin = request.headers.get("Origin")
        raise ApiError(
            403,
            "forbidden_origin",
            f"a request with the dashboard's session needs this control "
            f"plane's own Origin (got {origin!r})",
        )
    if not sessions.csrf_matches(session_id, given):
        raise ApiError(
            403,
            "csrf_failed",
            f"a request with the dashboard's session needs its CSRF token in "
            f"the {CSRF_HEADER} header (reload the page)",
        )


def api_credential(sessions: DashboardSessions) -> Credential:
    """The dashboard's session as a credential for the control plane's routes.

    For :meth:`~neuro_api.capability.Setup.add_credential`: a request with a
    live session cookie is accepted, unless the browser sends it for a page
    of another origin (``Sec-Fetch-Site`` other than ``same-origin`` or
    ``none``, a navigation aside); for an unsafe method (anything but
    GET, HEAD and OPTIONS) only with the session's CSRF token in
    ``X-CSRF-Token`` and an ``Origin`` that is the control plane's own,
    else refused with 403 (``forbidden_origin``, ``csrf_failed``). Without
    a live cookie it returns False (the bearer token's 401 follows).
    """

    async def credential(request: Request) -> bool:
        session_id = sessions.of(request)
        if session_id is None:
            return False
        _check_embedded(request)
        if request.method not in _SAFE_METHODS:
            _check_unsafe(
                sessions, session_id, request, request.headers.get(CSRF_HEADER)
            )
        # A tab's /events stream ends with the session (logout, expiry).
        valid_while(functools.partial(sessions.is_live, session_id))
        return True

    return credential


def page_check(
    sessions: DashboardSessions, token: str | None, *, login: str = LOGIN
) -> PageCheck:
    """The ``auth=`` check of the dashboard's pages (a ``RouteAuth``).

    Without ``token``: the loopback guard (403 for a foreign ``Origin`` or
    a non-loopback ``Host``). With one: a live session cookie (not sent
    for a page of another origin), and for an unsafe method its CSRF token
    and own Origin (as :func:`api_credential`);
    no session: GET and HEAD are redirected (303) to ``login`` with the
    page in ``next``, other methods get 401. A token-like query parameter
    (``token=``) is refused (401) rather than carried into ``next``.
    """
    loopback = admin_check(None)

    async def check(request: Request) -> None:
        if token is None:
            await loopback(request)
            return
        if _token_in_url(request):
            raise ApiError(
                401,
                "unauthorized",
                "a token in the URL is refused (URLs end up in logs); log in "
                f"at {login}",
            )
        session_id = sessions.of(request)
        if session_id is not None:
            _check_embedded(request)
            if request.method not in _SAFE_METHODS:
                _check_unsafe(
                    sessions, session_id, request, request.headers.get(CSRF_HEADER)
                )
            return
        if request.method in ("GET", "HEAD"):
            # The path as the browser sent it (request.path is decoded).
            page = quote(request.path, safe=_PATH_SAFE)
            if request.query_string:
                page += "?" + request.query_string.decode("latin-1")
            target = f"{login}?{urlencode({'next': safe_next(page)})}"
            raise HTTPException(response=_see_other(target))
        raise ApiError(401, "login_required", f"log in to the dashboard at {login}")

    return check


def login_blueprint(
    sessions: DashboardSessions,
    token: str | None,
    *,
    limiter: LoginLimiter | None = None,
    home: str = HOME,
) -> Blueprint:
    """``GET``/``POST /login`` and ``POST /logout``; mount under ``/ui``, public.

    ``GET /login``: the form (``form#login``, ``input[name=token]``).
    ``POST /login`` with the token in the form body: a session cookie and a
    303 to the form's ``next`` if it is a path on this site
    (:func:`safe_next`), else to ``home``. A wrong token: the form again
    with an error, 401; an address with too many recent failures
    (``limiter``, default 10 a minute): 429 with ``Retry-After``, even with
    the right token. A token in the URL is never used (400). ``POST
    /logout`` (CSRF token in ``X-CSRF-Token`` or the ``csrf_token`` field,
    own Origin) ends the session, clears the cookie, 303 to the login page.
    Without ``token`` there is nothing to log in to: both go to ``home``.
    Mount it with ``auth="public"``; it also registers ``sessions`` for
    :func:`csrf_token_for`.
    """
    blueprint = Blueprint("dashboard_login", __name__, template_folder="templates")
    expected = _digest(token) if token is not None else None
    if limiter is None:
        limiter = LoginLimiter(clock=sessions.clock)

    @blueprint.record_once
    def register(state: Any) -> None:
        state.app.config[_SESSIONS_KEY] = sessions

    @blueprint.after_request
    async def page_headers(response: Response) -> Response:
        for name, value in _PAGE_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def form(error: str | None, status: int, target: str) -> Response:
        html = await render_template(
            "login.html", error=error, next=target, action=request.path
        )
        return Response(html, status, content_type="text/html; charset=utf-8")

    @blueprint.get("/login")
    async def login_page() -> Response:
        target = safe_next(request.args.get("next"), home)
        if expected is None or sessions.of(request) is not None:
            return _see_other(target)
        if _token_in_url(request):
            return await form(_URL_REFUSED, 400, target)
        return await form(None, 200, target)

    @blueprint.post("/login")
    async def login() -> Response:
        fields = await request.form
        target = safe_next(fields.get("next"), home)
        if expected is None:
            return _see_other(target)
        if _token_in_url(request):
            return await form(_URL_REFUSED, 400, target)
        origin = request.headers.get("Origin")
        if origin is not None and not _own_origin(request):
            return await form("this form was sent from another site", 403, target)
        client = request.remote_addr or "unknown"
        wait = limiter.retry_after(client)
        if wait > 0:
            response = await form(
                "too many failed attempts; wait a minute and try again", 429, target
            )
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        given = fields.get("token", "")
        if not hmac.compare_digest(_digest(given), expected):
            limiter.failed(client)
            LOGGER.warning("dashboard login failed from %s", client)
            return await form("wrong token", 401, target)
        session_id, _ = sessions.create()
        response = _see_other(target)
        sessions.set_cookie(response, session_id, request)
        LOGGER.info("dashboard login from %s", client)
        return response

    @blueprint.post("/logout")
    async def logout() -> Response:
        if expected is None:
            return _see_other(home)
        session_id = sessions.of(request)
        if session_id is not None:
            given = request.headers.get(CSRF_HEADER)
            if given is None:
                given = (await request.form).get(CSRF_FIELD)
            _check_unsafe(sessions, session_id, request, given)
            sessions.delete(session_id)
        response = _see_other(request.path.rsplit("/", 1)[0] + "/login")
        sessions.clear_cookie(response, request)
        return response

    return blueprint


_URL_REFUSED: Final = (
    "a token in the URL is never used (URLs end up in history and logs); "
    "type it in this form"
)
