"""The lines a person or a script reads on stdout about a server's URLs."""

from __future__ import annotations

from neuro_api.manager import ServerInfo as ManagedServer

__all__ = ["server_lines", "tunnel_lines"]


def server_lines(server: ManagedServer) -> list[str]:
    """``neuro_api NAME on URL`` (and its public URL) for a capability's server."""
    return [f"neuro_api {server.name} on {server.local_url}", *tunnel_lines(server)]


def tunnel_lines(server: ManagedServer) -> list[str]:
    """A server's public URL line, or why it has none (nothing if not asked)."""
    if server.public_url:
        return [f"neuro_api public {server.name} URL: {server.public_url}"]
    if server.tunnel_error:
        return [f"neuro_api {server.name}: no tunnel: {server.tunnel_error}"]
    return []
