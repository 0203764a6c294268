"""`python -m bench.bench_gateway [--quick]`: what the gateway adds on top of the LLM it talks to.

One run starts the fake LLM (``tests/support/fake_llm.py``, zero delay) and a real gateway process
(``athena serve``, memory store, API token) and calls the same upstream three ways, alternating in blocks so
drift hits all alike:

- directly (the baseline);
- through the gateway's stateless relay, ``POST /v1/chat/completions``, non-streamed and streamed;
- through ``POST /ha/conversation`` (session lookup, history, save: the voice path).

at concurrency 1 and 16, reporting p50/p99 latency (streams: time to the first text delta), the ratio to
direct and the absolute overhead, and the gateway process's CPU time per request ("cpu ms": about the floor
of its latency overhead at c=1, and much less moved by other load on the machine than latency is).
Targets: relay +1 ms p50 non-streamed at c=1, +3 ms to the first token.
Two smaller tables show where the client side stands: athena.llm's backend in-process against a bare
aiohttp call, and aiohttp against httpx as the HTTP client (why athena.llm uses aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from athena.llm import OpenAIBackend, Timeouts  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a voice assistant. Answer in one short sentence."},
    {"role": "user", "content": "what is the weather like in the kitchen"},
]
REPLY = "It is sunny and twenty degrees in the kitchen right now."
TARGET_NON_STREAM_MS = 1.0
TARGET_TTFT_MS = 3.0

Call = Callable[[aiohttp.ClientSession, int], Awaitable[float]]


@dataclass
class Series:
    name: str
    samples: list[float] = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds the measured process spent on these samples (0: not measured)

    def pct(self, q: float) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000


# -- request shapes ----------------------------------------------------------------------------------------
def post_call(url: str, headers: dict[str, str], body: Callable[[int], bytes]) -> Call:
    """Time one non-streamed POST whose answer must carry the fake LLM's reply; `body(worker)` builds it."""
    hdrs = {"Content-Type": "application/json", **headers}

    async def call(http: aiohttp.ClientSession, worker: int) -> float:
        data = body(worker)
        t = time.perf_counter()
        async with http.post(url, data=data, headers=hdrs) as resp:
            raw = await resp.read()
        elapsed = time.perf_counter() - t
        if resp.status != 200 or REPLY.encode() not in raw:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {raw[:200]!r}")
        return elapsed

    return call


def chat_call(url: str, headers: dict[str, str]) -> Call:
    body = orjson.dumps({"model": "fake-model", "messages": MESSAGES, "stream": False})
    return post_call(url, headers, lambda worker: body)


def stream_call(url: str, headers: dict[str, str]) -> Call:
    """Time to the first event carrying text; the rest of the stream is read too, and checked."""
    body = orjson.dumps({"model": "fake-model", "messages": MESSAGES, "stream": True})
    hdrs = {"Content-Type": "application/json", **headers}

    async def call(http: aiohttp.ClientSession, worker: int) -> float:
        t = time.perf_counter()
        first = 0.0
        done = False
        async with http.post(url, data=body, headers=hdrs) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}: {(await resp.read())[:200]!r}")
            async for line in resp.content:
                if not first and line.startswith(b"data: {"):
                    choices = orjson.loads(line[6:]).get("choices") or [{}]
                    if (choices[0].get("delta") or {}).get("content"):
                        first = time.perf_counter() - t
                done = done or line.startswith(b"data: [DONE]")
        if not first or not done:
            raise RuntimeError(f"{url}: the stream had no text or no [DONE]")
        return first

    return call


def ha_call(url: str, headers: dict[str, str]) -> Call:
    """One device per worker, so each keeps its own session and history."""
    bodies: dict[int, bytes] = {}

    def body(worker: int) -> bytes:
        if worker not in bodies:
            text = "what is the weather like in the kitchen"
            bodies[worker] = orjson.dumps({"text": text, "device_id": f"bench-{worker}"})
        return bodies[worker]

    return post_call(url, headers, body)


async def run(http: aiohttp.ClientSession, call: Call, n: int, concurrency: int) -> list[float]:
    samples: list[float] = []
    left = n

    async def worker(i: int) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            samples.append(await call(http, i))

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return samples


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU time of a process (Linux /proc); 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def compare(
    http: aiohttp.ClientSession,
    calls: dict[str, Call],
    n: int,
    concurrency: int,
    rounds: int,
    cpu_pid: int | None = None,
) -> dict[str, Series]:
    """Each call in turn, ``rounds`` times, ``n / rounds`` requests a block; a warm-up block first.

    With ``cpu_pid``, the CPU time that process spends during each block is added to the call's series: the
    gateway's own cost per request, which other load on the machine inflates far less than latency.
    """
    series = {name: Series(name) for name in calls}
    for call in calls.values():
        await run(http, call, max(20, n // (4 * rounds)), concurrency)
    for _ in range(rounds):
        for name, call in calls.items():
            before = cpu_seconds(cpu_pid)
            series[name].samples += await run(http, call, n // rounds, concurrency)
            series[name].cpu += cpu_seconds(cpu_pid) - before
    return series


def table(title: str, series: dict[str, Series], baseline: str, target: float | None = None) -> list[str]:
    base = series[baseline]
    cols = ("n", 5), ("p50 ms", 8), ("p99 ms", 8), ("x p50", 6), ("+ms p50", 8), ("+ms p99", 8), ("cpu ms", 7)
    head = f"  {'':44}" + "".join(f" {name:>{width}}" for name, width in cols)
    lines = [f"\n{title}", head]
    for s in series.values():
        extra = s.p50 - base.p50
        row = f"  {s.name:44} {len(s.samples):>5} {s.p50:>8.3f} {s.pct(0.99):>8.3f} {s.p50 / base.p50:>6.2f}"
        if s is base:
            lines.append(row)
            continue
        row += f" {extra:>+8.3f} {s.pct(0.99) - base.pct(0.99):>+8.3f}"
        row += f" {s.cpu / len(s.samples) * 1000:>7.3f}" if s.cpu else f" {'':>7}"
        if target is not None and "relay" in s.name:
            row += f"  {'OK' if extra <= target else 'MISS'} (target +{target:g} ms)"
        lines.append(row)
    print("\n".join(lines), flush=True)
    return lines


# -- the client side ---------------------------------------------------------------------------------------
async def client_tables(upstream: str, n: int) -> None:
    """athena.llm against a bare aiohttp call, and httpx against aiohttp, on the same upstream."""
    url = upstream + "/v1/chat/completions"
    body = {"model": "fake-model", "messages": MESSAGES}
    raw_body = orjson.dumps(body)

    async with aiohttp.ClientSession() as http, httpx.AsyncClient() as hx:
        backend = OpenAIBackend(upstream + "/v1", "fake-model", timeouts=Timeouts(5, 15, 30), name="bench")
        await backend.open()

        async def bare(_: aiohttp.ClientSession, __: int) -> float:
            t = time.perf_counter()
            async with http.post(url, data=raw_body, headers={"Content-Type": "application/json"}) as r:
                orjson.loads(await r.read())
            return time.perf_counter() - t

        stream_body = orjson.dumps({**body, "stream": True})

        async def bare_stream_first(_: aiohttp.ClientSession, __: int) -> float:
            t = time.perf_counter()
            first = 0.0
            async with http.post(url, data=stream_body, headers={"Content-Type": "application/json"}) as r:
                async for line in r.content:
                    if not first and b'"content": "' in line and b'"content": ""' not in line:
                        first = time.perf_counter() - t
            return first

        async def llm_chat(_: aiohttp.ClientSession, __: int) -> float:
            t = time.perf_counter()
            await backend.chat(MESSAGES)
            return time.perf_counter() - t

        async def llm_relay(_: aiohttp.ClientSession, __: int) -> float:
            t = time.perf_counter()
            await backend.relay(body)
            return time.perf_counter() - t

        async def llm_stream_first(_: aiohttp.ClientSession, __: int) -> float:
            t = time.perf_counter()
            first = 0.0
            async for _delta in backend.stream(MESSAGES):
                first = first or time.perf_counter() - t
            return first

        async def httpx_post(_: aiohttp.ClientSession, __: int) -> float:
            t = time.perf_counter()
            r = await hx.post(url, content=raw_body, headers={"Content-Type": "application/json"})
            orjson.loads(r.content)
            return time.perf_counter() - t

        try:
            layer = await compare(
                http,
                {
                    "bare aiohttp POST (baseline)": bare,
                    "athena.llm OpenAIBackend.chat": llm_chat,
                    "athena.llm OpenAIBackend.relay": llm_relay,
                    "bare aiohttp stream, first delta": bare_stream_first,
                    "athena.llm OpenAIBackend.stream, first delta": llm_stream_first,
                },
                n,
                1,
                3,
            )
            table(
                "athena.llm in-process, c=1 (the backend layer's own cost)",
                layer,
                "bare aiohttp POST (baseline)",
            )
            libs = await compare(http, {"aiohttp POST": bare, "httpx POST": httpx_post}, n, 1, 3)
            table("HTTP client library, c=1 (the relay's upstream hop)", libs, "aiohttp POST")
        finally:
            await backend.close()


# -- main --------------------------------------------------------------------------------------------------
def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_llm", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"the fake LLM did not start: {line!r}")
    return proc, line.split()[-1]


async def bench(upstream: str, gw: GatewayProcess, quick: bool) -> bool:
    n1, n16 = (200, 800) if quick else (900, 3200)
    auth = {"Authorization": f"Bearer {gw.token}"}
    direct = upstream + "/v1/chat/completions"
    relay = gw.url + "/v1/chat/completions"
    verdicts: list[bool] = []
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:
        for concurrency, n in ((1, n1), (16, n16)):
            rounds = 10 if concurrency == 1 else 4  # short alternating blocks: load drift hits all alike
            non_stream = await compare(
                http,
                {
                    "direct upstream (baseline)": chat_call(direct, {}),
                    "gateway /v1/chat/completions relay": chat_call(relay, auth),
                    "gateway /ha/conversation (session+history)": ha_call(gw.url + "/ha/conversation", auth),
                },
                n,
                concurrency,
                rounds,
                gw.proc.pid if gw.proc else None,
            )
            table(
                f"non-streamed, c={concurrency}",
                non_stream,
                "direct upstream (baseline)",
                TARGET_NON_STREAM_MS if concurrency == 1 else None,
            )
            streamed = await compare(
                http,
                {
                    "direct upstream (baseline)": stream_call(direct, {}),
                    "gateway /v1/chat/completions relay": stream_call(relay, auth),
                },
                n,
                concurrency,
                rounds,
                gw.proc.pid if gw.proc else None,
            )
            table(
                f"streamed, time to first token, c={concurrency}",
                streamed,
                "direct upstream (baseline)",
                TARGET_TTFT_MS if concurrency == 1 else None,
            )
            if concurrency == 1:
                base = non_stream["direct upstream (baseline)"].p50
                verdicts.append(
                    non_stream["gateway /v1/chat/completions relay"].p50 - base <= TARGET_NON_STREAM_MS
                )
                base = streamed["direct upstream (baseline)"].p50
                verdicts.append(streamed["gateway /v1/chat/completions relay"].p50 - base <= TARGET_TTFT_MS)
    await client_tables(upstream, 300 if quick else 900)
    return all(verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (about 4x faster)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
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
        env = {
            "ATHENA_LLM_URL": upstream + "/v1",
            "ATHENA_LLM_MODEL": "fake-model",
            "ATHENA_STORE_URL": "memory://",
            "ATHENA_LOG_LEVEL": "WARNING",
        }
        with GatewayProcess(env) as gw:
            print(f"fake LLM {upstream}, gateway {gw.url} (memory store); cpus={os.cpu_count()}", flush=True)
            ok = asyncio.run(bench(upstream, gw, args.quick))
    finally:
        fake.terminate()
        fake.wait(10)
    print(f"\ntargets {'met' if ok else 'MISSED'}; took {time.perf_counter() - started:.0f} s", flush=True)
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
