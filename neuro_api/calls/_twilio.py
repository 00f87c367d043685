"""A small, blocking Twilio Video client: room lookups and access tokens.

:class:`TwilioRooms` answers one question per room, "does Twilio still run
it, and with how many connected participants?", as a :class:`RoomLook`, and
never raises for Twilio or network trouble: the sync must tell "the room is
gone" (end the call) from "Twilio could not say" (leave it alone). Every
method blocks (the twilio SDK uses ``requests``): call them from worker
threads, any number at once.

:func:`make_token` signs a Video access token offline; :func:`identity_problem`
and :func:`room_problem` check names against Twilio's documented limits
before anything is signed or stored.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VideoGrant
from twilio.rest import Client

from neuro_api._text import printable

__all__ = [
    "IDENTITY_MAX",
    "ROOM_MAX",
    "TOKEN_TTL_MAX",
    "RoomLook",
    "TwilioRooms",
    "identity_problem",
    "make_token",
    "room_problem",
]

LOGGER: Final = logging.getLogger(__name__)

IDENTITY_MAX: Final = 128
"""Twilio Video's identity limit (error 53200); a non-ASCII character counts 2."""
ROOM_MAX: Final = 128
"""Twilio's limit on a room's UniqueName."""
TOKEN_TTL_MAX: Final = 86_400
"""Twilio refuses access tokens that live longer than 24 hours (error 20157)."""

_REASON_MAX: Final = 120
"""Longest network reason kept (RoomLook.error stays one short line)."""

ROOM_STATUSES: Final = frozenset({"in-progress", "completed", "failed"})
"""Every status Twilio documents for a room; anything else is an error."""

# Characters a room name may hold: RFC 3986's unreserved set. Twilio lets a
# unique name stand for the room's SID in REST URLs only "assuming it does
# not contain any reserved characters that would need to be URL encoded",
# and the sync looks rooms up by name: a name it cannot look up would
# never be checked.
_ROOM_CHARACTERS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)

# twilio.rest.Client falls back to os.environ (TWILIO_ACCOUNT_SID,
# TWILIO_AUTH_TOKEN, TWILIO_EDGE, TWILIO_REGION) unless given a non-empty
# mapping: this one holds none of its keys, so only our arguments count.
_NO_ENVIRONMENT: Final = {"NEURO_API_TWILIO_SETTINGS": "explicit"}


@dataclass(frozen=True, slots=True)
class RoomLook:
    """What Twilio said about one room.

    ``state`` is ``"found"`` (``status`` is one of ``in-progress``,
    ``completed``, ``failed``), ``"not_found"`` (Twilio answered 404: no
    in-progress room by that name, or no room by that SID) or ``"error"``
    (Twilio could not say: ``error`` holds a one-line reason, nothing else
    is known). ``participants`` counts connected participants of an
    in-progress room and is 0 otherwise. ``end_time`` is Twilio's end time
    of an ended room (aware UTC), or None when Twilio gave none.
    """

    state: Literal["found", "not_found", "error"]
    status: str | None = None
    participants: int = 0
    end_time: datetime | None = None
    error: str | None = None


class _MalformedAnswer(Exception):
    """A 2xx answer whose body is not what the SDK can read safely."""


class _PooledHttpClient(TwilioHttpClient):  # type: ignore[misc]  # untyped SDK
    """A ``TwilioHttpClient`` that worker threads can share.

    ``TwilioHttpClient.request`` keeps one ``requests.Session`` and stores
    each response on the instance before returning it, so two threads can
    even swap answers. Here every request borrows a session of its own from
    an idle pool and gives it back afterwards: no lock is held during I/O,
    a session is never used by two threads at once, keep-alive connections
    are reused across requests (a TLS handshake per lookup would double
    its latency), and the pool grows only to the peak number of requests
    in flight (the caller's ``CapacityLimiter``). Threads come and go
    (Trio retires idle workers), so nothing is kept per thread.

    With ``base_url`` the scheme and host of every URL (next-page URLs,
    which Twilio gives absolute, included) are replaced by ``base_url``'s,
    and its path is put in front of the request's.
    """

    def __init__(self, timeout: float, base_url: str | None) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self._base = urlsplit(base_url) if base_url is not None else None
        self._idle: collections.deque[requests.Session] = collections.deque()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()
        self._closed = False

    def _rewrite(self, url: str) -> str:
        if self._base is None:
            return url
        parts = urlsplit(url)
        path = self._base.path.rstrip("/") + parts.path
        return urlunsplit(
            (self._base.scheme, self._base.netloc, path, parts.query, parts.fragment)
        )

    def _borrow(self) -> requests.Session:
        try:
            return self._idle.pop()  # deque.pop is atomic: no lock needed
        except IndexError:
            session = requests.Session()
            with self._lock:
                self._all.append(session)
            return session

    def _give_back(self, session: requests.Session) -> None:
        with self._lock:
            if self._closed:
                session.close()
            else:
                self._idle.append(session)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request; raises ``requests`` errors and :class:`_MalformedAnswer`.

        The response is returned, never stored on ``self``. A 2xx answer
        must be a JSON object (and a list page's records a list of
        objects): the SDK would otherwise fail with ``AttributeError``
        deep inside, indistinguishable from a bug.
        """
        url = self._rewrite(url)
        session = self._borrow()
        try:
            answer = session.request(
                method.upper(),
                url,
                params=params,
                data=data,
                headers=headers,
                auth=auth,
                timeout=timeout if timeout is not None else self.timeout,
                allow_redirects=allow_redirects,
            )
            text = answer.text
        finally:
            self._give_back(session)
        LOGGER.debug("Twilio %s %s answered %s", method, url, answer.status_code)
        if 200 <= answer.status_code < 300:
            _check_body(text)
        return Response(answer.status_code, text, answer.headers)

    def close(self) -> None:
        """Close every session (idle ones now, borrowed ones when given back)."""
        with self._lock:
            self._closed = True
            sessions, self._all = self._all, []
            self._idle.clear()
        for session in sessions:
            session.close()


def _check_body(text: str) -> None:
    try:
        body = json.loads(text)
    except ValueError:
        raise _MalformedAnswer("not JSON") from None
    if not isinstance(body, dict):
        raise _MalformedAnswer("not a JSON object")
    meta = body.get("meta")
    if isinstance(meta, dict) and "key" in meta:
        records = body.get(meta["key"]) if isinstance(meta["key"], str) else None
        if not isinstance(records, list) or not all(
            isinstance(record, dict) for record in records
        ):
            raise _MalformedAnswer("a page without a list of records")


def _network_reason(error: BaseException) -> str:
    """The root cause, short: "network: Connection refused".

    ``requests`` wraps the socket's error three levels deep in messages
    that repeat the URL; the innermost OS error's ``strerror`` (or the
    innermost exception's message) is what an operator needs.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    innermost = error
    strerror: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        innermost = current
        if isinstance(current, OSError) and current.strerror:
            strerror = current.strerror
        current = current.__cause__ or current.__context__
    reason = strerror or str(innermost) or type(innermost).__name__
    return f"network: {printable(reason)[:_REASON_MAX]}"


def _http_reason(status: int) -> str:
    if status in {401, 403}:
        return f"authentication failed ({status})"
    return f"Twilio answered {status}"


def _page_status(error: TwilioException) -> int | None:
    """The HTTP status behind a list's ``TwilioException``, when it has one.

    ``Page.process_response`` raises ``TwilioException("Unable to fetch
    page", response)``: the response is the second argument.
    """
    if len(error.args) > 1 and isinstance(error.args[1], Response):
        status: int = error.args[1].status_code
        return status
    return None


class TwilioRooms:
    """Blocking lookups of Twilio Video rooms; thread-safe.

    Nothing is read from ``os.environ``. ``region`` picks Twilio's regional
    REST host (``video.<region>.twilio.com``). ``base_url`` (staging, tests)
    sends every REST request to that scheme and host instead of
    ``*.twilio.com``. ``timeout`` bounds connecting and each wait for data
    (``requests``' semantics), not a whole lookup: one lookup makes one
    request plus one per page of participants. Use as a context manager or
    call :meth:`close` once no lookup runs any more, which closes the kept-
    alive connections. Raises ``ValueError`` for a ``base_url`` that is not
    an ``http(s)://host`` URL or a timeout that is not positive.
    """

    def __init__(
        self,
        account_sid: str,
        api_key: str,
        api_secret: str,
        *,
        region: str | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if base_url is not None:
            parts = urlsplit(base_url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.timeout: Final = timeout
        self._http = _PooledHttpClient(timeout, base_url)
        self._client = Client(
            api_key,
            api_secret,
            account_sid,
            region=region,
            http_client=self._http,
            environment=_NO_ENVIRONMENT,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections; a later lookup opens new ones."""
        self._http.close()

    def look(self, room: str) -> RoomLook:
        """Fetch ``room`` (a unique name or an ``RM...`` SID), blocking.

        A found in-progress room's connected participants are counted too
        (every page). Never raises for Twilio or network trouble: Twilio's
        404 (error code 20404) is ``not_found``; any other answer, a
        timeout, a refused connection or an answer the SDK cannot read is
        ``error`` with a one-line reason
        ("Twilio answered 500", "timed out after 10 s", "authentication
        failed (401)", "network: Connection refused", "malformed answer:
        ..."). Twilio finds a room by its unique name only while it is in
        progress: an ended room looked up by name is ``not_found``.
        """
        rooms = self._client.video.v1.rooms
        try:
            # The SDK puts the name into the URL path as it is.
            instance = rooms(quote(room, safe="")).fetch()
        except TwilioException as error:
            status = getattr(error, "status", None)
            # Twilio's own 404 carries its error code 20404; a bare 404 (a
            # proxy, a wrong base_url path) says nothing about the room.
            if status == 404 and getattr(error, "code", None) == 20404:
                return RoomLook("not_found")
            return self._failed(room, error, status)
        except (requests.RequestException, _MalformedAnswer) as error:
            return self._failed(room, error, None)

        status = instance.status
        # Not a string (a list: unhashable) is no status either.
        if not isinstance(status, str) or status not in ROOM_STATUSES:
            return self._failed(
                room, _MalformedAnswer(f"unknown room status {status!r}"), None
            )
        end_time = instance.end_time
        if not isinstance(end_time, datetime):
            if end_time is not None:
                LOGGER.warning(
                    "Twilio gave room %s an end_time it cannot read: %r",
                    printable(room),
                    end_time,
                )
            end_time = None
        if status != "in-progress":
            return RoomLook("found", status, 0, end_time)

        try:
            connected = rooms(instance.sid).participants.list(status="connected")
        except TwilioException as error:
            return self._failed(room, error, _page_status(error))
        except (requests.RequestException, _MalformedAnswer) as error:
            return self._failed(room, error, None)
        return RoomLook("found", status, len(connected), end_time)

    def _failed(self, room: str, error: Exception, status: int | None) -> RoomLook:
        if status is not None:
            reason = _http_reason(status)
        elif isinstance(error, requests.Timeout):
            reason = f"timed out after {self.timeout:g} s"
        elif isinstance(error, requests.RequestException):
            reason = _network_reason(error)
        elif isinstance(error, _MalformedAnswer):
            reason = f"malformed answer: {error}"
        else:
            message = error.args[0] if error.args else type(error).__name__
            reason = f"Twilio error: {printable(str(message))}"
        LOGGER.debug("Looking up room %s failed: %s", printable(room), reason)
        return RoomLook("error", error=reason)


def make_token(
    account_sid: str,
    api_key: str,
    api_secret: str,
    identity: str,
    room: str,
    ttl: int,
) -> str:
    """A signed Twilio Video access token (a JWT) for ``identity`` in ``room``.

    Offline: nothing is sent anywhere. The token is HS256-signed with
    ``api_secret``, issued by ``api_key`` for ``account_sid``, valid from
    now for ``ttl`` seconds, and grants joining ``room`` only. Raises
    ``ValueError`` when :func:`identity_problem` or :func:`room_problem`
    finds a problem, or ``ttl`` is not 1 to 86,400 seconds.
    """
    problem = identity_problem(identity) or room_problem(room)
    if problem is not None:
        raise ValueError(problem)
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int)
        or not 0 < ttl <= TOKEN_TTL_MAX
    ):
        raise ValueError(f"ttl must be 1 to {TOKEN_TTL_MAX} seconds, not {ttl!r}")
    token = AccessToken(account_sid, api_key, api_secret, identity=identity, ttl=ttl)
    token.add_grant(VideoGrant(room=room))
    return str(token.to_jwt())


def _twilio_length(value: str) -> int:
    # Twilio counts "double-byte" characters twice: count every non-ASCII
    # character twice, which is never less than what Twilio counts.
    return sum(1 if ord(character) < 0x80 else 2 for character in value)


def identity_problem(value: object) -> str | None:
    """Why Twilio Video would refuse ``value`` as an identity, or None.

    An identity is a non-empty string of at most 128 characters, a non-ASCII
    character counting as two (Twilio's rule), without control, bidi,
    line-separator or lone surrogate characters, and without surrounding
    whitespace (" alice" and "alice" would be two people).
    """
    if not isinstance(value, str):
        return "identity must be a string"
    if not value.strip():
        return "identity must not be empty"
    if printable(value) != value:
        return "identity must not contain control, bidi or line-separator characters"
    if value != value.strip():
        return "identity must not start or end with whitespace"
    if _twilio_length(value) > IDENTITY_MAX:
        return (
            f"identity must be at most {IDENTITY_MAX} characters long "
            "(a non-ASCII character counts as two)"
        )
    return None


def room_problem(value: object) -> str | None:
    """Why ``value`` cannot name a Twilio Video room here, or None.

    A room name is 1 to 128 characters from ``A-Z a-z 0-9 - . _ ~`` (the
    characters a URL carries as they are: Twilio looks rooms up by name in
    the URL path), and not ``.`` or ``..`` (a URL path would drop them).
    """
    if not isinstance(value, str):
        return "room must be a string"
    if not value:
        return "room must not be empty"
    if len(value) > ROOM_MAX:
        return f"room must be at most {ROOM_MAX} characters long"
    if not _ROOM_CHARACTERS.issuperset(value):
        return "room may only contain letters A-Z and a-z, digits and - . _ ~"
    if value in {".", ".."}:
        return "room must not be . or .."
    return None
