"""Bearer-token check for mutating routes."""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from quart import Quart, request

from neuro_api.control._errors import ApiError

__all__ = ["install_auth", "new_token"]

_MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def new_token() -> str:
    """Return a fresh random token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def install_auth(app: Quart, token: str | None) -> None:
    """Require ``Authorization: Bearer <token>`` on mutating routes.

    ``token=None`` means the control plane is reachable only from this
    machine and mutating routes are open; the caller decides (see
    :attr:`neuro_api.settings.Settings.exposed`).
    """
    if token is None:
        return
    expected = f"Bearer {token}".encode()

    @app.before_request
    async def check_token() -> None:
        if request.method not in _MUTATING:
            return
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                401, "unauthorized", "this route needs 'Authorization: Bearer <token>'"
            )
