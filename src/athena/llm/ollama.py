"""Ollama's native ``/api/chat`` (NDJSON streams, ``keep_alive``) and its conversion to OpenAI's wire format.

The base URL is the server's root, e.g. ``http://host:11434``; a trailing ``/v1`` (the OpenAI-compatible
prefix, the default of ``ATHENA_LLM_URL``) or ``/api`` is dropped, so changing ``ATHENA_LLM_API`` alone works.
OpenAI-style options map to Ollama's: ``max_tokens``/``max_completion_tokens`` become ``options.num_predict``,
``response_format`` becomes ``format``, sampling knobs (temperature, top_p, seed, stop, ...) go into
``options``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import orjson

from athena.llm.base import ChatMessage, ChatStream, Completion, LLMError, RelayChunk, Relayed, RelayStream
from athena.llm.http import Deadline, HTTPBackend, Timeouts, dumps, error_detail, loads
from athena.llm.wire import (
    DONE_EVENT,
    Chunks,
    chat_completion,
    content_text,
    read_tool_calls,
    tool_calls_out,
)
from athena.records import ToolCall
from athena.turns import Usage

_RENAMED = {"max_tokens": "num_predict", "max_completion_tokens": "num_predict"}
_TOP_LEVEL = frozenset({"format", "keep_alive", "tools", "think"})
# OpenAI request fields with no Ollama meaning; dropped rather than sent as unknown options.
_DROPPED = frozenset(
    {
        "n",
        "user",
        "stream_options",
        "logprobs",
        "top_logprobs",
        "tool_choice",
        "parallel_tool_calls",
        "logit_bias",
        "metadata",
        "store",
        "service_tier",
        "modalities",
        "reasoning_effort",
        "model",
        "messages",
        "stream",
        "response_format",
        "options",
    }
)
_FINISH = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


def ollama_request(
    model: str,
    messages: Sequence[ChatMessage],
    options: Mapping[str, Any],
    *,
    stream: bool,
    keep_alive: str | None = None,
) -> dict[str, Any]:
    """An ``/api/chat`` body from OpenAI-style messages and options."""
    body: dict[str, Any] = {"model": model, "messages": _messages(messages), "stream": stream}
    opts: dict[str, Any] = {}
    native = options.get("options")
    if isinstance(native, Mapping):
        opts.update(native)
    for key, value in options.items():
        if key in _TOP_LEVEL:
            body[key] = value
        elif key in _RENAMED:
            if value is not None:
                opts[_RENAMED[key]] = value
        elif key not in _DROPPED and value is not None:
            opts[key] = value
    fmt = options.get("response_format")
    if isinstance(fmt, Mapping):
        if fmt.get("type") == "json_object":
            body["format"] = "json"
        elif fmt.get("type") == "json_schema":
            schema = fmt.get("json_schema")
            if isinstance(schema, Mapping) and isinstance(schema.get("schema"), Mapping):
                body["format"] = schema["schema"]
    if opts:
        body["options"] = opts
    if keep_alive is not None and "keep_alive" not in body:
        body["keep_alive"] = keep_alive
    return body


def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Ollama's messages: string content, tool calls with object arguments, and a tool result named by its
    tool (`tool_name`, found from the OpenAI `tool_call_id` among the calls before it)."""
    names: dict[str, str] = {}
    out = []
    for m in messages:
        message: dict[str, Any] = {"role": m.get("role", "user"), "content": content_text(m.get("content"))}
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            message["tool_calls"] = [_native_call(c) for c in calls if isinstance(c, Mapping)]
            names.update({str(c.get("id")): str((c.get("function") or {}).get("name")) for c in calls
                          if isinstance(c, Mapping) and c.get("id")})
        if message["role"] == "tool" and "tool_name" not in m and m.get("tool_call_id") in names:
            message["tool_name"] = names[m["tool_call_id"]]
        for key in ("images", "tool_name", "thinking"):
            if key in m:
                message[key] = m[key]
        out.append(message)
    return out


def _native_call(call: Mapping[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = orjson.loads(args) if args else {}
        except orjson.JSONDecodeError:
            args = {}
    return {"function": {"name": fn.get("name", ""), "arguments": args or {}}}


def _calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """Ollama's tool calls (arguments as an object, no ids) as OpenAI-style calls."""
    return read_tool_calls(message.get("tool_calls"))


def _usage(data: Mapping[str, Any]) -> Usage | None:
    prompt, completion = data.get("prompt_eval_count"), data.get("eval_count")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


def _content(data: Any) -> tuple[str, dict[str, Any]]:
    """(text, message) of one /api/chat object; LLMError for errors and anything not of the protocol."""
    if not isinstance(data, dict):
        raise LLMError("the LLM's answer is not a JSON object")
    if data.get("error"):
        raise LLMError(f"the LLM reported an error: {error_detail(data['error'])}")
    message = data.get("message")
    if not isinstance(message, dict):
        if data.get("done"):
            return "", {}
        raise LLMError("the LLM's answer has no 'message'")
    content = message.get("content", "")
    if not isinstance(content, str):
        raise LLMError("the LLM's answer has non-text content")
    return content, message


class OllamaBackend(HTTPBackend):
    api = "ollama"
    models_path = "/api/tags"
    chat_path = "/api/chat"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        keep_alive: str | None = None,
        name: str = "ollama",
        context_tokens: int | None = None,
    ) -> None:
        url = url.rstrip("/")
        for suffix in ("/v1", "/api"):
            if url.endswith(suffix):
                url = url[: -len(suffix)]
        super().__init__(
            url, model, api_key=api_key, timeouts=timeouts, name=name, context_tokens=context_tokens
        )
        self.keep_alive = keep_alive

    def _body(self, messages: Sequence[ChatMessage], options: Mapping[str, Any], stream: bool) -> bytes:
        model = options.get("model") or self.model
        return dumps(ollama_request(model, messages, options, stream=stream, keep_alive=self.keep_alive))

    # -- the backend interface -------------------------------------------------------------------------
    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> str:
        deadline = Deadline(self.timeouts, streaming=False)
        with self.counting():
            raw = await self._request_json(
                "POST", self.chat_path, self._body(messages, options, False), deadline
            )
            text, message = _content(loads(raw))
            if not text and message.get("tool_calls"):
                raise LLMError("the LLM's answer has no text (it called a tool)")
        self.observe_answer(deadline)
        return text

    def stream(self, messages: Sequence[ChatMessage], **options: Any) -> ChatStream:
        return ChatStream(self._stream(self._body(messages, options, True)))

    async def _stream(self, body: bytes) -> AsyncGenerator[str | Completion, None]:
        parts: list[str] = []
        calls: list[ToolCall] = []
        done: Mapping[str, Any] = {}
        async with aclosing(self._lines(body)) as batches:
            async for batch in batches:
                text = "".join(t for t, _ in batch)
                if text:
                    parts.append(text)
                    yield text
                for _, data in batch:
                    calls.extend(_calls(data.get("message") or {}))
                    if data.get("done"):
                        done = data
        yield Completion("".join(parts), _finish(done, bool(calls)), _usage(done), tuple(calls))

    async def models(self) -> list[str]:
        data = await self._probe("/api/tags")
        items = data.get("models") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self.not_a_model_list("no 'models' list")
        return [str(m.get("name") or m.get("model")) for m in items if isinstance(m, dict)]

    # -- the relay: OpenAI request in, OpenAI wire format out ------------------------------------------
    def _relay_body(self, body: Mapping[str, Any], stream: bool) -> bytes:
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise LLMError("the request has no 'messages' list")
        # The rest of the body is the options: ollama_request drops model, messages and stream itself.
        model = body.get("model") or self.model
        return dumps(ollama_request(model, messages, body, stream=stream, keep_alive=self.keep_alive))

    async def relay(self, body: Mapping[str, Any]) -> Relayed:
        deadline = Deadline(self.timeouts, streaming=False)
        request = self._relay_body(body, False)  # a client's body without messages is no upstream failure
        with self.counting():
            raw = await self._request_json("POST", self.chat_path, request, deadline)
            data = loads(raw)
            text, message = _content(data)
        calls = _calls(message)
        answer = chat_completion(
            str(data.get("model") or self.model),
            text,
            finish_reason=_finish(data, bool(calls)),
            usage=_usage(data) or Usage(0, 0),
            tool_calls=calls,
        )
        self.observe_answer(deadline)
        return Relayed(orjson.dumps(answer), text)

    async def relay_stream(self, body: Mapping[str, Any]) -> RelayStream:
        chunks = Chunks(str(body.get("model") or self.model))
        role_sent = called = False
        async with aclosing(self._lines(self._relay_body(body, True))) as batches:
            async for batch in batches:
                events: list[bytes] = []
                for text, data in batch:
                    delta: dict[str, Any] = {}
                    if not role_sent:
                        delta["role"] = "assistant"
                        role_sent = True
                    if text:
                        delta["content"] = text
                    if calls := _calls(data.get("message") or {}):
                        delta["tool_calls"] = tool_calls_out(calls, indexed=True)
                        called = True
                    if delta:
                        events.append(chunks.delta(delta))
                    if data.get("done"):
                        events.append(chunks.delta({}, _finish(data, called)))
                        events.append(DONE_EVENT)
                if events:
                    yield RelayChunk(b"".join(events), "".join(t for t, _ in batch))

    # -- NDJSON ----------------------------------------------------------------------------------------
    def _lines(self, body: bytes) -> AsyncGenerator[list[tuple[str, dict[str, Any]]], None]:
        """(text delta, object) per NDJSON line, in batches (one network read), the last with ``done``;
        a failure is counted once, by kind."""
        return self.counted(self._raw_lines(body))

    async def _raw_lines(self, body: bytes) -> AsyncGenerator[list[tuple[str, dict[str, Any]]], None]:
        """The lines, uncounted."""
        deadline = Deadline(self.timeouts, streaming=True)
        resp = await self._send("POST", self._chat_url, body, deadline)
        reader = self.lines(resp, deadline)
        clean = False
        try:
            while True:
                lines = await reader.next()
                if not lines:
                    raise LLMError("the LLM's stream ended before the answer was complete")
                batch: list[tuple[str, dict[str, Any]]] = []
                for line in lines:
                    if not line.strip():
                        continue
                    data = loads(line, "stream line")
                    text, message = _content(data)
                    if text or message.get("tool_calls") or message.get("thinking"):
                        reader.first_token()
                    batch.append((text, data))
                    if data.get("done"):
                        clean = resp.content.at_eof()
                        self.observe_answer(deadline)
                        yield batch
                        return
                if batch:
                    yield batch
        finally:
            reader.close()
            if clean:
                resp.release()
            else:
                resp.close()


def _finish(data: Mapping[str, Any], called: bool) -> str:
    if called:
        return "tool_calls"
    return _FINISH.get(str(data.get("done_reason") or "stop"), "stop")
