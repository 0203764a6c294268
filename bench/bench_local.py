"""`python -m bench.bench_local [--quick]`: latency of a local home-control turn, with its baselines.

Home Assistant is the recorded stand-in (tests/support/recorded_ha.py) on loopback, so its own time is small
and steady; the turn's time without it is reported too. Measured, each with 50 and 1000 exposed entities:

- baseline: the bare HTTP round trip to the stand-in's /api/intent/handle (what any HA call costs here),
- recognition alone (hassil over the home's slot lists, in this thread),
- a turn through the engine (session, follow-up memory, recognition, HA call, answer, save to SQLite),
- a turn over HTTP through the gateway process (`POST /ha/conversation`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from athena.config import Settings  # noqa: E402
from athena.gateway import Gateway  # noqa: E402
from athena.homeassistant import build_home  # noqa: E402
from athena.local.catalog import IntentCatalog  # noqa: E402
from athena.local.recognize import Recognizer  # noqa: E402
from athena.observability import configure_logging  # noqa: E402
from athena.turns import Turn  # noqa: E402
from tests.support.gateway import GatewayProcess, free_port  # noqa: E402
from tests.support.recorded_ha import TOKEN, RecordedHA, make_home  # noqa: E402

# One conversation's worth of commands, replayed in a loop: named, by area, the device's room, follow-ups.
SCRIPT = (
    "turn on the kitchen lights",
    "now turn them off",
    "what about the living room?",
    "turn it back on",
    "set it to 40 percent",
    "turn off the lights",
    "turn on the lights in the office",
)
RECOGNIZE = (SCRIPT[0], SCRIPT[5], SCRIPT[6])  # the script's commands that need recognition
UNKNOWN = "tell me a joke about owls"  # no match: the turn goes on to the LLM


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(label: str, values: list[float], base: float | None = None) -> str:
    p50, p99 = pct(values, 50), pct(values, 99)
    ratio = f"  {p50 / base:5.1f}x baseline" if base else ""
    return f"  {label:<50} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   n={len(values)}{ratio}"


async def timed(fn: Callable[[], Awaitable[object]], n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def baseline(ha: RecordedHA, n: int) -> list[float]:
    body = {"name": "HassTurnOn", "data": {"name": "Kitchen Lights"}}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:

        async def once() -> None:
            async with http.post(ha.url + "/api/intent/handle", json=body) as resp:
                await resp.read()

        return await timed(once, n)


def recognition(entities: int, n: int, cache: bool, sentences: tuple[str, ...] = RECOGNIZE) -> list[float]:
    home = build_home(**make_home(entities))
    li = IntentCatalog().warm("en")
    assert li is not None
    rec = Recognizer(cache_size=512 if cache else 0)
    rec.slot_lists(home)
    out = []
    for i in range(n):
        text = sentences[i % len(sentences)]
        t = time.perf_counter()
        rec.recognize(text, li, home, "Kitchen")
        out.append((time.perf_counter() - t) * 1000)
    return out


async def engine_turns(ha: RecordedHA, n: int, data_dir: Path, cold: bool) -> dict[str, list[float]]:
    """`cold`: forget cached recognitions before every turn, as if each sentence were heard the first time."""
    nowhere = f"http://127.0.0.1:{free_port()}/v1"  # local turns never reach the LLM
    settings = Settings(data_dir=data_dir, ha_url=ha.url, ha_token=TOKEN, llm_url=nowhere)
    gateway = Gateway(settings)
    await gateway.start()
    engine, local = gateway.engine, gateway.local
    assert local is not None
    manager = engine.sessions
    out: dict[str, list[float]] = {"total": [], "ha": [], "own": [], "recognized": [], "follow_up": []}
    missed = 0
    try:
        for i in range(n + len(SCRIPT)):
            text = SCRIPT[i % len(SCRIPT)]
            turn = Turn(text=text, device_id="satellite-kitchen")
            if cold:
                local.handlers[-1].recognizer.clear_cache()
            t = time.perf_counter()
            reply = await engine.handle(turn)
            elapsed = (time.perf_counter() - t) * 1000
            if i < len(SCRIPT):
                continue  # warm-up round
            if reply.path != "local":
                missed += 1
                continue
            session = await manager.get(reply.session_id)
            assert session is not None
            meta = (await manager.history(session))[-1].meta
            ha_ms = meta.ha_ms or 0.0
            out["total"].append(elapsed)
            out["ha"].append(ha_ms)
            out["own"].append(elapsed - ha_ms)
            out["follow_up" if meta.get("local", {}).get("follow_up") else "recognized"].append(
                elapsed - ha_ms
            )
    finally:
        await gateway.close()
    if missed:
        print(f"  !! {missed} turns were not answered locally")
    return out


async def gateway_turns(ha: RecordedHA, n: int) -> list[float]:
    env = {
        "ATHENA_HA_URL": ha.url,
        "ATHENA_HA_TOKEN": TOKEN,
        "ATHENA_LOG_LEVEL": "WARNING",
        "ATHENA_LLM_URL": f"http://127.0.0.1:{free_port()}/v1",
    }
    gw = GatewayProcess(env, startup_timeout=60)
    await asyncio.to_thread(gw.start)
    out: list[float] = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gw.token}"}) as http:
            for i in range(n + len(SCRIPT)):
                body = {"text": SCRIPT[i % len(SCRIPT)], "language": "en", "device_id": "satellite-kitchen"}
                t = time.perf_counter()
                async with http.post(gw.url + "/ha/conversation", json=body) as resp:
                    data = await resp.json()
                elapsed = (time.perf_counter() - t) * 1000
                if data["response"]["response_type"] == "error":
                    print(
                        f"  !! not local: {body['text']!r}: {data['response']['speech']['plain']['speech']}"
                    )
                if i >= len(SCRIPT):
                    out.append(elapsed)
    finally:
        await asyncio.to_thread(gw.stop)
    return out


async def main(quick: bool) -> int:
    configure_logging("WARNING")
    n = 100 if quick else 1000
    print(f"local turn latency ({'quick' if quick else 'full'} run, {n} samples each)")
    worst = worst_recognized = 0.0
    for entities in (50, 1000):
        print(f"\n{entities} exposed entities")
        async with RecordedHA(make_home(entities)) as ha:
            base = await baseline(ha, n)
            base_p50 = pct(base, 50)
            print(line("baseline: HTTP round trip to HA stand-in", base))
            for cache in (False, True):
                label = "recognition alone, " + ("repeated sentence (cached)" if cache else "new sentence")
                print(line(label, await asyncio.to_thread(recognition, entities, n, cache)))
            no_match = await asyncio.to_thread(recognition, entities, n, False, (UNKNOWN,))
            print(line("recognition alone, no match (goes to the LLM)", no_match))
            for cold in (True, False):
                with tempfile.TemporaryDirectory() as tmp:
                    turns = await engine_turns(ha, n, Path(tmp), cold)
                kind = "new sentences" if cold else "repeated sentences"
                print(line(f"engine turn, {kind} (SQLite store)", turns["total"], base_p50))
                print(line("  of which the HA call", turns["ha"]))
                print(line("  excluding HA's time", turns["own"]))
                print(line("    recognized commands", turns["recognized"]))
                print(line("    follow-ups (from session memory)", turns["follow_up"]))
                if cold:
                    worst = max(worst, pct(turns["own"], 50))
                    worst_recognized = max(worst_recognized, pct(turns["recognized"], 50))
            over_http = await gateway_turns(ha, n // 2)
            print(line("gateway HTTP turn, repeated (/ha/conversation)", over_http, base_p50))
    target = 15.0
    print(
        f"\ntarget: p50 of a local turn excluding HA's time < {target} ms (new sentences, worst of 50/1000):"
    )
    print(
        f"  conversation mix (commands + follow-ups): {worst:.2f} ms: {'met' if worst < target else 'MISSED'}"
    )
    print(
        f"  recognized commands only: {worst_recognized:.2f} ms: "
        f"{'met' if worst_recognized < target else 'MISSED'} (hassil dominates; see recognition alone)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI smoke run)")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
