# ruff: noqa: ASYNC109  (`timeout` is a session's idle limit here, not an I/O deadline)
"""`redis://host:port/db[?prefix=athena]`: a store several gateways can share; `redis+cluster://host:port`
(one seed node is enough) for a Redis Cluster, through redis-py's cluster client.

A device's records live under one hash tag, `<prefix>:{<device>}:session` (a hash) and `:history` (a
list), so each operation is one Lua script on one slot: atomic, and Redis-Cluster-safe. Two things span
devices and are written outside the scripts, each a single-key command: `<prefix>:sid:<id>` (session id ->
device, for look-ups by id) and `<prefix>:expiry` (a sorted set of `<id>|<device>` by deadline, so a sweep
reads only what is due).

The index is lazy: a session is indexed at its first deadline and a touch does not re-index it; when the
sweep finds it still alive it re-indexes it at its real deadline. A sweep thus costs what is due, not what is
stored, and a turn costs one round trip. Keys also carry a Redis expiry (deadline + `grace`) so a store
nobody sweeps still empties itself; the grace leaves the sweep time to report what ended.

In a cluster, a device's records are one slot, so its scripts run on one node; nothing spans slots in one
transaction (cross-slot pipelines are plain batches, which the cluster client splits by node). The expiry
index is one key, on one node, and a session-id key lives on its own id's slot. Both are auxiliary: updating
them is best effort (logged), so a device whose own slot is served keeps working while the node holding the
index is down; such a session still ends on time (every look-up checks expiry, and its keys expire in Redis),
it is only missing from listings and sweep reports, and a look-up by session id fails while its key's node
is down. `ping()` tells readiness how much of the cluster answers (StoreDegraded while some node does not).

What the console reads lives under the same hash tag and is written by the same scripts, so a turn still costs
one round trip: `:device` (a hash: name, area, first/last seen, turns, settings as `s:<name>` fields and their
`version`, checked by the acquire script), `:past` (a sorted set of ended sessions by end time) with
`:past:<id>` and `:past:<id>:history`, and `:usage:<day>` (a list of usage rows per UTC day). All of them
expire by themselves at the end of their retention (a device record only while it has no settings). Two sets
span devices, written only when something new appears: `<prefix>:devices` and `<prefix>:usage:<day>` (the
keys with usage rows that day).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from athena.records import (
    DeviceRecord,
    DeviceSettings,
    Message,
    MessageMeta,
    PastSession,
    Session,
    UsageRow,
    Visit,
)
from athena.stores.base import (
    DAY,
    PARSED_CACHE,
    Acquired,
    DeviceChanged,
    Retention,
    SessionGone,
    StoreDegraded,
    StoreError,
    day_of,
)

log = structlog.get_logger("athena.stores")
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

T = TypeVar("T")
# One deadline per store operation (a pipeline is one), ours rather than redis-py's socket_timeout: that one
# runs every command's write through asyncio.wait_for, a task per command (~20 µs of a 110 µs call).
OPERATION_TIMEOUT = 5.0

_FIELDS = ("id", "created_at", "last_activity", "expires_at", "timeout", "max_age", "turns")

# Shared Lua: read the session hash as a flat array in _FIELDS order; refresh both keys' Redis expiry.
_LUA_COMMON = """
local function fields(key)
  return redis.call('HMGET', key, 'id', 'created_at', 'last_activity', 'expires_at',
                    'timeout', 'max_age', 'turns')
end
local function num(x) return string.format('%.17g', x) end
local function keep(now, expires_at, grace_ms)
  local ttl = math.floor((expires_at - now) * 1000 + grace_ms)
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
-- End the current session (fields `cur`) at `now`: kept as a past session for retention_ms, or deleted.
-- Past keys are named from KEYS[4] (same hash tag, so the same slot).
local function archive(cur, now, forced, retention_ms)
  if retention_ms <= 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    return
  end
  local base = KEYS[4] .. ':' .. cur[1]
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RENAME', KEYS[2], base .. ':history')
    redis.call('PEXPIRE', base .. ':history', retention_ms)
  end
  local why = forced
  if now >= tonumber(cur[4]) then
    why = 'timeout'
    if tonumber(cur[2]) + tonumber(cur[6]) <= tonumber(cur[3]) + tonumber(cur[5]) then why = 'max_age' end
  end
  redis.call('HSET', base, 'id', cur[1], 'created_at', cur[2], 'last_activity', cur[3], 'expires_at', cur[4],
             'timeout', cur[5], 'max_age', cur[6], 'turns', cur[7], 'ended_at', num(now), 'reason', why)
  redis.call('PEXPIRE', base, retention_ms)
  redis.call('ZADD', KEYS[4], now, cur[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. num(now - retention_ms / 1000))
  redis.call('PEXPIRE', KEYS[4], retention_ms)
  redis.call('DEL', KEYS[1])
end
-- A usage row onto KEYS[5]; returns the list's length (1: the first row of that key and day).
local function usage(row, ttl_ms)
  if row == '' then return 0 end
  local n = redis.call('RPUSH', KEYS[5], row)
  redis.call('PEXPIRE', KEYS[5], ttl_ms)
  return n
end
local function flat(key)
  return redis.call('HGETALL', key)
end
"""

# KEYS: session, history, device, past, usage. ARGV: now, timeout, max_age, new_id, force_new, grace_ms,
# version ('' without a visit), name, area, retention_ms, device_ttl_ms, usage row ('' for none),
# usage_ttl_ms, history limit.
# Returns {-1, device hash...} when the settings version differs (nothing written), else {created(0|1),
# reindex(0|1), new_device(0|1), usage length, session fields..., then the newest `limit` messages when the
# session was found, or the retired session's fields when one was replaced}.
_ACQUIRE = _LUA_COMMON + """
local now, timeout, max_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local grace = tonumber(ARGV[6])
local new_device = 0
if ARGV[7] ~= '' then
  local version = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
  if version ~= tonumber(ARGV[7]) then
    local out = {-1}
    for _, v in ipairs(flat(KEYS[3])) do out[#out + 1] = v end
    return out
  end
  new_device = redis.call('HSETNX', KEYS[3], 'first_seen', ARGV[1])
  redis.call('HSET', KEYS[3], 'last_seen', ARGV[1])
  if ARGV[8] ~= '' then redis.call('HSET', KEYS[3], 'name', ARGV[8]) end
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[3], 'area', ARGV[9]) end
  redis.call('HINCRBY', KEYS[3], 'turns', 1)
  if version == 0 then redis.call('PEXPIRE', KEYS[3], ARGV[11]) end
end
local used = usage(ARGV[12], ARGV[13])
local cur = fields(KEYS[1])
if cur[1] and ARGV[5] ~= '1' and now < tonumber(cur[4]) then
  local expires_at = math.min(now + timeout, tonumber(cur[2]) + max_age)
  redis.call('HSET', KEYS[1], 'last_activity', ARGV[1], 'expires_at', num(expires_at),
             'timeout', ARGV[2], 'max_age', ARGV[3])
  keep(now, expires_at, grace)
  local reindex = 0
  if expires_at < tonumber(cur[4]) then reindex = 1 end
  local out = {0, reindex, new_device, used,
               cur[1], cur[2], ARGV[1], num(expires_at), ARGV[2], ARGV[3], cur[7]}
  local limit = tonumber(ARGV[14])
  if limit > 0 then
    for _, m in ipairs(redis.call('LRANGE', KEYS[2], -limit, -1)) do out[#out + 1] = m end
  end
  return out
end
if cur[1] then archive(cur, now, 'start_over', tonumber(ARGV[10])) end
redis.call('DEL', KEYS[1], KEYS[2])
local expires_at = math.min(now + timeout, now + max_age)
redis.call('HSET', KEYS[1], 'id', ARGV[4], 'created_at', ARGV[1], 'last_activity', ARGV[1],
           'expires_at', num(expires_at), 'timeout', ARGV[2], 'max_age', ARGV[3], 'turns', '0')
keep(now, expires_at, grace)
local out = {1, 1, new_device, used, ARGV[4], ARGV[1], ARGV[1], num(expires_at), ARGV[2], ARGV[3], '0'}
if cur[1] then
  for i = 1, 7 do out[#out + 1] = cur[i] end
end
return out
"""

# KEYS: session, history, device, past, usage. ARGV: session_id, now, timeout, max_age, cap, grace_ms,
# usage row ('' for none), usage_ttl_ms, message...
# Returns {-1, usage length} when the session is not the device's current one (the usage row is kept), else
# {reindex, usage length, session fields...}.
_APPEND = _LUA_COMMON + """
local used = usage(ARGV[7], ARGV[8])
local cur = fields(KEYS[1])
if cur[1] ~= ARGV[1] then return {-1, used} end
local now, timeout, max_age = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 9, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
local turns = redis.call('HINCRBY', KEYS[1], 'turns', 1)
local expires_at = math.min(now + timeout, tonumber(cur[2]) + max_age)
redis.call('HSET', KEYS[1], 'last_activity', ARGV[2], 'expires_at', num(expires_at),
           'timeout', ARGV[3], 'max_age', ARGV[4])
keep(now, expires_at, tonumber(ARGV[6]))
local reindex = 0
if expires_at < tonumber(cur[4]) then reindex = 1 end
return {reindex, used, cur[1], cur[2], ARGV[2], num(expires_at), ARGV[3], ARGV[4], tostring(turns)}
"""

# KEYS: session, history. ARGV: session_id, limit. The newest `limit` messages, or false when the session
# is not the device's current one.
_HISTORY = """
local cur = redis.call('HGET', KEYS[1], 'id')
if cur ~= ARGV[1] then return false end
return redis.call('LRANGE', KEYS[2], -tonumber(ARGV[2]), -1)
"""

# KEYS: session, history, device, past. ARGV: now, retention_ms. Returns the ended session's fields, or false.
_CLEAR = _LUA_COMMON + """
local cur = fields(KEYS[1])
if not cur[1] then return false end
archive(cur, tonumber(ARGV[1]), 'cleared', tonumber(ARGV[2]))
return cur
"""

# KEYS: session, history, device, past. ARGV: session_id, now, retention_ms.
# Returns {'gone'} (not the current session), {'live', expires_at} or {'expired', fields...} (and ends it).
_SWEEP_ONE = _LUA_COMMON + """
local cur = fields(KEYS[1])
if cur[1] ~= ARGV[1] then return {'gone'} end
if tonumber(cur[4]) > tonumber(ARGV[2]) then return {'live', cur[4]} end
archive(cur, tonumber(ARGV[2]), 'cleared', tonumber(ARGV[3]))
return {'expired', unpack(cur)}
"""

# KEYS: device, usage. ARGV: now, name, area, device_ttl_ms, usage row, usage_ttl_ms.
# Returns {new_device, usage length, device hash...}.
_REFUSE = """
local new_device = redis.call('HSETNX', KEYS[1], 'first_seen', ARGV[1])
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'name', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'area', ARGV[3]) end
redis.call('HINCRBY', KEYS[1], 'refused', 1)
if not redis.call('HGET', KEYS[1], 'version') then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local n = redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local out = {new_device, n}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
return out
"""

# KEYS: device. ARGV: pairs of (field, value), value '' clears the setting. Returns the device hash.
_CONFIGURE = """
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], 's:' .. ARGV[i])
  else redis.call('HSET', KEYS[1], 's:' .. ARGV[i], ARGV[i + 1]) end
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PERSIST', KEYS[1])
return redis.call('HGETALL', KEYS[1])
"""

_SETTING_TYPES: dict[str, type] = {
    "timeout": float, "max_age": float, "history": int, "system_prompt": str, "language": str, "status": str,
}


def _device_record(device: str, raw: Sequence[Any] | Mapping[Any, Any]) -> DeviceRecord | None:
    """A device hash (HGETALL's flat list or dict) as a record; None when the hash is empty."""
    pairs = list(raw.items()) if isinstance(raw, Mapping) else list(zip(raw[::2], raw[1::2], strict=True))
    if not pairs:
        return None
    f = {_text(k): _text(v) for k, v in pairs}
    settings: dict[str, Any] = {}
    for name, kind in _SETTING_TYPES.items():
        if (value := f.get("s:" + name)) is not None:
            settings[name] = kind(value)

    def number(key: str) -> float | None:
        return float(f[key]) if key in f else None

    return DeviceRecord(
        id=device, name=f.get("name"), area=f.get("area"), first_seen=number("first_seen"),
        last_seen=number("last_seen"), turns=int(f.get("turns", 0)), refused=int(f.get("refused", 0)),
        version=int(f.get("version", 0)), settings=DeviceSettings.from_dict(settings),
    )


class _ConnectionReset(StoreError):
    """The cluster client lost a connection before writing the command: safe to send once more."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _session(device: str, f: Sequence[Any]) -> Session:
    return Session(
        id=_text(f[0]), device=device, created_at=float(f[1]), last_activity=float(f[2]),
        expires_at=float(f[3]), timeout=float(f[4]), max_age=float(f[5]), turns=int(f[6]),
    )


def _member(session_id: str, device: str) -> str:
    """An expiry-index entry: the id leads to the look-up key, the device to the records (ids have no '|')."""
    return f"{session_id}|{device}"


def _split(member: Any) -> tuple[str, str]:
    session_id, device = _text(member).split("|", 1)
    return session_id, device


def encode_messages(messages: Sequence[Message]) -> list[bytes]:
    return [
        orjson.dumps({"r": m.role, "c": m.content, "t": m.ts, "m": meta} if (meta := m.meta.to_dict()) else
                     {"r": m.role, "c": m.content, "t": m.ts})
        for m in messages
    ]


def _num(x: float) -> str:
    return repr(float(x))


class RedisStore:
    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "athena",
        grace: float = 3600.0,
        cluster: bool = False,
        retention: Retention | None = None,
    ) -> None:
        if not prefix or any(c in prefix for c in "{} "):
            raise ValueError(f"Redis key prefix must be non-empty without braces or spaces, not {prefix!r}")
        self.url = url
        self.prefix = prefix
        self.grace_ms = int(grace * 1000)
        self.retention = retention or Retention()
        self._retention_ms = int(self.retention.transcripts * 1000)
        self._device_ttl_ms = max(1, int(self.retention.usage * 1000))
        self.cluster = cluster
        parts = urlsplit(url)
        if cluster and parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"a Redis Cluster has only database 0, not {parts.path.strip('/')!r}")
        where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
        self._where = where
        self._name = "Redis Cluster" if cluster else "Redis"
        self._redis: aioredis.Redis | RedisCluster | None = None

    @classmethod
    def from_url(cls, url: str, retention: Retention | None = None) -> RedisStore:
        """Takes a `prefix` query parameter (default "athena"); the rest of the URL goes to redis-py.
        `redis+cluster://` (`rediss+cluster://`) is redis-py's cluster client seeded with that node."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        prefix = query.pop("prefix", ["athena"])[-1]
        cluster = parts.scheme in CLUSTER_SCHEMES
        scheme = CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
        rest = urlunsplit(parts._replace(scheme=scheme, query=urlencode(query, doseq=True)))
        return cls(rest, prefix=prefix, cluster=cluster, retention=retention)

    # Keys.

    def _session_key(self, device: str) -> str:
        return f"{self.prefix}:{{{device}}}:session"

    def _keys(self, device: str, day: int | None = None) -> list[str]:
        """session, history, device, past, usage (of `day`, default today's) under the device's hash tag."""
        tag = f"{self.prefix}:{{{device}}}"
        day = day_of(time.time()) if day is None else day
        return [f"{tag}:session", f"{tag}:history", f"{tag}:device", f"{tag}:past", f"{tag}:usage:{day}"]

    def _usage_ttl_ms(self, day: int, now: float) -> int:
        return max(1, int(((day + 1) * DAY + self.retention.usage - now) * 1000))

    def _usage_args(self, usage: UsageRow | None, now: float) -> tuple[int | None, str, int]:
        if usage is None:
            return None, "", 1
        day = day_of(usage.ts)
        return day, usage.encode(), self._usage_ttl_ms(day, now)

    @property
    def _devices_key(self) -> str:
        return f"{self.prefix}:devices"

    def _usage_index(self, day: int) -> str:
        return f"{self.prefix}:usage:{day}"

    def _noted(
        self,
        pipe: Pipeline | ClusterPipeline,
        device: str,
        *,
        new_device: bool,
        usage_day: int | None,
        now: float,
    ) -> None:
        """The cross-device sets, written only when a device or a key's first usage row of a day appears."""
        if new_device:
            pipe.sadd(self._devices_key, device)
        if usage_day is not None:
            pipe.sadd(self._usage_index(usage_day), device)
            pipe.pexpire(self._usage_index(usage_day), self._usage_ttl_ms(usage_day, now))

    def _sid_key(self, session_id: str) -> str:
        return f"{self.prefix}:sid:{session_id}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:expiry"

    # Plumbing.

    @property
    def _r(self) -> aioredis.Redis | RedisCluster:
        if self._redis is None:
            raise StoreError("Redis store is not open")
        return self._redis

    def _pipeline(self) -> Pipeline | ClusterPipeline:
        """A batch without a transaction: in a cluster its commands may span slots (split by node)."""
        return self._r.pipeline(transaction=False)

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT):
                return await op
        except TimeoutError as exc:  # redis-py closes the connection it was cancelled on
            late = f"did not answer in {OPERATION_TIMEOUT:g} s"
            raise StoreError(f"{self._name} at {self._where} {late}") from exc
        except AttributeError as exc:
            if not self.cluster:
                raise
            # redis-py's cluster client, when a node fails under concurrent load, can close a connection
            # another task is about to write to ("'NoneType' object has no attribute 'writelines'"):
            # nothing was sent, so it may be sent again. Any other such failure is a plain StoreError.
            kind = _ConnectionReset if "writelines" in str(exc) else StoreError
            raise kind(f"{self._name} at {self._where} lost a connection: {exc}") from exc
        except (RedisError, RedisClusterException) as exc:
            raise StoreError(
                f"{self._name} at {self._where} failed: {exc.__class__.__name__}: {exc}"
            ) from exc
        except OSError as exc:
            raise StoreError(f"{self._name} at {self._where} is unreachable: {exc}") from exc

    async def _retrying(self, make: Callable[[], Awaitable[T]]) -> T:
        """A turn's command, sent again once if a connection was reset before it was written."""
        try:
            return await self._call(make())
        except _ConnectionReset:
            return await self._call(make())

    async def _best_effort(self, op: Awaitable[Any], what: str) -> None:
        """An auxiliary write (the expiry index, a session-id key): a failure is logged, not the turn's."""
        try:
            await self._call(op)
        except StoreError as exc:
            log.warning("store.index_failed", what=what, error=str(exc))

    async def open(self) -> None:
        if self._redis is not None:
            return
        if self.cluster:
            # Partial service: slots whose node answers are served while another node is down.
            self._redis = RedisCluster.from_url(
                self.url, socket_connect_timeout=3, require_full_coverage=False
            )
        else:
            self._redis = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=3, health_check_interval=30
            )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._append = self._redis.register_script(_APPEND)
        self._clear = self._redis.register_script(_CLEAR)
        self._history = self._redis.register_script(_HISTORY)
        self._sweep_one = self._redis.register_script(_SWEEP_ONE)
        self._refuse = self._redis.register_script(_REFUSE)
        self._configure = self._redis.register_script(_CONFIGURE)
        try:
            await self.ping()
        except StoreError as exc:
            await self.close()
            cause = exc.__cause__ or exc
            raise StoreError(f"cannot reach the {self._name} store at {self._where}: {cause}") from exc

    async def close(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()

    async def ping(self) -> None:
        if not isinstance(self._redis, RedisCluster):
            await self._call(self._r.ping())
            return
        # Every primary on its own: all down is a StoreError, some down is StoreDegraded (still ready).
        cluster = self._redis
        await self._call(cluster.initialize())  # learns the nodes from the seed (a no-op once done)
        nodes = cluster.get_primaries()
        down = []
        for node in nodes:
            try:
                await self._call(cluster.execute_command("PING", target_nodes=node))
            except StoreError:
                down.append(node.name)
        if len(down) == len(nodes):
            raise StoreError(f"no node of the {self._name} at {self._where} answers ({', '.join(down)})")
        if down:
            raise StoreDegraded(
                f"{len(down)} of {len(nodes)} nodes of the {self._name} do not answer ({', '.join(down)}): "
                "the devices on their slots cannot be served"
            )

    def _index_new(
        self, session: Session, retired: Session | None, pipe: Pipeline | ClusterPipeline
    ) -> None:
        if retired is not None:
            self._unindex(pipe, [_member(retired.id, retired.device)])
        pipe.set(self._sid_key(session.id), session.device, px=int(session.max_age * 1000) + self.grace_ms)
        pipe.zadd(self._index, {_member(session.id, session.device): session.expires_at})

    async def _reindex(self, session: Session) -> None:
        """Move the index entry to an earlier deadline (a touch under a shorter policy)."""
        entry = {_member(session.id, session.device): session.expires_at}
        await self._best_effort(self._r.zadd(self._index, entry), "re-index a session")

    def _unindex(self, pipe: Pipeline | ClusterPipeline, members: Sequence[str]) -> None:
        pipe.zrem(self._index, *members)
        for member in members:
            pipe.delete(self._sid_key(_split(member)[0]))  # one key per DEL: sid keys span cluster slots

    async def _device_of(self, session_id: str) -> str | None:
        device = await self._retrying(lambda: self._r.get(self._sid_key(session_id)))
        return _text(device) if device is not None else None

    # Operations.

    async def acquire(
        self,
        device: str,
        now: float,
        timeout: float,
        max_age: float,
        new_id: str,
        force_new: bool = False,
        *,
        visit: Visit | None = None,
        usage: UsageRow | None = None,
        history: int = 0,
    ) -> Acquired:
        day, row, usage_ttl = self._usage_args(usage, now)
        keys = self._keys(device, day)
        out = await self._retrying(lambda: self._acquire(
            keys=keys,
            args=[
                _num(now), _num(timeout), _num(max_age), new_id, "1" if force_new else "0", self.grace_ms,
                "" if visit is None else visit.version,
                (visit and visit.name) or "",
                (visit and visit.area) or "",
                self._retention_ms, self._device_ttl_ms, row, usage_ttl, history,
            ],
        ))
        if int(out[0]) == -1:
            raise DeviceChanged(_device_record(device, out[1:]) or DeviceRecord(device))
        session = _session(device, out[4:11])
        created, reindex, new_device, first_usage = (
            out[0] == 1, out[1] == 1, out[2] == 1, day if out[3] == 1 else None
        )
        kept = [] if created else _decode_messages(out[11:])
        if not (created or reindex or new_device or first_usage is not None):
            return Acquired(session, created=False, ended=None, messages=kept)  # the common turn: one trip
        pipe = self._pipeline()
        self._noted(pipe, device, new_device=new_device, usage_day=first_usage, now=now)
        if not created:
            if reindex:
                pipe.zadd(self._index, {_member(session.id, session.device): session.expires_at})
            await self._best_effort(pipe.execute(), "re-index a session")
            return Acquired(session, created=False, ended=None, messages=kept)
        retired = _session(device, out[11:18]) if len(out) > 11 else None
        self._index_new(session, retired, pipe)
        await self._best_effort(pipe.execute(), "index a new session")
        return Acquired(session, created=True, ended=retired)

    async def get(self, device: str) -> Session | None:
        f = await self._retrying(lambda: self._r.hmget(self._session_key(device), *_FIELDS))
        return _session(device, f) if f[0] is not None else None

    async def get_by_id(self, session_id: str) -> Session | None:
        device = await self._device_of(session_id)
        if device is None:
            return None
        session = await self.get(device)
        return session if session is not None and session.id == session_id else None

    async def append(
        self,
        session_id: str,
        messages: Sequence[Message],
        now: float,
        timeout: float,
        max_age: float,
        cap: int,
        *,
        device: str | None = None,
        usage: UsageRow | None = None,
    ) -> Session:
        device = device or (usage.device if usage is not None else None) or await self._device_of(session_id)
        if device is None:
            raise SessionGone(f"session {session_id} was replaced or cleared")
        encoded = encode_messages(messages)
        day, row, usage_ttl = self._usage_args(usage, now)
        keys = self._keys(device, day)
        out = await self._retrying(lambda: self._append(
            keys=keys,
            args=[session_id, _num(now), _num(timeout), _num(max_age), cap, self.grace_ms, row, usage_ttl,
                  *encoded],
        ))
        if int(out[1]) == 1:
            pipe = self._pipeline()
            self._noted(pipe, device, new_device=False, usage_day=day, now=now)
            await self._best_effort(pipe.execute(), "index a day's usage")
        if int(out[0]) == -1:
            raise SessionGone(f"session {session_id} was replaced or cleared")
        session = _session(device, out[2:9])
        if int(out[0]):
            await self._reindex(session)
        return session

    async def history(self, session_id: str, limit: int, *, device: str | None = None) -> list[Message]:
        if limit <= 0:
            return []
        device = device or await self._device_of(session_id)
        if device is None:
            return []
        # One script on the device's slot, not MULTI: redis-py's cluster client runs a transaction
        # pipeline on a thread with an event loop of its own.
        keys = self._keys(device)[:2]
        raw = await self._retrying(lambda: self._history(keys=keys, args=[session_id, limit]))
        if raw is None:
            return []
        return _decode_messages(raw)

    async def clear(self, device: str, now: float | None = None) -> Session | None:
        at = time.time() if now is None else now
        out = await self._call(self._clear(keys=self._keys(device)[:4], args=[_num(at), self._retention_ms]))
        if out is None:
            return None
        removed = _session(device, out)
        pipe = self._pipeline()
        self._unindex(pipe, [_member(removed.id, device)])
        await self._best_effort(pipe.execute(), "unindex a cleared session")
        return removed

    async def sessions(self) -> list[Session]:
        members = await self._call(self._r.zrange(self._index, 0, -1))
        # A device is indexed twice between a replacing script and its index update: read it once.
        devices = list(dict.fromkeys(_split(m)[1] for m in members))
        if not devices:
            return []
        pipe = self._pipeline()
        for device in devices:
            pipe.hmget(self._session_key(device), *_FIELDS)
        rows = await self._call(pipe.execute())
        return [_session(device, f) for device, f in zip(devices, rows, strict=True) if f[0] is not None]

    async def sweep(self, now: float, limit: int = 1000) -> list[Session]:
        removed: list[Session] = []
        while len(removed) < limit:
            want = limit - len(removed)
            due = await self._call(self._r.zrangebyscore(self._index, "-inf", now, start=0, num=want))
            if not due:
                break
            members = [_text(m) for m in due]
            pipe = self._pipeline()
            for member in members:
                session_id, device = _split(member)
                keys = self._keys(device)[:4]
                args: list[str | int] = [session_id, _num(now), self._retention_ms]
                if self.cluster:  # a cluster pipeline loads no scripts: EVAL with the text, on each slot
                    pipe.eval(_SWEEP_ONE, len(keys), *keys, *args)
                else:
                    assert isinstance(pipe, Pipeline)
                    await self._sweep_one(keys=keys, args=args, client=pipe)
            results = await self._call(pipe.execute())
            drop: list[str] = []
            live: dict[str, float] = {}
            for member, out in zip(members, results, strict=True):
                tag = _text(out[0])
                if tag == "live":
                    live[member] = float(out[1])
                    continue
                drop.append(member)
                if tag == "expired":
                    removed.append(_session(_split(member)[1], out[1:8]))
            pipe = self._pipeline()
            if drop:
                self._unindex(pipe, drop)
            if live:
                pipe.zadd(self._index, live, xx=True, gt=True)  # not if cleared meanwhile; never earlier
            await self._call(pipe.execute())
            if len(due) < want:
                break
        return removed

    async def count(self, now: float) -> int:
        # Exact after a sweep (every member due by then is removed or re-indexed at its real deadline).
        return await self._call(self._r.zcount(self._index, f"({now}", "+inf"))

    async def purge(self, now: float) -> int:
        return 0  # every retained key carries its own Redis expiry

    # Devices.

    async def device(self, device: str) -> DeviceRecord | None:
        return _device_record(device, await self._call(self._r.hgetall(self._keys(device)[2])))

    async def devices(self) -> list[DeviceRecord]:
        names = sorted(_text(d) for d in await self._call(self._r.smembers(self._devices_key)))
        if not names:
            return []
        pipe = self._pipeline()
        for device in names:
            pipe.hgetall(self._keys(device)[2])
        rows = await self._call(pipe.execute())
        records, gone = [], []
        for device, raw in zip(names, rows, strict=True):
            record = _device_record(device, raw)
            if record is None:
                gone.append(device)  # its record expired (no settings, not seen within retention)
            else:
                records.append(record)
        if gone:
            await self._call(self._r.srem(self._devices_key, *gone))
        return records

    async def configure(self, device: str, changes: Mapping[str, Any], now: float) -> DeviceRecord:
        args: list[str] = []
        for name, value in changes.items():
            if name not in _SETTING_TYPES:
                raise ValueError(f"unknown device setting {name!r}")
            args += [name, "" if value is None else (repr(value) if isinstance(value, float) else str(value))]
        raw = await self._call(self._configure(keys=[self._keys(device)[2]], args=args))
        await self._call(self._r.sadd(self._devices_key, device))
        record = _device_record(device, raw)
        assert record is not None
        return record

    async def refuse(self, device: str, now: float, visit: Visit, usage: UsageRow) -> DeviceRecord:
        day, row, usage_ttl = self._usage_args(usage, now)
        keys = self._keys(device, day)
        out = await self._call(self._refuse(
            keys=[keys[2], keys[4]],
            args=[_num(now), visit.name or "", visit.area or "", self._device_ttl_ms, row, usage_ttl],
        ))
        pipe = self._pipeline()
        self._noted(pipe, device, new_device=bool(int(out[0])), usage_day=day if int(out[1]) == 1 else None,
                    now=now)
        await self._call(pipe.execute())
        record = _device_record(device, out[2:])
        assert record is not None
        return record

    async def forget(self, device: str) -> bool:
        session_key, history_key, device_key, past_key, _ = self._keys(device)
        live = await self.get(device)
        past = [_text(i) for i in await self._call(self._r.zrange(past_key, 0, -1))]
        today = day_of(time.time())
        days = range(today - int(self.retention.usage // DAY) - 1, today + 2)
        keys = [session_key, history_key, device_key, past_key]
        keys += [k for i in past for k in (f"{past_key}:{i}", f"{past_key}:{i}:history")]
        keys += [self._keys(device, d)[4] for d in days]
        found = int(await self._call(self._r.delete(*keys)))  # one hash tag: one slot
        pipe = self._pipeline()
        if live is not None:
            self._unindex(pipe, [_member(live.id, device)])
        pipe.srem(self._devices_key, device)
        for d in days:
            pipe.srem(self._usage_index(d), device)
        await self._call(pipe.execute())
        return found > 0

    # What outlives a session.

    async def past(self, device: str, now: float) -> list[PastSession]:
        past_key = self._keys(device)[3]
        ids = [_text(i) for i in await self._call(
            self._r.zrevrangebyscore(past_key, "+inf", now - self.retention.transcripts)
        )]
        if not ids:
            return []
        pipe = self._pipeline()
        for i in ids:
            pipe.hgetall(f"{past_key}:{i}")
        out = []
        for raw in await self._call(pipe.execute()):
            if not raw:
                continue  # expired between the two reads
            f = {_text(k): _text(v) for k, v in raw.items()}
            session = _session(device, [f[n] for n in _FIELDS])
            out.append(PastSession(session, float(f["ended_at"]), f["reason"]))
        return out

    async def past_history(self, device: str, session_id: str, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        raw = await self._call(self._r.lrange(f"{self._keys(device)[3]}:{session_id}:history", -limit, -1))
        return _decode_messages(raw)

    async def usage(self, since: float, until: float) -> list[UsageRow]:
        if until <= since:
            return []
        days = range(day_of(since), day_of(until) + 1)
        pipe = self._pipeline()
        for d in days:
            pipe.smembers(self._usage_index(d))
        wanted = [
            (d, _text(device)) for d, members in zip(days, await self._call(pipe.execute()), strict=True)
            for device in members
        ]
        if not wanted:
            return []
        pipe = self._pipeline()
        for d, device in wanted:
            pipe.lrange(self._keys(device, d)[4], 0, -1)
        rows = []
        for (_, device), raw in zip(wanted, await self._call(pipe.execute()), strict=True):
            for item in raw:
                row = UsageRow.decode(device, _text(item))
                if since <= row.ts < until:
                    rows.append(row)
        rows.sort(key=lambda r: r.ts)
        return rows


def _decode_messages(raw: Sequence[Any]) -> list[Message]:
    return [_decode(item) for item in raw]


@functools.lru_cache(maxsize=PARSED_CACHE)
def _decode(item: str | bytes) -> Message:
    d = orjson.loads(item)
    return Message(d["r"], d["c"], d["t"], MessageMeta.from_dict(d.get("m")))
