"""`python -m bench.bench_store [--quick] [--stores memory,sqlite,redis]`: what a session store costs.

For each store and each size (10k and 100k devices, each with one turn; `--quick`: 1k and 5k):
- ops/s through the SessionManager as the gateway calls it, one at a time on top of the filled store:
  create (`resolve` of a new device), get (`resolve` of a live one), append (`append_turn`, user + assistant);
  baseline: a raw dict write / a raw SQLite upsert (autocommit, same pragmas) / a raw Redis SET;
- memory per session: memory store: RSS growth of a fresh interpreter filling it; SQLite: file size after
  a checkpoint; Redis: INFO used_memory growth (others using that Redis add noise); baseline: the raw
  payload bytes;
- the sweep: with nothing due, and with 1% of the sessions due (total and per expired session); baseline: a
  full scan of every session's deadline, what a sweep without an expiry index would read.
The fill itself is not timed; it uses the stores' own code (Redis: their Lua scripts, pipelined).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from athena.observability import configure_logging
from athena.records import Message
from athena.sessions.manager import SWEEP_BATCH, DeviceRule, SessionManager, SessionPolicy
from athena.stores import Store, create_store
from athena.stores.redis import RedisStore, _member, encode_messages

REDIS_URL = os.environ.get("ATHENA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
USER = "turn on the kitchen lights and set them to fifty percent"
ASSISTANT = "Done: the kitchen lights are on at fifty percent."
TIMEOUT, SHORT, MAX_AGE = 300.0, 60.0, 86_400.0  # every 100th device gets SHORT: 1% due at the sweep
CAP = 200


@dataclass
class Row:
    store: str
    devices: int
    create_ops: float = 0.0
    get_ops: float = 0.0
    append_ops: float = 0.0
    base_ops: float = 0.0
    bytes_per_session: float = 0.0
    idle_sweep_s: float = 0.0
    sweep_s: float = 0.0
    swept: int = 0
    scan_s: float = 0.0


def device_names(n: int, tag: str = "room") -> list[str]:
    return [f"assist_satellite.{tag}_{i:06d}" for i in range(n)]


def timeout_of(i: int) -> float:
    return SHORT if i % 100 == 0 else TIMEOUT


def turn_messages(now: float) -> tuple[Message, Message]:
    return Message("user", USER, now), Message("assistant", ASSISTANT, now)


PAYLOAD = 26 + len(device_names(1)[0]) + len(USER) + len(ASSISTANT) + 8 * 9  # id, device, text, numbers


async def fill(store: Store, names: list[str], now: float) -> None:
    """Every device gets a session and one turn, through the store's own operations."""
    if isinstance(store, RedisStore):
        await fill_redis(store, names, now)
        return
    for i, d in enumerate(names):
        got = await store.acquire(d, now, timeout_of(i), MAX_AGE, f"01FILL{i:020d}")
        await store.append(got.session.id, turn_messages(now), now, timeout_of(i), MAX_AGE, CAP)


async def fill_redis(store: RedisStore, names: list[str], now: float) -> None:
    """The store's scripts and index writes, pipelined 500 devices at a time (one at a time would take minutes
    here and measure the network, which the timed part already does)."""
    r = store._r
    encoded = encode_messages(turn_messages(now))
    for start in range(0, len(names), 500):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(start + 500, len(names))):
            d, sid, t = names[i], f"01FILL{i:020d}", timeout_of(i)
            keys = store._keys(d)
            args = [repr(now), repr(t), repr(MAX_AGE), sid, "0", store.grace_ms, "", "", "",
                    store._retention_ms, store._device_ttl_ms, "", 1]
            await store._acquire(keys=keys, args=args, client=pipe)
            pipe.set(store._sid_key(sid), d, px=int(MAX_AGE * 1000) + store.grace_ms)
            pipe.zadd(store._index, {_member(sid, d): now + t})
            await store._append(keys=keys, args=[sid, repr(now), repr(t), repr(MAX_AGE), CAP, store.grace_ms,
                                                 "", 1, *encoded], client=pipe)
        await pipe.execute()


def policy_for(names: list[str]) -> SessionPolicy:
    return SessionPolicy(timeout=TIMEOUT, max_age=MAX_AGE, history_max_messages=CAP,
                         devices={d: DeviceRule(timeout=SHORT) for d in names[::100]})


async def timed_ops(store: Store, now: float, timed: int, row: Row) -> None:
    """One operation at a time through the manager, on new devices added to the filled store."""
    names = device_names(timed, "timed")
    manager = SessionManager(store, policy_for([]), clock=lambda: now)
    started = time.perf_counter()
    sessions = [await manager.resolve(d) for d in names]
    row.create_ops = timed / (time.perf_counter() - started)
    started = time.perf_counter()
    for s in sessions:
        await manager.append_turn(s, *turn_messages(now))
    row.append_ops = timed / (time.perf_counter() - started)
    started = time.perf_counter()
    for d in names:
        await manager.resolve(d)
    row.get_ops = timed / (time.perf_counter() - started)


async def sweeps(store: Store, now: float, row: Row) -> None:
    """The manager's sweep loop, timed at the store (its gauge count afterwards is not part of the sweep)."""

    async def run(at: float) -> int:
        removed = 0
        while True:
            batch = await store.sweep(at, SWEEP_BATCH)
            removed += len(batch)
            if len(batch) < SWEEP_BATCH:
                return removed

    await run(now)  # warm-up: nothing is due yet
    started = time.perf_counter()
    await run(now + 1)
    row.idle_sweep_s = time.perf_counter() - started
    started = time.perf_counter()
    row.swept = await run(now + (SHORT + TIMEOUT) / 2)
    row.sweep_s = time.perf_counter() - started


# Memory store.


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def memory_probe(n: int) -> float:
    """Run in a fresh interpreter: RSS growth per session while filling a memory store."""
    from athena.stores.memory import MemoryStore

    store = MemoryStore()
    names = device_names(n)
    gc.collect()
    before = rss_bytes()
    await fill(store, names, time.time())
    gc.collect()
    return (rss_bytes() - before) / n


async def bench_memory(n: int, timed: int) -> Row:
    row = Row("memory", n)
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_store", "--probe-memory", str(n), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await probe.communicate()
    row.bytes_per_session = float(out.decode().strip().splitlines()[-1])
    store = create_store("memory://")
    await store.open()
    now = time.time()
    await fill(store, device_names(n), now)
    await timed_ops(store, now, timed, row)
    started = time.perf_counter()
    _ = [s for s in await store.sessions() if s.expires_at <= now + 180]
    row.scan_s = time.perf_counter() - started
    await sweeps(store, now, row)

    table: dict[str, tuple[str, float]] = {}

    async def raw(d: str) -> None:  # awaited like a store call, so the baseline pays the same call overhead
        table[d] = (d, now)

    names = device_names(timed, "raw")
    started = time.perf_counter()
    for d in names:
        await raw(d)
    row.base_ops = timed / (time.perf_counter() - started)
    return row


# SQLite store.


async def bench_sqlite(n: int, timed: int, tmp: Path) -> Row:
    row = Row("sqlite", n)
    path = tmp / f"sessions-{n}.db"
    store = create_store(f"sqlite:///{path}")
    await store.open()
    try:
        now = time.time()
        await fill(store, device_names(n), now)
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            row.bytes_per_session = path.stat().st_size / n
            # `+ 0` keeps SQLite off the expiry index, as a sweep without one would be.
            started = time.perf_counter()
            db.execute("SELECT id FROM sessions WHERE expires_at + 0 <= ?", (now + 180,)).fetchall()
            row.scan_s = time.perf_counter() - started
        await timed_ops(store, now, timed, row)
        await sweeps(store, now, row)
    finally:
        await store.close()

    raw = sqlite3.connect(tmp / f"raw-{n}.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL").fetchall()
    raw.execute("PRAGMA synchronous = NORMAL")
    raw.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    names = device_names(timed, "raw")
    started = time.perf_counter()
    for d in names:
        raw.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (d, USER))
    row.base_ops = timed / (time.perf_counter() - started)
    raw.close()
    return row


# Redis store.


async def bench_redis(n: int, timed: int) -> Row:
    row = Row("redis", n)
    prefix = f"athena-bench-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(REDIS_URL)
    store = create_store(f"{REDIS_URL}?prefix={prefix}")
    try:
        await store.open()
        now = time.time()
        before = int((await client.info("memory"))["used_memory"])
        await fill(store, device_names(n), now)
        row.bytes_per_session = (int((await client.info("memory"))["used_memory"]) - before) / n
        started = time.perf_counter()
        _ = [k async for k in client.scan_iter(match=f"{prefix}:*:session", count=1000)]
        row.scan_s = time.perf_counter() - started
        await timed_ops(store, now, timed, row)
        await sweeps(store, now, row)
        names = device_names(timed, "raw")
        started = time.perf_counter()
        for d in names:
            await client.set(f"{prefix}:raw:{d}", USER)
        row.base_ops = timed / (time.perf_counter() - started)
    finally:
        await store.close()
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
        await client.aclose()
    return row


# Report.


def k(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def table(title: str, head: list[tuple[str, int]], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    line = " ".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(head))
    print(line)
    print("-" * len(line))
    for r in rows:
        cells = zip(r, head, strict=True)
        print(" ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, (_, w)) in enumerate(cells)))


def report(rows: list[Row]) -> None:
    table(
        "Ops/s, one at a time through the SessionManager, on top of the filled store"
        " (baseline: raw dict / SQLite upsert / Redis SET)",
        [("store", 7), ("devices", 8), ("create/s", 9), ("get/s", 8), ("append/s", 9), ("baseline/s", 10),
         ("get:base", 9), ("append:base", 11)],
        [[r.store, str(r.devices), k(r.create_ops), k(r.get_ops), k(r.append_ops), k(r.base_ops),
          f"{r.get_ops / r.base_ops:.2f}", f"{r.append_ops / r.base_ops:.2f}"] for r in rows],
    )
    table(
        f"Memory per session with one turn (baseline: the {PAYLOAD} raw payload bytes)",
        [("store", 7), ("devices", 8), ("bytes/session", 13), ("x payload", 9)],
        [[r.store, str(r.devices), f"{r.bytes_per_session:.0f}", f"{r.bytes_per_session / PAYLOAD:.1f}"]
         for r in rows],
    )
    table(
        "Sweep: nothing due, then 1% due (baseline: a full scan of every session's deadline)",
        [("store", 7), ("devices", 8), ("idle ms", 8), ("expired", 8), ("sweep ms", 9), ("us/expired", 10),
         ("scan ms", 8), ("sweep:scan", 10)],
        [[r.store, str(r.devices), f"{r.idle_sweep_s * 1000:.2f}", str(r.swept), f"{r.sweep_s * 1000:.1f}",
          f"{r.sweep_s / max(r.swept, 1) * 1e6:.0f}", f"{r.scan_s * 1000:.1f}", f"{r.sweep_s / r.scan_s:.2f}"]
         for r in rows],
    )


async def redis_reachable() -> bool:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
        return True
    except (aioredis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def run(sizes: list[int], timed: int, kinds: list[str]) -> int:
    if "redis" in kinds and not await redis_reachable():
        print(f"Redis not reachable at {REDIS_URL}: skipping the Redis store", file=sys.stderr)
        kinds = [x for x in kinds if x != "redis"]
    rows: list[Row] = []
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="athena-bench-") as tmp:
        for kind in kinds:
            for n in sizes:
                started = time.perf_counter()
                if kind == "memory":
                    row = await bench_memory(n, timed)
                elif kind == "sqlite":
                    row = await bench_sqlite(n, timed, Path(tmp))
                else:
                    row = await bench_redis(n, timed)
                rows.append(row)
                print(f"  {kind} x {n}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    report(rows)
    print(f"\n({len(rows)} runs in {time.perf_counter() - total:.0f} s; {timed} timed operations each;"
          f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 5k devices instead of 10k and 100k")
    parser.add_argument("--stores", default="memory,sqlite,redis", help="comma-separated subset")
    parser.add_argument("--probe-memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging("WARNING")
    if args.probe_memory:
        print(asyncio.run(memory_probe(args.probe_memory)))
        return 0
    sizes = [1_000, 5_000] if args.quick else [10_000, 100_000]
    timed = 1_000 if args.quick else 5_000
    return asyncio.run(run(sizes, timed, [x.strip() for x in args.stores.split(",") if x.strip()]))


if __name__ == "__main__":
    sys.exit(main())
