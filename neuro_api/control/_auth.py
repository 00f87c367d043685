"""Bearer-token check: every route but health and the API's own documentation."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Final, TypeVar

from quart import Quart, current_app, request

from neuro_api.control._errors import ApiError

__all__ = ["install_auth", "is_public", "new_token", "public"]

F = TypeVar("F", bound=Callable[..., object])

_PUBLIC_ATTRIBUTE: Final = "_neuro_api_public"
_SCHEMA_ENDPOINTS: Final = frozenset({"openapi", "swagger_ui"})
"""quart-schema's OpenAPI document and interactive docs."""


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
    """Whether route ``endpoint`` (served by ``view``) needs no token."""
    return endpoint in _SCHEMA_ENDPOINTS or getattr(view, _PUBLIC_ATTRIBUTE, False)


def install_auth(app: Quart, token: str | None) -> None:
    """Require ``Authorization: Bearer <token>`` on every non-public route.

    Reading routes reveal game data (actions, frames, settings), so they
    need the token as much as mutating ones. Requests that match no route
    pass, to get their 404 or 405. ``token=None`` means the control plane is
    reachable only from this machine and everything is open; the caller
    decides (see :attr:`neuro_api.settings.Settings.exposed`).
    """
    if token is None:
        return
    expected = f"Bearer {token}".encode()

    @app.before_request
    async def check_token() -> None:
        endpoint = request.endpoint
        if endpoint is None:
            return
        if is_public(endpoint, current_app.view_functions.get(endpoint)):
            return
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                401,
                "unauthorized",
                "this route needs 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="neuro_api"'},
            )
