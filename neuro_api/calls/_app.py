"""The calls HTTP app: the seed's routes and bodies, on a port of its own.

Errors are the seed's ``{"error": "..."}`` with the HTTP status; the
TV app's routes (health, token, calls) are open to it (CORS: loopback pages
and ``file://`` by default); the admin routes take the control plane's
auth (:func:`~neuro_api.control.admin_check`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import quart_cors
from quart import Blueprint, Request, Response, jsonify, request
from quart_schema import QuartSchema
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from neuro_api.calls import _phone
from neuro_api.calls._model import KINDS, STATUSES, Call, IllegalTransition, iso
from neuro_api.calls._routes import check_websocket_origin
from neuro_api.calls._store import STORE_ERRORS, RegistryFull
from neuro_api.calls._sync import AsyncStore, CallSync, LockLost
from neuro_api.calls._twilio import identity_problem, make_token, room_problem
from neuro_api.calls._twilio_calls import ThreadedCalls, TwilioCallError
from neuro_api.control import ApiError

__all__ = [
    "DEFAULT_ORIGINS",
    "NOT_CONFIGURED",
    "CallsService",
    "TwilioKeys",
    "call_stats",
    "create_calls_app",
    "origin_patterns",
]

LOGGER: Final = logging.getLogger("neuro_api.calls")
SERVICE: Final = "neuro_api calls"
NOT_CONFIGURED: Final = (
    "Twilio is not configured: set TWILIO_ACCOUNT_SID, TWILIO_API_KEY and "
    "TWILIO_API_SECRET"
)
DEFAULT_ORIGINS: Final = (
    "http://localhost:*,https://localhost:*,http://127.0.0.1:*,"
    "https://127.0.0.1:*,http://[::1]:*,https://[::1]:*,file://"
)
"""The seed's clients: an Electron app (``file://``) and localhost pages."""
MAX_BODY: Final = 64 * 1024
_LIST_LIMIT: Final = 1000
_RECENT: Final = dt.timedelta(hours=24)
_STATS_PAGE: Final = 500


@dataclasses.dataclass(frozen=True, slots=True)
class TwilioKeys:
    """The credentials tokens are signed with (the seed's variables)."""

    account_sid: str
    api_key: str
    api_secret: str = dataclasses.field(repr=False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(slots=True)
class CallsService:
    """What the routes work with: the registry, the sync, the credentials.

    Also the phone calls' API, for a bridge in this process (the voice
    capability): :meth:`start_phone_call` and :meth:`end_phone_call` keep
    the registry, :meth:`hang_up` and :meth:`say_and_hang_up` ask Twilio.
    Every method may be called from any Trio task, any number at once.
    """

    store: AsyncStore
    sync: CallSync
    keys: TwilioKeys | None
    token_ttl: int = 3600
    clock: Callable[[], dt.datetime] = _now
    phone: ThreadedCalls | None = None
    """Twilio's REST API for calls (None: Twilio is not configured)."""

    async def start_phone_call(self, call_sid: str, from_: str, to: str) -> Call:
        """Register the phone call ``call_sid`` from ``from_`` to ``to``; the call.

        It is ``accepted`` now (Twilio answered it), of kind ``phone``, its
        id and room ``call_sid``; ``from_`` and ``to`` (Twilio's ``From`` and
        ``To``, as they come) become its caller and callee, made printable and
        at most 128 characters (``unknown`` when empty). When the registry
        holds ``call_sid`` already (Twilio asked twice), that call is returned
        as it is: check its status.

        Raises ``ValueError`` when ``call_sid`` is not a CallSid (``CA`` and
        32 letters or digits) or names a video call,
        :class:`~neuro_api.calls.RegistryFull` when the registry is full of
        calls that have not ended, and what the store raises when it cannot
        be used (``sqlite3.Error``, ``redis.RedisError``). The registry's
        worker thread does the work: once it has begun, a cancellation waits
        for it (a few seconds at worst: the store's own timeouts), so a
        cancelled caller's call may be stored.
        """
        return await _phone.start_phone_call(
            self.store, self.clock, call_sid, from_, to
        )

    async def end_phone_call(self, call_sid: str, reason: str) -> Call | None:
        """End the phone call ``call_sid`` now, for ``reason``; the ended call.

        Its ``duration`` is the whole seconds since it began; ``reason``
        (``caller_hung_up``, ``max_duration`` ...) is 1 to 64 printable
        characters. Returns None, changing nothing, when the registry has no
        phone call ``call_sid`` or it has ended (an operator ended it through
        ``POST /api/calls/{id}/end``, say). Raises ``ValueError`` for a bad
        ``call_sid`` or ``reason``, and what the store raises, as
        :meth:`start_phone_call`. Call it from a ``finally`` shielded from
        cancellation (and under a timeout), or the call stays accepted until
        the sync (with Twilio's credentials) finds it over at Twilio and ends
        it as ``ended_at_twilio``, minutes later and with that reason.
        """
        return await _phone.end_phone_call(self.store, self.clock, call_sid, reason)

    async def hang_up(self, call_sid: str) -> bool:
        """Ask Twilio to hang up the call now (its ``Status=completed``).

        Returns True when Twilio ended it, False when it was not in progress
        (hung up already): both are fine. The registry is not changed: the
        bridge ends when Twilio closes its media stream, and ends the call
        there with :meth:`end_phone_call`. Raises
        :class:`~neuro_api.calls.TwilioCallError` (a one-line message) when
        Twilio is not configured, could not be asked within the lookup
        timeout (``--calls-lookup-timeout``) or refused. The request runs in
        a worker thread (a few at once); cancelled, the caller returns at
        once and Twilio may still get it.
        """
        return await self._phone().complete(call_sid)

    async def say_and_hang_up(self, call_sid: str, twiml: str) -> bool:
        """Ask Twilio to run ``twiml`` in the call instead (``Twiml=``).

        What the call was doing stops (its media stream closes) and Twilio
        runs ``twiml``, at most 4,000 characters
        (``<Response><Say>Goodbye</Say><Hangup/></Response>``). Returns,
        raises and runs as :meth:`hang_up` (``ValueError`` for TwiML that
        is too long or empty).
        """
        return await self._phone().say_and_hang_up(call_sid, twiml)

    def _phone(self) -> ThreadedCalls:
        if self.phone is None:
            raise TwilioCallError(NOT_CONFIGURED)
        return self.phone


def origin_patterns(origins: str) -> list[re.Pattern[str] | str]:
    """CORS origins for quart-cors from ``a,b:*,file://`` (``*``: any port)."""
    patterns: list[re.Pattern[str] | str] = []
    for origin in (o.strip() for o in origins.split(",")):
        if not origin:
            continue
        if origin.endswith(":*"):
            # quart-cors uses Pattern.match (a prefix): anchor the end, or
            # http://localhost.evil.example would pass for http://localhost.
            patterns.append(re.compile(re.escape(origin[:-2]) + r"(:\d{1,5})?\Z"))
        else:
            patterns.append(origin.rstrip("/") if origin != "file://" else origin)
    return patterns


class _Tally:
    """The counts of :func:`call_stats`, a call at a time."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.users: set[str] = set()
        self.active: set[str] = set()
        self.pairs: set[frozenset[str]] = set()
        self.total = self.sessions = self.recent = 0
        self.phone = self.phone_live = 0

    def add(self, calls: Iterable[Call]) -> int:
        """Count ``calls``; returns how many there were."""
        counted = 0
        for call in calls:
            counted += 1
            self.users.update((call.caller, call.callee))
            self.pairs.add(frozenset((call.caller, call.callee)))
            if call.status != "ended":
                self.active.update((call.caller, call.callee))
            if call.status == "accepted":
                self.sessions += 1
            if self.now - call.created_at <= _RECENT:
                self.recent += 1
            if call.kind == "phone":
                self.phone += 1
                self.phone_live += call.status == "accepted"
        self.total += counted
        return counted

    def stats(self) -> dict[str, int]:
        return {
            "total_users": len(self.users),
            "active_users": len(self.active),
            "total_calls": self.total,
            "active_sessions": self.sessions,
            "recent_calls": self.recent,
            "total_contacts": len(self.pairs),
            "phone_calls": self.phone,
            "active_phone_calls": self.phone_live,
        }


def call_stats(calls: Iterable[Call], now: dt.datetime) -> dict[str, int]:
    """The seed's ``stats`` from every call of the registry.

    * ``total_users``: distinct identities that made or got a call;
    * ``active_users``: those in a pending or accepted call now;
    * ``total_calls``: calls in the registry;
    * ``active_sessions``: accepted calls (running now);
    * ``recent_calls``: calls made in the last 24 hours;
    * ``total_contacts``: distinct pairs of identities that called each
      other (either way counts once);
    * ``phone_calls``: phone calls in the registry (counted in the others
      too: a phone number is an identity);
    * ``active_phone_calls``: phone calls running now.
    """
    tally = _Tally(now)
    tally.add(calls)
    return tally.stats()


def _error(status: int, message: str) -> ApiError:
    return ApiError(status, "calls", message)


async def _body(*fields: str) -> dict[str, str]:
    """The JSON object of the request with ``fields``, each a string."""
    try:
        document = await request.get_json(force=True, silent=False)
    except RequestEntityTooLarge:
        raise  # 413, not "invalid JSON": the body was never read whole
    except Exception:
        raise _error(400, "Invalid JSON body") from None
    if not isinstance(document, dict):
        raise _error(400, "Invalid JSON body: expected an object")
    found: dict[str, str] = {}
    for field in fields:
        value = document.get(field)
        if value is None or value == "":
            raise _error(400, f"Missing required field: {field}")
        if not isinstance(value, str):
            raise _error(400, f"Field {field} must be a string")
        found[field] = value
    return found


def _token_routes(service: CallsService) -> Blueprint:
    routes = Blueprint("calls_token", __name__)

    @routes.get("/api/health")
    async def health() -> Any:
        """The seed's health check (no auth)."""
        return {
            "status": "healthy",
            "timestamp": iso(service.clock()),
            "service": SERVICE,
        }

    @routes.post("/api/token")
    async def token() -> Any:
        """A Twilio Video access token for ``identity`` in ``room``."""
        body = await _body("identity", "room")
        problem = identity_problem(body["identity"]) or room_problem(body["room"])
        if problem is not None:
            raise _error(400, problem)
        keys = service.keys
        if keys is None:
            raise _error(503, NOT_CONFIGURED)
        jwt = make_token(
            keys.account_sid,
            keys.api_key,
            keys.api_secret,
            body["identity"],
            body["room"],
            service.token_ttl,
        )
        return {"token": jwt, "identity": body["identity"], "room": body["room"]}

    return routes


async def _passes(check: Callable[[Request], Awaitable[None]]) -> bool:
    """Whether this request passes ``check`` (an admin check that raises)."""
    try:
        await check(request)
    except ApiError:
        return False
    return True


def _list_args() -> tuple[str | None, str | None, int]:
    """``GET /api/calls``'s ``status``, ``kind`` and ``limit`` (clamped)."""
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise _error(400, f"status must be one of {', '.join(STATUSES)}")
    kind = request.args.get("kind")
    if kind is not None and kind not in KINDS:
        raise _error(400, f"kind must be one of {', '.join(KINDS)}")
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise _error(400, "limit must be a number") from None
    return status, kind, max(1, min(limit, _LIST_LIMIT))


def _call_routes(
    service: CallsService,
    admin: Callable[[Request], Awaitable[None]],
    open_phone_calls: bool,
) -> Blueprint:
    routes = Blueprint("calls_registry", __name__)

    async def _sees_phones() -> bool:
        return open_phone_calls or await _passes(admin)

    @routes.post("/api/calls")
    async def create() -> Any:
        """Register a call (``pending``) from ``caller`` to ``callee`` in ``room``."""
        body = await _body("caller", "callee", "room")
        problem = (
            identity_problem(body["caller"])
            or identity_problem(body["callee"])
            or room_problem(body["room"])
        )
        if problem is not None:
            raise _error(400, problem)
        call = Call.new(body["caller"], body["callee"], body["room"], service.clock())
        try:
            await service.store.call(service.store.store.add, call)
        except RegistryFull as exc:
            raise _error(503, str(exc)) from None
        return call.to_json(), 201

    async def _get(call_id: str) -> Call:
        if len(call_id) > 64:
            raise _error(404, "Call not found")
        call = await service.store.call(service.store.store.get, call_id)
        if call is None or (call.kind == "phone" and not await _sees_phones()):
            raise _error(404, "Call not found")
        return call

    async def _move(call_id: str, change: Callable[[Call], Call]) -> Any:
        call = await _get(call_id)
        try:
            changed = change(call)
        except IllegalTransition as exc:
            raise _error(409, str(exc)) from None
        if not await service.store.replace(changed, call.status):
            now = await _get(call_id)  # changed meanwhile (the sync, another)
            raise _error(409, f"call {call_id} is {now.status} now")
        return changed.to_json()

    @routes.post("/api/calls/<call_id>/accept")
    async def accept(call_id: str) -> Any:
        """Accept a pending call (409 otherwise)."""
        return await _move(call_id, lambda c: c.accept(service.clock()))

    @routes.post("/api/calls/<call_id>/end")
    async def end(call_id: str) -> Any:
        """End a call (``hangup``; 409 if it has ended)."""
        return await _move(call_id, lambda c: c.end(service.clock(), "hangup"))

    @routes.get("/api/calls")
    async def calls() -> Any:
        """Calls, newest first; ``?status=``, ``?kind=``, ``?limit=``.

        ``status`` is ``pending``, ``accepted`` or ``ended``; ``kind`` is
        ``video`` or ``phone``. While the server is reachable from elsewhere
        phone calls are listed (and found by id) only with the API token.
        """
        status, kind, limit = _list_args()
        if kind != "video" and not await _sees_phones():
            if kind == "phone":
                await admin(request)  # 401 or 403, saying what it needs
            kind = "video"  # the open list: video calls only
        found = await service.store.call(service.store.store.calls, status, limit, kind)
        return {"calls": [c.to_json() for c in found], "count": len(found)}

    @routes.get("/api/calls/<call_id>")
    async def one(call_id: str) -> Any:
        """One call."""
        return (await _get(call_id)).to_json()

    return routes


async def sync_now(service: CallsService) -> dict[str, Any]:
    """Sync every accepted call with Twilio now: the seed's body.

    :class:`~neuro_api.control.ApiError` 503 ``twilio_not_configured``
    without credentials, 409 ``sync_busy`` while another server syncs (a
    shared registry) or when the lock is lost.
    """
    if service.sync.rooms is None:
        raise ApiError(503, "twilio_not_configured", NOT_CONFIGURED)
    try:
        result = await service.sync.sync_once()
    except LockLost as exc:
        raise ApiError(409, "sync_busy", str(exc)) from None
    if not result.ran:
        raise ApiError(409, "sync_busy", "another server is syncing the calls now")
    return {
        "success": True,
        "message": "Twilio sync completed",
        "timestamp": iso(result.finished_at),
        "synced": result.synced,
        "ended": result.ended,
    }


def background_service(service: CallsService) -> dict[str, Any]:
    """The sync job (running, next run, interval): the seed's body."""
    return {
        "success": True,
        "background_service": {
            "running": service.sync.running,
            "jobs": [service.sync.job()],
        },
    }


async def registry_stats(service: CallsService) -> dict[str, Any]:
    """Counts over the whole registry (:func:`call_stats`): the seed's body.

    A page of calls per turn of the store's worker, so requests to the
    registry go in between (counting 100,000 calls takes about a second).
    """
    tally = _Tally(service.clock())
    calls = service.store.store.all_calls()
    while await service.store.call(tally.add, itertools.islice(calls, _STATS_PAGE)):
        pass
    return {"success": True, "stats": tally.stats()}


def _admin_routes(service: CallsService) -> Blueprint:
    routes = Blueprint("calls_admin", __name__)

    @routes.post("/api/admin/sync-twilio")
    async def sync() -> Any:
        """Sync every accepted call with Twilio now."""
        return await sync_now(service)

    @routes.get("/api/admin/background-service")
    async def background() -> Any:
        """The sync job: running, its next run, its interval."""
        return background_service(service)

    @routes.get("/api/admin/stats")
    async def stats() -> Any:
        """Counts over the registry (see the docs for each one's meaning)."""
        return await registry_stats(service)

    return routes


def create_calls_app(
    service: CallsService,
    *,
    admin: Callable[[Request], Awaitable[None]],
    origins: str = DEFAULT_ORIGINS,
    open_phone_calls: bool = True,
) -> QuartTrio:
    """The app: the TV app's routes, the admin routes under ``admin``'s check.

    ``open_phone_calls`` False: the TV app's open routes neither list nor
    find phone calls (callers' numbers) without ``admin``'s credentials.

    WebSockets (other capabilities' routes: see
    :func:`~neuro_api.calls._routes.mount_routes`) from a web page of an
    origin not in ``origins`` are refused (403).
    """
    app = QuartTrio("neuro_api.calls")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["QUART_SCHEMA_CONVERT_CASING"] = False
    QuartSchema(
        app,
        info={"title": "neuro_api calls", "version": "1"},
    )
    app.register_blueprint(_token_routes(service))
    app.register_blueprint(_call_routes(service, admin, open_phone_calls))
    admin_routes = _admin_routes(service)

    @admin_routes.before_request
    async def check() -> None:
        # A browser's CORS preflight carries no credentials by design; its
        # answer (Quart's automatic OPTIONS) holds no data.
        if request.method == "OPTIONS":
            return
        await admin(request)

    app.register_blueprint(admin_routes)

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        response = jsonify({"error": str(error)})
        response.status_code = error.status
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    async def store_error(error: Exception) -> Response:
        # The detail (a file path, Redis' address) is for the log only.
        LOGGER.warning("call registry unavailable: %s: %s", type(error).__name__, error)
        response = jsonify(
            {"error": "the call registry is unavailable: try again later"}
        )
        response.status_code = 503
        return response

    for kind in STORE_ERRORS:
        app.register_error_handler(kind, store_error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        response = jsonify({"error": error.description or error.name})
        response.status_code = error.code or 500
        return response

    allowed = origin_patterns(origins)
    app = quart_cors.cors(
        app,
        allow_origin=allowed,
        allow_headers=["Content-Type", "Authorization"],
        allow_methods=["GET", "POST", "OPTIONS"],
    )
    app.before_websocket(check_websocket_origin(allowed))
    return app
