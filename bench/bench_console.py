"""`python -m bench.bench_console [--quick] [--stores memory,sqlite,redis]`: what the console costs a turn.

A turn's store work is one acquire and one append. With the console, the acquire also checks the device's
settings version and records the visit (first/last seen, name, area, turns), and the append also keeps a usage
row. Per store: turns per second through the SessionManager as the engine calls it, on 1,000 devices taking
turns in round robin, with those additions (`console`) and without them (`baseline`, what the gateway did
before: no visit, no usage row), interleaved in rounds in the same run; the ratio is console / baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from athena.observability import configure_logging
from athena.records import Message, MessageMeta
from athena.sessions.manager import SessionManager, SessionPolicy
from athena.stores import create_store
from athena.stores.redis import RedisStore

REDIS_URL = os.environ.get("ATHENA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DEVICES = 1000


async def turns(manager: SessionManager, names: list[str], n: int, console: bool) -> float:
    """Turns per second: resolve + append_turn, as TurnRun does for an LLM answer."""
    started = time.perf_counter()
    for i in range(n):
        device = names[i % len(names)]
        now = manager.clock()
        if console:
            view = manager.view(device, "Kitchen Display")
            session = await manager.resolve(device, name="Kitchen Display", area="Kitchen", view=view)
            meta = MessageMeta(device=device, path="llm", latency_ms=123.4, backend="openai", model="m")
        else:
            session = await manager.resolve(device, name="Kitchen Display")
            meta = MessageMeta(device=device, backend="openai", model="m")  # no path: no usage row
        asked = Message("user", "what's the weather tomorrow", now)
        await manager.append_turn(session, asked, Message("assistant", "Sunny.", now, meta))
    return n / (time.perf_counter() - started)


async def bench(kind: str, rounds: int, per_round: int) -> tuple[float, float]:
    tmp = tempfile.mkdtemp(prefix="athena-bench-console-")
    prefix = f"athena-bench-{uuid.uuid4().hex[:8]}"
    url = {"memory": "memory://", "sqlite": f"sqlite:///{Path(tmp) / 'a.db'}",
           "redis": f"{REDIS_URL}?prefix={prefix}"}[kind]
    store = create_store(url)
    manager = SessionManager(store, SessionPolicy(history_max_messages=20))
    await manager.start()
    try:
        base_names = [f"assist_satellite.base_{i:04d}" for i in range(DEVICES)]
        console_names = [f"assist_satellite.console_{i:04d}" for i in range(DEVICES)]
        await turns(manager, base_names, DEVICES, console=False)  # warm: every device has a session
        await turns(manager, console_names, DEVICES, console=True)
        base, console = [], []
        for _ in range(rounds):
            base.append(await turns(manager, base_names, per_round, console=False))
            console.append(await turns(manager, console_names, per_round, console=True))
        return statistics.median(base), statistics.median(console)
    finally:
        if isinstance(store, RedisStore):
            keys = [k async for k in store._r.scan_iter(match=f"{prefix}:*", count=1000)]
            for i in range(0, len(keys), 1000):
                await store._r.delete(*keys[i:i + 1000])
        await manager.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_console")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--stores", default="memory,sqlite,redis")
    args = parser.parse_args()
    configure_logging("WARNING")
    rounds, per_round = (3, 1000) if args.quick else (7, 3000)
    print(f"{'store':<8} {'baseline turns/s':>17} {'console turns/s':>16} {'ratio':>6}")
    for kind in args.stores.split(","):
        base, console = asyncio.run(bench(kind, rounds, per_round))
        print(f"{kind:<8} {base:>17,.0f} {console:>16,.0f} {console / base:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
