"""A real gateway (memory store, the fake LLM) with the Wyoming server on a loopback port, and a Wyoming
client that speaks the official library's format over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from wyoming.event import Event, async_write_event

from athena.gateway import Gateway
from athena.wyoming import WyomingServer, wyoming_options
from athena.wyoming.protocol import read_event
from tests.api.conftest import make_settings
from tests.support.fake_llm import FakeLLM


class Peer:
    """One Wyoming connection: `send(type, data)`, `recv()`, `ask(type, data)` (send, then the next event)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.leftover = b""

    async def send(self, kind: str, data: dict[str, Any] | None = None) -> None:
        await async_write_event(Event(kind, data or {}), self.writer)

    async def send_raw(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def recv(self, seconds: float = 10.0) -> Event | None:
        async with asyncio.timeout(seconds):
            return await read_event(self.reader, 1 << 20)

    async def ask(self, kind: str, data: dict[str, Any] | None = None) -> Event:
        await self.send(kind, data)
        event = await self.recv()
        assert event is not None, f"the server closed the connection after {kind}"
        return event

    async def until(self, kind: str) -> list[Event]:
        """Every event up to and including the first of `kind`."""
        events: list[Event] = []
        while True:
            event = await self.recv()
            assert event is not None, f"closed before {kind}; got {[e.type for e in events]}"
            events.append(event)
            if event.type == kind:
                return events

    async def closed(self, seconds: float = 10.0) -> bool:
        """True once the server has closed the connection; what it sent first is kept in `.leftover`."""
        try:
            async with asyncio.timeout(seconds):
                while chunk := await self.reader.read(65536):
                    self.leftover += chunk
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()




class Served:
    def __init__(self, gateway: Gateway, server: WyomingServer, stack: contextlib.AsyncExitStack) -> None:
        self.gateway = gateway
        self.server = server
        self._stack = stack

    @property
    def port(self) -> int:
        return self.server.address[1]

    async def connect(self) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        peer = Peer(reader, writer)
        self._stack.push_async_callback(peer.close)
        return peer

    async def turn(self, text: str, context: dict[str, Any] | None = None, **data: Any) -> Event:
        """One turn on its own connection, as Home Assistant does it."""
        peer = await self.connect()
        body: dict[str, Any] = {"text": text, **data}
        if context is not None:
            body["context"] = context
        answer = await peer.ask("transcript", body)
        await peer.close()
        return answer


Factory = Callable[..., Awaitable["Served"]]


@pytest.fixture
async def wyoming_factory(tmp_path: Path, fake_llm: FakeLLM) -> AsyncIterator[Factory]:
    """`await wyoming_factory(idle_timeout=0.5, allow=(...))`: a started gateway and Wyoming server; keyword
    arguments replace WyomingOptions fields (settings go in `settings={...}`)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(settings: dict[str, Any] | None = None, **options: Any) -> Served:
            values = {"llm_url": fake_llm.url + "/v1", "wyoming_port": "tcp://127.0.0.1:0"}
            values.update(settings or {})
            gateway = Gateway(make_settings(tmp_path, **values))
            await stack.enter_async_context(gateway)
            opts = wyoming_options(gateway.settings, home_control=False)
            assert opts is not None
            server = WyomingServer(gateway.engine, replace(opts, **options))
            await server.start()
            stack.push_async_callback(server.close)
            return Served(gateway, server, stack)

        yield make


@pytest.fixture
async def wyoming(wyoming_factory: Factory) -> Served:
    return await wyoming_factory()
