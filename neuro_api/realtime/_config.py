"""The pool's configuration: the seed's settings, checked once."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any, Final

__all__ = ["DEFAULT_MODEL", "DEFAULT_URL", "PoolConfig"]

DEFAULT_URL: Final = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL: Final = "gpt-realtime"
_TIMES: Final = (
    "max_connection_age",
    "max_idle_time",
    "health_check_interval",
    "ping_interval",
    "ping_timeout",
    "close_timeout",
    "lease_timeout",
    "connect_timeout",
    "reset_timeout",
    "backoff_max",
)


@dataclasses.dataclass(frozen=True, slots=True)
class PoolConfig:
    """How a :class:`~neuro_api.realtime.RealtimePool` connects and keeps connections.

    Times are seconds. The names are the seed's (``WEBSOCKET_*``); the
    rest are ours: ``lease_timeout`` bounds a caller's wait for a
    connection, ``connect_timeout`` a handshake (up to ``session.created``),
    ``reset_timeout`` the clean-up of a connection between two leases,
    ``backoff_max`` the longest wait before trying again after the API
    refused a connection. ``api_key`` is never shown (see :meth:`shown`).
    """

    api_key: str = dataclasses.field(repr=False)
    model: str = DEFAULT_MODEL
    url: str = DEFAULT_URL
    max_connections: int = 10
    max_connection_age: float = 3600.0
    max_idle_time: float = 300.0
    health_check_interval: float = 30.0
    max_sessions_per_connection: int = 10
    ping_interval: float = 20.0
    ping_timeout: float = 30.0
    close_timeout: float = 10.0
    lease_timeout: float = 30.0
    connect_timeout: float = 10.0
    reset_timeout: float = 10.0
    backoff_max: float = 60.0
    max_message_size: int = 16 << 20
    """Largest event accepted from the API (audio and session events are big)."""
    event_queue: int = 512
    """Events buffered for a lease's user before the reader waits for it."""
    event_buffer: int = 16 << 20
    """Bytes of events buffered for a lease's user (one event at least)
    before the reader waits for it: with ``event_queue``, what bounds the
    memory a user that reads slowly makes the pool hold."""
    max_tracked_items: int = 4096
    """Conversation items a lease may leave for the reset to delete; with
    more, the connection is closed instead of reset."""

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key: an OpenAI API key is required")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"url: must be a ws:// or wss:// URL, got {self.url!r}")
        try:
            parts.port  # noqa: B018 - raises for a port out of range
        except ValueError:
            raise ValueError(f"url: bad port in {self.url!r}") from None
        if not self.model:
            raise ValueError("model: must not be empty")
        for name in ("max_connections", "max_sessions_per_connection"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        for name in _TIMES:
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{name}: must be > 0 and finite, got {value!r}")
        for name in (
            "max_message_size",
            "event_queue",
            "event_buffer",
            "max_tracked_items",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")

    @property
    def websocket_url(self) -> str:
        """:attr:`url` with the model in its query (``?model=...``)."""
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in query if k != "model"] + [("model", self.model)]
        return urllib.parse.urlunsplit(
            parts._replace(query=urllib.parse.urlencode(query))
        )

    @property
    def secure(self) -> bool:
        """Whether the URL is ``wss://`` (TLS)."""
        return urllib.parse.urlsplit(self.url).scheme == "wss"

    @property
    def host(self) -> str:
        """The host of :attr:`url`."""
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The port of :attr:`url` (443 or 80 by default)."""
        port = urllib.parse.urlsplit(self.url).port
        return port if port is not None else (443 if self.secure else 80)

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the URL's host and port, as written."""
        return urllib.parse.urlsplit(self.url).netloc.rpartition("@")[2]

    @property
    def resource(self) -> str:
        """The path and query of :attr:`websocket_url` (what the handshake asks for)."""
        parts = urllib.parse.urlsplit(self.websocket_url)
        return f"{parts.path or '/'}?{parts.query}"

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The handshake's headers (the bearer key)."""
        return [(b"Authorization", f"Bearer {self.api_key}".encode())]

    def shown(self) -> dict[str, Any]:
        """The seed's ``/config`` fields plus ours; the key is never in it."""
        return {
            "max_connections": self.max_connections,
            "max_connection_age": self.max_connection_age,
            "max_idle_time": self.max_idle_time,
            "health_check_interval": self.health_check_interval,
            "max_sessions_per_connection": self.max_sessions_per_connection,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "close_timeout": self.close_timeout,
            "openai_model": self.model,
            "openai_api_base_url": self.url,
            "websocket_url": self.websocket_url,
            "lease_timeout": self.lease_timeout,
            "connect_timeout": self.connect_timeout,
        }
