"""An LLM server that drops a kept-alive connection while it idles (uvicorn's keep-alive timeout, a proxy's)
must not cost a turn: the request is sent again once, on a fresh connection. The server here is a real TCP
server on loopback that answers one request per connection and then closes it either way a server does:
a plain close (the client sees the connection end) or a reset (the client sees ECONNRESET)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import orjson
import pytest

from athena.llm.openai import OpenAIBackend

ANSWER = orjson.dumps({
    "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
})


class OneRequestPerConnection:
    """Answers the first request of each connection, then ends the connection at the second."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset
        self.connections = 0
        self.answered = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                if served:  # the connection idled too long, as far as this server is concerned
                    sock = writer.get_extra_info("socket")
                    if self.reset:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.close()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
                await writer.drain()
                served += 1
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture(params=[False, True], ids=["closed", "reset"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[OneRequestPerConnection, str]]:
    fake = OneRequestPerConnection(reset=request.param)
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = fake.server.sockets[0].getsockname()[1]
    yield fake, f"http://127.0.0.1:{port}/v1"
    fake.server.close()
    await fake.server.wait_closed()


async def test_a_connection_dropped_while_idle_is_replaced_without_failing_the_turn(
    server: tuple[OneRequestPerConnection, str],
) -> None:
    fake, url = server
    async with OpenAIBackend(url, "m") as llm:
        messages = [{"role": "user", "content": "hi"}]
        for _ in range(3):
            assert await llm.chat(messages) == "hello"
    # Each reuse was refused, each retry used a new connection (open() also asks for llama.cpp's /props).
    assert fake.answered >= 3 and fake.connections == fake.answered
