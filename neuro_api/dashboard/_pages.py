"""The dashboard's blueprint: server-rendered pages, static files, two helpers.

Pages are Jinja2 templates (autoescaped: every string a game supplies is
escaped); their live parts are ``static/dashboard.js``, which reads the
control plane's JSON routes and ``/events``. Two JSON routes of the
dashboard's own serve the action form: valid data generated for an
action's schema (without sending it) and the server's verdict on data
(before sending it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson
from quart import Blueprint, Response, current_app, render_template, request

from neuro_api.control import ApiError
from neuro_api.dashboard._auth import csrf_token_for
from neuro_api.diagnostics import CATALOGUE
from neuro_api.schema import GenerationError, SchemaError
from neuro_api.server import AbstractTrioNeuroServer, TrioNeuroServerClient

__all__ = [
    "CAPABILITY_PAGES",
    "PREFIX",
    "dashboard_pages",
]

PREFIX: Final = "/ui"
HERE: Final = Path(__file__).parent
CAPABILITY_PAGES: Final = ("status", "calls", "realtime", "voice")
"""Pages shown only while the capability of the same name is on."""
PAGE_TITLES: Final = {"voice": "Phone calls"}
"""Navigation labels of capability pages not named after their capability."""
MAX_DATA_CHARS: Final = 1 << 20
"""Generated data longer than this is not put into a form (send it raw)."""


def _server() -> AbstractTrioNeuroServer:
    server: AbstractTrioNeuroServer = current_app.config["NEURO_SERVER"]
    return server


def _sections() -> Mapping[str, Any]:
    """The ``/stats`` sections of the capabilities that are on, by name."""
    source: Callable[[], Mapping[str, Any]] = current_app.config["NEURO_STATS"]
    return source()


def _client(session: str) -> TrioNeuroServerClient:
    client = _server().get_client(session)
    if client is None:
        raise ApiError(404, "unknown_game", f"no connected game {session!r}")
    return client


def csrf_token() -> str:
    """The token pages put in ``<meta name="csrf-token">``: the session's.

    Empty without a token (loopback): no session exists, and the control
    plane's Origin and Host guard is what protects unsafe requests.
    """
    return csrf_token_for(request)


def dashboard_pages(
    *, frame_log: int = 500, servers: Callable[[], Iterable[Any]] = list
) -> Blueprint:
    """The ``/ui`` blueprint (named ``dashboard``).

    ``frame_log`` is how many frames a page's live log keeps; ``servers``
    returns the running servers with their tunnels (the ServerManager's
    :class:`~neuro_api.manager.ServerInfo`), for the services page.
    """
    pages = Blueprint(
        "dashboard",
        __name__,
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/static",
    )

    @pages.after_request
    async def no_sniffing(response: Response) -> Response:
        # Pages, files and JSON alike: a browser must take each for what its
        # Content-Type says (JSON quoting a game's markup is not a page).
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def _common(page: str) -> dict[str, Any]:
        on = [name for name in CAPABILITY_PAGES if name in _sections()]
        return {
            "page": page,
            "csrf_token": csrf_token(),
            "capabilities": [
                (name, PAGE_TITLES.get(name, name.capitalize())) for name in on
            ],
            "frame_log": frame_log,
        }

    async def _render(template: str, page: str, **values: Any) -> Response:
        html = await render_template(template, **_common(page), **values)
        response = Response(html, mimetype="text/html")
        # No script but our own file; no framing (clickjacking).
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @pages.get("/")
    async def games_page() -> Response:
        """Every connected game, live."""
        return await _render("games.html", "games", games=_server().games())

    @pages.get("/games/<session>")
    async def game_page(session: str) -> Response:
        """One game: its force, actions (forms), pending results, frames."""
        client = _server().get_client(session)
        config = _server().config
        return await _render(
            "game.html",
            "games",
            session=session,
            client=client,
            result_timeout=config.result_timeout,
            max_retries=config.max_retries,
        )

    @pages.get("/diagnostics")
    async def diagnostics_page() -> Response:
        """The catalogue, each id with the connected games that raised it."""
        raised: dict[str, dict[str, str]] = {}
        for client in _server().games():
            for diagnostic in client.diagnostics:
                raised.setdefault(diagnostic.id, {})[client.session_id] = (
                    client.game_title or client.session_id
                )
        return await _render(
            "diagnostics.html",
            "diagnostics",
            catalogue=sorted(CATALOGUE.values(), key=lambda kind: kind.id),
            raised=raised,
        )

    @pages.get("/services")
    async def services_page() -> Response:
        """The supervisor's services, servers with tunnels, settings."""
        health: Callable[[], Mapping[str, Any]] = current_app.config["NEURO_HEALTH"]
        settings: Callable[[], Mapping[str, Any]] = current_app.config["NEURO_SETTINGS"]
        shown = dict(settings())
        return await _render(
            "services.html",
            "services",
            health=dict(health()),
            servers=list(servers()),
            settings=orjson.dumps(
                shown, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
            ).decode(),
        )

    def _capability_page(name: str) -> Callable[[], Any]:
        async def view() -> Response:
            sections = _sections()
            if name not in sections:
                raise ApiError(404, "capability_off", f"the {name} capability is off")
            return await _render(f"{name}.html", name, section=dict(sections[name]))

        view.__name__ = f"{name}_page"
        view.__doc__ = f"The {name} capability's page (404 while it is off)."
        return view

    for name in CAPABILITY_PAGES:
        pages.get(f"/{name}")(_capability_page(name))

    _form_routes(pages)
    return pages


def _data_text(raw: str | bytes) -> str:
    """The JSON text of ``data`` in a ``{"data": ...}`` body.

    Raises :class:`ApiError` 400: ``invalid_json`` for a body that is not
    JSON (or nested deeper than the server reads any: orjson's 1,024
    levels), ``invalid_request`` for another shape or for data nested
    deeper than it encodes (254 levels). Never Python's own ``json``: its
    recursion ends in a ``RecursionError`` (a 500).
    """
    if not request.is_json:
        raise ApiError(
            400, "invalid_json", "the body needs Content-Type: application/json"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"the body is not valid JSON: {exc}"
        ) from None
    if not isinstance(body, dict) or "data" not in body:
        raise ApiError(400, "invalid_request", 'the body is {"data": ...}')
    try:
        return orjson.dumps(body["data"]).decode()
    except orjson.JSONEncodeError as exc:
        raise ApiError(400, "invalid_request", f"data: {exc}") from None


def _form_routes(pages: Blueprint) -> None:
    """The action form's two helpers: generated data, the server's verdict."""

    # <name:...>: the control plane's converter for names a game chose ("/"
    # included); these routes are only ever served by the control plane.
    @pages.get("/api/games/<session>/actions/<name:action>/generate")
    async def generate(session: str, action: str) -> Any:
        """Valid data for an action's schema, not sent: ``{"data": ...}``.

        ``data`` is null for an action without a schema. 404 for an unknown
        game or action; 400 ``cannot_generate_data`` when none can be made.
        """
        registered = _client(session).get_action(action)
        if registered is None:
            raise ApiError(404, "unknown_action", f"no action {action!r}")
        try:
            text = await _server().generator.generate_json(registered.schema)
        except (GenerationError, SchemaError) as exc:
            raise ApiError(400, "cannot_generate_data", str(exc)) from None
        if text is not None and len(text) > MAX_DATA_CHARS:
            raise ApiError(400, "data_too_large", "the generated data is too large")
        return {"data": None if text is None else orjson.loads(text)}

    @pages.post("/api/games/<session>/actions/<name:action>/validate")
    async def validate(session: str, action: str) -> Any:
        """The server's verdict on data: ``{"ok": bool, "reason": str | None}``.

        The body is ``{"data": <any JSON>}`` (else 400, see
        :func:`_data_text`); nothing is sent to the game.
        """
        registered = _client(session).get_action(action)
        if registered is None:
            raise ApiError(404, "unknown_action", f"no action {action!r}")
        text = _data_text(await request.get_data(as_text=False))
        try:
            verdict = await _server().validate_data(registered.schema, text)
        except SchemaError as exc:
            raise ApiError(400, "invalid_schema", str(exc)) from None
        return {"ok": verdict.ok, "reason": None if verdict.ok else verdict.reason}
