"""One MCP tool server: a kept session owned by one background task, reconnected with backoff.

The official SDK's client lives in anyio task groups that must be entered and left by one task, and a
transport failure cancels the task that entered them. So each server has an owner task that connects, lists
the tools, then waits (refreshing the list every `refresh` seconds or when asked); calls from turns use the
kept session concurrently. A call that finds the connection closed marks the server down at once (its tools
leave the next `tools()`), and the owner reconnects: 0.5 s, doubling up to 30 s, with jitter.

`HomeAssistantTools` finds HA's own `mcp_server` integration from HA's URL: Streamable HTTP at
`/api/mcp/assist` (2026.8+, the Assist API alone), else `/api/mcp` (2026.x), else SSE at `/mcp_server/sse`
(2025.x). 404 everywhere means the integration is not added: said once, retried every `refresh` seconds (or
at once when HA reports a component loaded), so adding it later needs no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import mcp_types
import structlog
from mcp.client import Client, Transport
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, Implementation, ToolListChangedNotification

from athena import __version__
from athena.observability import TOOL_SERVER_DOWN, TOOL_SERVER_UP
from athena.tasks import cancel_and_wait
from athena.tools import names
from athena.tools.policy import ToolPolicy

log = structlog.get_logger("athena.tools")

TransportKind = Literal["streamable_http", "sse"]
State = Literal["connecting", "up", "down", "not_configured", "closed"]
CONNECT_TIMEOUT = 10.0  # a probe, the handshake and the first listing together
CHECK_TIMEOUT = 5.0  # after a call timed out: is the connection still alive?
MAX_PAGES = 20  # of tools/list
DEBOUNCE = 1.0  # refresh requests in a burst (HA loading components, a rename) make one refresh
CLIENT_INFO = Implementation(name="athena", version=__version__)
HOME_ASSISTANT = "home_assistant"  # the server name of HA's own tools


_TRANSPORT_ERRORS = (httpx2.HTTPError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError)
_ssl: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One TLS context for every connection: building one reads the CA bundle (tens of ms each time)."""
    global _ssl
    if _ssl is None:
        _ssl = httpx2.create_ssl_context()
    return _ssl


def http_client(
    headers: dict[str, str] | None = None,
    timeout: httpx2.Timeout | None = None,
    auth: httpx2.Auth | None = None,
) -> httpx2.AsyncClient:
    """An HTTP client for one connection (the SDK's client factory's shape, also given to its SSE client)."""
    return httpx2.AsyncClient(
        headers=headers,
        timeout=timeout or httpx2.Timeout(CONNECT_TIMEOUT, read=300.0),
        auth=auth,
        verify=ssl_context(),
    )


class ServerDown(Exception):
    """The server cannot take calls right now (connecting, down, or the connection was just lost)."""


class NotConfigured(Exception):
    """Home Assistant's MCP server is not set up (or not reachable on any of its endpoints)."""


class Refused(Exception):
    """The server refused our credentials (401/403)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    transport: TransportKind
    mode: Literal["legacy", "auto"]  # the SDK's negotiation: the 2026-07-28 probe, or the classic handshake

    def public(self) -> str:
        """The URL fit for /health and logs: no credentials, no query."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def reason(exc: BaseException) -> str:
    """One line for the log: the innermost error of an exception group, with its type when it says nothing."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (NotConfigured, Refused, ServerDown, MCPError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ToolServer:
    """A remote MCP server (`ATHENA_MCP_SERVERS` entry), kept connected."""

    def __init__(
        self,
        name: str,
        url: str,
        transport: TransportKind = "streamable_http",
        *,
        headers: Mapping[str, str] | None = None,
        policy: ToolPolicy,
        timeout: float | None = None,
        refresh: float = 300.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.name = name
        self.url = url
        self.transport: TransportKind = transport
        self.policy = policy
        self.timeout = timeout  # per call; None: the toolbox's
        self._headers = dict(headers or {})
        self._refresh = refresh
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self.state: State = "connecting"
        self.error: str | None = None
        self.since = time.time()
        self.listing: tuple[mcp_types.Tool, ...] = ()
        self.version = 0  # changes whenever the listing or the state does
        self.endpoint: Endpoint | None = None
        self._client: Client | None = None
        self._conn_http: httpx2.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._want_refresh = False
        self._want_check = False
        self._lost: str | None = None
        self._closing = False
        self._attempted = asyncio.Event()  # a first connect finished, either way
        self._debounce: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        TOOL_SERVER_UP.labels(server=name).set(0)

    # -- what the toolbox reads ----------------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self.state == "up" and self._client is not None

    def aliases(self, remote: str) -> tuple[str, ...]:
        """Other names the policy matches a tool by (HA's scripts before 2026.7)."""
        return ()

    def alias_key(self) -> object:
        """Changes when `aliases` would answer differently (the toolbox then rebuilds its list)."""
        return None

    def wanted_name(self, remote: str) -> str:
        return names.qualified(self.name, remote)

    def is_home(self, tool: mcp_types.Tool) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "transport": self.endpoint.transport if self.endpoint else self.transport,
            "url": self._public_url(),
            "listed": len(self.listing) if self.up else 0,
            "error": self.error,
            "since": round(self.since, 3),
        }

    def _public_url(self) -> str:
        return (self.endpoint or Endpoint(self.url, self.transport, "auto")).public()

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            await asyncio.to_thread(ssl_context)  # off the event loop, once per process
            self._task = asyncio.create_task(self._run(), name=f"mcp-{self.name}")

    async def wait_attempted(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._attempted.wait()

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._debounce is not None:
            self._debounce.cancel()
        task, self._task = self._task, None
        if task is not None:
            try:
                async with asyncio.timeout(3.0):
                    await asyncio.shield(task)
            except Exception:
                await cancel_and_wait(task)
        self._set("closed", None)

    def refresh_soon(self, delay: float = DEBOUNCE) -> None:
        """List the tools again shortly (a burst of requests makes one); a server that is down or not set up
        is retried at once."""
        if self._closing:
            return
        if self._debounce is not None:
            self._debounce.cancel()
        self._debounce = asyncio.get_running_loop().call_later(delay, self._request_refresh)

    def _request_refresh(self) -> None:
        self._debounce = None
        self._want_refresh = True
        self._wake.set()

    # -- calls ---------------------------------------------------------------------------------------
    async def call(self, remote: str, arguments: dict[str, Any]) -> CallToolResult:
        """One `tools/call` on the kept session. Raises ServerDown when there is no connection (or it was
        lost), MCPError for a protocol error the server answered with."""
        client = self._client
        if client is None or self.state != "up":
            raise ServerDown(self.error or self.state)
        try:
            return await client.call_tool(remote, arguments)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._connection_lost(reason(exc))
                raise ServerDown(reason(exc)) from exc
            raise
        except _TRANSPORT_ERRORS as exc:
            self._connection_lost(reason(exc))
            raise ServerDown(reason(exc)) from exc

    def suspect(self) -> None:
        """A call timed out: have the owner check the connection (a dead SSE stream can look like this)."""
        self._want_check = True
        self._wake.set()

    def _connection_lost(self, why: str) -> None:
        if self._lost is None and self.state == "up":
            self._lost = why
            self._set("down", why)  # its tools leave the next tools() now, not after the reconnect
            self._wake.set()

    # -- the owner task ------------------------------------------------------------------------------
    async def _endpoint(self, stack: contextlib.AsyncExitStack) -> Endpoint:
        return Endpoint(self.url, self.transport, "legacy" if self.transport == "sse" else "auto")

    async def _open_transport(self, endpoint: Endpoint, stack: contextlib.AsyncExitStack) -> Transport:
        if endpoint.transport == "sse":
            return sse_client(
                endpoint.url, headers=self._headers, timeout=self._connect_timeout,
                httpx_client_factory=http_client,
            )
        return streamable_http_client(endpoint.url, http_client=await self._http(stack))

    async def _http(self, stack: contextlib.AsyncExitStack) -> httpx2.AsyncClient:
        """This connection's HTTP client (one per connection: the probes and the transport share it)."""
        if self._conn_http is None:
            timeout = httpx2.Timeout(self._connect_timeout, read=300.0)
            self._conn_http = await stack.enter_async_context(http_client(self._headers, timeout))
        return self._conn_http

    async def _run(self) -> None:
        low, high = self._backoff
        delay = low
        while not self._closing:
            pause = low
            try:
                self._conn_http = None
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(self._connect_timeout):
                        endpoint = await self._endpoint(stack)
                        client = await stack.enter_async_context(
                            Client(
                                await self._open_transport(endpoint, stack),
                                mode=endpoint.mode,
                                cache=None,  # the list is ours to cache and refresh
                                client_info=CLIENT_INFO,
                                message_handler=self._on_message,
                            )
                        )
                        listing = await self._list(client)
                    self.endpoint, self._client, self._lost = endpoint, client, None
                    self._listed(listing)
                    self._set("up", None)
                    self._attempted.set()
                    delay = low
                    await self._serve(client)
                    self._client = None
                if not self._closing:
                    self._set("down", self._lost or "connection closed")
            except NotConfigured as exc:
                self._set("not_configured", str(exc))
                pause = self._refresh
            except Exception as exc:  # the owner never dies: a server down must not fail a turn
                if self._closing:
                    break
                why = reason(exc)
                if isinstance(exc, TimeoutError):
                    why = f"no answer within {self._connect_timeout:g} s"
                self._set("down", self._lost or why)
                pause, delay = delay, min(high, delay * 2)
            finally:
                self._client = self._conn_http = None
                self._attempted.set()
            if not self._closing:
                await self._sleep(pause * (0.8 + 0.4 * random.random()))

    async def _serve(self, client: Client) -> None:
        """Refresh the listing every `refresh` s or when asked, until the connection is lost or we close."""
        while True:
            tick = False
            try:
                async with asyncio.timeout(self._refresh):
                    await self._wake.wait()
            except TimeoutError:
                tick = True
            self._wake.clear()
            if self._closing or self._lost is not None:
                return
            # A timer tick, a refresh request, or a call that timed out (is the connection still alive? the
            # listing answers that on every protocol version; ping is gone from 2026-07-28).
            check, self._want_check = self._want_check, False
            refresh, self._want_refresh = self._want_refresh, False
            if refresh or tick or check:
                async with asyncio.timeout(CHECK_TIMEOUT if check else self._connect_timeout):
                    self._listed(await self._list(client))

    async def _sleep(self, seconds: float) -> None:
        """Until the next attempt; a refresh request (or close) ends it early."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()
        self._want_refresh = False

    async def _list(self, client: Client) -> tuple[mcp_types.Tool, ...]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tuple(tools)

    def _listed(self, listing: Sequence[mcp_types.Tool]) -> None:
        listing = tuple(listing)
        if listing != self.listing:
            self.listing = listing
            self.version += 1
            log.info("tools.server.listed", server=self.name, tools=len(listing))

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            self.refresh_soon(0.0)
        elif isinstance(message, _TRANSPORT_ERRORS):  # the SSE stream broke (the server restarted, say)
            self._connection_lost(reason(message))
        elif isinstance(message, Exception):
            log.debug("tools.server.message_error", server=self.name, error=reason(message))

    def _set(self, state: State, error: str | None) -> None:
        previous = self.state
        self.error = error
        if state == previous:
            return
        self.state = state
        self.since = time.time()
        self.version += 1
        TOOL_SERVER_UP.labels(server=self.name).set(1 if state == "up" else 0)
        if state in ("down", "not_configured") and previous != "closed":
            TOOL_SERVER_DOWN.labels(server=self.name).inc()
        url = self._public_url()
        if state == "up":
            log.info("tools.server.up", server=self.name, url=url, tools=len(self.listing))
        elif state == "closed":
            log.debug("tools.server.closed", server=self.name)
        else:
            log.warning(f"tools.server.{state}", server=self.name, url=url, error=error)


class HomeAssistantTools(ToolServer):
    """Home Assistant's own MCP server (the "Model Context Protocol Server" integration), found from HA's
    URL and long-lived token: its Assist API's tools, named as on HA 2026.7+ without the domain prefix."""

    # Most specific first: the Assist API alone (2026.8+, any user), configured APIs (2026.x), SSE (2025.x).
    ENDPOINTS: tuple[tuple[str, TransportKind], ...] = (
        ("/api/mcp/assist", "streamable_http"),
        ("/api/mcp", "streamable_http"),
        ("/mcp_server/sse", "sse"),
    )

    def __init__(
        self,
        url: str,
        token: str,
        *,
        policy: ToolPolicy,
        timeout: float | None = None,
        refresh: float = 300.0,
        scripts: Callable[[], Collection[str]] | None = None,
        endpoints: Sequence[tuple[str, TransportKind]] | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        super().__init__(
            HOME_ASSISTANT,
            url.rstrip("/"),
            "streamable_http",
            headers={"Authorization": f"Bearer {token}"},
            policy=policy,
            timeout=timeout,
            refresh=refresh,
            backoff=backoff,
        )
        self._endpoints = tuple(endpoints or self.ENDPOINTS)
        self._scripts = scripts

    def wanted_name(self, remote: str) -> str:
        return names.home_assistant(remote)

    def is_home(self, tool: mcp_types.Tool) -> bool:
        """An intent tool whose targets are HA's names, areas and floors (the engine may add the device's
        area when a call names none)."""
        if not names.home_assistant(tool.name).startswith("Hass"):
            return False  # GetLiveContext takes a name too (2026.x), but as a filter
        properties = tool.input_schema.get("properties")
        return isinstance(properties, dict) and bool({"name", "area", "floor"} & properties.keys())

    def alias_key(self) -> object:
        return self._scripts() if self._scripts is not None else None

    def aliases(self, remote: str) -> tuple[str, ...]:
        # Before 2026.7 a script's tool is its bare object id (with "_" before a leading digit): matched as
        # script__<id> when that script is exposed to Assist, so one policy fits every version.
        if "__" in remote or self._scripts is None:
            return ()
        scripts = self._scripts()
        bare = remote[1:] if remote.startswith("_") and remote[1:2].isdigit() else remote
        return (f"script__{bare}",) if bare in scripts else ()

    async def _endpoint(self, stack: contextlib.AsyncExitStack) -> Endpoint:
        http = await self._http(stack)
        order = list(self._endpoints)
        if self.endpoint is not None:  # the one that worked last time first
            last = next((e for e in order if self.url + e[0] == self.endpoint.url), None)
            if last is not None:
                order.remove(last)
                order.insert(0, last)
        refused: str | None = None
        for path, transport in order:
            status = await self._probe(http, self.url + path, transport)
            if status == 200:
                return Endpoint(self.url + path, transport, "legacy")
            if status == 401:
                raise Refused(f"Home Assistant refused the token at {path} (401)")
            if status == 403:
                refused = path
        if refused is not None:
            raise Refused(
                f"Home Assistant's MCP server at {refused} needs an admin user's token (403); HA 2026.8+ "
                "serves the Assist API to any user at /api/mcp/assist"
            )
        raise NotConfigured(
            "Home Assistant's MCP server is not set up: add the \"Model Context Protocol Server\" "
            "integration (Settings > Devices & services > Add integration) to give the LLM HA's tools"
        )

    async def _probe(self, http: httpx2.AsyncClient, url: str, transport: TransportKind) -> int:
        try:
            if transport == "streamable_http":
                response = await http.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
                    headers={"Accept": "application/json, text/event-stream"},
                )
                return response.status_code
            async with http.stream("GET", url, headers={"Accept": "text/event-stream"}) as streamed:
                return streamed.status_code  # closed at once: HA drops the session it opened
        except httpx2.HTTPError as exc:
            raise ServerDown(f"cannot reach Home Assistant at {self.url}: {reason(exc)}") from exc
