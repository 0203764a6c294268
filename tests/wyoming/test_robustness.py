"""Bad peers cost their own connection, never the server: garbage, huge or half-sent events, a peer that never
reads, peers outside the allow list, too many connections, and a bounded fuzz of raw bytes."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from ipaddress import ip_network

import pytest

from tests.wyoming.conftest import Factory, Served


async def still_serves(served: Served) -> None:
    peer = await served.connect()
    assert (await peer.ask("describe")).type == "info"
    await peer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"this is not json\n",
        b"\xff\xfe\x00garbage\n",
        b"[1, 2, 3]\n",
        b'{"data": {}}\n',  # no type
        b'{"type": 5}\n',
        b'{"type": "transcript", "data": [1]}\n',
        b'{"type": "transcript", "data_length": -1}\n',
        b'{"type": "transcript", "data_length": "ten"}\n',
        b'{"type": "transcript", "data_length": 4}\nnope',  # data that is not a JSON object
        b'{"type": "transcript", "data_length": 2}\n[]',
        b"[" * 5000 + b"\n",  # deep nesting
    ],
)
async def test_garbage_closes_that_connection(wyoming: Served, raw: bytes) -> None:
    peer = await wyoming.connect()
    await peer.send_raw(raw)
    assert await peer.closed()
    await still_serves(wyoming)


async def test_a_huge_header_line_is_refused_without_buffering_it(wyoming: Served) -> None:
    peer = await wyoming.connect()
    limit = wyoming.server.options.max_event_bytes
    with pytest.raises(ConnectionError):  # the server closes while we are still sending, or right after
        for _ in range(64):
            await peer.send_raw(b'{"type": "transcript", "data": {"text": "' + b"a" * limit)
    assert await peer.closed()
    await still_serves(wyoming)


async def test_an_announced_huge_payload_is_refused_before_it_arrives(wyoming: Served) -> None:
    peer = await wyoming.connect()
    await peer.send_raw(b'{"type": "audio-chunk", "payload_length": 4000000000}\n')
    assert await peer.closed(seconds=5)
    peer = await wyoming.connect()
    await peer.send_raw(b'{"type": "transcript", "data_length": 70000}\n')
    assert await peer.closed(seconds=5)
    await still_serves(wyoming)


async def test_a_payload_within_the_limit_is_read_and_dropped(wyoming: Served) -> None:
    peer = await wyoming.connect()
    await peer.send_raw(b'{"type": "audio-chunk", "data": {"rate": 16000}, "payload_length": 6}\nabcdef')
    assert (await peer.ask("describe")).type == "info"


async def test_a_half_sent_event_times_out(wyoming_factory: Factory) -> None:
    served = await wyoming_factory(idle_timeout=0.3)
    peer = await served.connect()
    await peer.send_raw(b'{"type": "transcript", "data_length": 40}\n{"text": ')
    assert await peer.closed(seconds=10)
    peer = await served.connect()
    await peer.send_raw(b'{"type": "describe"')  # no newline, ever
    assert await peer.closed(seconds=10)
    await still_serves(served)


async def test_a_half_sent_event_then_hang_up(wyoming: Served) -> None:
    peer = await wyoming.connect()
    await peer.send_raw(b'{"type": "transcript", "data_length": 40}\n{"te')
    peer.writer.write_eof()
    assert await peer.closed()
    await still_serves(wyoming)


async def test_a_peer_that_never_reads_is_dropped(wyoming_factory: Factory) -> None:
    """It asks for answers (~1 KB each) and reads none: once the buffers are full the server's write stalls,
    times out and the connection is reset, which the peer's next write sees; others are served meanwhile."""
    served = await wyoming_factory(write_timeout=0.5)
    _, writer = await asyncio.open_connection("127.0.0.1", served.port)
    with pytest.raises(ConnectionError):
        async with asyncio.timeout(30):
            for rounds in itertools.count():
                writer.write(b'{"type": "describe"}\n' * 100)
                await writer.drain()
                await asyncio.sleep(0.005)
                if rounds % 50 == 0:
                    await still_serves(served)
    writer.close()
    await still_serves(served)


async def test_peers_outside_the_allow_list_are_refused(wyoming_factory: Factory) -> None:
    served = await wyoming_factory(allow=(ip_network("10.0.0.0/8"),))
    peer = await served.connect()
    await peer.send("describe")
    assert await peer.closed() and peer.leftover == b""  # closed without an answer
    allowed = await wyoming_factory(allow=(ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32")))
    await still_serves(allowed)


async def test_too_many_connections_are_refused_and_the_rest_served(wyoming_factory: Factory) -> None:
    served = await wyoming_factory(max_connections=3)
    open_ = [await served.connect() for _ in range(3)]
    for peer in open_:  # all three are being served (answered), so all are counted
        assert (await peer.ask("describe")).type == "info"
    extra = await served.connect()
    await extra.send("describe")
    assert await extra.closed() and extra.leftover == b""
    await open_[0].close()
    await asyncio.sleep(0.1)
    await still_serves(served)


async def test_fuzz_of_raw_bytes_never_stops_the_server(wyoming_factory: Factory) -> None:
    """Bounded: 300 connections of random bytes and mangled events; after each batch a client is served."""
    served = await wyoming_factory(idle_timeout=0.2)
    rnd = random.Random(13)
    valid = [
        b'{"type": "describe"}\n',
        b'{"type": "transcript", "data": {"text": "hi"}}\n',
        json.dumps({"type": "transcript", "data_length": 15}).encode() + b'\n{"text": "yo"}',
    ]

    def sample() -> bytes:
        kind = rnd.randrange(4)
        if kind == 0:
            return rnd.randbytes(rnd.randrange(1, 4096))
        base = bytearray(rnd.choice(valid))
        if kind == 1:  # flip bytes
            for _ in range(rnd.randrange(1, 6)):
                base[rnd.randrange(len(base))] = rnd.randrange(256)
            return bytes(base)
        if kind == 2:  # truncate
            return bytes(base[: rnd.randrange(1, len(base))])
        return bytes(base) + rnd.randbytes(rnd.randrange(1, 256))  # trailing junk

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(sample())
            await writer.drain()
            async with asyncio.timeout(5):
                while await reader.read(65536):
                    pass
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    for _ in range(30):
        await asyncio.gather(*(one() for _ in range(10)))
        await still_serves(served)
