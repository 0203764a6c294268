"""OpenAI's chat wire format, read and written in one place: both backends, the relay and the API use it.

Reading is strict where an answer would otherwise be silently wrong (no choices, non-text content) and lenient
where servers differ (content parts, missing usage).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from athena.llm.base import Completion, LLMError
from athena.llm.http import error_detail
from athena.records import ToolCall
from athena.turns import Usage

DONE_EVENT = b"data: [DONE]\n\n"


def completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def call_id() -> str:
    return "call_" + os.urandom(8).hex()


def content_text(content: Any) -> str:
    """A message's text: a string, or OpenAI content parts (the text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type", "text") == "text"
        )
    return ""


# -- writing ---------------------------------------------------------------------------------------------
def tool_calls_out(calls: Iterable[ToolCall], *, indexed: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        fn = {"name": c.name, "arguments": c.arguments}
        item: dict[str, Any] = {"id": c.id, "type": "function", "function": fn}
        if indexed:
            item["index"] = i
        out.append(item)
    return out


def usage_out(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_completion(
    model: str,
    text: str | None,
    *,
    finish_reason: str = "stop",
    usage: Usage | None = None,
    tool_calls: Sequence[ToolCall] = (),
    cid: str | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls_out(tool_calls)
    answer: dict[str, Any] = {
        "id": cid or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        answer["usage"] = usage_out(usage)
    return answer


class Chunks:
    """``chat.completion.chunk`` events of one stream: one id and timestamp for all of them."""

    __slots__ = ("_head",)

    def __init__(self, model: str, cid: str | None = None) -> None:
        self._head = (
            b'{"id":"' + (cid or completion_id()).encode() + b'","object":"chat.completion.chunk","created":'
            + str(int(time.time())).encode() + b',"model":' + orjson.dumps(model)
        )

    def delta(self, delta: Mapping[str, Any], finish: str | None = None) -> bytes:
        return (
            b"data: " + self._head + b',"choices":[{"index":0,"delta":' + orjson.dumps(delta)
            + b',"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"
        )

    def usage(self, usage: Usage) -> bytes:
        """The closing event `stream_options.include_usage` asks for: no choices, only usage."""
        return b"data: " + self._head + b',"choices":[],"usage":' + orjson.dumps(usage_out(usage)) + b"}\n\n"


def error_event(body: Mapping[str, Any]) -> bytes:
    """An error inside a stream that has started: the error object, then the end of the stream."""
    return b"data: " + orjson.dumps(body) + b"\n\n" + DONE_EVENT


# -- reading ---------------------------------------------------------------------------------------------
def read_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt, completion)


def read_completion(data: Any, *, strict: bool) -> Completion:
    """A ``chat.completion``; strict: an answer without text (only tool calls) is an error."""
    if isinstance(data, dict) and data.get("error"):
        raise LLMError(f"the LLM reported an error: {error_detail(data['error'])}")
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LLMError("the LLM's answer has no choices[0].message") from None
    calls = read_tool_calls(message.get("tool_calls"))
    if content is None and strict:
        raise LLMError("the LLM's answer has no text" + (" (it called a tool)" if calls else ""))
    if content is None or isinstance(content, list):
        content = content_text(content)
    elif not isinstance(content, str):
        raise LLMError("the LLM's answer has no text")
    finish = choice.get("finish_reason") or ("tool_calls" if calls else "stop")
    return Completion(content, str(finish), read_usage(data.get("usage")), calls)


def read_tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        return ()
    calls = []
    for item in raw:
        fn = item.get("function") if isinstance(item, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            continue
        args = fn.get("arguments")
        text = args if isinstance(args, str) else orjson.dumps(args or {}).decode()
        calls.append(ToolCall(str(item.get("id") or call_id()), fn["name"], text or "{}"))
    return tuple(calls)


@dataclass(slots=True)
class ChunkInfo:
    """What one ``chat.completion.chunk`` says."""

    text: str = ""
    progress: bool = False  # the model is producing something (text, tool calls, reasoning)
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_parts: list[Mapping[str, Any]] = field(default_factory=list)


def read_chunk(data: Any) -> ChunkInfo:
    if not isinstance(data, dict):
        raise LLMError("the LLM's stream event is not a JSON object")
    if data.get("error"):
        raise LLMError(f"the LLM reported an error mid-stream: {error_detail(data['error'])}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise LLMError("the LLM's stream event has no 'choices' list")
    info = ChunkInfo(usage=read_usage(data.get("usage")))
    if not choices:  # e.g. the closing usage event
        return info
    choice = choices[0]
    if not isinstance(choice, dict):
        raise LLMError("the LLM's stream event has a malformed choice")
    delta = choice.get("delta") or {}
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        raise LLMError("the LLM's stream event has non-text content")
    info.text = content or ""
    parts = delta.get("tool_calls")
    if isinstance(parts, list):
        info.tool_parts = [p for p in parts if isinstance(p, Mapping)]
    info.progress = bool(
        info.text or info.tool_parts or delta.get("reasoning_content") or delta.get("reasoning")
    )
    finish = choice.get("finish_reason")
    info.finish_reason = str(finish) if finish is not None else None
    return info


class ToolCallParts:
    """Streamed tool calls come in pieces (by index: id and name first, arguments in fragments)."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def add(self, parts: Iterable[Mapping[str, Any]]) -> None:
        for part in parts:
            index = part.get("index", len(self._calls))
            slot = self._calls.setdefault(index if isinstance(index, int) else len(self._calls), ["", "", ""])
            fn = part.get("function")
            if not isinstance(fn, Mapping):
                fn = {}
            if part.get("id"):
                slot[0] = str(part["id"])
            if fn.get("name"):
                slot[1] += str(fn["name"])
            args = fn.get("arguments")
            if isinstance(args, str):
                slot[2] += args
            elif isinstance(args, Mapping):  # some servers send the object whole
                slot[2] = orjson.dumps(args).decode()

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(cid or call_id(), name, args or "{}")
            for cid, name, args in (self._calls[i] for i in sorted(self._calls))
            if name
        )
