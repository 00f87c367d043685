"""The calls capability: settings, the registry, the sync job, the HTTP app."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, ClassVar, Final, cast

import trio
from quart import Blueprint
from quart_trio import QuartTrio

from neuro_api._origins import is_loopback_host
from neuro_api.calls._app import (
    DEFAULT_ORIGINS,
    CallsService,
    TwilioKeys,
    create_calls_app,
)
from neuro_api.calls._control import calls_control_routes
from neuro_api.calls._decide import SyncRules
from neuro_api.calls._model import iso
from neuro_api.calls._routes import mount_routes
from neuro_api.calls._store import CallStore, RedisCallStore, SqliteCallStore
from neuro_api.calls._sync import AsyncStore, CallSync, ThreadedRooms
from neuro_api.calls._twilio import TOKEN_TTL_MAX, TwilioRooms
from neuro_api.calls._twilio_calls import ThreadedCalls, TwilioCalls
from neuro_api.capability import Capability, Setup
from neuro_api.control import admin_check
from neuro_api.settings import setting

__all__ = ["REGISTRY_FILE", "CallsCapability", "CallsSettings"]

LOGGER: Final = logging.getLogger("neuro_api.calls")
REGISTRY_FILE: Final = "calls.sqlite3"
"""The registry's file in ``--data-dir`` (without ``--redis-url``)."""
REST_CONCURRENCY: Final = 8
"""Twilio REST updates of phone calls (hang-ups) in flight at once."""


def settings_exposed(host: str, tunnel: bool) -> bool:
    """Whether the calls API is reachable from other machines."""
    return tunnel or not is_loopback_host(host)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _ttl(value: int) -> str | None:
    return None if 0 < value <= TOKEN_TTL_MAX else f"must be 1 to {TOKEN_TTL_MAX}"


def _lookups(value: int) -> str | None:
    return None if 1 <= value <= 10_000 else "must be 1 to 10000"


def _concurrency(value: int) -> str | None:
    return None if 1 <= value <= 200 else "must be 1 to 200"


@dataclasses.dataclass(frozen=True, slots=True)
class CallsSettings:
    """The ``[calls]`` section; Twilio's variables are the seed's."""

    section: ClassVar[str] = "calls"
    enabled: bool = setting(
        True, "serve the calls API (the seed's SmartTV backend)", flag="--calls"
    )
    host: str = setting("127.0.0.1", "address the calls API binds", metavar="HOST")
    port: int = setting(3001, "port of the calls API (0 picks one)", metavar="PORT")
    twilio_account_sid: str | None = setting(
        None, "Twilio account SID", env="TWILIO_ACCOUNT_SID", metavar="SID"
    )
    twilio_api_key: str | None = setting(
        None, "Twilio API key SID", env="TWILIO_API_KEY", metavar="SID"
    )
    twilio_api_secret: str | None = setting(
        None,
        "Twilio API key secret",
        env="TWILIO_API_SECRET",
        secret=True,
        metavar="SECRET",
    )
    twilio_region: str | None = setting(
        None, "Twilio region of the REST API", env="TWILIO_REGION", metavar="REGION"
    )
    twilio_base_url: str | None = setting(
        None,
        "send every Twilio REST request here instead of *.twilio.com (staging, tests)",
        env="TWILIO_BASE_URL",
        metavar="URL",
    )
    token_ttl: int = setting(
        3600, "seconds an access token is valid", check=_ttl, metavar="SECONDS"
    )
    sync_interval: float = setting(
        180.0, "seconds between two syncs with Twilio", check=_positive,
        metavar="SECONDS",
    )  # fmt: skip
    min_age: float = setting(
        300.0,
        "calls younger than this are never ended for an empty or single room",
        check=_non_negative,
        metavar="SECONDS",
    )
    empty_timeout: float = setting(
        300.0, "end a call whose room is empty for longer", check=_non_negative,
        metavar="SECONDS",
    )  # fmt: skip
    single_timeout: float = setting(
        600.0, "end a call whose room has one participant for longer",
        check=_non_negative, metavar="SECONDS",
    )  # fmt: skip
    phone_min_age: float = setting(
        60.0,
        "phone calls younger than this are never looked up by the sync",
        check=_non_negative,
        metavar="SECONDS",
    )
    phone_lookups: int = setting(
        100,
        "phone calls looked up at Twilio per sync at most (the rest: the next)",
        check=_lookups,
        metavar="N",
    )
    sync_concurrency: int = setting(
        20, "rooms looked up at once during a sync", check=_concurrency, metavar="N"
    )
    lookup_timeout: float = setting(
        15.0, "seconds one room lookup may take", check=_positive, metavar="SECONDS"
    )
    origins: str = setting(
        DEFAULT_ORIGINS,
        "web origins allowed to call the API (CORS), comma-separated; ':*' is any port",
        metavar="ORIGINS",
    )
    open_phone_calls: bool | None = setting(
        None,
        "show phone calls (callers' numbers) on the calls API's open routes; "
        "default: only while it is reachable from this machine alone (with "
        "--tunnel or another --calls-host they need the API token)",
    )

    def keys(self) -> TwilioKeys | None:
        """The credentials, or None unless all three are set."""
        sid, key, secret = (
            self.twilio_account_sid,
            self.twilio_api_key,
            self.twilio_api_secret,
        )
        if sid and key and secret:
            return TwilioKeys(sid, key, secret)
        return None


class CallsCapability(Capability):
    """Calls (seed "SmartTV Backend"): see the "Calls" docs page.

    :attr:`service` is the :class:`~neuro_api.calls.CallsService` once set
    up (None when off with ``--no-calls``): the registry, phone calls
    included. Another capability set up after this one finds it with
    ``app.capability(CallsCapability)`` and may add routes to its HTTP
    server with :meth:`add_routes`.
    """

    name = "calls"
    settings = CallsSettings

    def __init__(self) -> None:
        self.service: CallsService | None = None
        self._rooms: TwilioRooms | None = None
        self._calls: TwilioCalls | None = None
        self._http: QuartTrio | None = None
        self._setup: Setup | None = None
        """This capability's own Setup: its phase is every capability's."""

    def add_routes(self, blueprint: Blueprint, *, owner: str = "") -> None:
        """Serve ``blueprint``'s routes on the calls HTTP server too.

        For another capability's :meth:`~neuro_api.capability.Capability.setup`
        (after this capability's: find it with
        :meth:`Setup.capability() <neuro_api.capability.Setup.capability>`).
        HTTP routes and ``@blueprint.websocket`` routes are served at their
        paths (the blueprint's ``url_prefix`` applies), on the calls port
        (``--calls-port``, tunnelled with ``--tunnel``), for whoever reaches
        it: no auth is added, so check every request yourself (Twilio's
        signature). HTTP answers get the app's CORS headers; a WebSocket
        opened by a web page whose origin ``--calls-origins`` does not allow
        is refused with 403 (one without ``Origin``, from a program, passes).
        An :class:`~neuro_api.control.ApiError` raised by a route answers
        ``{"error": message}`` with its status, as the seed's routes do; the
        request body is at most 64 KiB.

        Raises ``RuntimeError`` when the calls capability is off
        (``--no-calls``), has not been set up yet, or its ``finish`` has run
        (add routes in ``setup``); ``ValueError`` when the blueprint's name
        is taken, and :class:`~neuro_api.control.RouteCollision` when one of
        its routes (method and path) is served already, naming ``owner``
        (the capability adding it); the process does not start then.
        """
        if self._setup is None:
            raise RuntimeError("the calls capability has not been set up yet")
        if self._http is None:
            raise RuntimeError("the calls capability is off: it serves no routes")
        if self._setup.phase != "setup":
            # Every capability's finish() may have run: the app could be
            # serving already, and Quart refuses routes added then.
            raise RuntimeError(
                "routes are added to the calls HTTP server during setup() only"
            )
        mount_routes(self._http, blueprint, owner or repr(blueprint.name))

    def setup(self, app: Setup) -> None:
        """Add the registry, the sync job and the HTTP server."""
        self._setup = app
        config: CallsSettings = app.section()
        if not config.enabled:
            return
        keys = config.keys()
        rules = SyncRules(config.min_age, config.empty_timeout, config.single_timeout)
        store = AsyncStore(cast(CallStore, _Unopened()))
        rooms = None
        phone = lookups = None
        if keys is not None:
            self._rooms = TwilioRooms(
                keys.account_sid,
                keys.api_key,
                keys.api_secret,
                region=config.twilio_region,
                base_url=config.twilio_base_url,
                timeout=config.lookup_timeout,
            )
            rooms = ThreadedRooms(
                self._rooms,
                trio.CapacityLimiter(config.sync_concurrency),
                config.lookup_timeout,
            )
            self._calls = TwilioCalls(
                keys.account_sid,
                keys.api_key,
                keys.api_secret,
                region=config.twilio_region,
                base_url=config.twilio_base_url,
                timeout=config.lookup_timeout,
            )
            phone = ThreadedCalls(
                self._calls,
                trio.CapacityLimiter(REST_CONCURRENCY),
                config.lookup_timeout,
            )
            # The sync's lookups in threads of their own: a hang-up (a caller
            # waiting in silence) never queues behind twenty slow lookups.
            lookups = ThreadedCalls(
                self._calls,
                trio.CapacityLimiter(config.sync_concurrency),
                config.lookup_timeout,
            )
        sync = CallSync(
            store,
            rooms,
            rules,
            # Phone calls whose bridge died with its process end through
            # Twilio's word on them (see _phone_rules).
            phones=lookups,
            phone_min_age=config.phone_min_age,
            phone_lookups=config.phone_lookups,
            interval=config.sync_interval,
            concurrency=config.sync_concurrency,
        )
        service = CallsService(
            store, sync, keys, token_ttl=config.token_ttl, phone=phone
        )
        self.service = service
        settings = app.settings
        path = Path(settings.data_dir) / REGISTRY_FILE
        redis_url = settings.redis_url

        def open_store() -> CallStore:
            if redis_url is not None:
                return RedisCallStore(redis_url)
            return SqliteCallStore(path)

        exposed = settings_exposed(config.host, settings.tunnel)
        where = "--tunnel" if settings.tunnel else f"--calls-host {config.host}"

        async def registry(*, task_status: trio.TaskStatus[str]) -> None:
            if exposed:  # said when it runs, not when settings are checked
                # As the seed: the TV app's routes have no auth of their own.
                LOGGER.warning(
                    "the calls API is reachable from elsewhere (%s): its token "
                    "and call routes need no auth, as the seed's; anyone who "
                    "reaches it can list calls and get a token for any room",
                    where,
                )
            store.store = await trio.to_thread.run_sync(open_store)
            task_status.started("redis" if redis_url else str(path))
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(store.store.close)
                    for client in (self._rooms, self._calls):
                        if client is not None:
                            await trio.to_thread.run_sync(client.close)
                store.store = cast(CallStore, _Unopened())

        app.add_service("calls-registry", registry)
        app.add_service("calls-sync", self._job, after=("calls-registry",))
        # The TV app's routes are open (as the seed's); phone calls are ours,
        # and a caller's number is not for whoever reaches a tunnel.
        open_phones = (
            not exposed
            if config.open_phone_calls is None
            else (config.open_phone_calls)
        )
        http = create_calls_app(
            service,
            admin=admin_check(app.admin_token),
            origins=config.origins,
            open_phone_calls=open_phones,
        )
        self._http = http
        app.add_http_server(
            "calls",
            http,
            host=config.host,
            port=config.port,
            tunnel=settings.tunnel,
            after=("calls-registry",),
        )
        # The registry and the job on the control plane too (its auth): the
        # dashboard's calls page and scripts with its token use them.
        app.add_routes(calls_control_routes(service), prefix="/calls")
        app.add_health(self._health)
        app.add_stats(self._stats)

    async def _job(self, *, task_status: trio.TaskStatus[None]) -> None:
        assert self.service is not None
        sync = self.service.sync
        if sync.rooms is None:  # Twilio not configured: nothing to sync
            task_status.started()
            await trio.sleep_forever()
        await sync.run(task_status=task_status)

    def _health(self) -> dict[str, Any]:
        assert self.service is not None
        sync = self.service.sync
        last = sync.last
        trouble = sync.last_error is not None or (last is not None and last.skipped > 0)
        return {
            "status": "degraded" if trouble else "healthy",
            "twilio": "configured" if self.service.keys else "not configured",
            "sync": {
                "running": sync.running,
                "last_run": None if last is None else iso(last.finished_at),
                "last_error": sync.last_error,
                "last_skipped": 0 if last is None else last.skipped,
                "last_errors": [] if last is None else list(last.errors),
                "last_phone_deferred": 0 if last is None else last.phone_deferred,
                "next_run": sync.job()["next_run"],
            },
        }

    def _stats(self) -> dict[str, Any]:
        assert self.service is not None
        sync = self.service.sync
        last = sync.last
        return {
            "syncs": sync.syncs,
            "last_synced": 0 if last is None else last.synced,
            "last_ended": 0 if last is None else last.ended,
            "last_phone_synced": 0 if last is None else last.phone_synced,
            "last_phone_ended": 0 if last is None else last.phone_ended,
            "skipped_total": sync.skipped_total,
        }


class _Unopened:
    """The store before the registry service opened it (every call fails)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the call registry is not open")
