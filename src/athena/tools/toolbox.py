"""The engine's `Toolbox` over MCP servers: the tools offered now, and calls that never raise.

`tools()` is the cached listing of every server that is up, filtered by its policy and named for the model
(see names.py); it costs a tuple comparison unless a listing or a server's state changed. `call()` checks
the arguments against the tool's JSON schema, runs the call on the server's kept session within the tool's
timeout, and bounds the result: text the model reads (untrusted: control characters dropped, cut at
`result_chars` with a marker) and, when the result is JSON, the parsed value in `data`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import mcp_types
import orjson
import structlog
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from mcp.shared.exceptions import MCPError
from mcp_types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from athena.observability import TOOL_CALLS, TOOL_SECONDS, TOOLS_OFFERED
from athena.tools import names
from athena.tools.base import Tool, ToolOutcome
from athena.tools.server import ServerDown, ToolServer

log = structlog.get_logger("athena.tools")

DESCRIPTION_CHARS = 1024  # a server's description of a tool reaches the model too: bounded like results
ERROR_CHARS = 300  # what an error tells the model
PARSE_LIMIT = 1_000_000  # a result longer than this is not parsed as JSON for `data`
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_KEYS_OF_A_WRAPPED_TEXT = {"result"}, {"success", "result"}


@dataclass(frozen=True, slots=True)
class _Entry:
    tool: Tool
    server: ToolServer
    validator: Validator | None
    required: frozenset[str]


def _bounded(text: str, limit: int) -> tuple[str, int]:
    """(text cut to `limit` characters with a marker, characters cut)."""
    if len(text) <= limit:
        return text, 0
    cut = len(text) - limit
    return f"{text[:limit]}\n[… cut: {cut} more characters]", cut


def _untrusted(text: str) -> str:
    return _CONTROL.sub("", text) if _CONTROL.search(text) else text


def _short(text: str, limit: int = ERROR_CHARS) -> str:
    text = " ".join(_untrusted(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _content_text(result: CallToolResult) -> str:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            if isinstance(resource, TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[binary resource {resource.uri}]")
        elif isinstance(block, (ImageContent, AudioContent)):
            parts.append(f"[{block.type} {block.mime_type}]")
        elif isinstance(block, ResourceLink):
            parts.append(f"[link {block.uri}]")
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        text = orjson.dumps(result.structured_content).decode()
    return text


def _parsed(text: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[" or len(stripped) > PARSE_LIMIT:
        return None
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None


def _validator(schema: Mapping[str, Any]) -> Validator | None:
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return cls(schema)
    except Exception:  # a schema the library cannot use: the server validates on its own
        return None


class MCPToolbox:
    """Tools from several MCP servers behind one `Toolbox`; open() connects them, close() lets go."""

    def __init__(
        self, servers: Sequence[ToolServer], *, timeout: float = 10.0, result_chars: int = 6000
    ) -> None:
        seen = [s.name for s in servers]
        if len(seen) != len(set(seen)):
            raise ValueError(f"tool server names must be unique: {seen}")
        self.servers: dict[str, ToolServer] = {s.name: s for s in servers}
        self.timeout = timeout
        self.result_chars = result_chars
        self._key: tuple[Any, ...] | None = None
        self._tools: tuple[Tool, ...] = ()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._offered: dict[str, int] = {}

    async def open(self, wait: float = 3.0) -> None:
        """Start every server's connection; wait up to `wait` s for each first attempt (a server that is
        down does not hold up the start: it keeps being retried in the background)."""
        for server in self.servers.values():
            await server.start()
        await asyncio.gather(*(s.wait_attempted(wait) for s in self.servers.values()))
        self._current()

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers.values()), return_exceptions=True)

    def refresh_soon(self, server: str | None = None) -> None:
        """List again shortly: one server (e.g. "home_assistant" on HA's registry events), or all."""
        for s in self.servers.values():
            if server is None or s.name == server:
                s.refresh_soon()

    # -- the Toolbox protocol ------------------------------------------------------------------------
    async def tools(self) -> Sequence[Tool]:
        return self._current()

    async def call(self, tool: Tool, arguments: Mapping[str, Any]) -> ToolOutcome:
        started = time.perf_counter()
        self._current()
        entry = self._entries.get((tool.server, tool.remote))
        if entry is None:  # not offered now: never called, whatever the model asked for
            return self._done(tool, started, "unknown_tool", f"there is no tool {tool.name} now")
        tool, name = entry.tool, entry.tool.name
        if not isinstance(arguments, Mapping):
            return self._done(tool, started, "invalid_arguments", f"{name}: the arguments must be an object")
        # Models often send null for an optional parameter they do not use: leave those out.
        args = {k: v for k, v in arguments.items() if v is not None or k in entry.required}
        log.debug("tools.call.arguments", tool=name, arguments=args)
        if entry.validator is not None and (problem := self._problem(entry.validator, args)) is not None:
            return self._done(tool, started, "invalid_arguments", f"invalid arguments for {name}: {problem}")
        server = entry.server
        timeout = server.timeout or self.timeout
        try:
            async with asyncio.timeout(timeout):
                result = await server.call(tool.remote, args)
        except TimeoutError:
            server.suspect()
            return self._done(tool, started, "timeout", f"{name} did not answer within {timeout:g} s")
        except ServerDown as exc:
            log.debug("tools.call.server_down", tool=name, error=str(exc))
            return self._done(tool, started, "server_down", f"the server of {name} cannot be reached now")
        except MCPError as exc:  # the server refused the call (a tool gone since the listing, bad params)
            server.refresh_soon()
            return self._done(tool, started, "tool_error", f"{name} failed: {_short(exc.message)}")
        except Exception as exc:  # anything else the SDK raises: the turn goes on without this answer
            log.warning("tools.call.failed", tool=name, error=f"{type(exc).__name__}: {_short(str(exc))}")
            return self._done(tool, started, "tool_error", f"{name} failed")
        return self._result(tool, started, result)

    # -- status for /health --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        self._current()
        servers = {}
        for server in self.servers.values():
            servers[server.name] = {**server.status(), "offered": self._offered.get(server.name, 0)}
        return {"enabled": True, "offered": len(self._tools), "servers": servers}

    # -- internals -----------------------------------------------------------------------------------
    def _current(self) -> tuple[Tool, ...]:
        key = tuple((s.name, s.version, s.up, s.alias_key()) for s in self.servers.values())
        if key != self._key:
            self._rebuild()
            self._key = key
        return self._tools

    def _rebuild(self) -> None:
        wanted: dict[tuple[str, str], str] = {}
        found: dict[tuple[str, str], tuple[ToolServer, mcp_types.Tool]] = {}
        offered = {s.name: 0 for s in self.servers.values()}
        for server in self.servers.values():
            if not server.up:
                continue
            for remote in server.listing:
                if not server.policy.allows((remote.name, *server.aliases(remote.name))):
                    continue
                key = (server.name, remote.name)
                if key in found:  # a server listing one name twice: the first counts
                    continue
                wanted[key] = server.wanted_name(remote.name)
                found[key] = (server, remote)
        final = names.assign(wanted)
        entries: dict[tuple[str, str], _Entry] = {}
        for key, (server, remote) in found.items():
            schema = dict(remote.input_schema or {})
            schema.setdefault("type", "object")
            schema.setdefault("properties", {})
            description = _short(remote.description or remote.title or remote.name, DESCRIPTION_CHARS)
            tool = Tool(
                name=final[key],
                description=description,
                parameters=schema,
                server=server.name,
                remote=remote.name,
                home=server.is_home(remote),
            )
            required = schema.get("required")
            entries[key] = _Entry(
                tool,
                server,
                _validator(schema),
                frozenset(required) if isinstance(required, list) else frozenset(),
            )
            offered[server.name] += 1
        self._entries = entries
        self._tools = tuple(e.tool for e in entries.values())
        for server_name, count in offered.items():
            TOOLS_OFFERED.labels(server=server_name).set(count)
        if offered != self._offered:
            log.info("tools.offered", **offered)
        self._offered = offered

    @staticmethod
    def _problem(validator: Validator, args: dict[str, Any]) -> str | None:
        try:
            error = best_match(validator.iter_errors(args))
        except Exception:  # a schema feature the library trips over: let the server judge
            return None
        if error is None:
            return None
        where = error.json_path if error.json_path != "$" else ""
        return _short(f"{where.removeprefix('$.')}: {error.message}" if where else error.message)

    def _result(self, tool: Tool, started: float, result: CallToolResult) -> ToolOutcome:
        full = _untrusted(_content_text(result))
        data = _parsed(full)
        if data is None and result.structured_content is not None:
            data = result.structured_content
        text = full
        # {"result": "<text>"} (HA's GetLiveContext, an SDK server's plain answer): the model reads the text.
        if (
            isinstance(data, dict)
            and set(data) in _KEYS_OF_A_WRAPPED_TEXT
            and isinstance(data["result"], str)
            and data.get("success", True) is True
        ):
            text = data["result"]
        if result.is_error:
            message = _short(text) if text else "the tool failed"
            return self._done(tool, started, "tool_error", f"{tool.name} failed: {message}", data)
        bounded, cut = _bounded(text, self.result_chars)
        return self._done(tool, started, "ok", bounded, data, cut)

    def _done(
        self,
        tool: Tool,
        started: float,
        outcome: str,
        text: str,
        data: Any = None,
        cut: int = 0,
    ) -> ToolOutcome:
        ms = (time.perf_counter() - started) * 1000
        TOOL_CALLS.labels(tool=tool.name, outcome=outcome).inc()
        TOOL_SECONDS.labels(tool=tool.name).observe(ms / 1000)
        log.info("tools.call", tool=tool.name, server=tool.server, outcome=outcome, ms=round(ms, 2))
        if outcome != "ok":
            log.debug("tools.call.error", tool=tool.name, text=text)
        meta: dict[str, Any] = {"server": tool.server, "remote": tool.remote}
        if cut:
            meta["cut"] = cut
        return ToolOutcome(
            text=text,
            ok=outcome == "ok",
            data=data,
            duration_ms=ms,
            error=None if outcome == "ok" else outcome,
            meta=meta,
        )
