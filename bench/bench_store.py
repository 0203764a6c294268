"""`python -m bench.bench_store [--quick] [--stores memory,sqlite,redis]`: what a session store costs.

Per store, through the SessionManager as the gateway uses it (logging at WARNING):
- get-or-create (`resolve`) and append (`append_turn`, a user + assistant message) ops/s, one at a time;
- memory per session with 10k and 100k devices (each with one turn): memory store: tracemalloc delta, SQLite:
  file size (after a WAL checkpoint), Redis: INFO used_memory delta (other users of that Redis add noise);
- the sweep when 1% of the sessions are due: total time and time per expired session.
Each number comes with a baseline measured in the same run: a raw dict / raw SQLite upsert / raw Redis SET for
ops; the raw payload bytes (ids, device, message text) for memory; a full scan of every session for the sweep
(what a sweep would cost if it followed what exists rather than what expires).
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
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from athena.config import DevicePolicy, Settings
from athena.observability import configure_logging
from athena.sessions.manager import SWEEP_BATCH, SessionManager
from athena.sessions.models import Message
from athena.stores import create_store

REDIS_URL = os.environ.get("ATHENA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
USER = "turn on the kitchen lights and set them to fifty percent"
ASSISTANT = "Done: the kitchen lights are on at fifty percent."
TIMED = [10_000]  # devices timed one operation at a time (the rest are filled concurrently)
TIMEOUT, SHORT = 300.0, 60.0  # 1% of the devices get SHORT, so they are due when the sweep runs


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Row:
    store: str
    devices: int
    create_ops: float = 0.0
    touch_ops: float = 0.0
    append_ops: float = 0.0
    fill_turns: float = 0.0
    base_ops: float = 0.0
    bytes_per_session: float = 0.0
    payload_bytes: float = 0.0
    sweep_s: float = 0.0
    swept: int = 0
    scan_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def devices(n: int) -> list[str]:
    return [f"assist_satellite.room_{i:06d}" for i in range(n)]


def payload_bytes(session_id: str, device: str) -> int:
    return len(session_id) + len(device) + len(USER) + len(ASSISTANT) + 8 * 9  # + the numbers, as doubles


async def one_turn(manager: SessionManager, device: str) -> None:
    session = await manager.resolve(device)
    now = manager.clock()
    await manager.append_turn(session, Message("user", USER, now), Message("assistant", ASSISTANT, now))


async def populate(manager: SessionManager, names: list[str], row: Row, timed: int) -> None:
    """Fill all but the last `timed` devices with concurrent turns (64 at a time: the fill rate, create +
    append), then time the last ones one operation at a time, as a single device's turn sees it."""
    bulk, rest = names[:-timed], names[-timed:]
    started = time.perf_counter()
    for i in range(0, len(bulk), 64):
        await asyncio.gather(*(one_turn(manager, d) for d in bulk[i : i + 64]))
    if bulk:
        row.fill_turns = len(bulk) / (time.perf_counter() - started)
    started = time.perf_counter()
    sessions = [await manager.resolve(d) for d in rest]
    row.create_ops = len(rest) / (time.perf_counter() - started)
    now = manager.clock()
    started = time.perf_counter()
    for s in sessions:
        await manager.append_turn(s, Message("user", USER, now), Message("assistant", ASSISTANT, now))
    row.append_ops = len(rest) / (time.perf_counter() - started)
    sample = rest[: max(1, len(rest) // 5)]
    started = time.perf_counter()
    for d in sample:
        await manager.resolve(d)
    row.touch_ops = len(sample) / (time.perf_counter() - started)


def settings_for(names: list[str]) -> Settings:
    short = {d: DevicePolicy(timeout=SHORT) for d in names[::100]}
    return Settings(store_url="memory://", session_timeout=TIMEOUT, devices=short, history_max_messages=200)


async def sweep(manager: SessionManager, clock: Clock, row: Row) -> None:
    """The manager's sweep loop, timed at the store (the gauge's count afterwards is not the sweep's cost)."""
    clock.now += (SHORT + TIMEOUT) / 2
    started = time.perf_counter()
    while True:
        batch = await manager.store.sweep(clock.now, SWEEP_BATCH)
        row.swept += len(batch)
        if len(batch) < SWEEP_BATCH:
            break
    row.sweep_s = time.perf_counter() - started


# Memory store.


async def bench_memory(n: int) -> Row:
    row = Row("memory", n)
    names = devices(n)
    clock = Clock()
    manager = SessionManager(create_store("memory://"), settings_for(names), clock)
    await manager.store.open()
    await populate(manager, names, row, TIMED[0])
    # Full scan baseline for the sweep: look at every session's deadline.
    started = time.perf_counter()
    _ = [s for s in await manager.store.sessions() if s.expires_at <= clock.now + 180]
    row.scan_s = time.perf_counter() - started
    await sweep(manager, clock, row)
    del manager
    gc.collect()

    # Memory: the same population again, traced (tracing slows it, so ops/s come from the run above).
    traced = SessionManager(create_store("memory://"), settings_for(names), Clock())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for d in names:
        s = await traced.resolve(d)
        await traced.append_turn(s, Message("user", USER, 0.0), Message("assistant", ASSISTANT, 0.0))
    gc.collect()
    row.bytes_per_session = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    row.payload_bytes = payload_bytes(s.id, names[-1])
    del traced
    gc.collect()

    # Baseline: a raw dict of tuples and a list per device, awaited the same way (one coroutine call each).
    table: dict[str, tuple[str, float]] = {}
    history: dict[str, list[tuple[str, str]]] = {}

    async def raw(d: str) -> None:
        table[d] = (d, 0.0)
        history.setdefault(d, []).append((USER, ASSISTANT))

    started = time.perf_counter()
    for d in names:
        await raw(d)
    row.base_ops = n / (time.perf_counter() - started)
    return row


# SQLite store.


async def bench_sqlite(n: int, tmp: Path) -> Row:
    row = Row("sqlite", n)
    names = devices(n)
    path = tmp / f"sessions-{n}.db"
    clock = Clock()
    manager = SessionManager(create_store(f"sqlite:///{path}"), settings_for(names), clock)
    await manager.store.open()
    await populate(manager, names, row, TIMED[0])
    await manager.store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # Full scan baseline: `+ 0` keeps SQLite off the expiry index, as a sweep without one would be.
        started = time.perf_counter()
        db.execute("SELECT id FROM sessions WHERE expires_at + 0 <= ?", (clock.now + 180,)).fetchall()
        row.scan_s = time.perf_counter() - started
    row.bytes_per_session = path.stat().st_size / n
    row.payload_bytes = payload_bytes("01" * 13, names[-1])
    await manager.store.open()
    await sweep(manager, clock, row)
    await manager.store.close()

    # Baseline: a raw upsert of one row per device, autocommit, same pragmas, no thread hop.
    raw = sqlite3.connect(tmp / f"raw-{n}.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")
    raw.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    started = time.perf_counter()
    for d in names:
        raw.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (d, USER))
    row.base_ops = n / (time.perf_counter() - started)
    raw.close()
    return row


# Redis store.


async def redis_used(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def bench_redis(n: int) -> Row:
    row = Row("redis", n)
    names = devices(n)
    prefix = f"athena-bench-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(REDIS_URL)
    clock = Clock()
    manager = SessionManager(create_store(f"{REDIS_URL}?prefix={prefix}"), settings_for(names), clock)
    try:
        await manager.store.open()
        before = await redis_used(client)
        await populate(manager, names, row, TIMED[0])
        row.bytes_per_session = (await redis_used(client) - before) / n
        row.payload_bytes = payload_bytes("01" * 13, names[-1])
        # Full scan baseline: SCAN every key of this store, as a sweep without an index would.
        started = time.perf_counter()
        _ = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        row.scan_s = time.perf_counter() - started
        await sweep(manager, clock, row)

        started = time.perf_counter()
        for d in names:
            await client.set(f"{prefix}:raw:{d}", USER)
        row.base_ops = n / (time.perf_counter() - started)
    finally:
        await manager.store.close()
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
        await client.aclose()
    return row


# Report.


def fmt_ops(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def report(rows: list[Row]) -> None:
    print("\nOps/s, one operation at a time through the SessionManager (baseline: raw dict / SQLite upsert /"
          " Redis SET); fill: turns/s (create + append) 64 at a time")
    head = f"{'store':8} {'devices':>8} {'create/s':>9} {'get/s':>8} {'append/s':>9} {'baseline/s':>10}" \
           f" {'get vs base':>11} {'append vs base':>14} {'fill/s':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.store:8} {r.devices:>8} {fmt_ops(r.create_ops):>9} {fmt_ops(r.touch_ops):>8}"
              f" {fmt_ops(r.append_ops):>9} {fmt_ops(r.base_ops):>10} {r.touch_ops / r.base_ops:>10.2f}x"
              f" {r.append_ops / r.base_ops:>13.2f}x {fmt_ops(r.fill_turns) if r.fill_turns else '-':>8}")
    print("\nMemory per session (one turn each; baseline: the raw payload bytes)")
    head = f"{'store':8} {'devices':>8} {'bytes/session':>14} {'payload':>8} {'overhead':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.store:8} {r.devices:>8} {r.bytes_per_session:>14.0f} {r.payload_bytes:>8.0f}"
              f" {r.bytes_per_session / r.payload_bytes:>8.1f}x")
    print("\nSweep with 1% of sessions due (baseline: a full scan of every session)")
    head = f"{'store':8} {'devices':>8} {'expired':>8} {'sweep ms':>9} {'us/expired':>11} {'scan ms':>8}" \
           f" {'sweep vs scan':>13}"
    print(head)
    print("-" * len(head))
    for r in rows:
        per = r.sweep_s / r.swept * 1e6 if r.swept else 0.0
        print(f"{r.store:8} {r.devices:>8} {r.swept:>8} {r.sweep_s * 1000:>9.1f} {per:>11.1f}"
              f" {r.scan_s * 1000:>8.1f} {r.sweep_s / r.scan_s:>12.2f}x")


async def redis_reachable() -> bool:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
        return True
    except (aioredis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def run(sizes: list[int], kinds: list[str]) -> int:
    rows: list[Row] = []
    if "redis" in kinds and not await redis_reachable():
        print(f"Redis not reachable at {REDIS_URL}: skipping the Redis store", file=sys.stderr)
        kinds = [k for k in kinds if k != "redis"]
    with tempfile.TemporaryDirectory(prefix="athena-bench-") as tmp:
        for kind in kinds:
            for n in sizes:
                started = time.perf_counter()
                if kind == "memory":
                    row = await bench_memory(n)
                elif kind == "sqlite":
                    row = await bench_sqlite(n, Path(tmp))
                else:
                    row = await bench_redis(n)
                print(f"{kind} x {n}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
                rows.append(row)
    report(rows)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 5k devices instead of 10k and 100k")
    parser.add_argument("--stores", default="memory,sqlite,redis")
    args = parser.parse_args()
    configure_logging("WARNING")
    sizes = [1_000, 5_000] if args.quick else [10_000, 100_000]
    TIMED[0] = 1_000 if args.quick else 10_000
    return asyncio.run(run(sizes, [k.strip() for k in args.stores.split(",") if k.strip()]))


if __name__ == "__main__":
    sys.exit(main())
