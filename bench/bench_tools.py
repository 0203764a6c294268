"""`python -m bench.bench_tools [--quick] [--hass 2025.4|current]`: what the toolbox adds to a tool call.

One MCP server (the official SDK's `MCPServer`, tests/support/mcp_server.py, in its own process on loopback)
with a trivial `echo` tool, over Streamable HTTP and over SSE. Measured in the same run, each p50/p99:

- baseline: the bare SDK client calling `echo` on a kept session (the same protocol negotiation the toolbox
  uses: auto for Streamable HTTP, the classic handshake for SSE);
- the toolbox's `call()` on the same server (validation against the schema, the name lookup, the SDK call,
  bounding and parsing the result, metrics and the log line);
- the toolbox's own work alone, without the round trip: the same steps over a result already received
  (its share of the gateway's tool round, whose target is <= 2 ms p50 apart from the model and the server);
- connect + list: the bare client against `MCPToolbox.open()` (first attempt, tools listed).

`--hass VERSION` adds a real Home Assistant (its MCP server added through the config flow): connect + list and
a `HassTurnOn` call, bare SDK client against the toolbox.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mcp.client import Client  # noqa: E402
from mcp.client.sse import sse_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from athena.observability import configure_logging  # noqa: E402
from athena.tools import HA_POLICY, HomeAssistantTools, MCPToolbox, ToolPolicy, ToolServer  # noqa: E402
from tests.support.mcp_server import MCPTestServer  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(label: str, values: list[float], base: float | None = None) -> str:
    p50, p99 = pct(values, 50), pct(values, 99)
    ratio = f"  {p50 / base:5.2f}x baseline" if base else ""
    return f"  {label:<58} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   n={len(values)}{ratio}"


async def paired(
    a: Callable[[], Awaitable[object]], b: Callable[[], Awaitable[object]], n: int, warmup: int = 20
) -> tuple[list[float], list[float]]:
    """`a` and `b` timed in turns: the machine's other load and the server's warm-up weigh on both alike."""
    for _ in range(warmup):
        await a()
        await b()
    out_a: list[float] = []
    out_b: list[float] = []
    for _ in range(n):
        for fn, out in ((a, out_a), (b, out_b)):
            t = time.perf_counter()
            await fn()
            out.append((time.perf_counter() - t) * 1000)
    return out_a, out_b


async def timed(fn: Callable[[], Awaitable[object]], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


@contextlib.asynccontextmanager
async def bare_client(
    url: str, transport: str, headers: dict[str, str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    async with contextlib.AsyncExitStack() as stack:
        if transport == "sse":
            source: Any = sse_client(url, headers=headers)
        else:
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers or {}))
            source = streamable_http_client(url, http_client=http)
        client = await stack.enter_async_context(Client(source, mode=mode, cache=None))
        yield client


async def connect_and_list(url: str, transport: str, headers: dict[str, str] | None, mode: str) -> float:
    t = time.perf_counter()
    async with bare_client(url, transport, headers, mode) as client:
        await client.list_tools()
        return (time.perf_counter() - t) * 1000


async def toolbox_open(server: ToolServer) -> tuple[float, MCPToolbox]:
    box = MCPToolbox([server])
    t = time.perf_counter()
    await box.open(wait=30.0)
    return (time.perf_counter() - t) * 1000, box


async def own_work(box: MCPToolbox, name: str, args: dict[str, Any], n: int) -> list[float]:
    """The toolbox's steps around the round trip, over a result received once: the listing lookup, the
    schema check, the result's text, JSON, bounding and the outcome (metrics and log line included)."""
    tool = {t.name: t for t in await box.tools()}[name]
    entry = box._entries[(tool.server, tool.remote)]
    result = await entry.server.call(tool.remote, dict(args))

    async def once() -> None:
        box._current()
        assert box._entries.get((tool.server, tool.remote)) is entry
        if entry.validator is not None:
            box._problem(entry.validator, dict(args))
        box._result(tool, time.perf_counter(), result)

    return await timed(once, n)


async def bench_server(transport: str, n: int) -> None:
    mode = "legacy" if transport == "sse" else "auto"
    with MCPTestServer(transport) as mcp:
        print(f"\n{transport} ({mcp.url}, SDK negotiation: {mode})")
        connects = [await connect_and_list(mcp.url, transport, None, mode) for _ in range(5)]
        opens = []
        for _ in range(5):
            ms, box = await toolbox_open(ToolServer("bench", mcp.url, transport, policy=ToolPolicy()))
            opens.append(ms)
            await box.close()
        c50 = pct(connects, 50)
        print(line("connect + list: bare SDK client", connects))
        print(line("connect + list: MCPToolbox.open()", opens, c50))

        server = ToolServer("bench", mcp.url, transport, policy=ToolPolicy())
        async with bare_client(mcp.url, transport, None, mode) as client:
            ms, box = await toolbox_open(server)
            try:
                tool = {t.name: t for t in await box.tools()}["bench__echo"]
                args = {"text": "hello"}
                base, through = await paired(
                    lambda: client.call_tool("echo", args), lambda: box.call(tool, args), n
                )
                own = await own_work(box, "bench__echo", {"text": "hello"}, n * 5)
            finally:
                await box.close()
        b50 = pct(base, 50)
        print(line("call echo: bare SDK client (baseline)", base))
        print(line("call echo: MCPToolbox.call()", through, b50))
        print(line("  the toolbox's own work (no round trip)", own))
        print(
            f"  -> the toolbox adds {pct(through, 50) - b50:+.3f} ms p50 over the bare client "
            f"(own work {pct(own, 50):.3f} ms = {100 * pct(own, 50) / pct(through, 50):.1f}% of the call)"
        )


async def bench_hass(version: str, n: int) -> None:
    from tests.support.hass import HassProcess, furnish
    from tests.tools.conftest import add_mcp_server

    with HassProcess(version=version) as proc:
        await furnish(proc.url, proc.token)
        await add_mcp_server(proc.url, proc.token)
        await asyncio.sleep(1.0)
        headers = {"Authorization": f"Bearer {proc.token}"}
        probe = HomeAssistantTools(proc.url, proc.token, policy=HA_POLICY)
        ms, box = await toolbox_open(probe)
        endpoint = probe.endpoint
        await box.close()
        assert endpoint is not None, "HA's MCP server did not answer"
        print(f"\nHome Assistant {proc.version} ({endpoint.public()}, {endpoint.transport})")
        url, transport = endpoint.url, endpoint.transport
        connects = [await connect_and_list(url, transport, headers, "legacy") for _ in range(5)]
        opens = []
        for _ in range(5):
            ms, box = await toolbox_open(HomeAssistantTools(proc.url, proc.token, policy=HA_POLICY))
            opens.append(ms)
            await box.close()
        print(line("connect + list: bare SDK client", connects))
        print(line("connect + list: MCPToolbox.open() (probes the endpoints)", opens, pct(connects, 50)))
        args = {"area": "Kitchen", "domain": ["light"]}
        async with bare_client(endpoint.url, endpoint.transport, headers, "legacy") as client:
            remote = next(t.name for t in (await client.list_tools()).tools if t.name.endswith("HassTurnOn"))
            ms, box = await toolbox_open(HomeAssistantTools(proc.url, proc.token, policy=HA_POLICY))
            try:
                tool = {t.name: t for t in await box.tools()}["HassTurnOn"]
                base, through = await paired(
                    lambda: client.call_tool(remote, args), lambda: box.call(tool, args), n, warmup=5
                )
                own = await own_work(box, "HassTurnOn", args, n * 5)
            finally:
                await box.close()
        print(line("call HassTurnOn: bare SDK client (baseline)", base))
        print(line("call HassTurnOn: MCPToolbox.call()", through, pct(base, 50)))
        print(line("  the toolbox's own work (no round trip)", own))
        print(f"  -> the toolbox adds {pct(through, 50) - pct(base, 50):+.3f} ms p50 over the bare client")


async def main(quick: bool, hass: str | None) -> int:
    # As the gateway runs (INFO: a line per call, rendered), written to /dev/null rather than the terminal.
    configure_logging("INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230 - for the whole run
    n = 200 if quick else 1000
    print(f"tool calls ({'quick' if quick else 'full'} run, {n} calls each)")
    for transport in ("streamable_http", "sse"):
        await bench_server(transport, n)
    if hass:
        await bench_hass(hass, max(50, n // 5))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    parser.add_argument("--hass", choices=["2025.4", "current"], help="also against a real Home Assistant")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.quick, args.hass)))
