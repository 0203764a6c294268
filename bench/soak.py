"""`python -m bench.soak [--minutes 10]`: the gateway under weeks-of-use in miniature, then its books checked.

Half the time on SQLite, half on Redis (its own `redis-server`, append-only on, as an operator would run it).
200 devices follow a schedule of conversations: a few turns with pauses, follow-ups, now and then "start
over", and silences longer than the session timeout (30 s here), so sessions expire and the sweep (every
5 s) runs.
Midway the LLM answers HTTP 500 for 30 s; on Redis, the server is also restarted once.

Reported per store: turns served, p50/p99 latency per minute, the gateway's RSS at start and end, errors by
reason, and the store against what the schedule implies: every live session holds exactly the turns that were
kept in it (nothing lost), and no session the schedule left idle past its timeout is still there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_gateway import start_fake  # noqa: E402
from tests.support.gateway import GatewayProcess, free_port  # noqa: E402
from tests.support.redis_server import _answers  # noqa: E402

DEVICES = 200
TIMEOUT = 30.0  # ATHENA_SESSION_TIMEOUT for the soak
TOPICS = ["the weather", "a recipe", "the news", "a joke", "the capital of France", "a song", "my day"]


@dataclass
class Device:
    """What the schedule knows about one device's session."""

    name: str
    session: str | None = None
    kept: int = 0  # turns kept in `session`: answered ones, and failed ones (the question and the error)
    last: float = 0.0  # when its last turn ended (wall clock)


@dataclass
class Run:
    latencies: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # minute -> ms
    outcomes: Counter[str] = field(default_factory=Counter)
    devices: dict[str, Device] = field(default_factory=dict)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def conversation(http: aiohttp.ClientSession, gw: GatewayProcess, run: Run, dev: Device,
                       until: float, started: float, rng: random.Random) -> None:
    auth = {"Authorization": f"Bearer {gw.token}"}
    while time.time() < until:
        turns = rng.randint(1, 4)
        for i in range(turns):
            if time.time() >= until:
                return
            text = "start over" if rng.random() < 0.05 else (
                f"tell me about {rng.choice(TOPICS)}" if i == 0 else "and what about tomorrow?"
            )
            t = time.perf_counter()
            try:
                async with http.post(gw.url + "/ha/conversation", json={"text": text, "device_id": dev.name},
                                     headers=auth) as resp:
                    body = await resp.json()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                run.outcomes[f"transport:{type(exc).__name__}"] += 1
                await nap(1, until)
                continue
            ms = (time.perf_counter() - t) * 1000
            run.latencies[int((time.time() - started) // 60)].append(ms)
            if status != 200:
                run.outcomes[f"http_{status}"] += 1
                continue
            response = body["response"]
            session = body["conversation_id"]
            if response["response_type"] == "error":
                run.outcomes[f"error:{response['speech']['plain']['speech'][:40]}"] += 1
                # The question and the error are kept (no session id: the store was down, nothing was).
                if session and session != dev.session:
                    dev.session, dev.kept = session, 0
                if session:
                    dev.kept += 1
            elif text == "start over":
                run.outcomes["reset"] += 1
                dev.session, dev.kept = session, 0
            else:
                run.outcomes["answered"] += 1
                if session != dev.session:  # expired (or first): a new session
                    dev.session, dev.kept = session, 0
                dev.kept += 1
            if session:  # the turn reached the store (and so touched the session)
                dev.last = time.time()
            await nap(rng.uniform(1, 8), until)
        # Between conversations: short pauses mostly, sometimes longer than the session timeout.
        long_silence = rng.random() < 0.3
        await nap(rng.uniform(TIMEOUT + 5, TIMEOUT + 40) if long_silence else rng.uniform(5, 20), until)


async def nap(seconds: float, until: float) -> None:
    """A pause that ends with the run."""
    await asyncio.sleep(max(0.0, min(seconds, until - time.time())))


async def chaos(
    upstream: str, redis: RedisProc | None, started: float, seconds: float, events: list[str]
) -> None:
    """At a third of the run the LLM fails for 30 s (less on short runs); then Redis restarts once."""
    outage = min(30.0, seconds / 5)
    await asyncio.sleep(seconds / 3)
    async with aiohttp.ClientSession() as http:
        async with http.post(upstream + "/_control", json={"status": 500}) as r:
            r.raise_for_status()
        events.append(f"{time.time() - started:.0f}s: LLM answers HTTP 500 for {outage:.0f} s")
        await asyncio.sleep(outage)
        async with http.post(upstream + "/_control", json={"status": None}) as r:
            r.raise_for_status()
        events.append(f"{time.time() - started:.0f}s: LLM back")
    if redis is not None:
        await asyncio.sleep(outage / 2)
        await asyncio.to_thread(redis.restart)
        events.append(f"{time.time() - started:.0f}s: Redis restarted")


class RedisProc:
    """A redis-server of the soak's own, append-only so a restart keeps what it had."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="athena-soak-redis-")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("the soak's redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # a clean shutdown writes the append-only file
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        time.sleep(2)  # the gateway sees it gone for a moment
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


async def soak(store: str, seconds: float, upstream: str, seed: int) -> None:
    redis = RedisProc() if store == "redis" else None
    tmp = tempfile.mkdtemp(prefix="athena-soak-")
    if redis is not None:
        redis.start()
    url = redis.url if redis else f"sqlite:///{tmp}/athena.db"
    env = {
        "ATHENA_LLM_URL": upstream + "/v1", "ATHENA_STORE_URL": url, "ATHENA_LOG_LEVEL": "WARNING",
        "ATHENA_SESSION_TIMEOUT": str(TIMEOUT), "ATHENA_CLEANUP_INTERVAL": "5", "ATHENA_LLM_TIMEOUT": "10",
    }
    run = Run()
    rng = random.Random(seed)
    try:
        with GatewayProcess(env) as gw:
            assert gw.proc is not None
            rss_start = rss_mb(gw.proc.pid)
            started = time.time()
            until = started + seconds
            run.devices = {f"soak-{i:03d}": Device(f"soak-{i:03d}") for i in range(DEVICES)}
            connector = aiohttp.TCPConnector(limit=64)
            limit = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=limit) as http:
                async with http.post(upstream + "/_control", json={"record": False, "status": None}) as r:
                    r.raise_for_status()  # the fake keeps nothing: a soak sends thousands of requests
                tasks = [
                    conversation(http, gw, run, dev, until, started, random.Random(rng.random()))
                    for dev in run.devices.values()
                ]
                events: list[str] = []
                chaos_task = asyncio.create_task(chaos(upstream, redis, started, seconds, events))
                await asyncio.gather(*tasks)
                chaos_task.cancel()
                rss_end = rss_mb(gw.proc.pid)
                await asyncio.sleep(7)  # a sweep after the last turn
                books = await check_books(http, gw, run)
                metrics = await failures(http, gw)
        report(store, run, rss_start, rss_end, events, books, metrics, seconds)
    finally:
        if redis is not None:
            redis.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def check_books(http: aiohttp.ClientSession, gw: GatewayProcess, run: Run) -> dict[str, int]:
    """The store against the schedule: what should be live holds what was answered; the rest is gone."""
    auth = {"Authorization": f"Bearer {gw.token}"}
    async with http.get(gw.url + "/athena/sessions", headers=auth) as resp:
        live = {s["device"]: s for s in (await resp.json())["sessions"]}
    now = time.time()
    books = Counter[str]()
    for dev in run.devices.values():
        should_live = dev.session is not None and now - dev.last < TIMEOUT - 2
        should_be_gone = dev.session is None or now - dev.last > TIMEOUT + 2
        got = live.get(dev.name)
        if should_be_gone:
            books["expired, gone" if got is None else "expired, STILL THERE"] += 1
            continue
        if not should_live:
            continue  # on the edge of its timeout: either is right
        if got is None or got["id"] != dev.session:
            books["live, MISSING"] += 1
            continue
        async with http.get(f"{gw.url}/athena/sessions/{dev.name}", headers=auth) as resp:
            messages = (await resp.json())["messages"]
        books["live, complete" if len(messages) == 2 * dev.kept else "live, WRONG COUNT"] += 1
        books["messages"] += len(messages)
        books["messages expected"] += 2 * dev.kept
    return dict(books)


async def failures(http: aiohttp.ClientSession, gw: GatewayProcess) -> dict[str, float]:
    async with http.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {gw.token}"}) as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("athena_answers_total{"):
            label = line.split('path="', 1)[1].split('"', 1)[0]
            out[f"answers {label}"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("athena_turn_failures_total{"):
            label = line.split('reason="', 1)[1].split('"', 1)[0]
            out[f"failed {label}"] = float(line.rsplit(" ", 1)[1])
    return out


def report(store: str, run: Run, rss_start: float, rss_end: float, events: list[str],
           books: dict[str, int], metrics: dict[str, float], seconds: float) -> None:
    served = sum(len(v) for v in run.latencies.values())
    print(f"\n=== {store}: {served} turns in {seconds / 60:.1f} min, {DEVICES} devices ===")
    for minute in sorted(run.latencies):
        samples = sorted(run.latencies[minute])
        p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        print(f"  minute {minute + 1}: {len(samples):5d} turns  p50 {statistics.median(samples):7.1f} ms"
              f"  p99 {p99:7.1f} ms")
    print(f"  RSS: {rss_start:.1f} MB at start, {rss_end:.1f} MB at end")
    print(f"  chaos: {'; '.join(events)}")
    print(f"  outcomes: {dict(run.outcomes)}")
    print(f"  gateway's own counts: {metrics}")
    print(f"  books: {books}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="in all (half per store); default 10")
    parser.add_argument("--quick", action="store_true", help="2 minutes in all")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    half = (2.0 if args.quick else args.minutes) * 60 / 2
    fake, upstream = start_fake()
    try:
        for store in ("sqlite", "redis"):
            asyncio.run(soak(store, half, upstream, args.seed))
    finally:
        fake.terminate()
        fake.wait(10)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
