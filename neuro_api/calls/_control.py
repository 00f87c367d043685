"""The calls capability's control-plane routes (``/calls/...``).

The calls API has a port and an origin of its own (the seed's TV app talks
to it); these routes put the registry and the sync job on the control
plane too, under its auth, so its clients (the dashboard's calls page,
scripts holding the control plane's token) need one address. The bodies of
the sync, job and stats routes are the admin routes' (the seed's), so a
script can move from one to the other unchanged.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import Any, Final

from quart import Blueprint, request

from neuro_api._numbers import whole_number
from neuro_api.calls._app import (
    CallsService,
    background_service,
    registry_stats,
    sync_now,
)
from neuro_api.calls._model import KINDS, STATUSES, Call
from neuro_api.calls._store import STORE_ERRORS
from neuro_api.control import ApiError

__all__ = ["MAX_QUERY", "SCAN_PAGE", "CallMatches", "calls_control_routes"]

LOGGER: Final = logging.getLogger("neuro_api.calls")
MAX_LIMIT: Final = 1000
MAX_QUERY: Final = 200
"""Characters of a ``q`` filter."""
SCAN_PAGE: Final = 500
"""Calls looked at per turn of the store's worker during a text search."""


class CallMatches:
    """The newest ``limit`` calls matching status, kind and text, a page at a time.

    ``text`` is looked for, ignoring case, in the id, both identities, the
    room and the end reason. Memory holds ``limit`` calls whatever the
    registry's size: older matches are dropped as newer ones come.
    """

    def __init__(
        self, status: str | None, text: str, limit: int, kind: str | None = None
    ) -> None:
        self.status = status
        self.kind = kind
        self.needle = text.casefold()
        self.limit = limit
        self.scanned = 0
        self.matched = 0
        self._heap: list[tuple[float, str, Call]] = []

    def _matches(self, call: Call) -> bool:
        if self.status is not None and call.status != self.status:
            return False
        if self.kind is not None and call.kind != self.kind:
            return False
        fields = (call.id, call.caller, call.callee, call.room, call.end_reason or "")
        return any(self.needle in field.casefold() for field in fields)

    def add(self, calls: Iterable[Call]) -> int:
        """Look at ``calls``; returns how many there were (0: the end)."""
        looked = 0
        for call in calls:
            looked += 1
            if not self._matches(call):
                continue
            self.matched += 1
            entry = (call.created_at.timestamp(), call.id, call)
            if len(self._heap) < self.limit:
                heapq.heappush(self._heap, entry)
            elif entry[:2] > self._heap[0][:2]:
                heapq.heapreplace(self._heap, entry)
        self.scanned += looked
        return looked

    def newest(self) -> list[Call]:
        """The matches kept, newest first."""
        return [entry[2] for entry in sorted(self._heap, reverse=True)]


@contextlib.contextmanager
def _registry() -> Iterator[None]:
    """Turn the store's failures into a 503 (the detail goes to the log)."""
    try:
        yield
    except STORE_ERRORS as exc:
        LOGGER.warning("call registry unavailable: %s: %s", type(exc).__name__, exc)
        raise ApiError(
            503,
            "registry_unavailable",
            "the call registry is unavailable: try again later",
        ) from None


def _arguments() -> tuple[str | None, str | None, str, int]:
    """``status``, ``kind``, ``q`` and ``limit`` of the query string, checked."""
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(
            400, "invalid_request", f"status must be one of {', '.join(STATUSES)}"
        )
    kind = request.args.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise ApiError(
            400, "invalid_request", f"kind must be one of {', '.join(KINDS)}"
        )
    text = request.args.get("q", "").strip()
    if len(text) > MAX_QUERY:
        raise ApiError(400, "invalid_request", f"q is at most {MAX_QUERY} characters")
    raw = request.args.get("limit", "100")
    limit = whole_number(raw, at_most=MAX_LIMIT)
    if not limit:  # None, or 0
        raise ApiError(
            400, "invalid_request", f"limit must be a whole number 1 to {MAX_LIMIT}"
        )
    return status, kind, text, limit


def calls_control_routes(service: CallsService) -> Blueprint:
    """The ``/calls`` blueprint of ``service`` (the control plane's auth)."""
    routes = Blueprint("calls_control", __name__)

    @routes.get("/registry")
    async def registry() -> Any:
        """Calls, newest first: ``?status=``, ``?kind=``, ``?q=`` (text), ``?limit=``.

        ``status`` is ``pending``, ``accepted`` or ``ended``; ``kind`` is
        ``video`` or ``phone``; ``q`` (up to
        200 characters) is looked for, ignoring case, in the id, caller,
        callee, room and end reason; ``limit`` is 1 to 1000 (100). The
        body is ``{"calls": [...], "count": N, "matched": M, "scanned":
        S}``: with ``q`` the whole registry is searched (``matched`` may be
        more than ``count``); without it ``matched`` and ``scanned`` are
        ``count``. 503 ``registry_unavailable`` when the store is down.
        """
        status, kind, text, limit = _arguments()
        store = service.store
        with _registry():
            if not text:
                found = await store.call(store.store.calls, status, limit, kind)
                return {
                    "calls": [call.to_json() for call in found],
                    "count": len(found),
                    "matched": len(found),
                    "scanned": len(found),
                }
            matches = CallMatches(status, text, limit, kind)
            calls = store.store.all_calls()
            # A page per turn of the store's worker (the lazy slice is read
            # there): the TV app's requests go in between, however large the
            # registry.
            while await store.call(matches.add, itertools.islice(calls, SCAN_PAGE)):
                pass
        found = matches.newest()
        return {
            "calls": [call.to_json() for call in found],
            "count": len(found),
            "matched": matches.matched,
            "scanned": matches.scanned,
        }

    @routes.post("/sync")
    async def sync() -> Any:
        """Sync with Twilio now (the body of ``POST /api/admin/sync-twilio``).

        503 ``twilio_not_configured`` without Twilio's credentials; 409
        ``sync_busy`` while another server syncs.
        """
        with _registry():
            return await sync_now(service)

    @routes.get("/job")
    async def job() -> Any:
        """The sync job: running, next run, interval (the admin route's body)."""
        return background_service(service)

    @routes.get("/stats")
    async def stats() -> Any:
        """Counts over the registry (the body of ``GET /api/admin/stats``)."""
        with _registry():
            return await registry_stats(service)

    return routes
