"""`python -m bench.bench_llama [--quick] [-- server flags]`: the real llama.cpp server's speed and edges.

SmolLM2-135M on llama-cpp-python's server (scripts/llama-server), n_ctx 2048, on loopback. Reported:

- prompt eval tokens/s (a ~1000-token prompt, max_tokens 1) and generation tokens/s (streamed, 128 tokens),
- time to first token for a short prompt, new each time and repeated (the server reuses a cached prefix),
- what it answers when the prompt overflows n_ctx (streamed and not), and when prompt + max_tokens does,
- whether `max_tokens` holds (`finish_reason: "length"`),
- a client that drops a stream mid-way, then a short request: does it wait behind the abandoned generation?
- the same with a non-streamed request dropped mid-way, and a second stream started while one is running.

Prints "skipped: ..." and exits 0 when the server is not built.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.llama import LlamaServer, llama_available  # noqa: E402

FILLER = "The quick brown fox jumps over the lazy dog near the old stone bridge. "
LONG_ASK = "Write a very long story about a lighthouse keeper, with many chapters."


class Client:
    def __init__(self, server: LlamaServer) -> None:
        parts = urlsplit(server.url)
        self.host, self.port, self.base = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.model = server.model

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=300)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, str, float]:
        """(status, body text, seconds) for one JSON POST under /v1 (or a path starting with /extras)."""
        conn = self._conn()
        t0 = time.perf_counter()
        full = path if path.startswith("/extras") else self.base + path
        conn.request("POST", full, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        conn.close()
        return resp.status, text, time.perf_counter() - t0

    def chat(self, content: str, **fields: Any) -> tuple[int, Any, float]:
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], **fields}
        status, text, secs = self.post("/chat/completions", body)
        try:
            return status, json.loads(text), secs
        except ValueError:
            return status, text, secs

    def stream(self, content: str, *, drop_after: int | None = None, **fields: Any) -> dict[str, Any]:
        """A streamed chat; with drop_after, closes the socket once that many content chunks arrived."""
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "stream": True}
        conn = self._conn()
        t0 = time.perf_counter()
        conn.request(
            "POST",
            self.base + "/chat/completions",
            json.dumps({**body, **fields}),
            {"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        out: dict[str, Any] = {"status": resp.status, "type": resp.getheader("content-type"), "times": []}
        out.update(text="", finish=None, done=False, raw=[])
        while True:
            line = resp.readline()  # de-chunked
            if not line:
                break
            line = line.decode(errors="replace").strip()
            if not line:
                continue
            if len(out["raw"]) < 6:
                out["raw"].append(line[:300])
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                out["done"] = True
                break
            with_err = json.loads(data)
            if "error" in with_err or "choices" not in with_err:
                out["error"] = with_err
                continue
            choice = with_err["choices"][0]
            out["finish"] = choice.get("finish_reason") or out["finish"]
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                out["times"].append(time.perf_counter() - t0)
                out["text"] += piece
                if drop_after is not None and len(out["times"]) >= drop_after:
                    break
        if drop_after is None and resp.status != 200:
            out["body"] = resp.read().decode(errors="replace")[:500]
        conn.sock.close() if conn.sock else None  # a hard drop, as a client that gave up
        conn.close()
        out["secs"] = time.perf_counter() - t0
        return out

    def count(self, text: str) -> int:
        return json.loads(self.post("/extras/tokenize/count", {"input": text})[1])["count"]


def filler(c: Client, tokens: int, nonce: int) -> str:
    """A user message of about `tokens` tokens; the nonce up front defeats the server's prefix cache."""
    per = c.count(FILLER)
    return f"[{nonce}] " + FILLER * max(1, tokens // per)


def speed(c: Client, quick: bool) -> None:
    runs = 2 if quick else 4
    rates = []
    for i in range(runs):
        prompt = filler(c, 1000, i)
        status, data, secs = c.chat(prompt + "\nSummarise.", max_tokens=1)
        assert status == 200, data
        rates.append(data["usage"]["prompt_tokens"] / secs)
    print(f"prompt eval: {statistics.median(rates):.0f} tokens/s (~1000-token prompt, max_tokens 1)")

    gen = []
    for i in range(runs):
        out = c.stream(f"({i}) {LONG_ASK}", max_tokens=128, temperature=0)
        t = out["times"]
        gen.append((len(t) - 1) / (t[-1] - t[0]))
    print(f"generation:  {statistics.median(gen):.1f} tokens/s (streamed content chunks, max_tokens 128)")

    # A long system prompt that stays the same and a new question: only the question is evaluated again.
    system = {"role": "system", "content": filler(c, 900, 0)}
    prefixed = []
    for i in range(runs + 1):
        ask = {"role": "user", "content": f"Question {i * 104729}: what time is it?"}
        prefixed.append(c.stream("", messages=[system, ask], max_tokens=8)["times"][0])

    cold, warm = [], []
    for i in range(runs + 1):
        cold.append(c.stream(f"Question {i * 7919}: what time is it?", max_tokens=8)["times"][0])
        warm.append(c.stream("What time is it?", max_tokens=8)["times"][0])
    print(
        f"first token: {statistics.median(prefixed[1:]) * 1000:.0f} ms same ~900-token system prompt + "
        f"new question (first time {prefixed[0] * 1000:.0f} ms)"
    )
    print(
        f"first token: {statistics.median(cold) * 1000:.0f} ms new short prompt, "
        f"{statistics.median(warm[1:]) * 1000:.0f} ms repeated (median of {runs + 1})"
    )


def limits(c: Client, ctx: int) -> None:
    big = filler(c, ctx + 450, 42)
    n = c.count(big)
    status, data, _ = c.chat(big, max_tokens=32)
    print(f"\noverflow, not streamed ({n}-token message, n_ctx {ctx}): HTTP {status}")
    print("  body:", json.dumps(data) if not isinstance(data, str) else data)
    out = c.stream(big, max_tokens=32)
    print(f"overflow, streamed: HTTP {out['status']} {out['type']}; [DONE] seen: {out['done']}")
    print("  body:", out.get("body") or out["raw"] or "(empty)")

    near = filler(c, ctx - 300, 43)
    status, data, _ = c.chat(near, max_tokens=600)
    usage, finish = data.get("usage"), data["choices"][0]["finish_reason"] if status == 200 else data
    print(
        f"prompt + max_tokens > n_ctx (prompt {c.count(near)}, max_tokens 600): HTTP {status}, "
        f"finish_reason {finish!r}, usage {usage}"
    )

    status, data, _ = c.chat(LONG_ASK, max_tokens=5)
    print(
        f"max_tokens 5: HTTP {status}, finish_reason {data['choices'][0]['finish_reason']!r}, "
        f"completion_tokens {data['usage']['completion_tokens']}"
    )
    out = c.stream(LONG_ASK, max_tokens=5)
    print(f"max_tokens 5 streamed: finish_reason {out['finish']!r}, {len(out['times'])} content chunks")


def short_after(c: Client, label: str, since: float) -> None:
    t0 = time.perf_counter()
    status, _, secs = c.chat("Say hi.", max_tokens=8)
    print(
        f"  {label}: short request answered HTTP {status} in {secs * 1000:.0f} ms "
        f"({(t0 - since) * 1000:.0f} ms after the drop)"
    )


def drops(c: Client) -> None:
    _, _, alone = c.chat("Say hi.", max_tokens=8)
    print(f"\nshort request alone: {alone * 1000:.0f} ms")

    out = c.stream(LONG_ASK, drop_after=3, max_tokens=1500)
    dropped = time.perf_counter()
    print(f"dropped a stream after {len(out['times'])} chunks ({out['secs']:.2f}s in)")
    short_after(c, "after the dropped stream", dropped)

    # A non-streamed long generation whose client gives up after 1 s.
    conn = http.client.HTTPConnection(c.host, c.port, timeout=1)
    body = {"model": c.model, "messages": [{"role": "user", "content": LONG_ASK}], "max_tokens": 400}
    conn.request("POST", c.base + "/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    with contextlib.suppress(TimeoutError):
        conn.getresponse()
    conn.close()
    short_after(c, "after a dropped non-streamed request (400 tokens, dropped at 1 s)", time.perf_counter())
    time.sleep(0.5)

    # Two streams at once: does the second one cut the first?
    first: dict[str, Any] = {}
    t = threading.Thread(target=lambda: first.update(c.stream(LONG_ASK, max_tokens=300)))
    t.start()
    time.sleep(1.5)
    second = c.stream("Say hi.", max_tokens=8)
    t.join()
    print(
        f"two streams: the first got {len(first['times'])} chunks, finish_reason {first['finish']!r}, "
        f"[DONE] {first['done']}; the second answered in {second['secs'] * 1000:.0f} ms, "
        f"finish_reason {second['finish']!r}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_llama", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs of each measurement")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("extra", nargs="*", help="more llama_cpp.server flags, after --")
    args = parser.parse_args()
    reason = llama_available()
    if reason is not None:
        print(f"skipped: real llama.cpp server not built: run scripts/llama-server ({reason})")
        return 0
    t0 = time.perf_counter()
    with LlamaServer(ctx=args.ctx, extra=args.extra) as server:
        up = time.perf_counter() - t0
        print(f"server up in {up:.1f}s; model {server.model}; extra flags {args.extra or '-'}")
        c = Client(server)
        speed(c, args.quick)
        limits(c, args.ctx)
        drops(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
