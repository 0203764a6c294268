"""A real MCP tool server for tests and benchmarks: the SDK's `MCPServer` over Streamable HTTP or SSE.

    with MCPTestServer("streamable_http") as server:     # a subprocess on a free loopback port
        server.url                                        # http://127.0.0.1:PORT/mcp (SSE: .../sse)
        server.stop(); server.start()                     # down and back up on the same port

`token=` makes it require `Authorization: Bearer <token>` (401 otherwise). `app(transport)` gives the ASGI app
for an in-process server (the benchmark runs one in a thread).

Its tools: `echo(text)`, `add(a, b)`, `hang(seconds)` (sleeps), `big(size)` (a text of `size` characters),
`status()` (a JSON object), `boom()` (fails), `grow(name)` (adds a tool `name` that answers "grown"),
`admin_reset()` (stands for a tool an operator denies), and one with a 70-character name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
LONG_NAME = "a_tool_with_a_name_far_longer_than_any_backend_allows_for_function_names"  # 70 characters
PATHS = {"streamable_http": "/mcp", "sse": "/sse"}


def build_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("athena-test-tools")

    @server.tool(description="Repeat the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two whole numbers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Sleep for a while, then answer.")
    async def hang(seconds: float = 3600.0) -> str:
        await asyncio.sleep(seconds)
        return "woke up"

    @server.tool(description="A text of the given length.")
    def big(size: int) -> str:
        return "x" * size

    @server.tool(description="The server's status as JSON.")
    def status() -> dict[str, Any]:
        return {"ok": True, "items": [1, 2, 3]}

    @server.tool(description="Always fails.")
    def boom() -> str:
        raise ValueError("boom: the tool failed")

    @server.tool(description="Add a tool with this name.")
    def grow(name: str) -> str:
        def grown() -> str:
            return "grown"

        server.add_tool(grown, name=name, description="A tool added at run time.")
        return f"added {name}"

    @server.tool(description="Reset everything (an operator would deny this).")
    def admin_reset() -> str:
        return "reset"

    def long_named() -> str:
        return "long"

    server.add_tool(long_named, name=LONG_NAME, description="A tool with a very long name.")
    return server


def app(transport: str, token: str | None = None) -> Any:
    server = build_server()
    asgi = server.sse_app() if transport == "sse" else server.streamable_http_app(stateless_http=False)
    if token is None:
        return asgi
    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope.get("headers") or []).get(b"authorization") != expected:
            headers = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await asgi(scope, receive, send)

    return guarded  # lifespan events pass through: the SDK's app runs its session manager in its lifespan


def free_port() -> int:
    from tests.support.gateway import free_port as _free_port

    return _free_port()


class MCPTestServer:
    """`python -m tests.support.mcp_server` in a subprocess: `.url`, `.start()`, `.stop()`."""

    def __init__(
        self, transport: str = "streamable_http", *, token: str | None = None, port: int = 0
    ) -> None:
        if transport not in PATHS:
            raise ValueError(f"transport: {transport!r}")
        self.transport = transport
        self.token = token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATHS[transport]}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MCPTestServer:
        cmd = [sys.executable, "-m", "tests.support.mcp_server", self.transport, "--port", str(self.port)]
        if self.token:
            cmd += ["--token", self.token]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
        self.proc = subprocess.Popen(
            cmd, cwd=str(REPO), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"the MCP test server exited with {self.proc.returncode}:\n{err[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the MCP test server did not answer within {timeout} s")

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> MCPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _with_ready(asgi: Any) -> Any:
    """`GET /ready` answers 200 as soon as the server listens (the start-up check above)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == "/ready":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": json.dumps({"ok": True}).encode()})
            return
        await asgi(scope, receive, send)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("transport", choices=sorted(PATHS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token")
    args = parser.parse_args()
    import uvicorn

    config = uvicorn.Config(
        _with_ready(app(args.transport, args.token)), host="127.0.0.1", port=args.port, log_level="warning",
        lifespan="on",
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
