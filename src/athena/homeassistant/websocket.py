"""HA's WebSocket API: one authenticated connection kept alive with backoff; commands and event subscriptions.

The registries (areas, floors, devices, entities, exposure) are only on this API, and its events tell us when
they change. A lost connection fails the pending commands with HAUnavailable and reconnects in the background;
subscriptions are renewed on every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import structlog

from athena.homeassistant.errors import HAAuthError, HAError, HAResponseError, HAUnavailable
from athena.tasks import cancel_and_wait

log = structlog.get_logger("athena.homeassistant")

EventCallback = Callable[[dict[str, Any]], None]
ConnectCallback = Callable[[], Awaitable[None]]


class HAWebSocket:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.url = url.rstrip("/") + "/api/websocket"
        self._token = token
        self._timeout = timeout
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[str, list[EventCallback]] = {}
        self._on_connect: list[ConnectCallback] = []
        self._runner: asyncio.Task[None] | None = None
        self._setup: asyncio.Task[None] | None = None
        self._closing = False
        self.last_error: str | None = None
        self.ha_version: str | None = None
        self.failed_attempts = 0  # connects that failed since the last success

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def on_event(self, event_type: str, callback: EventCallback) -> None:
        """Call `callback(event)` for every `event_type` event, across reconnects. Register before start()."""
        self._subscriptions.setdefault(event_type, []).append(callback)

    def on_connect(self, callback: ConnectCallback) -> None:
        self._on_connect.append(callback)

    async def start(self) -> None:
        """Start the connection supervisor; it connects (and reconnects) in the background."""
        if self._runner is None:
            # No overall limit (the connection lives for hours); a connect must not hang on a dead host.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=self._timeout)
            )
            self._runner = asyncio.create_task(self._supervise(), name="ha-websocket")

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait(self._runner)
        self._runner = None
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        self._fail_pending(HAUnavailable("closed"))

    async def call(self, type_: str, **fields: Any) -> Any:
        ws = self._ws
        if ws is None or ws.closed:
            raise HAUnavailable(f"not connected to Home Assistant ({self.last_error or 'connecting'})")
        return await self._send(ws, {"type": type_, **fields})

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, msg: dict[str, Any]) -> Any:
        msg_id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await ws.send_str(orjson.dumps({"id": msg_id, **msg}).decode())
            async with asyncio.timeout(self._timeout):  # not wait_for: see athena.tasks
                return await fut
        except TimeoutError as exc:
            raise HAUnavailable(f"{msg['type']}: no answer within {self._timeout:.0f}s") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise HAUnavailable(f"{msg['type']}: {exc}") from exc
        finally:
            self._pending.pop(msg_id, None)

    # -- connection lifecycle ------------------------------------------------------------------------
    async def _supervise(self) -> None:
        low, high = self._backoff
        delay = low
        while not self._closing:
            try:
                await self._connect()
                delay = low
                await self._read()  # returns when the connection drops
                self.last_error = "connection closed"
            except Exception as exc:  # the supervisor never dies: the gateway keeps serving through the LLM
                self.last_error = str(exc) if isinstance(exc, HAError) else f"{type(exc).__name__}: {exc}"
                self.failed_attempts += 1
            ws, self._ws = self._ws, None
            self._fail_pending(HAUnavailable(self.last_error or "disconnected"))
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
            if self._closing:
                return
            log.warning("ha.websocket.disconnected", error=self.last_error, retry_in=round(delay, 2))
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(high, delay * 2)

    async def _connect(self) -> None:
        assert self._session is not None
        try:
            ws = await self._session.ws_connect(
                self.url, timeout=aiohttp.ClientWSTimeout(ws_close=5), heartbeat=30, max_msg_size=0
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise HAUnavailable(f"cannot connect to {self.url}: {exc or type(exc).__name__}") from exc
        try:
            hello = await ws.receive_json(timeout=self._timeout)
            if hello.get("type") != "auth_required":
                raise HAResponseError(f"unexpected WebSocket greeting {hello.get('type')!r}")
            self.ha_version = hello.get("ha_version")
            await ws.send_json({"type": "auth", "access_token": self._token})
            auth = await ws.receive_json(timeout=self._timeout)
            if auth.get("type") != "auth_ok":
                raise HAAuthError(
                    f"Home Assistant refused the token: {auth.get('message', auth.get('type'))}"
                )
        except (aiohttp.ClientError, TimeoutError, TypeError, ValueError) as exc:
            await ws.close()
            raise HAUnavailable(f"WebSocket handshake failed: {exc or type(exc).__name__}") from exc
        except HAError:
            await ws.close()
            raise
        self._ws = ws
        self.last_error = None
        self.failed_attempts = 0
        log.info("ha.websocket.connected", url=self.url, ha_version=self.ha_version)
        # Subscriptions and the on-connect work need the reader running: do them in a task.
        self._setup = asyncio.create_task(self._after_connect(ws), name="ha-websocket-setup")

    async def _after_connect(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            for event_type in self._subscriptions:
                await self._send(ws, {"type": "subscribe_events", "event_type": event_type})
            for callback in self._on_connect:
                await callback()
        except HAError as exc:
            log.warning("ha.websocket.setup_failed", error=str(exc))
        except Exception:
            log.exception("ha.websocket.setup_failed")

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        async for msg in ws:
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    data = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    continue
                for item in data if isinstance(data, list) else [data]:
                    self._dispatch(item)
            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "result":
            fut = self._pending.get(msg.get("id", -1))
            if fut is None or fut.done():
                return
            if msg.get("success"):
                fut.set_result(msg.get("result"))
            else:
                err = msg.get("error") or {}
                fut.set_exception(HAResponseError(f"{err.get('code')}: {err.get('message')}"))
        elif kind == "event":
            event = msg.get("event") or {}
            for callback in self._subscriptions.get(event.get("event_type", ""), ()):
                try:
                    callback(event)
                except Exception:
                    log.exception("ha.websocket.event_callback_failed")

    def _fail_pending(self, exc: HAError) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
