"""The realtime capability: settings, the pool as a service, routes, console, engine."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any, ClassVar

from quart import Blueprint

from neuro_api._redact import redact_data
from neuro_api.capability import Capability, Setup
from neuro_api.control import public
from neuro_api.realtime._config import DEFAULT_MODEL, DEFAULT_URL, PoolConfig
from neuro_api.realtime._engine import RealtimeNeuroServer
from neuro_api.realtime._pool import RealtimePool
from neuro_api.server import AbstractTrioNeuroServer, Console, ServerConfig
from neuro_api.settings import Settings, SettingsError, setting

__all__ = ["RealtimeCapability", "RealtimeSettings", "realtime_routes"]

ENGINE = "realtime"


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _between(low: int, high: int) -> Any:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be {low} to {high}"

    return check


def _url(value: str) -> str | None:
    # What PoolConfig checks, said here so the error names the setting.
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return "must be a ws:// or wss:// URL"
    return None


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


@dataclasses.dataclass(frozen=True, slots=True)
class RealtimeSettings:
    """The ``[realtime]`` section; the variables are the seed's."""

    section: ClassVar[str] = "realtime"
    enabled: bool | None = setting(
        None,
        "run the OpenAI Realtime pool (default: when OPENAI_API_KEY is set)",
        flag="--realtime",
    )
    api_key: str | None = setting(
        None, "OpenAI API key", env="OPENAI_API_KEY", secret=True, metavar="KEY"
    )
    model: str = setting(
        DEFAULT_MODEL,
        "Realtime model",
        env="OPENAI_REALTIME_MODEL",
        check=_not_empty,
        metavar="MODEL",
    )
    url: str = setting(
        DEFAULT_URL,
        "Realtime WebSocket URL (the model goes in ?model=)",
        env="OPENAI_REALTIME_URL",
        check=_url,
        metavar="URL",
    )
    max_connections: int = setting(
        10,
        "connections open at most (each serves one lease at a time)",
        env="WEBSOCKET_MAX_CONNECTIONS",
        check=_between(1, 1000),
        metavar="N",
    )
    max_connection_age: float = setting(
        3600.0,
        "seconds a connection is used for (closed once returned after that)",
        env="WEBSOCKET_MAX_CONNECTION_AGE",
        check=_positive,
        metavar="SECONDS",
    )
    max_idle_time: float = setting(
        300.0,
        "seconds an unused connection is kept",
        env="WEBSOCKET_MAX_IDLE_TIME",
        check=_positive,
        metavar="SECONDS",
    )
    health_check_interval: float = setting(
        30.0,
        "seconds between two health checks of the idle connections",
        env="WEBSOCKET_HEALTH_CHECK_INTERVAL",
        check=_positive,
        metavar="SECONDS",
    )
    max_sessions_per_connection: int = setting(
        10,
        "leases one connection serves before it is closed",
        env="WEBSOCKET_MAX_SESSIONS_PER_CONNECTION",
        check=_between(1, 1_000_000),
        metavar="N",
    )
    ping_interval: float = setting(
        20.0,
        "seconds between two pings of a connection",
        env="WEBSOCKET_PING_INTERVAL",
        check=_positive,
        metavar="SECONDS",
    )
    ping_timeout: float = setting(
        30.0,
        "seconds a pong may take before the connection counts as dead",
        env="WEBSOCKET_PING_TIMEOUT",
        check=_positive,
        metavar="SECONDS",
    )
    close_timeout: float = setting(
        10.0,
        "seconds a connection's closing handshake may take",
        env="WEBSOCKET_CLOSE_TIMEOUT",
        check=_positive,
        metavar="SECONDS",
    )
    lease_timeout: float = setting(
        30.0,
        "seconds a caller waits for a connection when all are leased",
        check=_positive,
        metavar="SECONDS",
    )
    connect_timeout: float = setting(
        10.0,
        "seconds opening a connection may take",
        check=_positive,
        metavar="SECONDS",
    )
    instructions: str | None = setting(
        None,
        "realtime engine: the persona ({name} is the display name; default: "
        "Neuro playing the game)",
        metavar="TEXT",
    )
    answer_timeout: float = setting(
        10.0,
        "realtime engine: seconds the model may take per force (then a random "
        "valid answer is sent)",
        check=_positive,
        metavar="SECONDS",
    )
    context_chars: int = setting(
        16000,
        "realtime engine: characters of each game's context kept and sent",
        check=_between(100, 1_000_000),
        metavar="N",
    )

    def pool_config(self) -> PoolConfig:
        """The pool's configuration; :class:`ValueError` without a key."""
        if not self.api_key:
            raise ValueError("the realtime capability needs OPENAI_API_KEY")
        return PoolConfig(
            api_key=self.api_key,
            model=self.model,
            url=self.url,
            max_connections=self.max_connections,
            max_connection_age=self.max_connection_age,
            max_idle_time=self.max_idle_time,
            health_check_interval=self.health_check_interval,
            max_sessions_per_connection=self.max_sessions_per_connection,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            lease_timeout=self.lease_timeout,
            connect_timeout=self.connect_timeout,
        )

    @property
    def on(self) -> bool:
        """Whether the pool runs: ``--realtime``, or a key without ``--no-realtime``."""
        if self.enabled is None:
            return bool(self.api_key)
        return self.enabled


class RealtimeCapability(Capability):
    """The OpenAI Realtime pool (seed "WebSocket Manager") and ``--engine realtime``.

    :attr:`pool` is the :class:`~neuro_api.realtime.RealtimePool` once
    made (None while the capability is off). See the "Realtime" docs page.
    """

    name = "realtime"
    settings = RealtimeSettings
    engines = (ENGINE,)

    def __init__(self) -> None:
        self.pool: RealtimePool | None = None

    def _pool(self, section: RealtimeSettings) -> RealtimePool:
        if self.pool is None:
            self.pool = RealtimePool(section.pool_config())
        return self.pool

    def make_engine(
        self, name: str, settings: Settings, config: ServerConfig
    ) -> AbstractTrioNeuroServer:
        """The realtime engine, on this capability's pool."""
        section = settings.section(RealtimeSettings)
        if not section.api_key:
            raise SettingsError(
                "--engine realtime needs an OpenAI API key: set OPENAI_API_KEY"
            )
        if section.enabled is False:
            raise SettingsError("--engine realtime needs the pool: drop --no-realtime")
        return RealtimeNeuroServer(
            config,
            pool=self._pool(section),
            instructions=section.instructions,
            answer_timeout=section.answer_timeout,
            context_chars=section.context_chars,
            unforced_interval=settings.unforced_interval,
            seed=settings.seed,
        )

    def setup(self, app: Setup) -> None:
        """Add the pool's service, its routes, health, stats and console command."""
        section: RealtimeSettings = app.section()
        if not section.on and self.pool is None:
            return
        if not section.api_key:
            raise ValueError("--realtime needs an OpenAI API key: set OPENAI_API_KEY")
        pool = self._pool(section)
        engine = app.server if isinstance(app.server, RealtimeNeuroServer) else None
        # Started before games connect, stopped after they left.
        app.add_service("realtime-pool", pool.run, before=("games",))
        app.add_routes(realtime_routes(pool), prefix="/realtime")
        app.add_health(pool.health)
        app.add_stats(lambda: _stats(pool, engine))

        async def realtime(console: Console, args: list[str], data: str) -> None:
            for line in describe(pool, engine):
                console.say(line)

        app.add_command(
            "realtime", "realtime", "Show the OpenAI Realtime pool", realtime
        )


def _stats(pool: RealtimePool, engine: RealtimeNeuroServer | None) -> dict[str, Any]:
    stats = pool.stats()
    if engine is not None:
        stats["engine"] = engine.engine_stats()
    return stats


def describe(pool: RealtimePool, engine: RealtimeNeuroServer | None) -> list[str]:
    """The console's ``realtime`` lines: health, counters, each connection."""
    health = pool.health()
    stats = pool.stats()
    lines = [
        f"realtime: {health['status']} ({health['message']}); "
        f"model {pool.config.model}",
        f"connections: {stats['total_connections']} of {stats['max_connections']} "
        f"({stats['healthy_connections']} healthy, {stats['idle_connections']} idle), "
        f"leases: {stats['active_sessions']} active, "
        f"{stats['total_sessions_handled']} handled, {stats['waiting']} waiting",
        f"errors: {stats['api_errors']} from the API, "
        f"{stats['connect_failures']} failed connects, "
        f"{stats['lease_timeouts']} lease timeouts, "
        f"{stats['rate_limited']} rate limited",
    ]
    if pool.problem is not None:
        lines.append(f"problem: {pool.problem}")
    for row in pool.connections():
        extra = f" ({row['problem']})" if row["problem"] else ""
        lines.append(
            f"  {row['id']}: {row['state']}, {row['sessions']} leases, "
            f"age {row['age']:.0f} s{extra}"
        )
    if engine is not None:
        counts = engine.engine_stats()
        lines.append(
            f"engine: {counts['forces']} forces, {counts['answered']} answered by "
            f"the model, {counts['retried']} retried, {counts['fallbacks']} "
            "answered at random"
        )
    return lines


def realtime_routes(pool: RealtimePool) -> Blueprint:
    """``/realtime/health`` (public), ``/realtime/stats`` and ``/realtime/config``."""
    routes = Blueprint("realtime_pool", __name__)

    def hidden(data: dict[str, Any]) -> Any:
        # Errors and close reasons are the API's words: they may quote the key.
        return redact_data(data, [pool.config.api_key])

    @routes.get("/health")
    @public
    async def health() -> Any:
        """The pool's health, as the seed reports it.

        ``{"status": "healthy"|"degraded", "websocket_manager":
        {"healthy_connections", "total_connections", "max_connections"},
        "message"}``, plus ``problem`` while the API refuses connections.
        """
        return hidden(pool.health())

    @routes.get("/stats")
    async def stats() -> Any:
        """The pool's counters, and ``connections`` one by one.

        The seed's (``total_connections``, ``healthy_connections``,
        ``active_sessions``, ``total_sessions_handled``,
        ``max_connections``), then ours.
        """
        return hidden({**pool.stats(), "connections": pool.connections()})

    @routes.get("/config")
    async def config() -> Any:
        """The pool's settings: the seed's fields and ``websocket_url`` (no key)."""
        return {
            "websocket_manager": pool.config.shown(),
            "note": "Configuration is read from the settings at startup",
        }

    return routes
