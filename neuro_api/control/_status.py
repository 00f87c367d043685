"""Routes about the process: health, stats, config, the live event stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast

import orjson
from quart import Blueprint, Response, current_app
from quart_schema import document_response

from neuro_api.control._auth import public, still_allowed
from neuro_api.control._errors import ApiError
from neuro_api.control._models import ConfigView, HealthReport, Stats, StreamStats
from neuro_api.control._openapi import errors, event_stream
from neuro_api.server import AbstractTrioNeuroServer, TooManySubscribers

__all__ = ["HealthSource", "StatsSource", "status"]

status = Blueprint("status", __name__)

HealthSource = Callable[[], Mapping[str, Any]]
"""Returns ``{"status": "healthy"|"degraded"|"unhealthy", "services": [...]}``."""
StatsSource = Callable[[], Mapping[str, Mapping[str, Any]]]
"""Returns extra ``/stats`` sections by name (capabilities' counters)."""


def _server() -> AbstractTrioNeuroServer:
    server: AbstractTrioNeuroServer = current_app.config["NEURO_SERVER"]
    return server


@status.get("/health")
@public
@document_response(HealthReport)
@document_response(HealthReport, 503)
async def health() -> Any:
    """Overall health and each service's state; 503 when unhealthy.

    Needs no token, even when one is configured (for load balancers and
    supervisors); it tells nothing about the games.
    """
    source: HealthSource = current_app.config["NEURO_HEALTH"]
    report = dict(source())
    return report, 503 if report.get("status") == "unhealthy" else 200


@status.get("/stats")
@document_response(Stats)
async def stats() -> Stats:
    """Counters since start: connections, frames, forces, diagnostics."""
    server = _server()
    counters = server.stats
    extra: StatsSource = current_app.config["NEURO_STATS"]
    sections = {name: dict(section) for name, section in extra().items()}
    report: Stats = {
        "uptime": time.time() - counters.started_at,
        "connections": {
            "current": len(server.clients),
            "total": counters.connections_total,
        },
        "messages": {"in": counters.frames_in, "out": counters.frames_out},
        "forces": counters.forces,
        "retries": counters.diagnostics["force.retry"],
        "timeouts": counters.diagnostics["result.timeout"],
        "diagnostics": {
            "by_severity": {
                level: counters.severities[level]
                for level in ("info", "warning", "error")
            },
            "by_id": dict(counters.diagnostics),
        },
        "events_dropped": server.events.dropped,
        "event_streams": [
            cast(StreamStats, reader.to_json())
            for reader in server.events.subscribers()
        ],
    }
    if sections:
        report["capabilities"] = sections
    return report


@status.get("/config")
@document_response(ConfigView)
async def config() -> Any:
    """The effective settings, secrets redacted."""
    source: Callable[[], Mapping[str, Any]] = current_app.config["NEURO_SETTINGS"]
    return dict(source())


def _sse(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _dropped(count: int, total: int) -> bytes:
    """The event telling a slow reader what it lost since its last event."""
    return orjson.dumps({"type": "dropped", "count": count, "total": total})


@status.get("/events")
@errors(503)
@event_stream(
    "One `event:` line (`frame.in`, `frame.out`, `diagnostic`, `dropped`) and "
    "one `data:` line of JSON per event."
)
async def events() -> Response:
    """Server-sent events: ``frame.in``, ``frame.out`` and ``diagnostic``.

    Each event is one ``data:`` line of JSON. A listener that falls behind
    loses events rather than slowing the server or other listeners; it is
    told how many with a ``dropped`` event before the next one it gets (and
    ``/stats`` lists every stream's losses). At most 32 streams are open at
    once: beyond, 503 ``too_many_streams``. The stream ends at its next event
    once the credential that opened it no longer holds (a dashboard login
    logged out of: :func:`~neuro_api.control.valid_while`).
    """
    server = _server()
    if server.events.full:
        raise ApiError(
            503,
            "too_many_streams",
            f"{server.events.max_subscribers} event streams are open already; "
            "close one first",
        )

    allowed = still_allowed()

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        try:
            with server.events.subscribe() as reader:
                async for kind, data in reader:
                    if not allowed():
                        return
                    if dropped := reader.take_drops():
                        yield _sse("dropped", _dropped(dropped, reader.dropped))
                    yield _sse(kind, data)
        except TooManySubscribers as exc:  # filled up since the check above
            yield _sse("error", orjson.dumps({"type": "error", "error": str(exc)}))

    response = Response(stream(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.timeout = None
    return response
