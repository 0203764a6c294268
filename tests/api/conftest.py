"""The real gateway (uvicorn + the Starlette app) on a loopback port inside the test's event loop, in front
of the fake LLM server. In-process so a test can move the sessions' clock instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from athena.api import create_app
from athena.config import Settings
from athena.gateway import Gateway
from tests.support.fake_llm import FakeLLM

TOKEN = "test-token-0123456789"


class Clock:
    """Wall time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class LiveGateway:
    url: str
    token: str
    clock: Clock
    settings: Settings
    core: Gateway  # the composition root the app runs
    client: httpx.AsyncClient

    async def converse(self, text: str, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post("/ha/conversation", json={"text": text, **fields})
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def session(self, device: str) -> dict[str, Any] | None:
        resp = await self.client.get(f"/athena/sessions/{device}")
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0 when absent)."""
        text = (await self.client.get("/metrics")).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + ("{" if labels else " ")):
                head, _, value = line.rpartition(" ")
                got = head[len(name) :].strip("{}")
                if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                    return float(value)
        return 0.0


@contextlib.asynccontextmanager
async def serve(settings: Settings, clock: Clock | None = None) -> AsyncIterator[LiveGateway]:
    clock = clock or Clock()
    app = create_app(settings, clock=clock)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", http="httptools", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # start-up failed: raise its error
            raise RuntimeError("gateway exited during start-up")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    token = app.state.token.value
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    ) as client:
        try:
            yield LiveGateway(url, token, clock, settings, app.state.gateway, client)
        finally:
            server.should_exit = True
            await task


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "store_url": "memory://",
        "llm_model": "fake-model",
        "api_token": TOKEN,
        "llm_timeout": 5.0,
        "llm_first_token_timeout": 5.0,
        "llm_connect_timeout": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


GatewayFactory = Callable[..., Awaitable[LiveGateway]]


@pytest.fixture
async def gateway_factory(tmp_path: Path, fake_llm: FakeLLM) -> AsyncIterator[GatewayFactory]:
    """`await gateway_factory(session_timeout=60)`: a gateway with these settings over the fake LLM."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> LiveGateway:
            overrides.setdefault("llm_url", fake_llm.url + "/v1")
            settings = make_settings(tmp_path, **overrides)
            return await stack.enter_async_context(serve(settings))

        yield make


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> LiveGateway:
    return await gateway_factory()


def llm_messages(fake: FakeLLM, index: int = -1) -> list[dict[str, Any]]:
    """The messages the fake LLM received in a chat request (default: the last one)."""
    chats = [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    return chats[index]["body"]["messages"]


def sse_events(raw: bytes) -> list[Any]:
    """Parse an SSE body into its `data:` payloads (JSON decoded; "[DONE]" kept as the string)."""
    events: list[Any] = []
    for block in raw.split(b"\n\n"):
        for line in block.splitlines():
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return events
