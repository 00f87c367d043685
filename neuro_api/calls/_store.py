"""Where the call registry lives: SQLite (embedded default) or Redis (shared).

One interface, :class:`CallStore`, two implementations with the same
behaviour (one test suite runs against both):

* :class:`SqliteCallStore`: ``<data-dir>/calls.sqlite3``, stdlib ``sqlite3``
  in WAL mode; survives restarts; for one server.
* :class:`RedisCallStore`: keys under ``Calls:``, for several servers that
  share one registry (a call made through one can be ended through
  another).

Every method blocks: call them from a worker thread (one at a time for a
store: :class:`SqliteCallStore` holds one connection). Changes of a call's
status are compare-and-set (:meth:`CallStore.replace`), so two servers,
or a hang-up racing the sync, never overwrite each other. The sync runs
under :meth:`CallStore.acquire`, a lock with a token and an expiry, so
only one server syncs at a time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from neuro_api.calls._model import Call, CallKind, CallStatus

__all__ = [
    "MAX_CALLS",
    "STORE_ERRORS",
    "CallExists",
    "CallStore",
    "RedisCallStore",
    "RegistryFull",
    "SqliteCallStore",
]

MAX_CALLS: Final = 100_000
"""Calls kept; past it, the oldest ended ones are forgotten when one is added
(and a new one is refused when none has ended: :class:`RegistryFull`)."""
STORE_ERRORS: Final = (sqlite3.Error, redis.RedisError)
"""What the stores raise when the registry cannot be reached or used (a
locked or broken SQLite file, Redis down): the routes answer 503."""
_PAGE: Final = 500
_FULL: Final = "the call registry is full ({} calls, none ended)"


class RegistryFull(Exception):
    """The registry holds its maximum of calls and none has ended (HTTP 503)."""


class CallExists(Exception):
    """A call with that id is in the registry already (a phone call's CallSid)."""


class CallStore(Protocol):
    """The registry's storage (blocking; see the module's docstring)."""

    def add(self, call: Call) -> None:
        """Store a new call.

        Raises :class:`CallExists` (nothing stored) when its id is taken.
        Past the cap the oldest ended calls are forgotten; raises
        :class:`RegistryFull` (nothing stored) when none is left to forget.
        """

    def get(self, call_id: str) -> Call | None:
        """The call with ``call_id``, or None."""

    def calls(
        self,
        status: CallStatus | None = None,
        limit: int = 1000,
        kind: CallKind | None = None,
    ) -> list[Call]:
        """Calls, newest first, of one status and kind or all; at most ``limit``."""

    def all_calls(self) -> Iterator[Call]:
        """Every call, in pages (for the statistics)."""

    def replace(self, call: Call, expected: CallStatus) -> bool:
        """Store ``call`` if its stored status is still ``expected``.

        Returns False (nothing written) when it is not, or the call is gone.
        """

    def acquire(self, name: str, token: str, ttl: float) -> bool:
        """Take lock ``name`` for ``ttl`` seconds unless someone holds it."""

    def renew(self, name: str, token: str, ttl: float) -> bool:
        """Extend lock ``name`` to ``ttl`` seconds from now if ``token`` holds it.

        Returns False (nothing changed) when it does not any more.
        """

    def release(self, name: str, token: str) -> None:
        """Give lock ``name`` back if ``token`` still holds it."""

    def close(self) -> None:
        """Close the connection."""


def _decode(data: bytes | str) -> Call:
    document: Any = orjson.loads(data)
    return Call.from_json(document)


def _encode(call: Call) -> bytes:
    return orjson.dumps(call.to_json())


class SqliteCallStore:
    """The registry in one SQLite file (WAL; one connection, one thread at a time)."""

    def __init__(self, path: Path | str, *, max_calls: int = MAX_CALLS) -> None:
        self.path = Path(path)
        self.max_calls = max_calls
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=5.0
            )
            self._create()
        except sqlite3.Error as exc:
            # SQLite's messages ("unable to open database file", "file is
            # not a database") do not say which file.
            if hasattr(self, "_db"):
                self._db.close()
            raise type(exc)(f"{self.path}: {exc}") from exc

    def _create(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, "
                "status TEXT NOT NULL, created_at TEXT NOT NULL, data TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS calls_by_status "
                "ON calls (status, created_at)"
            )
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS calls_by_time ON calls (created_at)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, "
                "token TEXT NOT NULL, expires REAL NOT NULL)"
            )

    def add(self, call: Call) -> None:
        """Store a new call; forget the oldest ended ones past the cap."""
        row = call.to_json()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = self._db.execute("SELECT COUNT(*) FROM calls").fetchone()
                if count >= self.max_calls:
                    self._db.execute(
                        "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE "
                        "status = 'ended' ORDER BY created_at LIMIT ?)",
                        (count - self.max_calls + 1,),
                    )
                    (count,) = self._db.execute("SELECT COUNT(*) FROM calls").fetchone()
                    if count >= self.max_calls:
                        raise RegistryFull(_FULL.format(self.max_calls))
                self._db.execute(
                    "INSERT INTO calls VALUES (?, ?, ?, ?)",
                    (call.id, call.status, row["created_at"], _encode(call).decode()),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:  # the primary key: the id is taken
                self._db.execute("ROLLBACK")
                raise CallExists(f"call {call.id} exists already") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, call_id: str) -> Call | None:
        """The call with ``call_id``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM calls WHERE id = ?", (call_id,)
            ).fetchone()
        return None if row is None else _decode(row[0])

    def calls(
        self,
        status: CallStatus | None = None,
        limit: int = 1000,
        kind: CallKind | None = None,
    ) -> list[Call]:
        """Calls, newest first."""
        where: list[str] = []
        values: list[object] = []
        if status is not None:
            where.append("status = ?")
            values.append(status)
        if kind is not None:
            # The kind lives in the JSON only (no column: the file stays
            # readable by a server of an older version); a row written
            # before kinds existed has none and is a video call.
            where.append("coalesce(json_extract(data, '$.kind'), 'video') = ?")
            values.append(kind)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT data FROM calls {clause}ORDER BY created_at DESC LIMIT ?",
                (*values, limit),
            ).fetchall()
        return [_decode(data) for (data,) in rows]

    def all_calls(self) -> Iterator[Call]:
        """Every call, oldest first, a page at a time."""
        after = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, data FROM calls WHERE id > ? ORDER BY id LIMIT ?",
                    (after, _PAGE),
                ).fetchall()
            if not rows:
                return
            for _, data in rows:
                yield _decode(data)
            after = rows[-1][0]

    def replace(self, call: Call, expected: CallStatus) -> bool:
        """Compare-and-set on the stored status."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE calls SET status = ?, data = ? WHERE id = ? AND status = ?",
                (call.status, _encode(call).decode(), call.id, expected),
            )
        return cursor.rowcount == 1

    def acquire(self, name: str, token: str, ttl: float) -> bool:
        """Take the lock unless it is held and not expired."""
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO locks VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET token = excluded.token, expires = excluded.expires "
                "WHERE locks.expires < ?",
                (name, token, now + ttl, now),
            )
        return cursor.rowcount == 1

    def renew(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lock if ``token`` holds it."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE locks SET expires = ? WHERE name = ? AND token = ?",
                (time.time() + ttl, name, token),
            )
        return cursor.rowcount == 1

    def release(self, name: str, token: str) -> None:
        """Give the lock back if ``token`` holds it."""
        with self._lock:
            self._db.execute(
                "DELETE FROM locks WHERE name = ? AND token = ?", (name, token)
            )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


_REPLACE: Final = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, call = pcall(cjson.decode, raw)
if not ok or type(call) ~= 'table' or call['status'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
if ARGV[1] ~= ARGV[2] then
  redis.call('ZREM', KEYS[2], ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
end
return 1
"""
_ADD: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3]) end
return 1
"""
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCallStore:
    """The registry in Redis, shared by every server that uses it.

    Keys: ``Calls:call:<id>`` (the call, JSON), ``Calls:created`` (every id
    by creation time), ``Calls:status:<status>`` (ids by status, by time),
    ``Calls:kind:phone`` (phone calls' ids by time: video calls, the seed's
    and the many, are the rest), ``Calls:lock:<name>`` (locks: ``SET NX
    PX`` with a token, released by a script only by the token that holds
    it).
    """

    def __init__(
        self, url: str, *, prefix: str = "Calls", max_calls: int = MAX_CALLS
    ) -> None:
        self.prefix = prefix
        self.max_calls = max_calls
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )
        self._add = self._client.register_script(_ADD)
        self._replace = self._client.register_script(_REPLACE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @staticmethod
    def _score(call: Call) -> float:
        return call.created_at.timestamp()

    def add(self, call: Call) -> None:
        """Store a new call; forget the oldest ended ones past the cap.

        With several servers the cap is approximate (counted, then added).
        """
        count = int(self._client.zcard(self._key("created")))
        if count >= self.max_calls:
            ended = self._key("status", "ended")
            old = self._client.zrange(ended, 0, count - self.max_calls)
            if old:
                ids = [i.decode() if isinstance(i, bytes) else str(i) for i in old]
                pipe = self._client.pipeline(transaction=True)
                pipe.delete(*(self._key("call", i) for i in ids))
                pipe.zrem(self._key("created"), *ids)
                pipe.zrem(ended, *ids)
                pipe.zrem(self._key("kind", "phone"), *ids)
                pipe.execute()
                count = int(self._client.zcard(self._key("created")))
            if count >= self.max_calls:
                raise RegistryFull(_FULL.format(self.max_calls))
        indexes = [self._key("created"), self._key("status", call.status)]
        if call.kind == "phone":
            indexes.append(self._key("kind", "phone"))
        added = self._add(
            keys=[self._key("call", call.id), *indexes],
            args=[_encode(call), self._score(call), call.id],
        )
        if not added:
            raise CallExists(f"call {call.id} exists already")

    def get(self, call_id: str) -> Call | None:
        """The call with ``call_id``, or None."""
        raw = self._client.get(self._key("call", call_id))
        return None if raw is None else _decode(raw)

    def _load(self, ids: Iterable[Any]) -> list[Call]:
        keys = [
            self._key("call", i.decode() if isinstance(i, bytes) else str(i))
            for i in ids
        ]
        if not keys:
            return []
        return [_decode(raw) for raw in self._client.mget(keys) if raw is not None]

    def calls(
        self,
        status: CallStatus | None = None,
        limit: int = 1000,
        kind: CallKind | None = None,
    ) -> list[Call]:
        """Calls, newest first.

        With ``kind``, an index is read newest first a page at a time until
        ``limit`` calls match (phone calls: their own index, or the status's
        when that is smaller; video calls: the status or creation index,
        phone calls left out).
        """
        index = self._key("created") if status is None else self._key("status", status)
        if kind is None:
            return self._load(self._client.zrevrange(index, 0, max(0, limit - 1)))
        if kind == "phone":
            # The smaller index of the two: the sync's accepted phone calls
            # without every phone call that ever ended (up to the cap).
            phones = self._key("kind", "phone")
            if status is None or int(self._client.zcard(phones)) <= int(
                self._client.zcard(index)
            ):
                index = phones
        found: dict[str, Call] = {}  # by id: a page may repeat one (new calls)
        start = 0
        while len(found) < limit:
            ids = self._client.zrevrange(index, start, start + _PAGE - 1)
            if not ids:
                break
            for call in self._load(ids):
                if call.kind == kind and status in {None, call.status}:
                    found.setdefault(call.id, call)
                    if len(found) == limit:
                        break
            start += _PAGE
        return list(found.values())

    def all_calls(self) -> Iterator[Call]:
        """Every call, oldest first, a page at a time."""
        start = 0
        while True:
            ids = self._client.zrange(self._key("created"), start, start + _PAGE - 1)
            if not ids:
                return
            yield from self._load(ids)
            start += _PAGE

    def replace(self, call: Call, expected: CallStatus) -> bool:
        """Compare-and-set on the stored status (a script: atomic)."""
        done = self._replace(
            keys=[
                self._key("call", call.id),
                self._key("status", expected),
                self._key("status", call.status),
            ],
            args=[expected, call.status, _encode(call), call.id, self._score(call)],
        )
        return bool(done)

    def acquire(self, name: str, token: str, ttl: float) -> bool:
        """``SET NX PX``: take the lock unless someone holds it."""
        done = self._client.set(
            self._key("lock", name), token, nx=True, px=max(1, int(ttl * 1000))
        )
        return bool(done)

    def renew(self, name: str, token: str, ttl: float) -> bool:
        """``PEXPIRE`` the lock only if ``token`` holds it (a script: atomic)."""
        done = self._renew(
            keys=[self._key("lock", name)], args=[token, max(1, int(ttl * 1000))]
        )
        return bool(done)

    def release(self, name: str, token: str) -> None:
        """Delete the lock only if ``token`` holds it (a script: atomic)."""
        self._release(keys=[self._key("lock", name)], args=[token])

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
