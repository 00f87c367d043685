"""Readable reasons for failures, and the error a critical failure raises."""

from __future__ import annotations

import trio

from neuro_api._shared import leaves as _leaves

__all__ = ["CriticalServiceError", "ServiceError", "describe_exception"]


class ServiceError(Exception):
    """A service's failure told in its own words, for a person to read.

    Raise it (``from`` the original error) when the message says all there
    is to say (``cannot listen on 127.0.0.1:8001: Address already in use``):
    :func:`describe_exception` shows it without the type name, in logs and
    in ``/health``.
    """


class CriticalServiceError(RuntimeError):
    """A critical service failed, so the supervisor stopped everything.

    ``name`` is the service, ``reason`` the readable cause (see
    :func:`describe_exception`); the original exception is ``__cause__``.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"critical service {self.name!r} failed: {self.reason}"


def describe_exception(exc: BaseException) -> str:
    """One line saying what went wrong, for logs, ``/health`` and exit messages.

    Exception groups (nested to any depth, as Trio nurseries and Hypercorn
    produce them) are unwrapped into their leaf exceptions, each shown as
    ``Type: message`` (just ``Type`` when the message is empty; just the
    message for a :class:`ServiceError`), joined with ``"; "``; repeated
    leaves are shown once, and ``trio.Cancelled`` leaves only when nothing
    else is there. Whitespace in messages is collapsed so the result is
    always one line.
    """
    leaves = list(_leaves(exc))
    shown = [leaf for leaf in leaves if not isinstance(leaf, trio.Cancelled)]
    parts: list[str] = []
    for leaf in shown or leaves:
        message = " ".join(str(leaf).split())
        name = type(leaf).__name__
        if isinstance(leaf, ServiceError) and message:
            part = message
        else:
            part = f"{name}: {message}" if message else name
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)
