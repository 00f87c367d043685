"""What the manager reports about a server, and the URL arithmetic behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from neuro_api._shared import host_port

__all__ = ["ServerInfo", "ServerKind", "host_port"]

ServerKind = Literal["http", "websocket"]

# A server bound to every interface is reached locally through loopback.
_UNSPECIFIED = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}


@dataclass(frozen=True, kw_only=True)
class ServerInfo:
    """A running server, as :meth:`ServerManager.list` reports it.

    ``local_url`` carries the real port (``port``) even when port 0 was
    asked for: ``http(s)://`` for HTTP servers, ``ws(s)://`` for WebSocket
    servers. ``public_url`` is set only while a tunnel is open: the
    provider's ``https://`` URL (``wss://`` for a WebSocket server) with the
    server's ``public_path`` appended. ``tunnel_error`` says why a requested
    tunnel did not open (the server still runs locally).
    """

    name: str
    kind: ServerKind
    local_url: str
    port: int
    public_url: str | None = None
    tunnel_error: str | None = None


def upstream_url(local_url: str) -> str:
    """The ``http(s)://`` URL a tunnel forwards to, for a server's local URL."""
    parts = urlsplit(local_url)
    scheme = _HTTP_SCHEMES.get(parts.scheme, parts.scheme)
    host = parts.hostname or ""
    host = _UNSPECIFIED.get(host, host)
    port = parts.port
    netloc = host if port is None else host_port(host, port)
    return urlunsplit((scheme, netloc, "", "", ""))


def public_url(kind: ServerKind, tunnel_url: str, public_path: str) -> str:
    """The URL clients use: ``tunnel_url`` in the server's scheme plus the path.

    ngrok serves WebSocket upgrades over its HTTP(S) endpoints, so a
    WebSocket server's ``https://`` tunnel is announced as ``wss://``.
    """
    parts = urlsplit(tunnel_url)
    scheme = parts.scheme
    if kind == "websocket":
        scheme = _WEBSOCKET_SCHEMES.get(scheme, scheme)
    path = parts.path.rstrip("/")
    if public_path:
        path += public_path if public_path.startswith("/") else f"/{public_path}"
    return urlunsplit((scheme, parts.netloc, path, "", ""))
