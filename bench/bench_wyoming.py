"""`python -m bench.bench_wyoming [--quick]`: a Wyoming turn's gateway overhead against the same turn over
`POST /ha/conversation`, in one run.

One fake LLM (zero delay) and one real gateway process (`athena serve`, memory store, Wyoming on a loopback
port); the same turn — "what is the weather like in the kitchen", one device per worker, so each keeps a
session and history — three ways, alternating in short blocks so drift hits all alike:

- the fake LLM called directly (the baseline: what any path must pay);
- `POST /ha/conversation` on a kept-alive HTTP connection (the custom integration's path);
- Wyoming as HA does it: a new TCP connection per turn, `transcript` with HA 2026.x's context
  {conversation_id, device_id}, read until `handled`;
- the same on one kept connection per worker (what the protocol costs without the connection set-up).

At c=1 and c=8: p50/p99, the ratio to direct, "+ms" over direct (the gateway's overhead) and the gateway
process's CPU time per turn; the last line is the Wyoming turn's overhead over /ha/conversation's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request

import aiohttp
import orjson

from bench.bench_gateway import REPLY, Call, Series, chat_call, compare, ha_call, start_fake, table
from tests.support.gateway import GatewayProcess, free_port

TEXT = "what is the weather like in the kitchen"


async def _turn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> None:
    writer.write(raw)
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("the Wyoming server closed before answering")
        event = orjson.loads(line)
        data = event.get("data") or {}
        if event.get("data_length"):
            data.update(orjson.loads(await reader.readexactly(event["data_length"])))
        if event["type"] in ("handled", "not-handled"):
            break
    if event["type"] != "handled" or data.get("text") != REPLY:
        raise RuntimeError(f"wyoming: {event['type']}: {str(data)[:200]}")


def wyoming_call(port: int, *, keep: bool = False) -> Call:
    """A transcript with HA 2026.x's context, read until `handled`: on a new connection per turn (what HA's
    Wyoming agent does), or with `keep` on one connection per worker (the protocol's own cost)."""
    turns = [0]
    kept: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def call(_: aiohttp.ClientSession, worker: int) -> float:
        turns[0] += 1
        context = {"conversation_id": f"conv-{turns[0]}", "device_id": f"bench-wy-{worker}"}
        data = {"text": TEXT, "context": context, "language": "en"}
        raw = orjson.dumps({"type": "transcript", "data": data})
        t = time.perf_counter()
        if keep:
            if worker not in kept:
                kept[worker] = await asyncio.open_connection("127.0.0.1", port)
            await _turn(*kept[worker], raw + b"\n")
            return time.perf_counter() - t
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await _turn(reader, writer, raw + b"\n")
            return time.perf_counter() - t
        finally:
            writer.close()

    return call


async def bench(upstream: str, gw: GatewayProcess, wyoming_port: int, quick: bool) -> None:
    auth = {"Authorization": f"Bearer {gw.token}"}
    direct = upstream + "/v1/chat/completions"
    names = (
        "direct upstream (baseline)",
        "gateway /ha/conversation",
        "gateway Wyoming (connection per turn)",
        "gateway Wyoming (kept connection)",
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        for concurrency, n in ((1, 300 if quick else 1200), (8, 800 if quick else 3200)):
            series: dict[str, Series] = await compare(
                http,
                {
                    names[0]: chat_call(direct, {}),
                    names[1]: ha_call(gw.url + "/ha/conversation", auth),
                    names[2]: wyoming_call(wyoming_port),
                    names[3]: wyoming_call(wyoming_port, keep=True),
                },
                n,
                concurrency,
                10 if concurrency == 1 else 4,
                gw.proc.pid if gw.proc else None,
            )
            table(f"one voice turn, c={concurrency}", series, names[0])
            base, ha, wy, _ = (series[name] for name in names)
            print(
                f"  Wyoming over /ha/conversation: {wy.p50 - ha.p50:+.3f} ms p50, "
                f"{wy.pct(0.99) - ha.pct(0.99):+.3f} ms p99; overhead over direct "
                f"{wy.p50 - base.p50:.3f} vs {ha.p50 - base.p50:.3f} ms p50 "
                f"(x{(wy.p50 - base.p50) / max(ha.p50 - base.p50, 1e-9):.2f}); "
                f"gateway cpu/turn {wy.cpu / len(wy.samples) * 1000:.3f} "
                f"vs {ha.cpu / len(ha.samples) * 1000:.3f} ms",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_wyoming", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns (about 4x faster)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    fake, upstream = start_fake()
    try:
        control = urllib.request.Request(
            upstream + "/_control",
            data=json.dumps({"reply": REPLY, "record": False}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(control, timeout=5).close()
        port = free_port()
        env = {
            "ATHENA_LLM_URL": upstream + "/v1",
            "ATHENA_LLM_MODEL": "fake-model",
            "ATHENA_STORE_URL": "memory://",
            "ATHENA_LOG_LEVEL": "WARNING",
            "ATHENA_WYOMING_PORT": f"tcp://127.0.0.1:{port}",
            "ATHENA_WYOMING_ZEROCONF": "false",
        }
        with GatewayProcess(env) as gw:
            where = f"fake LLM {upstream}, gateway {gw.url}, Wyoming :{port}"
            print(f"{where}; cpus={os.cpu_count()}", flush=True)
            asyncio.run(bench(upstream, gw, port, args.quick))
    finally:
        fake.terminate()
        fake.wait(10)
    print(f"\ntook {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
