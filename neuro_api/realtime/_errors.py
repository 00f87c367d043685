"""What the Realtime pool and its connections raise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ConnectionLost",
    "LeaseTimeout",
    "RealtimeAPIError",
    "RealtimeError",
    "RealtimeUnavailable",
    "ResponseFailed",
]


class RealtimeError(Exception):
    """Base of every error of :mod:`neuro_api.realtime`."""


class RealtimeUnavailable(RealtimeError):
    """No connection could be leased.

    The API refused us, is unreachable, or the pool is closed: ``reason``
    says which, in a sentence (no secret).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeaseTimeout(RealtimeUnavailable):
    """No connection was ready within the lease timeout.

    Every connection stayed leased that long, or opening one (or resetting
    one) took that long: ``reason`` says which.
    """


class ConnectionLost(RealtimeError):
    """The leased connection ended, or stopped answering pings, mid-lease.

    The pool replaces it; the lease's work is lost (start it again on a
    new lease).
    """


class RealtimeAPIError(RealtimeError):
    """An ``error`` event from the API: ``code``, ``message``, ``type``, ``param``."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        self.code = _text(error.get("code"))
        self.type = _text(error.get("type"))
        self.message = _text(error.get("message")) or "no message"
        self.param = _text(error.get("param"))
        super().__init__(f"{self.code or self.type or 'error'}: {self.message}")


def _text(value: object) -> str | None:
    """A short string of an API field (an error may carry anything)."""
    if value is None:
        return None
    return str(value)[:500]


class ResponseFailed(RealtimeError):
    """A response ended without an answer (failed, cancelled or incomplete)."""
