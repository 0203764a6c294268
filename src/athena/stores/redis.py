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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from athena.records import Message, MessageMeta, Session
from athena.stores.base import Acquired, SessionGone, StoreDegraded, StoreError

log = structlog.get_logger("athena.stores")
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

T = TypeVar("T")

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
"""

# KEYS: session, history. ARGV: now, timeout, max_age, new_id, force_new, grace_ms.
# Returns {created(0|1), reindex(0|1), session fields..., retired fields... (when created over one)}.
_ACQUIRE = _LUA_COMMON + """
local now, timeout, max_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local grace = tonumber(ARGV[6])
local cur = fields(KEYS[1])
if cur[1] and ARGV[5] ~= '1' and now < tonumber(cur[4]) then
  local expires_at = math.min(now + timeout, tonumber(cur[2]) + max_age)
  redis.call('HSET', KEYS[1], 'last_activity', ARGV[1], 'expires_at', num(expires_at),
             'timeout', ARGV[2], 'max_age', ARGV[3])
  keep(now, expires_at, grace)
  local reindex = 0
  if expires_at < tonumber(cur[4]) then reindex = 1 end
  return {0, reindex, cur[1], cur[2], ARGV[1], num(expires_at), ARGV[2], ARGV[3], cur[7]}
end
redis.call('DEL', KEYS[1], KEYS[2])
local expires_at = math.min(now + timeout, now + max_age)
redis.call('HSET', KEYS[1], 'id', ARGV[4], 'created_at', ARGV[1], 'last_activity', ARGV[1],
           'expires_at', num(expires_at), 'timeout', ARGV[2], 'max_age', ARGV[3], 'turns', '0')
keep(now, expires_at, grace)
local out = {1, 1, ARGV[4], ARGV[1], ARGV[1], num(expires_at), ARGV[2], ARGV[3], '0'}
if cur[1] then
  for i = 1, 7 do out[#out + 1] = cur[i] end
end
return out
"""

# KEYS: session, history. ARGV: session_id, now, timeout, max_age, cap, grace_ms, message...
# Returns false when the session is not the device's current one, else {reindex, session fields...}.
_APPEND = _LUA_COMMON + """
local cur = fields(KEYS[1])
if cur[1] ~= ARGV[1] then return false end
local now, timeout, max_age = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 7, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
local turns = redis.call('HINCRBY', KEYS[1], 'turns', 1)
local expires_at = math.min(now + timeout, tonumber(cur[2]) + max_age)
redis.call('HSET', KEYS[1], 'last_activity', ARGV[2], 'expires_at', num(expires_at),
           'timeout', ARGV[3], 'max_age', ARGV[4])
keep(now, expires_at, tonumber(ARGV[6]))
local reindex = 0
if expires_at < tonumber(cur[4]) then reindex = 1 end
return {reindex, cur[1], cur[2], ARGV[2], num(expires_at), ARGV[3], ARGV[4], tostring(turns)}
"""

# KEYS: session, history. ARGV: session_id, limit. The newest `limit` messages, or false when the session
# is not the device's current one.
_HISTORY = """
local cur = redis.call('HGET', KEYS[1], 'id')
if cur ~= ARGV[1] then return false end
return redis.call('LRANGE', KEYS[2], -tonumber(ARGV[2]), -1)
"""

# KEYS: session, history. Returns the removed session's fields, or false.
_CLEAR = _LUA_COMMON + """
local cur = fields(KEYS[1])
if not cur[1] then return false end
redis.call('DEL', KEYS[1], KEYS[2])
return cur
"""

# KEYS: session, history. ARGV: session_id, now.
# Returns {'gone'} (not the current session), {'live', expires_at} or {'expired', fields...} (and removes it).
_SWEEP_ONE = _LUA_COMMON + """
local cur = fields(KEYS[1])
if cur[1] ~= ARGV[1] then return {'gone'} end
if tonumber(cur[4]) > tonumber(ARGV[2]) then return {'live', cur[4]} end
redis.call('DEL', KEYS[1], KEYS[2])
return {'expired', unpack(cur)}
"""


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
    ) -> None:
        if not prefix or any(c in prefix for c in "{} "):
            raise ValueError(f"Redis key prefix must be non-empty without braces or spaces, not {prefix!r}")
        self.url = url
        self.prefix = prefix
        self.grace_ms = int(grace * 1000)
        self.cluster = cluster
        parts = urlsplit(url)
        if cluster and parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"a Redis Cluster has only database 0, not {parts.path.strip('/')!r}")
        where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
        self._where = where
        self._name = "Redis Cluster" if cluster else "Redis"
        self._redis: aioredis.Redis | RedisCluster | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """Takes a `prefix` query parameter (default "athena"); the rest of the URL goes to redis-py.
        `redis+cluster://` (`rediss+cluster://`) is redis-py's cluster client seeded with that node."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        prefix = query.pop("prefix", ["athena"])[-1]
        cluster = parts.scheme in CLUSTER_SCHEMES
        scheme = CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
        rest = urlunsplit(parts._replace(scheme=scheme, query=urlencode(query, doseq=True)))
        return cls(rest, prefix=prefix, cluster=cluster)

    # Keys.

    def _session_key(self, device: str) -> str:
        return f"{self.prefix}:{{{device}}}:session"

    def _keys(self, device: str) -> list[str]:
        return [self._session_key(device), f"{self.prefix}:{{{device}}}:history"]

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
            return await op
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
                self.url, socket_connect_timeout=3, socket_timeout=5, require_full_coverage=False
            )
        else:
            self._redis = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=30
            )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._append = self._redis.register_script(_APPEND)
        self._clear = self._redis.register_script(_CLEAR)
        self._history = self._redis.register_script(_HISTORY)
        self._sweep_one = self._redis.register_script(_SWEEP_ONE)
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

    async def _index_new(self, session: Session, retired: Session | None) -> None:
        pipe = self._pipeline()
        if retired is not None:
            self._unindex(pipe, [_member(retired.id, retired.device)])
        pipe.set(self._sid_key(session.id), session.device, px=int(session.max_age * 1000) + self.grace_ms)
        pipe.zadd(self._index, {_member(session.id, session.device): session.expires_at})
        await self._best_effort(pipe.execute(), "index a new session")

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
        self, device: str, now: float, timeout: float, max_age: float, new_id: str, force_new: bool = False
    ) -> Acquired:
        out = await self._retrying(lambda: self._acquire(
            keys=self._keys(device),
            args=[_num(now), _num(timeout), _num(max_age), new_id, "1" if force_new else "0", self.grace_ms],
        ))
        session = _session(device, out[2:9])
        if not int(out[0]):
            if int(out[1]):
                await self._reindex(session)
            return Acquired(session, created=False, ended=None)
        retired = _session(device, out[9:16]) if len(out) > 9 else None
        await self._index_new(session, retired)
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
    ) -> Session:
        device = device or await self._device_of(session_id)
        if device is None:
            raise SessionGone(f"session {session_id} was replaced or cleared")
        encoded = encode_messages(messages)
        out = await self._retrying(lambda: self._append(
            keys=self._keys(device),
            args=[session_id, _num(now), _num(timeout), _num(max_age), cap, self.grace_ms, *encoded],
        ))
        if out is None:
            raise SessionGone(f"session {session_id} was replaced or cleared")
        session = _session(device, out[1:8])
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
        keys = self._keys(device)
        raw = await self._retrying(lambda: self._history(keys=keys, args=[session_id, limit]))
        if raw is None:
            return []
        out = []
        for item in raw:
            d = orjson.loads(item)
            out.append(Message(d["r"], d["c"], d["t"], MessageMeta.from_dict(d.get("m"))))
        return out

    async def clear(self, device: str) -> Session | None:
        out = await self._call(self._clear(keys=self._keys(device)))
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
                if self.cluster:  # a cluster pipeline loads no scripts: EVAL with the text, on each slot
                    pipe.eval(_SWEEP_ONE, 2, *self._keys(device), session_id, _num(now))
                else:
                    assert isinstance(pipe, Pipeline)
                    await self._sweep_one(keys=self._keys(device), args=[session_id, _num(now)], client=pipe)
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
