"""File descriptors: as many as the system allows, and some kept for the rest.

Every game connection holds a descriptor, and so do the control plane's
connections, the log file, the tunnels' agent and any store. The soft limit
(``ulimit -n``, often 1024) is raised to the hard one when the process
starts, and game connections are capped below it, so a flood of games can
never take the descriptors ``/health`` or a log write needs.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

if sys.platform != "win32":
    import resource

__all__ = ["RESERVED", "connection_budget", "raise_open_file_limit"]

LOGGER: Final = logging.getLogger("neuro_api.server")

RESERVED: Final = 64
"""Descriptors kept out of reach of game connections."""


def raise_open_file_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the new one.

    ``None`` where the platform has no such limit. A refusal (some systems
    cap the soft limit lower) keeps the old limit, with a debug line.
    """
    if sys.platform == "win32":  # pragma: no cover - no such limit there
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        LOGGER.debug("could not raise the open file limit to %s: %s", target, exc)
        return soft
    return target


def connection_budget() -> int | None:
    """Game connections the current soft limit leaves room for (``None``: any)."""
    if sys.platform == "win32":  # pragma: no cover - no such limit there
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - RESERVED)
