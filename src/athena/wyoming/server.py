"""The Wyoming TCP server: Home Assistant's Wyoming integration talks to Athena as a `handle` service.

Per connection: `describe` → `info`; `transcript` → a Turn for the engine → `handled` (the answer) or
`not-handled` (a sentence saying what went wrong), each echoing the transcript's `context`; `ping` → `pong`;
anything else is dropped, as Wyoming asks. A peer that announced streaming (its own `info`) gets
`handled-start`, `handled-chunk`s, the whole `handled` and `handled-stop`. HA opens one connection per turn;
other clients may keep theirs open for many.

Whatever a peer does — garbage, a huge event, half an event, never reading — ends that connection with one
log line; the others are served on. There is no token (HA's Wyoming client has none): `allow` restricts peers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

import structlog
from wyoming.asr import Transcript
from wyoming.event import Event, async_write_event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop, NotHandled
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong

from athena.engine import Engine
from athena.observability import WYOMING_CONNECTIONS
from athena.tasks import cancel_and_wait
from athena.turns import Reply, Turn
from athena.wyoming.protocol import (
    BadEvent,
    Said,
    announces_streaming,
    info_event,
    read_event,
    read_transcript,
)

log = structlog.get_logger("athena.wyoming")

CLOSE_TIMEOUT = 2.0  # seconds an answer may take to flush when the peer hung up first


@dataclass(frozen=True, slots=True)
class WyomingOptions:
    """The server's slice of the settings (built by athena.wyoming.start_wyoming)."""

    host: str
    port: int  # 0: any free port (tests)
    allow: Sequence[IPv4Network | IPv6Network] = ()  # empty: any peer
    language: str = "en"  # for transcripts that name none (HA 2025.4 sends none)
    languages: Sequence[str] = ("en",)  # what `info` offers
    home_control: bool = False  # the local path (HA's sentences) is on
    max_event_bytes: int = 65_536
    max_text_chars: int = 2_000
    idle_timeout: float = 60.0  # seconds to wait for the next whole event
    write_timeout: float = 10.0  # seconds a peer may take to take an answer
    max_connections: int = 64


class WyomingServer:
    def __init__(self, engine: Engine, options: WyomingOptions) -> None:
        self.engine = engine
        self.options = options
        self.info = info_event(list(options.languages), home_control=options.home_control)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Listen; OSError (port taken, bad host) goes to the caller."""
        opts = self.options
        self._server = await asyncio.start_server(
            self._accept, opts.host, opts.port, limit=opts.max_event_bytes, reuse_address=True
        )
        host, port = self.address
        log.info("wyoming.listening", uri=f"tcp://{host}:{port}", allow=[str(n) for n in opts.allow] or "any")

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when options.port was 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the Wyoming server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._connections)))
        await self._server.wait_closed()
        self._server = None

    # -- one connection -------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_ip = str(peer[0]) if peer else "?"
        if not self._allowed(peer_ip):
            await self._end(writer, "refused", peer_ip, "not in ATHENA_WYOMING_ALLOW")
            return
        if len(self._connections) >= self.options.max_connections:
            await self._end(writer, "busy", peer_ip, f"{self.options.max_connections} connections are open")
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            outcome, reason = await Connection(self, reader, writer, peer_ip).serve()
            await self._end(writer, outcome, peer_ip, reason)
        except asyncio.CancelledError:  # the server is closing; asyncio 3.11 would log the cancelled task
            writer.transport.abort()
        finally:
            self._connections.discard(task)

    def _allowed(self, peer_ip: str) -> bool:
        if not self.options.allow:
            return True
        try:
            ip = ip_address(peer_ip)
        except ValueError:
            return False
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.options.allow)

    async def _end(self, writer: asyncio.StreamWriter, outcome: str, peer: str, reason: str | None) -> None:
        WYOMING_CONNECTIONS.labels(outcome=outcome).inc()
        if outcome == "closed":
            log.debug("wyoming.closed", peer=peer)
        elif outcome == "error":
            log.error("wyoming.connection_failed", peer=peer, reason=reason)
        else:
            log.warning(f"wyoming.{outcome}", peer=peer, reason=reason)
        if outcome == "timeout":  # a peer that takes nothing would keep a flushing close open forever
            writer.transport.abort()
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except Exception:  # the peer reset it: closed all the same
            pass


class Connection:
    """One peer's events in order; `serve()` returns how the connection ended and why."""

    def __init__(
        self, server: WyomingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        self.server = server
        self.options = server.options
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.streaming = False  # the peer announced it reads handled-start / -chunk / -stop

    async def serve(self) -> tuple[str, str | None]:
        opts = self.options
        try:
            while True:
                try:
                    async with asyncio.timeout(opts.idle_timeout):
                        event = await read_event(self.reader, opts.max_event_bytes)
                except TimeoutError:
                    return "timeout", f"no whole event within {opts.idle_timeout:g} s"
                if event is None:
                    return "closed", None
                await self.dispatch(event)
        except BadEvent as exc:
            return "bad_input", str(exc)
        except TimeoutError:  # only writes are timed from here on
            return "timeout", f"the peer took no answer within {opts.write_timeout:g} s"
        except (ConnectionError, OSError) as exc:
            return "peer_gone", str(exc) or type(exc).__name__
        except Exception as exc:  # a bug must cost one connection, never the server
            log.exception("wyoming.event_failed", peer=self.peer)
            return "error", str(exc) or type(exc).__name__

    async def dispatch(self, event: Event) -> None:
        if Transcript.is_type(event.type):
            await self.transcript(read_transcript(event.data, self.options.max_text_chars))
        elif Describe.is_type(event.type):
            await self.send(self.server.info)
        elif Info.is_type(event.type):
            self.streaming = announces_streaming(event.data)
        elif Ping.is_type(event.type):
            text = event.data.get("text")
            await self.send(Pong(text=text if isinstance(text, str) else None).event())
        else:
            log.debug("wyoming.ignored", peer=self.peer, type=event.type[:64])

    async def transcript(self, said: Said) -> None:
        if said.problem is not None:
            log.warning("wyoming.transcript_refused", peer=self.peer, reason=said.reason)
            await self.send(NotHandled(text=said.problem, context=said.context).event())
            return
        turn = Turn(
            text=said.text,
            language=said.language or self.options.language,
            device_id=said.device_id,
            satellite_id=said.satellite_id,
            conversation_id=said.conversation_id,
        )
        engine = self.server.engine
        if not self.streaming:
            await self.send(answer(await engine.handle(turn), said.context))
            return
        run = await engine.open(turn)
        started = False
        async with aclosing(run.deltas()) as deltas:  # a peer gone mid-answer: nothing is saved
            async for delta in deltas:
                if not started:
                    await self.send(HandledStart(context=said.context).event())
                    started = True
                await self.send(HandledChunk(text=delta).event())
        assert run.reply is not None
        if started:  # the protocol: the whole `handled` too (older readers), then the end of the stream
            await self.send(answer(run.reply, said.context), HandledStop().event())
        else:
            await self.send(answer(run.reply, said.context))

    async def send(self, *events: Event) -> None:
        async with asyncio.timeout(self.options.write_timeout):
            for event in events:
                await async_write_event(event, self.writer)


def answer(reply: Reply, context: dict[str, Any] | None) -> Event:
    """`handled` with the answer, or `not-handled` with the spoken error (HA: error `failed_to_handle`)."""
    if reply.response_type == "error":
        return NotHandled(text=reply.speech, context=context).event()
    return Handled(text=reply.speech, context=context).event()
