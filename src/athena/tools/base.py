"""The seam between the engine's tool loop and the tool servers: what a tool is, what a call returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Tool:
    """One tool as the model is offered it."""

    name: str  # as the model sees it: [A-Za-z0-9_-]{1,64}, unique in the toolbox, the same on any HA version
    description: str
    parameters: Mapping[str, Any]  # a JSON Schema object
    server: str  # the tool server it belongs to ("home_assistant", or the name given in ATHENA_MCP_SERVERS)
    remote: str  # its own name on that server (e.g. HA 2026.7+'s "intent__HassTurnOn")
    home: bool = False  # one of HA's intent tools, whose targets are `name`, `area`, `floor`, `domain`, ...

    def spec(self) -> dict[str, Any]:
        """The OpenAI `tools` entry (Ollama's native API takes the same shape)."""
        function = {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a call returned. `text` is what the model reads: untrusted, already bounded in size."""

    text: str
    ok: bool = True
    data: Any = None  # the result parsed as JSON when it was JSON (HA's IntentResponse dict for intent tools)
    duration_ms: float = 0.0
    error: str | None = None  # why it failed ("timeout", "invalid_arguments", "server_down", "tool_error")
    meta: Mapping[str, Any] = field(default_factory=dict)


class Toolbox(Protocol):
    async def tools(self) -> Sequence[Tool]:
        """The tools offered now: cached; a server that cannot be reached is left out (logged, counted)."""

    async def call(self, tool: Tool, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Run one call within its timeout. Never raises: arguments that do not fit the tool's schema, a
        server down or slow, and a failing tool all come back as `ok=False` with a short `text`."""
