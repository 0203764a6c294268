"""`python -m bench.bench_turns [--quick]`: voice turns a second on one core, per store, against a bare relay.

The gateway is pinned to core 0; wrk (Debian's `wrk`) and the fake LLM share core 1. `POST /ha/conversation`
for 200 devices in turn (session look-up, history, the LLM streamed, save) at 16 connections, and at one
connection for the latency; the same gateway relaying `POST /v1/chat/completions` (no session at all) is the
baseline, and the fake LLM called directly shows what the LLM itself costs. The fake answers in one event, as
the gateway's own cost per turn is what is measured here (a real model's tokens arrive far slower than this).
Targets (issue 12): Redis ≥ 2,000 turns/s, SQLite ≥ 1,500, p50 ≤ +1 ms over the LLM at one connection.
`--against REV` also runs the gateway of an earlier commit (a git worktree of it) in the same run, store by
store, and reports the ratios: on a shared machine that comparison holds where absolute numbers drift.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_gateway import cpu_seconds  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.redis_server import start_redis_server  # noqa: E402

DEVICES = 200
REPLY = "It is sunny and twenty degrees in the kitchen right now."
LUA = """
local devices = %d
local n = 0
request = function()
  n = n + 1
  local body = '{"text": "what is the weather like", "device_id": "bench-' .. (n %% devices) .. '"}'
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %s"}
  return wrk.format("POST", "%s", headers, body)
end
"""
RELAY_LUA = """
request = function()
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json", %s},
    '{"model": "fake-model", "messages": [{"role": "user", "content": "what is the weather like"}]}')
end
"""


def pin(pid: int, core: int) -> None:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, {core})


def wrk(url: str, script: str, connections: int, seconds: float) -> tuple[float, float]:
    """(requests/s, p50 ms) from a wrk run on core 1."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", f.name, url]
    if (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert p50 is not None, out
    value, unit = float(p50.group(1)), p50.group(2)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests:\n{out}")
    return rate, value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def fake_llm() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_llm", "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])},
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[-1]
    pin(proc.pid, 1)
    body = json.dumps({"reply": REPLY, "record": False, "chunk_words": 1000}).encode()
    req = urllib.request.Request(url + "/_control", data=body, headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).close()
    return proc, url


def run(store: str, url: str, upstream: str, seconds: float, src: Path = REPO / "src") -> dict[str, float]:
    env = {
        "ATHENA_LLM_URL": upstream + "/v1", "ATHENA_STORE_URL": url, "ATHENA_LOG_LEVEL": "INFO",
        "ATHENA_LOG_FORMAT": "json",
    }
    with GatewayProcess(env, src=src) as gw:
        assert gw.proc is not None
        pin(gw.proc.pid, 0)
        auth = f'["Authorization"] = "Bearer {gw.token}"'
        turns = LUA % (DEVICES, gw.token, "/ha/conversation")
        wrk(gw.url, turns, 16, min(3.0, seconds))  # warm-up: sessions exist, caches filled
        cpu = cpu_seconds(gw.proc.pid)
        rate, _ = wrk(gw.url, turns, 16, seconds)
        cpu_ms = (cpu_seconds(gw.proc.pid) - cpu) / (rate * seconds) * 1000  # the gateway's CPU per turn
        _, p50 = wrk(gw.url, turns, 1, seconds / 2)
        relay_rate, relay_p50 = (0.0, 0.0)
        if store == "memory":
            relay_rate, _ = wrk(gw.url, RELAY_LUA % auth, 16, seconds)
            _, relay_p50 = wrk(gw.url, RELAY_LUA % auth, 1, seconds / 2)
    return {"rate": rate, "p50": p50, "relay_rate": relay_rate, "relay_p50": relay_p50, "cpu_ms": cpu_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_turns", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--against", metavar="REV", help="also measure this commit's gateway, e.g. d25be8a")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_turns: skipped (no wrk: apt-get install wrk)")
        return 0
    seconds = 4.0 if args.quick else 10.0
    fake, upstream = fake_llm()
    tmp = tempfile.mkdtemp(prefix="athena-bench-turns-")
    redis_url, redis, redis_dir = start_redis_server("redis-server")
    pin(redis.pid, 1)
    earlier = Path(tmp) / "earlier"
    git = ["git", "-C", str(REPO), "worktree"]
    if args.against:
        subprocess.run([*git, "add", "-q", "--detach", str(earlier), args.against], check=True)
    stores = {  # each gateway its own database: an earlier one's schema may differ
        "memory": lambda name: "memory://",
        "sqlite": lambda name: f"sqlite:///{tmp}/{name}.db",
        "redis": lambda name: f"{redis_url}?prefix={name}",
    }
    before: dict[str, dict[str, float]] = {}
    try:
        llm_rate, llm_p50 = wrk(upstream, RELAY_LUA % "", 16, seconds)
        _, llm_p50 = wrk(upstream, RELAY_LUA % "", 1, seconds / 2)
        results = {}
        for store, url in stores.items():  # earlier and now back to back, so both see the same machine
            if args.against:
                before[store] = run(store, url("before"), upstream, seconds, earlier / "src")
            results[store] = run(store, url("now"), upstream, seconds)
    finally:
        fake.terminate()
        redis.terminate()
        if args.against:
            subprocess.run([*git, "remove", "--force", str(earlier)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(redis_dir, ignore_errors=True)
    relay = results["memory"]
    print(f"\nturns per second, gateway on one core, {DEVICES} devices (cpus={os.cpu_count()})")
    print(f"  the fake LLM called directly      {llm_rate:8.0f} req/s   p50 {llm_p50:6.2f} ms (c=1)")
    base_rate, base_p50 = relay["relay_rate"], relay["relay_p50"]
    print(f"  gateway relay, no session (base)  {base_rate:8.0f} req/s   p50 {base_p50:6.2f} ms")
    targets = {"redis": 2000, "sqlite": 1500}
    for store, r in results.items():
        target = targets.get(store)
        verdict = f"  target {target}: {'OK' if r['rate'] >= target else 'MISS'}" if target else ""
        print(f"  /ha/conversation, {store:7}        {r['rate']:8.0f} turns/s "
              f"({r['rate'] / relay['relay_rate']:.2f}x relay)   p50 {r['p50']:6.2f} ms "
              f"(+{r['p50'] - llm_p50:.2f} over the LLM)   cpu {r['cpu_ms']:.2f} ms/turn{verdict}")
    for store, b in before.items():
        r, rev = results[store], args.against
        print(f"  {store:7} now / {rev}: {r['rate'] / b['rate']:.2f}x turns/s ({b['rate']:.0f} then), "
              f"p50 {r['p50']:.2f} vs {b['p50']:.2f} ms, cpu {r['cpu_ms']:.2f} vs {b['cpu_ms']:.2f} ms/turn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
