"""The seed's Redis hash ``Clients_status``, shared by every instance.

Layout (one Redis, any number of instances, each with its own files):

* ``Clients_status``, a hash with the seed's fields, each a JSON list of
  client names, sorted: ``paused_clients`` and ``blocked_clients`` (shared:
  every instance applies its changes to them and takes them back),
  ``active_clients``, ``deactivate_clients`` and ``connecting_internet_error``
  (computed from every live instance's own lists: ``deactivate_clients`` by
  the seed's formula over the union), and ``clients_to_close`` (names to
  close: the instance that holds one closes it and takes it out; a name
  that no live instance has active is taken out after one TTL, kept in
  ``Clients_status:to_close_since`` meanwhile).
* ``Clients_status:instance:<id>``, a hash per instance (its ``available``,
  ``active`` and ``errors``), which expires when the instance stops renewing
  it (it died): its clients leave the union.
* ``Clients_status:instances``, the set of instance ids.
* Channel ``Clients_status:changes``: the id of the instance that changed
  a field, published after each change, so the others look at once.

Every change is made by one Lua script, atomically, so two instances never
overwrite each other's changes: paused and blocked are changed by adding
and removing names, not by writing whole lists. A field that is not a JSON
list of strings (written by something else) is left alone and reported.
Everything here blocks (redis-py's sync client): call it from a worker
thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Mapping
from typing import Any, Final

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from neuro_api._text import printable

__all__ = [
    "CHANNEL",
    "KEY",
    "SHARED_FIELDS",
    "RedisStatus",
    "SyncReply",
    "SyncRequest",
]

KEY: Final = "Clients_status"
"""The seed's key."""
CHANNEL: Final = f"{KEY}:changes"
INSTANCES: Final = f"{KEY}:instances"
INSTANCE_PREFIX: Final = f"{KEY}:instance:"
SHARED_FIELDS: Final = {"paused": "paused_clients", "blocked": "blocked_clients"}
"""The lists every instance changes and takes back (the seed's field names)."""
TIMEOUT: Final = 2.0
"""Seconds a connect or a command may take before Redis counts as down."""

# KEYS: the hash, the instance set, this instance's hash.
# ARGV: instance id, ttl (ms), channel, instance key prefix, request (JSON).
_SCRIPT: Final = r"""
local key, registry, own = KEYS[1], KEYS[2], KEYS[3]
local id, ttl, channel, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local request = cjson.decode(ARGV[5])
local problems = {}
local changed = false

local function encode(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end
local function set_of(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set
end
local function sorted(set)
  local list = {}
  for v in pairs(set) do list[#list + 1] = v end
  table.sort(list)
  return list
end
local function decode(raw, where)
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then
    local n = 0
    for k, v in pairs(value) do
      n = n + 1
      if type(k) ~= 'number' or type(v) ~= 'string' then ok = false end
    end
    if ok and n == #value then return value end
  end
  problems[#problems + 1] = where .. ' is not a JSON list of strings'
  return nil
end
local function put(field, list)
  local text = encode(list)
  if redis.call('HGET', key, field) ~= text then
    redis.call('HSET', key, field, text)
    changed = true
  end
end

local function usable(name, wanted)
  local kind = redis.call('TYPE', name)['ok']
  if kind == wanted or kind == 'none' then return kind end
  problems[#problems + 1] = name .. ' is a ' .. kind .. ', not a ' .. wanted
  return nil
end

if not usable(key, 'hash') then
  return cjson.encode({problems = problems})
end
-- Ours too, but written by anyone: one of another type is left alone and
-- reported, and the shared lists are shared still.
local registry_ok = usable(registry, 'set')
local own_ok = usable(own, 'hash')

-- The shared lists: this instance's changes applied, the result returned.
local need_full = false
local shared = {}
local lists = request['lists'] or {}
for _, field in ipairs({'paused_clients', 'blocked_clients'}) do
  local raw = redis.call('HGET', key, field)
  local change = lists[field]
  local set = nil
  if raw then
    local current = decode(raw, key .. ' ' .. field)
    if current then
      set = set_of(current)
      if change then
        for _, v in ipairs(change['add']) do set[v] = true end
        for _, v in ipairs(change['remove']) do set[v] = nil end
      end
    end
  elseif change then
    set = set_of(change['full'])  -- Redis lost it (restarted): ours again
  else
    need_full = true
  end
  if set then
    shared[field] = sorted(set)
    put(field, shared[field])
  end
end

-- This instance's own lists, renewed or dropped.
local mine = request['own']
local own_changed = false
if not (registry_ok and own_ok) then
  -- Nowhere to keep them: not shared.
elseif request['leave'] then
  redis.call('DEL', own)
  redis.call('SREM', registry, id)
  own_changed = true
elseif mine then
  redis.call('HSET', own, 'available', encode(mine['available']),
             'active', encode(mine['active']), 'errors', encode(mine['errors']))
  redis.call('PEXPIRE', own, ttl)
  redis.call('SADD', registry, id)
  own_changed = true
elseif redis.call('PEXPIRE', own, ttl) == 0 then
  need_full = true  -- expired, or Redis restarted: send them again
end

-- The union over live instances (a dead one's hash has expired).
local live = {}
local dropped = false
local members = registry_ok and redis.call('SMEMBERS', registry) or {}
for _, member in ipairs(members) do
  local kind = redis.call('TYPE', prefix .. member)['ok']
  if kind == 'hash' then
    live[#live + 1] = member
  elseif kind == 'none' then
    redis.call('SREM', registry, member)
    dropped = true
  else
    problems[#problems + 1] = prefix .. member .. ' is a ' .. kind .. ', not a hash'
  end
end
local active = nil
if changed or own_changed or dropped or request['recompute'] then
  local available, errors = {}, {}
  active = {}
  for _, member in ipairs(live) do
    local raw = redis.call('HMGET', prefix .. member, 'available', 'active', 'errors')
    for i, target in ipairs({available, active, errors}) do
      if raw[i] then
        local list = decode(raw[i], prefix .. member)
        if list then for _, v in ipairs(list) do target[v] = true end end
      end
    end
  end
  local blocked = set_of(shared['blocked_clients'] or {})
  for _, field in ipairs({'paused_clients', 'blocked_clients'}) do
    for _, v in ipairs(shared[field] or {}) do available[v] = true end
  end
  local deactivated = {}
  for v in pairs(available) do
    if not active[v] or blocked[v] then deactivated[v] = true end
  end
  for v in pairs(active) do errors[v] = nil end
  put('active_clients', sorted(active))
  put('deactivate_clients', sorted(deactivated))
  put('connecting_internet_error', sorted(errors))
end

-- Names to close: those an instance closed leave; those no live instance
-- has active wait one TTL (the game may be connecting: its instance has
-- not said so yet), then leave (nobody would close them).
local to_close = {}
local raw = redis.call('HGET', key, 'clients_to_close')
if raw then
  local list = decode(raw, key .. ' clients_to_close')
  if list then
    if active == nil then
      active = set_of(decode(redis.call('HGET', key, 'active_clients') or '[]',
                             key .. ' active_clients') or {})
    end
    local closed = set_of(request['closed'] or {})
    local since_key = key .. ':to_close_since'
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    local keep, give = {}, {}
    for _, v in ipairs(list) do
      if closed[v] then
        redis.pcall('HDEL', since_key, v)
      elseif active[v] then
        keep[v], give[v] = true, true
        redis.pcall('HDEL', since_key, v)
      else
        local since = redis.pcall('HGET', since_key, v)
        local at = type(since) == 'string' and tonumber(since) or nil
        if at == nil then
          redis.pcall('HSET', since_key, v, now)
          redis.pcall('PEXPIRE', since_key, 2 * ttl)
          keep[v] = true
        elseif now - at < ttl then
          keep[v] = true
        else
          redis.pcall('HDEL', since_key, v)
        end
      end
    end
    to_close = sorted(give)
    put('clients_to_close', sorted(keep))
  end
end

if changed then redis.call('PUBLISH', channel, id) end
return cjson.encode({paused = shared['paused_clients'],
                     blocked = shared['blocked_clients'],
                     to_close = to_close, problems = problems,
                     need_full = need_full, changed = changed})
"""


@dataclasses.dataclass(frozen=True, slots=True)
class ListChange:
    """A change of this instance's to a shared list since it last synced."""

    add: frozenset[str]
    remove: frozenset[str]
    full: frozenset[str]
    """Its whole list (taken as is if Redis lost the field)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SyncRequest:
    """What one sync sends; every part optional (a renewal sends nothing)."""

    lists: Mapping[str, ListChange] = dataclasses.field(default_factory=dict)
    """By kind (``paused``, ``blocked``)."""
    available: frozenset[str] | None = None
    """This instance's own lists (None: unchanged since the last sync)."""
    active: frozenset[str] = frozenset()
    errors: frozenset[str] = frozenset()
    closed: frozenset[str] = frozenset()
    """Names of ``clients_to_close`` this instance closed."""
    recompute: bool = False
    leave: bool = False
    """This instance stops: its entries leave at once."""

    def to_json(self) -> bytes:
        """The script's request."""
        document: dict[str, Any] = {
            "lists": {
                SHARED_FIELDS[kind]: {
                    "add": sorted(change.add),
                    "remove": sorted(change.remove),
                    "full": sorted(change.full),
                }
                for kind, change in self.lists.items()
            },
            "closed": sorted(self.closed),
            "recompute": self.recompute,
            "leave": self.leave,
        }
        if self.available is not None:
            document["own"] = {
                "available": sorted(self.available),
                "active": sorted(self.active),
                "errors": sorted(self.errors),
            }
        return orjson.dumps(document)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncReply:
    """What Redis holds after a sync."""

    shared: Mapping[str, frozenset[str]]
    """The shared lists, by kind; a kind is missing when its field is not
    usable (see :attr:`problems`): keep the local list then."""
    to_close: frozenset[str]
    problems: tuple[str, ...]
    need_full: bool
    """Redis lost something of this instance's (restarted): sync again with
    everything (:attr:`ListChange.full`, the own lists)."""
    changed: bool


def _names(value: object) -> frozenset[str]:
    # cjson encodes an empty list as {}.
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


def _reply(raw: bytes | str) -> SyncReply:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Lua's cjson passes through bytes that are not UTF-8 (a field
        # written by something else): read them as lone surrogates, which
        # no client name may hold, so the list is reported, not taken.
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        document = json.loads(text)
    shared = {
        kind: _names(document[kind])
        for kind in SHARED_FIELDS
        if document.get(kind) is not None
    }
    problems = document.get("problems") or []
    return SyncReply(
        shared=shared,
        to_close=_names(document.get("to_close")),
        problems=tuple(printable(str(p)) for p in problems),
        need_full=bool(document.get("need_full")),
        changed=bool(document.get("changed")),
    )


class RedisStatus:
    """One instance's view of ``Clients_status`` (blocking calls).

    ``ttl``: seconds this instance's entries outlive its last sync; renew
    them (a :class:`SyncRequest` with nothing in it) well within that.
    A dead Redis raises :class:`redis.RedisError` within :data:`TIMEOUT`
    (no retries here: the caller backs off).
    """

    def __init__(self, url: str, instance_id: str, *, ttl: float = 10.0) -> None:
        self.instance_id = instance_id
        self.ttl = ttl
        options: dict[str, Any] = {
            "socket_timeout": TIMEOUT,
            "socket_connect_timeout": TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
            "client_name": f"neuro_api-{instance_id}",
        }
        self._client = redis.Redis.from_url(url, **options)
        self._script = self._client.register_script(_SCRIPT)
        self._pubsub: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def sync(self, request: SyncRequest) -> SyncReply:
        """Apply ``request`` and return what Redis holds now (one round trip).

        One sync at a time, in the order they were called: a sync abandoned
        by a cancelled task ends before the next one (the leave at
        shutdown) starts, so it cannot bring back what that one removed.
        """
        with self._lock:
            if self._closed:
                raise redis.ConnectionError("closed")
            return self._sync(request)

    def _sync(self, request: SyncRequest) -> SyncReply:
        raw = self._script(
            keys=[KEY, INSTANCES, INSTANCE_PREFIX + self.instance_id],
            args=[
                self.instance_id,
                max(1, int(self.ttl * 1000)),
                CHANNEL,
                INSTANCE_PREFIX,
                request.to_json(),
            ],
        )
        return _reply(raw)

    def fields(self) -> dict[str, list[str] | str]:
        """The hash as it is (each field parsed when it is JSON)."""
        found: dict[str, list[str] | str] = {}
        for name, raw in self._client.hgetall(KEY).items():
            field = name.decode() if isinstance(name, bytes) else str(name)
            try:
                found[field] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                found[field] = (
                    raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                )
        return found

    def wait_for_change(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` s for another instance's change.

        Returns the id of the instance that changed something (None when
        nothing came). Subscribes on first use, on a connection of its own.
        """
        if self._closed:
            raise redis.ConnectionError("closed")
        if self._pubsub is None:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(CHANNEL)
            self._pubsub = pubsub
        try:
            message = self._pubsub.get_message(timeout=timeout)
        except redis.RedisError:
            self._drop_pubsub()
            raise
        if message is None or message.get("type") != "message":
            return None
        data = message.get("data")
        sender = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        return None if sender == self.instance_id else str(sender)

    def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()

    def close(self) -> None:
        """Close every connection (subscriber included); later calls raise.

        Waits for a sync in progress. Call it once :meth:`wait_for_change`
        returned: redis-py reconnects a subscriber closed under it.
        """
        with self._lock:
            self._closed = True
            self._drop_pubsub()
            self._client.close()
