"""Which web pages may reach a server that listens on this machine only.

A server on 127.0.0.1 is out of reach of other machines, not of the web
pages its user has open: a browser lets any page open a WebSocket to
``ws://127.0.0.1:8000`` or post to ``http://127.0.0.1:8001``, and says which
page did in the ``Origin`` header. Games and scripts send no ``Origin`` (or
one of this machine); a page elsewhere is refused unless it is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["is_loopback_host", "origin_allowed", "origin_host"]


def is_loopback_host(host: str) -> bool:
    """Whether a ``Host`` value (name, IPv4 or [IPv6], optional port) is local."""
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower().rstrip(".")
    return (
        name in {"localhost", "::1"}
        or name.endswith(".localhost")
        or (
            name.startswith("127.")
            and name.isascii()  # "127.²" is no address
            and name.replace(".", "").isdigit()
        )
    )


def origin_host(origin: str) -> str:
    """The host (and port) of an ``Origin`` value: ``http://h:1/`` gives ``h:1``."""
    return origin.split("://", 1)[-1].split("/", 1)[0]


def origin_allowed(origin: str, allowed: Iterable[str] = ()) -> bool:
    """Whether a page at ``origin`` may connect.

    Pages of this machine always may; others only when ``allowed`` lists
    their origin exactly (``https://example.com``, case aside), or holds
    ``*``. ``null`` (a page opened from a file) must be listed too.
    """
    normal = origin.strip().rstrip("/").lower()
    listed = {entry.strip().rstrip("/").lower() for entry in allowed}
    if "*" in listed or normal in listed:
        return True
    return normal != "null" and is_loopback_host(origin_host(normal))
