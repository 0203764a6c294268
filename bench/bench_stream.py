"""`python -m bench.bench_stream [--quick]`: how soon a voice user's answer starts, through the gateway.

1. Against the fake LLM (zero delay), one run, alternating blocks: the time from the request to the model's
   first text delta called directly (the baseline), and to the first `delta` line of the streamed
   `POST /ha/conversation` (what the HA integration reads; session, history and save included).
   Target: the gateway adds at most 5 ms p50 to the model's own first token.
2. With the real llama.cpp server (`scripts/llama-server`, SmolLM2-135M) when it is built: the time to the
   first delta at turn 1 and turn 10 of one session, whose prompt grows with the history. The instructions
   come first and stay the same and the history only grows, so the server evaluates only the new turn.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_gateway import REPLY, Call, compare, start_fake, stream_call, table  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.llama import LlamaServer, llama_available  # noqa: E402

TARGET_MS = 5.0


def ha_stream_call(url: str, headers: dict[str, str]) -> Call:
    """Time to the first `delta` line of the streamed /ha/conversation; the rest is read and checked."""
    hdrs = {"Content-Type": "application/json", **headers}

    async def call(http: aiohttp.ClientSession, worker: int) -> float:
        text = "what is the weather like"
        body = orjson.dumps({"text": text, "device_id": f"stream-{worker}", "stream": True})
        t = time.perf_counter()
        first = 0.0
        result = None
        async with http.post(url, data=body, headers=hdrs) as resp:
            async for line in resp.content:
                event = orjson.loads(line)
                if event["event"] == "delta" and not first:
                    first = time.perf_counter() - t
                elif event["event"] == "result":
                    result = event["result"]
        if not first or result is None or result["response"]["response_type"] == "error":
            raise RuntimeError(f"{url}: no delta or a failed result: {result}")
        return first

    return call


async def against_the_fake(quick: bool) -> bool:
    fake, upstream = start_fake()
    try:
        env = {"ATHENA_LLM_URL": upstream + "/v1", "ATHENA_STORE_URL": "memory://"}
        env["ATHENA_LOG_LEVEL"] = "WARNING"
        with GatewayProcess(env) as gw:
            auth = {"Authorization": f"Bearer {gw.token}"}
            async with aiohttp.ClientSession() as http:
                async with http.post(upstream + "/_control", json={"reply": REPLY, "record": False}) as r:
                    r.raise_for_status()
                series = await compare(
                    http,
                    {
                        "the fake LLM's own first token (baseline)": stream_call(
                            upstream + "/v1/chat/completions", {}
                        ),
                        "gateway /ha/conversation streamed, first delta": ha_stream_call(
                            gw.url + "/ha/conversation", auth
                        ),
                    },
                    200 if quick else 1000,
                    1,
                    10,
                    gw.proc.pid if gw.proc else None,
                )
    finally:
        fake.terminate()
        fake.wait(10)
    table("time to the first words, c=1", series, "the fake LLM's own first token (baseline)")
    base, ours = series.values()
    extra = ours.p50 - base.p50
    print(f"  gateway adds {extra:+.3f} ms p50 to the first token: {'OK' if extra <= TARGET_MS else 'MISS'}"
          f" (target +{TARGET_MS:g} ms)")
    return extra <= TARGET_MS


async def first_delta(http: aiohttp.ClientSession, url: str, token: str, text: str, device: str) -> float:
    body = {"text": text, "device_id": device, "stream": True}
    t = time.perf_counter()
    first = 0.0
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        async for line in resp.content:
            event = orjson.loads(line)
            if event["event"] == "delta" and not first:
                first = time.perf_counter() - t
            if event["event"] == "result" and event["result"]["response"]["response_type"] == "error":
                raise RuntimeError(f"turn failed: {event}")
    return first


QUESTIONS = [
    "What is the capital of France?", "And of Germany?", "Which one is bigger?", "Name a river there.",
    "How long is it?", "What is a famous bridge?", "Who built it?", "When?", "Is it still used?",
    "Thanks, and one more: what is the capital of Spain?",
]


async def with_a_real_model(quick: bool) -> None:
    missing = llama_available()
    if missing:
        print(f"\nreal model: skipped ({missing})")
        return
    rounds = 2 if quick else 4
    with LlamaServer(ctx=2048) as llama:
        env = {
            "ATHENA_LLM_URL": llama.url, "ATHENA_LLM_MODEL": llama.model, "ATHENA_STORE_URL": "memory://",
            "ATHENA_LOG_LEVEL": "WARNING", "ATHENA_LLM_MAX_TOKENS": "40", "ATHENA_LLM_TIMEOUT": "60",
            "ATHENA_LLM_FIRST_TOKEN_TIMEOUT": "60",
        }
        with GatewayProcess(env) as gw:
            url = gw.url + "/ha/conversation"
            firsts: list[float] = []
            tenths: list[float] = []
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
                for r in range(rounds):
                    device = f"llama-{r}"
                    times = [await first_delta(http, url, gw.token, q, device) for q in QUESTIONS]
                    firsts.append(times[0])
                    tenths.append(times[-1])
    one, ten = statistics.median(firsts) * 1000, statistics.median(tenths) * 1000
    print(f"\nreal model (llama.cpp, SmolLM2-135M, n_ctx 2048), time to the first delta, {rounds} sessions:")
    print(f"  turn 1: {one:.0f} ms p50   turn 10: {ten:.0f} ms p50   ratio {ten / one:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_stream", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ok = asyncio.run(against_the_fake(args.quick))
    asyncio.run(with_a_real_model(args.quick))
    print(f"\ntarget {'met' if ok else 'MISSED'}; took {time.perf_counter() - started:.0f} s")
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
