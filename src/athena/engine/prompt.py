"""What the model reads: instructions first, then the session's history, then the changing context.

Local servers (llama.cpp, Ollama) keep the evaluated prompt and reuse its longest unchanged prefix, so order
matters: the instructions are identical for every turn and device, the history only grows, and what changes
each turn — the device, its area, the local time — comes last, as a short note on the user's message. A clock
in the first message would make every turn evaluate the whole history again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from athena.llm.base import ChatMessage
from athena.llm.wire import tool_calls_out
from athena.records import Message
from athena.turns import Turn

DEFAULT_PROMPT = (
    "You are Athena, the voice assistant of a smart home. Your answers are spoken aloud by a speech engine: "
    "answer in one to three short, natural sentences of plain text, with no markdown, lists, emoji, code or "
    "links. Spell out units and symbols the way a person would say them. If a request is unclear, ask one "
    "short question. A message from the user may begin with a note in square brackets saying where and when "
    "it was said: use it, never read it out."
)


@dataclass(frozen=True, slots=True)
class PromptSettings:
    """ATHENA_SYSTEM_PROMPT (replaces the built-in one) and ATHENA_TIME_ZONE (None: the host's)."""

    system_prompt: str | None = None
    time_zone: str | None = None


def system_prompt(settings: PromptSettings, turn: Turn) -> str:
    """The instructions: the same for every turn of a conversation (and every device, unless a caller adds
    its own prompt)."""
    parts = [settings.system_prompt or DEFAULT_PROMPT]
    if turn.extra_system_prompt:
        parts.append(turn.extra_system_prompt)
    if turn.system_prompt:
        parts.append(turn.system_prompt)
    return "\n\n".join(parts)


def context_note(settings: PromptSettings, turn: Turn, now: datetime | None = None) -> str:
    """Where and when this turn was said, for the start of the user's message."""
    if now is None:
        zone = ZoneInfo(settings.time_zone) if settings.time_zone else None
        now = datetime.now(zone) if zone else datetime.now().astimezone()
    where = []
    if turn.device_name:
        where.append(f'to the device "{turn.device_name}"')
    if turn.area:
        where.append(f'in the area "{turn.area}"')
    said = f"Said {' '.join(where)}; the" if where else "The"
    return f"[{said} local time is {now:%A %d %B %Y, %H:%M} ({now:%Z}).]"


def chat_message(m: Message) -> dict[str, Any]:
    """A stored message in OpenAI's format (tool calls and results included)."""
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.meta.tool_call_id or "", "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.meta.tool_calls:
        out["tool_calls"] = tool_calls_out(m.meta.tool_calls)
        out["content"] = m.content or None
    return out


def build_messages(
    settings: PromptSettings, turn: Turn, history: Sequence[Message], now: datetime | None = None
) -> list[ChatMessage]:
    """The instructions, then the session's history, then this turn's text after its context note (or the
    results of the tools the model called)."""
    messages: list[ChatMessage] = [{"role": "system", "content": system_prompt(settings, turn)}]
    messages.extend(chat_message(m) for m in history if m.role != "system")
    if turn.tool_results:
        messages.extend(chat_message(m) for m in turn.tool_results)
    else:
        messages.append({"role": "user", "content": f"{context_note(settings, turn, now)}\n{turn.text}"})
    return messages
