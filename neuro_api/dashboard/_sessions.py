"""The dashboard's login sessions: a random id in a cookie, a CSRF token each.

A person who typed the control plane's token into the login page gets a
session: a random id, kept by the browser in an HttpOnly, SameSite=Strict
cookie, and a CSRF token the pages put in every unsafe request. The server
keeps id -> (CSRF token, expiry) in memory: bounded in count (the oldest
session is dropped) and in time (a session ends ``ttl`` seconds after the
login, used or not). A restart ends every session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from quart import Request, Response

__all__ = ["COOKIE", "DashboardSessions", "LoginLimiter", "is_https"]

COOKIE: Final = "neuro_ui"
"""The session cookie's name."""


def _key(session_id: str) -> bytes:
    # Sessions are looked up by a digest of the id, so that the dict's own
    # comparisons (which stop at the first differing character) say nothing
    # about a real id's characters to someone guessing one.
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https.

    Directly (``request.scheme``), or through a tunnel or proxy that says so
    in ``X-Forwarded-Proto`` (ngrok does). A client that lies about it only
    gets a Secure cookie, which its browser keeps off plain http itself.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return request.scheme == "https" or forwarded.strip().lower() == "https"


@dataclasses.dataclass(slots=True)
class _Session:
    csrf: str
    expires: float


class DashboardSessions:
    """The login sessions of one control plane, in memory.

    ``ttl``: seconds a session lasts after its login (and the cookie's
    ``Max-Age``); ``max_sessions``: sessions kept at once, a new login
    beyond it ends the oldest one. ``clock`` gives monotonic seconds
    (tests pass their own).
    """

    def __init__(
        self,
        ttl: float = 12 * 3600,
        max_sessions: int = 64,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_sessions < 1:
            raise ValueError("session ttl must be > 0 and max_sessions >= 1")
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.clock = clock
        """Where time comes from (a login limiter may share it)."""
        self._sessions: OrderedDict[bytes, _Session] = OrderedDict()

    def __len__(self) -> int:
        self._drop_expired()
        return len(self._sessions)

    def create(self) -> tuple[str, str]:
        """Start a session; return its id (for the cookie) and CSRF token."""
        self._drop_expired()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)  # the oldest login
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        self._sessions[_key(session_id)] = _Session(csrf, self.clock() + self.ttl)
        return session_id, csrf

    def csrf_token(self, session_id: str | None) -> str | None:
        """The CSRF token of a live session ``session_id``, else None."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._sessions[key]
            return None
        return session.csrf

    def is_live(self, session_id: str) -> bool:
        """Whether session ``session_id`` still is.

        Not logged out of, not expired, not dropped for newer ones.
        """
        return self.csrf_token(session_id) is not None

    def csrf_matches(self, session_id: str | None, given: str | None) -> bool:
        """Whether ``given`` is the CSRF token of live session ``session_id``.

        Compared in constant time; a missing token never matches.
        """
        expected = self.csrf_token(session_id)
        if expected is None or not given:
            return False
        return hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), expected.encode()
        )

    def delete(self, session_id: str | None) -> None:
        """End session ``session_id`` (nothing if there is none)."""
        if session_id:
            self._sessions.pop(_key(session_id), None)

    def of(self, request: Request) -> str | None:
        """The id of the live session ``request``'s cookie names, else None."""
        session_id = request.cookies.get(COOKIE)
        return session_id if self.csrf_token(session_id) is not None else None

    def set_cookie(self, response: Response, session_id: str, request: Request) -> None:
        """Give the browser the session cookie (Secure when over https)."""
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=int(self.ttl),
            path="/",
            secure=is_https(request),
            httponly=True,
            samesite="Strict",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        """Have the browser forget the session cookie."""
        response.delete_cookie(
            COOKIE,
            path="/",
            secure=is_https(request),
            httponly=True,
            samesite="Strict",
        )

    def _drop_expired(self) -> None:
        now = self.clock()
        # Every session lives ttl from its creation, so insertion order is
        # expiry order: the expired ones are at the front.
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if session.expires > now:
                break
            del self._sessions[key]


class LoginLimiter:
    """Failed logins per client address: ``max_failures`` per ``window`` s.

    An address that failed ``max_failures`` times within the last
    ``window`` seconds is refused (even with the right token) until the
    oldest of those failures is ``window`` old. At most ``max_clients``
    addresses are remembered (the one that failed least recently is
    forgotten first), so memory stays bounded whatever the traffic.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 60.0,
        max_clients: int = 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or max_clients < 1:
            raise ValueError("max_failures, window and max_clients must be > 0")
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        times = self._recent(client)
        if len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window - self._clock())

    def failed(self, client: str) -> None:
        """Count a failed login of ``client``."""
        times = self._recent(client)
        times.append(self._clock())
        del times[: -self.max_failures]  # only the last few matter
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> list[float]:
        since = self._clock() - self.window
        times = [t for t in self._failures.get(client, ()) if t > since]
        if not times:
            self._failures.pop(client, None)
        return times
