"""The tool rounds of one turn: the model's calls run in parallel, in the device's room, and what they did
is kept — compactly in the session's history, and as the follow-up memory when HA acted on something.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from athena.homeassistant.rest import response_targets
from athena.llm.base import ChatMessage
from athena.llm.wire import tool_calls_out
from athena.records import IntentMemory, Message, MessageMeta, ToolCall
from athena.tools import Tool, Toolbox, ToolOutcome
from athena.turns import Target

log = structlog.get_logger("athena.engine")

# A home tool's targets; a call naming none of the first three acts in the device's own room.
_PLACE = frozenset({"name", "area", "floor"})
KEPT_RESULT_CHARS = 400  # of a tool result, in the session's history (the model saw it whole at the time)

GAVE_UP: dict[str, str] = {  # a model that keeps calling tools past the limit or the deadline
    "en": "Sorry, I couldn't finish that. Please try again in simpler steps.",
    "de": "Entschuldigung, das habe ich nicht geschafft. Versuch es bitte in einfacheren Schritten.",
    "fr": "Désolé, je n'ai pas pu terminer. Réessaie en étapes plus simples.",
    "es": "Lo siento, no he podido terminarlo. Inténtalo de nuevo con pasos más sencillos.",
    "nl": "Sorry, dat lukte me niet. Probeer het in eenvoudigere stappen.",
}


def gave_up(language: str | None) -> str:
    base = (language or "en").replace("_", "-").split("-", 1)[0].casefold()
    return GAVE_UP.get(base, GAVE_UP["en"])


@dataclass
class ToolRounds:
    """Athena's own tools for one turn, and what their calls did."""

    toolbox: Toolbox
    offered: Mapping[str, Tool]
    device: str
    area: str | None
    language: str
    records: list[Message] = field(default_factory=list)  # to save: each round's call and its results
    memory: IntentMemory | None = None  # the last home action that succeeded: "now turn them off" works
    success: list[Target] = field(default_factory=list)
    failed: list[Target] = field(default_factory=list)
    rounds: int = 0

    def specs(self) -> list[dict[str, Any]]:
        return [tool.spec() for tool in self.offered.values()]

    async def run(self, calls: Sequence[ToolCall], said: str, now: float) -> list[ChatMessage]:
        """Run one round's calls; return the messages the model reads next (its call, then each result)."""
        self.rounds += 1
        done = await asyncio.gather(*(self._one(call) for call in calls))
        effective = [call for call, _ in done]
        messages: list[ChatMessage] = [
            {"role": "assistant", "content": said or None, "tool_calls": tool_calls_out(effective)}
        ]
        meta = MessageMeta(self.device, tool_calls=tuple(effective))
        self.records.append(Message("assistant", said, now, meta))
        for call, outcome in done:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.text})
            meta = MessageMeta(self.device, tool_call_id=call.id, tool_name=call.name)
            self.records.append(Message("tool", _kept(outcome), now, meta))
        return messages

    async def _one(self, call: ToolCall) -> tuple[ToolCall, ToolOutcome]:
        """One call as it was run (a home call without a place gets the device's room)."""
        started = time.perf_counter()
        tool = self.offered.get(call.name)
        if tool is None:
            return call, _refused(f"There is no tool named {call.name!r}.", "unknown_tool")
        try:
            arguments = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            return call, _refused("The arguments are not JSON; send a JSON object.", "invalid_arguments")
        if not isinstance(arguments, dict):
            return call, _refused("The arguments must be a JSON object.", "invalid_arguments")
        if tool.home and self.area and not _PLACE & arguments.keys():
            arguments = {**arguments, "area": self.area}  # HA's MCP context has no device: name its room
            call = ToolCall(call.id, call.name, orjson.dumps(arguments).decode())
        outcome = await self.toolbox.call(tool, arguments)
        log.info(
            "turn.tool_call", tool=call.name, ok=outcome.ok, error=outcome.error,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        log.debug("turn.tool_arguments", tool=call.name, arguments=arguments)
        if outcome.ok and tool.home:
            self._remember(tool, arguments, outcome.data)
        return call, outcome

    def _remember(self, tool: Tool, arguments: Mapping[str, Any], data: Any) -> None:
        if not isinstance(data, Mapping) or data.get("response_type") != "action_done":
            return
        success, failed = response_targets(data)
        self.success += success
        self.failed += failed
        entity_ids = [t.id for t in success if t.type == "entity"]
        if not entity_ids:
            return
        domains = {e.split(".", 1)[0] for e in entity_ids}
        self.memory = IntentMemory(
            name=tool.remote.rsplit("__", 1)[-1],  # HA 2026.7+ prefixes the providing domain
            slots=dict(arguments),
            language=self.language,
            domain=domains.pop() if len(domains) == 1 else None,
            entity_ids=entity_ids,
        )


def _refused(text: str, error: str) -> ToolOutcome:
    return ToolOutcome(text, ok=False, error=error)


def _kept(outcome: ToolOutcome) -> str:
    """What history keeps of a result: HA's action as its targets, anything else cut short (a live-context
    dump of the whole home is for the moment it was read, not for every later turn)."""
    data = outcome.data
    if isinstance(data, Mapping) and "response_type" in data:
        success, failed = response_targets(data)
        return orjson.dumps(
            {
                "response_type": data["response_type"],
                "success": [t.name for t in success],
                "failed": [t.name for t in failed],
            }
        ).decode()
    text = outcome.text
    return text if len(text) <= KEPT_RESULT_CHARS else text[:KEPT_RESULT_CHARS] + " …(cut)"
